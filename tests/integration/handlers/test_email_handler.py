"""The built-in `email` step against a real SMTP server (aiosmtpd, in-process, on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from flowmonkey_celery import (
    EventType,
    ExecutionStatus,
    FlowRegistry,
    FlowValidationError,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
)
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.handlers.email import EMAIL_ERROR, EmailHandler
from flowmonkey_celery.testing import TestHarness

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
# aiosmtpd warns, for every connection, that the AUTH test server allows plain-text logins.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Mailbox:
    """What the test SMTP server accepted, and the recipients it turns down with a 550."""

    port: int
    received: list[Received] = field(default_factory=list)
    rcpt_attempts: list[str] = field(default_factory=list)
    unknown: set[str] = field(default_factory=set)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        self.rcpt_attempts.append(address)
        if address in self.unknown:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = cast(EmailMessage, message_from_bytes(envelope.content, policy=policy.default))
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def auth_mailbox() -> Iterator[Mailbox]:
    """A server that wants AUTH (over plain TCP: it is a test) and takes one password."""
    box = Mailbox(port=free_port())

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        user, password = data.login.decode(), data.password.decode()
        box.logins.append((user, password))
        # handled=False: aiosmtpd answers (235, or 535 on a wrong password) itself.
        return AuthResult(success=(user, password) == ("bot", "s3cret"), handled=False)

    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=box.port,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def email_flow(config: dict[str, Any], retry: dict[str, Any] | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"type": "email", "config": config, "outputKey": "sent"}
    if retry is not None:
        step["retry"] = retry
    return {"id": "mailing", "initialStepId": "send", "steps": {"send": step}}


def harness(port: int, config: dict[str, Any], **options: Any) -> TestHarness:
    retry = options.pop("retry", None)
    handler = EmailHandler(host="127.0.0.1", port=port, timeout_s=5, **options)
    return TestHarness(
        handlers=[handler], flows=[email_flow(config, retry)], clock=ManualClock(START)
    )


def send(
    port: int, config: dict[str, Any], context: dict[str, Any] | None = None, **options: Any
) -> tuple[TestHarness, Execution]:
    h = harness(port, config, **options)
    return h, h.run("mailing", context or {}).execution


def expected_message_id(execution: Execution, attempt: int = 1, call: int = 1) -> str:
    key = f"{execution.id}:send:{attempt}#{call}"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@flowmonkey>"


def test_a_flow_sends_an_email_the_server_receives(mailbox: Mailbox) -> None:
    config = {
        "to": "ada@example.com",
        "from": "Shop <shop@example.com>",
        "subject": "Your order",
        "body": "It has shipped.",
    }
    h, execution = send(mailbox.port, config)
    h.assert_completed(execution)

    [mail] = mailbox.received
    assert mail.mail_from == "shop@example.com"
    assert mail.rcpt_tos == ["ada@example.com"]
    assert mail.message["Subject"] == "Your order"
    assert mail.message["From"] == "Shop <shop@example.com>"
    assert mail.message.get_content().strip() == "It has shipped."
    assert mail.message["Message-ID"] == expected_message_id(execution)
    assert mail.message["Date"].datetime == START  # from the engine's clock, not the wall's
    assert execution.context["sent"] == {
        "message_id": expected_message_id(execution),
        "to": ["ada@example.com"],
        "accepted": ["ada@example.com"],
        "refused": {},
    }


def test_fields_are_templates_over_the_input(mailbox: Mailbox) -> None:
    config = {
        "to": "${customer.email}",
        "cc": ["${manager}", "audit@example.com"],
        "bcc": "${archive}",
        "reply_to": "support@example.com",
        "subject": "Order ${order.id} for ${customer.name}",
        "body": "Hello ${customer.name}, total ${order.total} EUR.",
        "headers": {"X-Order": "${order.id}"},
    }
    context = {
        "customer": {"name": "Ada", "email": ["ada@example.com", "Bob <bob@example.com>"]},
        "manager": "mgr@example.com",
        "archive": "archive@example.com",
        "order": {"id": "A-17", "total": 12.5},
    }
    h, execution = send(mailbox.port, config, context, default_sender="shop@example.com")
    h.assert_completed(execution)

    [mail] = mailbox.received
    assert mail.message["Subject"] == "Order A-17 for Ada"
    assert mail.message.get_content().strip() == "Hello Ada, total 12.5 EUR."
    assert mail.message["To"] == "ada@example.com, Bob <bob@example.com>"
    assert mail.message["Cc"] == "mgr@example.com, audit@example.com"
    assert mail.message["Reply-To"] == "support@example.com"
    assert mail.message["X-Order"] == "A-17"
    assert mail.mail_from == "shop@example.com"  # the handler's default sender
    assert "Bcc" not in mail.message  # bcc goes in the envelope only
    everyone = [
        "ada@example.com",
        "bob@example.com",
        "mgr@example.com",
        "audit@example.com",
        "archive@example.com",
    ]
    assert mail.rcpt_tos == everyone
    assert execution.context["sent"]["to"] == ["ada@example.com", "bob@example.com"]
    assert execution.context["sent"]["accepted"] == everyone


def test_html_is_sent_as_an_alternative_to_the_text(mailbox: Mailbox) -> None:
    config = {
        "to": "ada@example.com",
        "from": "shop@example.com",
        "subject": "News",
        "body": "Hello ${name}",
        "html": "<p>Hello <b>${name}</b></p>",
    }
    h, execution = send(mailbox.port, config, {"name": "Ada"})
    h.assert_completed(execution)

    message = mailbox.received[0].message
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().strip() == "Hello Ada"
    assert html.get_content().strip() == "<p>Hello <b>Ada</b></p>"


def test_html_alone_is_enough(mailbox: Mailbox) -> None:
    config = {"to": "a@example.com", "from": "s@example.com", "subject": "S", "html": "<i>x</i>"}
    h, execution = send(mailbox.port, config)
    h.assert_completed(execution)
    assert mailbox.received[0].message.get_content_type() == "text/html"


def test_a_redelivered_attempt_sends_the_same_message_id(mailbox: Mailbox) -> None:
    config = {"to": "a@example.com", "from": "s@example.com", "subject": "S", "body": "b"}
    h, execution = send(mailbox.port, config)
    # Run the same step call again, as a redelivered Celery message would.
    handler = h.handlers.get("email")
    flow = h.flows.get("mailing")
    params = HandlerParams(
        input={},
        context={},
        step=flow.steps["send"],
        execution=execution.model_copy(update={"step_count": 0}),  # as it was at the call
        attempt=1,
        step_key=f"{execution.id}:send:1",
        clock=h.clock,
    )
    handler.execute(params)
    ids = [mail.message["Message-ID"] for mail in mailbox.received]
    assert ids == [expected_message_id(execution)] * 2


def test_a_refused_recipient_fails_with_email_error_and_is_not_retried(mailbox: Mailbox) -> None:
    mailbox.unknown.add("ghost@example.com")
    config = {"to": "ghost@example.com", "from": "s@example.com", "subject": "S", "body": "b"}
    h, execution = send(mailbox.port, config, retry={"maxAttempts": 3, "backoffMs": 10})

    h.assert_failed(execution, EMAIL_ERROR)
    assert execution.error is not None
    assert "ghost@example.com (550 5.1.1 no such mailbox)" in execution.error.message
    assert execution.error.details["refused"] == {
        "ghost@example.com": [550, "5.1.1 no such mailbox"]
    }
    assert mailbox.rcpt_attempts == ["ghost@example.com"]  # one attempt only
    assert mailbox.received == []


def test_a_partly_refused_message_is_sent_to_the_others(mailbox: Mailbox) -> None:
    mailbox.unknown.add("ghost@example.com")
    config = {
        "to": ["ada@example.com", "ghost@example.com"],
        "from": "s@example.com",
        "subject": "S",
        "body": "b",
    }
    h, execution = send(mailbox.port, config)
    h.assert_completed(execution)
    assert mailbox.received[0].rcpt_tos == ["ada@example.com"]
    assert execution.context["sent"]["accepted"] == ["ada@example.com"]
    assert execution.context["sent"]["refused"] == {
        "ghost@example.com": [550, "5.1.1 no such mailbox"]
    }


def test_a_server_that_is_down_fails_with_email_error_left_to_the_retry_policy() -> None:
    port = free_port()  # nothing listens there
    config = {"to": "a@example.com", "from": "s@example.com", "subject": "S", "body": "b"}
    h, execution = send(port, config, retry={"maxAttempts": 2, "backoffMs": 10})

    h.assert_failed(execution, EMAIL_ERROR)
    assert execution.error is not None
    assert "cannot talk to the SMTP server" in execution.error.message
    assert f"127.0.0.1:{port}" in execution.error.message
    started = [e for e in h.history(execution) if e.type is EventType.STEP_STARTED]
    assert len(started) == 3  # the first call and two retries


@pytest.mark.parametrize(
    ("config", "context", "problem"),
    [
        ({"to": "${email}"}, {"email": "not-an-address"}, "not a valid email address"),
        ({"to": "${email}"}, {"email": None}, "no recipient in `to`"),
        ({"to": "${email}"}, {"email": 42}, "must be addresses (strings)"),
        ({"to": "a@example.com", "cc": ["${x}"]}, {"x": "a@@b"}, "`cc` is not a valid"),
        ({"to": "a@example.com", "subject": "${s}"}, {"s": "x\r\nBcc: evil@example.com"},
         "`subject` cannot be a Subject header"),
        ({"to": "a@example.com", "headers": {"Message-ID": "<x@y>"}}, {},
         "header 'Message-ID' is set by the handler itself"),
    ],
)  # fmt: skip
def test_bad_addresses_or_headers_from_the_input_fail_with_input_error(
    mailbox: Mailbox, config: dict[str, Any], context: dict[str, Any], problem: str
) -> None:
    full = {"from": "s@example.com", "subject": "S", "body": "b", **config}
    h, execution = send(mailbox.port, full, context, retry={"maxAttempts": 3, "backoffMs": 10})

    h.assert_failed(execution, "INPUT_ERROR")
    assert execution.error is not None
    assert problem in execution.error.message
    assert mailbox.rcpt_attempts == []  # nothing was sent


def test_no_sender_anywhere_fails(mailbox: Mailbox) -> None:
    config = {"to": "a@example.com", "subject": "S", "body": "b"}
    h, execution = send(mailbox.port, config)
    h.assert_failed(execution, "INPUT_ERROR")
    assert execution.error is not None
    assert "default_sender" in execution.error.message


CONFIG = {"to": "a@example.com", "from": "s@example.com", "subject": "S", "body": "b"}


def test_login_uses_the_password_from_the_named_environment_variable(
    auth_mailbox: Mailbox,
) -> None:
    login = {"username": "bot", "password_env": "SMTP_PASSWORD"}
    h, execution = send(auth_mailbox.port, CONFIG, environ={"SMTP_PASSWORD": "s3cret"}, **login)
    h.assert_completed(execution)
    assert auth_mailbox.logins == [("bot", "s3cret")]
    assert len(auth_mailbox.received) == 1


def test_a_wrong_password_fails_with_email_error_and_is_not_retried(
    auth_mailbox: Mailbox,
) -> None:
    login = {"username": "bot", "password_env": "SMTP_PASSWORD"}
    retry = {"maxAttempts": 3, "backoffMs": 10}
    environ = {"SMTP_PASSWORD": "guess"}
    h, execution = send(auth_mailbox.port, CONFIG, environ=environ, retry=retry, **login)
    h.assert_failed(execution, EMAIL_ERROR)
    assert execution.error is not None
    assert execution.error.details["smtp_code"] == 535
    # smtplib tries PLAIN, then LOGIN; a 535 is permanent, so there is no second attempt.
    assert auth_mailbox.logins == [("bot", "guess"), ("bot", "guess")]
    assert auth_mailbox.received == []


def test_a_password_variable_that_is_not_set_fails_naming_it(auth_mailbox: Mailbox) -> None:
    login = {"username": "bot", "password_env": "SMTP_PASSWORD"}
    h, execution = send(auth_mailbox.port, CONFIG, environ={}, **login)
    h.assert_failed(execution, EMAIL_ERROR)
    assert execution.error is not None
    assert "SMTP_PASSWORD (password_env) is not set" in execution.error.message
    assert auth_mailbox.logins == []


def test_a_password_variable_that_is_not_set_is_left_to_the_retry_policy(
    auth_mailbox: Mailbox,
) -> None:
    environ: dict[str, str] = {}
    login = {"username": "bot", "password_env": "SMTP_PASSWORD"}
    retry = {"maxAttempts": 2, "backoffMs": 60_000}
    h = harness(auth_mailbox.port, CONFIG, environ=environ, retry=retry, **login)
    execution_id = h.engine.create("mailing", {}).execution.id

    waiting = h.engine.run(execution_id)  # the send failed; its retry is a minute away
    assert waiting.status is ExecutionStatus.WAITING
    assert auth_mailbox.logins == []

    environ["SMTP_PASSWORD"] = "s3cret"  # the secret is deployed meanwhile
    finished = h.engine.run(execution_id, simulate_time=True)
    h.assert_completed(finished)
    assert auth_mailbox.logins == [("bot", "s3cret")]


def test_an_empty_password_variable_counts_as_not_set(auth_mailbox: Mailbox) -> None:
    login = {"username": "bot", "password_env": "SMTP_PASSWORD"}
    h, execution = send(auth_mailbox.port, CONFIG, environ={"SMTP_PASSWORD": ""}, **login)
    h.assert_failed(execution, EMAIL_ERROR)
    assert execution.error is not None
    assert "SMTP_PASSWORD (password_env) is not set" in execution.error.message
    assert auth_mailbox.logins == []


def test_contradictory_connection_settings_are_refused_when_built() -> None:
    with pytest.raises(ValueError, match="username and password_env go together"):
        EmailHandler(username="bot")
    with pytest.raises(ValueError, match="not both"):
        EmailHandler(use_tls=True, use_ssl=True)


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"to": "a@example.com", "body": "b"}, "steps.send.config"),  # no subject
        ({"to": "a@example.com", "subject": "S"}, "steps.send.config"),  # no body nor html
        ({"subject": "S", "body": "b"}, "steps.send.config"),  # no to
        ({"to": [], "subject": "S", "body": "b"}, "steps.send.config.to"),
        ({"to": "a@example.com", "subject": "S", "body": "b", "attach": "x"}, "steps.send.config"),
        ({"to": "a@example.com", "subject": 3, "body": "b"}, "steps.send.config.subject"),
    ],
)
def test_a_config_the_schema_refuses_is_refused_at_registration(
    config: dict[str, Any], path: str
) -> None:
    flows = FlowRegistry(handlers=HandlerRegistry([EmailHandler()]))
    with pytest.raises(FlowValidationError) as caught:
        flows.register(email_flow(config))
    assert [p for p, _ in caught.value.issues] == [path]
    assert "mailing" not in flows


def test_a_missing_subject_is_named_at_registration() -> None:
    flows = FlowRegistry(handlers=HandlerRegistry([EmailHandler()]))
    with pytest.raises(FlowValidationError) as caught:
        flows.register(email_flow({"to": "a@example.com", "body": "b"}))
    assert "missing required key 'subject'" in str(caught.value)
