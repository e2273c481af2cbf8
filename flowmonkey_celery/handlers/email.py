"""The built-in `email` step: send one message over SMTP (smtplib).

The Message-ID comes from the step key, so a redelivered attempt sends the same message and a
receiving system can drop the duplicate; the Date header comes from the engine's clock.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import ssl
from collections.abc import Mapping
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Any

from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.selectors import render_template, template_context
from flowmonkey_celery.errors import ErrorCode

EMAIL = "email"
EMAIL_ERROR = ErrorCode.EMAIL_ERROR.value

_TEXT = {"type": "string"}
_ADDRESSES = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ]
}
# Headers the handler writes itself; a config may not set them through `headers`.
_OWN_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "reply-to", "date", "message-id", "mime-version",
     "content-type", "content-transfer-encoding"}
)  # fmt: skip


class EmailHandler:
    """`email` steps: send `subject` and a text `body` and/or `html` alternative to `to`
    (plus `cc`, `bcc`), from `from` or the handler's `default_sender`. Every string is a
    `${path}` template over the step's input; an address field may also be filled with a
    list. Extra `headers` and a `reply_to` may be given.

    Output: `{"message_id", "to", "accepted", "refused"}` (`refused` maps addresses the server
    turned down, when others were accepted, to its answer).

    Failures: EMAIL_ERROR. A permanent refusal (SMTP 5xx: an unknown mailbox, a sender
    refused, bad credentials) is marked not retryable; a connection problem, a temporary
    refusal (4xx) or a `password_env` variable that is not set (nothing is sent; like the
    `llm` step's missing key) is left to the retry policy. An address the input fills in that
    is not an address fails with INPUT_ERROR, not retried.

    Args:
        host: the SMTP server.
        port: its port (25; 587 with `use_tls`; 465 with `use_ssl`).
        username: log in as this user (needs `password_env`).
        password_env: the name of the environment variable holding the password, read when a
            message is sent, so the secret never sits in the flow or in settings.
        use_tls: upgrade the connection with STARTTLS.
        use_ssl: connect over TLS from the start (SMTPS).
        default_sender: the From address when a step gives none.
        timeout_s: socket timeout for the SMTP conversation, in seconds.
        environ: where `password_env` is looked up; defaults to `os.environ`.

    Raises:
        ValueError: `use_tls` with `use_ssl`, or `username` without `password_env` (or the
            other way round).
    """

    type = EMAIL
    metadata: dict[str, Any] = {
        "type": EMAIL,
        "name": "Email",
        "description": "Send an email over SMTP",
        "category": "integration",
        "stateful": False,
        "config_schema": {
            "type": "object",
            "required": ["to", "subject"],
            "properties": {
                "to": _ADDRESSES,
                "cc": _ADDRESSES,
                "bcc": _ADDRESSES,
                "from": {"type": "string", "minLength": 1},
                "reply_to": _ADDRESSES,
                "subject": _TEXT,
                "body": _TEXT,
                "html": _TEXT,
                "headers": {
                    "type": "object",
                    "propertyNames": {"pattern": "^[!-9;-~]+$"},
                    "additionalProperties": {"type": "string"},
                },
            },
            "additionalProperties": False,
            "anyOf": [{"required": ["body"]}, {"required": ["html"]}],
        },
    }

    def __init__(
        self,
        host: str = "localhost",
        port: int = 25,
        username: str | None = None,
        password_env: str | None = None,
        use_tls: bool = False,
        use_ssl: bool = False,
        default_sender: str | None = None,
        timeout_s: float = 30,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if use_tls and use_ssl:
            raise ValueError("EmailHandler: use_tls (STARTTLS) or use_ssl (SMTPS), not both")
        if (username is None) != (password_env is None):
            raise ValueError("EmailHandler: username and password_env go together")
        self.host = host
        self.port = port
        self.username = username
        self.password_env = password_env
        self.use_tls = use_tls
        self.use_ssl = use_ssl
        self.default_sender = default_sender
        self.timeout_s = timeout_s
        self.environ = environ

    def __repr__(self) -> str:
        return f"<EmailHandler {self.host}:{self.port}>"

    def execute(self, params: HandlerParams) -> StepResult:
        step_id = params.step.id
        try:
            values = render_template(params.config, template_context(params.input))
            message, recipients = self._build(values, params)
        except (_BadInput, ValueError) as exc:  # ValueError: a `${}` placeholder
            return Result.failure(
                ErrorCode.INPUT_ERROR.value,
                f"email step {step_id!r}: {exc}",
                {"field": exc.field} if isinstance(exc, _BadInput) else {},
                retryable=False,
            )
        try:
            refused = self._send(message, recipients)
        except _SendFailed as exc:
            return Result.failure(
                EMAIL_ERROR,
                f"email step {step_id!r}: {exc} ({self.host}:{self.port})",
                {"host": self.host, "port": self.port, **exc.details},
                retryable=exc.retryable,
            )
        return Result.success(
            {
                "message_id": str(message["Message-ID"]),
                "to": _header_addresses(message, "To"),
                "accepted": [r for r in recipients if r not in refused],
                "refused": {r: [code, _text(answer)] for r, (code, answer) in refused.items()},
            }
        )

    # -- building ------------------------------------------------------------------------------

    def _build(
        self, values: Mapping[str, Any], params: HandlerParams
    ) -> tuple[EmailMessage, list[str]]:
        senders = _addresses(values.get("from") or self.default_sender, "from")
        if len(senders) != 1:
            raise _BadInput("from", "give one sender: `from` in the step, or default_sender")
        to = _addresses(values.get("to"), "to")
        if not to:
            raise _BadInput("to", "no recipient in `to`")
        cc = _addresses(values.get("cc"), "cc")
        bcc = _addresses(values.get("bcc"), "bcc")
        reply_to = _addresses(values.get("reply_to"), "reply_to")
        message = EmailMessage()
        _set(message, "From", senders[0], "from")
        _set(message, "To", to, "to")
        if cc:
            _set(message, "Cc", cc, "cc")
        if reply_to:
            _set(message, "Reply-To", reply_to, "reply_to")
        _set(message, "Subject", _field_text(values.get("subject"), "subject"), "subject")
        _set(message, "Date", format_datetime(params.clock.now()), "date")
        _set(message, "Message-ID", message_id(params.call_key), "message_id")
        for name, value in (values.get("headers") or {}).items():
            if name.lower() in _OWN_HEADERS:
                raise _BadInput("headers", f"header {name!r} is set by the handler itself")
            _set(message, name, _field_text(value, f"headers.{name}"), f"headers.{name}")
        if "body" in values:
            message.set_content(_field_text(values["body"], "body"))
        if "html" in values:
            html = _field_text(values["html"], "html")
            if "body" in values:
                message.add_alternative(html, subtype="html")
            else:
                message.set_content(html, subtype="html")
        # Bcc recipients are in the envelope only: no header tells the others about them.
        recipients = [address.addr_spec for address in [*to, *cc, *bcc]]
        return message, list(dict.fromkeys(recipients))

    # -- sending -------------------------------------------------------------------------------

    def _send(
        self, message: EmailMessage, recipients: list[str]
    ) -> dict[str, tuple[int, bytes | str]]:
        password = self._password()
        context = ssl.create_default_context()
        try:
            smtp: smtplib.SMTP
            if self.use_ssl:
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout_s, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            with smtp:
                if self.use_tls:
                    smtp.starttls(context=context)
                if self.username is not None:
                    smtp.login(self.username, password or "")
                refused: dict[str, tuple[int, bytes | str]] = dict(
                    smtp.send_message(message, to_addrs=recipients)
                )
                return refused
        except smtplib.SMTPRecipientsRefused as exc:
            answers = {r: [code, _text(answer)] for r, (code, answer) in exc.recipients.items()}
            permanent = all(code >= 500 for code, _ in exc.recipients.values())
            raise _SendFailed(
                f"every recipient was refused: {_refusals(answers)}",
                {"refused": answers},
                retryable=False if permanent else None,
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise _SendFailed(f"the server does not support it: {exc}", {}, False) from None
        except smtplib.SMTPResponseException as exc:
            # Sender refused, data refused, authentication failed, a bad greeting.
            code, answer = exc.smtp_code, _text(exc.smtp_error)
            raise _SendFailed(
                f"the server answered {code} {answer}",
                {"smtp_code": code, "smtp_error": answer},
                retryable=False if 500 <= code < 600 else None,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out, TLS
            raise _SendFailed(
                f"cannot talk to the SMTP server: {type(exc).__name__}: {exc}", {}, None
            ) from None

    def _password(self) -> str | None:
        if self.password_env is None:
            return None
        environ = os.environ if self.environ is None else self.environ
        password = environ.get(self.password_env)
        # Empty counts as not set (a secret that did not make it into the deployment), as
        # for the llm step's key. Left to the retry policy, which bounds the attempts.
        if not password:
            raise _SendFailed(
                f"the environment variable {self.password_env} (password_env) is not set; "
                "set it to the SMTP password on the workers",
                {"password_env": self.password_env},
                None,
            )
        return password


def message_id(call_key: str) -> str:
    """The Message-ID of the email sent by the step call with this `call_key`: the same for a
    redelivery of the call, different for every other call (a loop back included)."""
    return f"<{hashlib.sha256(call_key.encode()).hexdigest()[:32]}@flowmonkey>"


class _BadInput(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field


class _SendFailed(Exception):
    def __init__(self, problem: str, details: dict[str, Any], retryable: bool | None) -> None:
        super().__init__(problem)
        self.details = details
        self.retryable = retryable


def _addresses(value: Any, field: str) -> list[Address]:
    """Addresses from a string (comma-separated) or a list of strings; each one checked."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise _BadInput(field, f"`{field}` must be addresses (strings), got {value!r}")
    found: list[Address] = []
    for item in items:
        if "\r" in item or "\n" in item:
            raise _BadInput(field, f"`{field}` holds a line break: {item!r}")
        try:
            parsed = getaddresses([item])
            if not parsed or not all(_is_address(addr) for _, addr in parsed):
                raise ValueError(item)
            found += [Address(display_name=name, addr_spec=addr) for name, addr in parsed]
        except (ValueError, IndexError, MessageError):
            raise _BadInput(field, f"`{field}` is not a valid email address: {item!r}") from None
    return found


def _is_address(addr: str) -> bool:
    local, at, domain = addr.rpartition("@")
    return bool(at and local and domain and "." in domain.strip("."))


def _set(message: EmailMessage, name: str, value: Any, field: str) -> None:
    try:
        message[name] = value
    except (ValueError, TypeError, MessageError) as exc:  # a line break in a header, say
        raise _BadInput(field, f"`{field}` cannot be a {name} header: {exc}") from None


def _field_text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise _BadInput(field, f"`{field}` is empty (its placeholder found nothing)")
    raise _BadInput(field, f"`{field}` must be text, got {type(value).__name__}")


def _header_addresses(message: EmailMessage, name: str) -> list[str]:
    header = message[name]
    return [address.addr_spec for address in header.addresses] if header else []


def _text(answer: bytes | str) -> str:
    return answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer


def _refusals(answers: Mapping[str, list[Any]]) -> str:
    return ", ".join(f"{r} ({code} {answer})" for r, (code, answer) in answers.items())
