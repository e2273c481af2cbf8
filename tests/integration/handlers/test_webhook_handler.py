"""`webhook` steps against a real local HTTP server: the token is delivered, the callback
resumes once, a failed delivery fails the step, a timeout revokes the token."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    ExecutionError,
    ExecutionStatus,
    FlowRegistry,
    FlowValidationError,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
)
from flowmonkey_celery.handlers.webhook import WebhookHandler
from tests.integration.handlers.test_http_handler import LocalServer, Names, json_reply

START = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


def make(config: dict[str, Any], **step: Any) -> tuple[Engine, ManualClock]:
    flow = {
        "id": "notify",
        "initialStepId": "hook",
        "steps": {
            "hook": {"type": "webhook", "config": config, "outputKey": "callback", **step},
            "late": {"type": "delay", "config": {"ms": 0}},
        },
    }
    clock = ManualClock(START)
    handlers = HandlerRegistry([WebhookHandler(allow_private_addresses=True)])
    engine = Engine(
        MemoryStore(), handlers, FlowRegistry([flow]), clock=clock, rng=random.Random(0)
    )
    return engine, clock


def test_the_token_is_posted_and_the_callback_resumes_the_execution_once(
    server: LocalServer,
) -> None:
    engine, _ = make(
        {
            "url": server.url + "/hooks/${order.id}",
            "outcomes": ["paid", "declined"],
            "headers": {"X-Shop": "${shop}"},
        }
    )
    execution_id = engine.create("notify", {"order": {"id": "A-9"}, "shop": "north"}).execution.id

    waiting = engine.run(execution_id)

    assert waiting.status is ExecutionStatus.WAITING
    (delivery,) = server.seen
    body = delivery.json()
    assert delivery.method == "POST" and delivery.path == "/hooks/A-9"
    assert delivery.headers["x-shop"] == "north"
    assert delivery.headers["idempotency-key"] == f"{execution_id}:hook:1#1"
    assert body["execution_id"] == execution_id and body["step_id"] == "hook"
    assert body["outcomes"] == ["paid", "declined"] and body["input"]["order"] == {"id": "A-9"}
    token = body["token"]

    engine.resume_with_token(token, {"amount": 12}, outcome="paid")
    finished = engine.run(execution_id)
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["callback"] == {"amount": 12, "outcome": "paid"}
    with pytest.raises(ExecutionError) as reused:
        engine.resume_with_token(token, {"amount": 99}, outcome="paid")
    assert reused.value.code == ErrorCode.INVALID_RESUME_TOKEN


def test_a_failed_delivery_fails_the_step_with_its_status(server: LocalServer) -> None:
    server.routes["/down"] = lambda seen: json_reply({"error": "busy"}, 503)
    engine, _ = make({"url": server.url + "/down"})

    failed = engine.run(engine.create("notify", {}).execution.id)

    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == "HTTP_503"


def test_a_private_address_is_refused_by_default(server: LocalServer) -> None:
    flow = {
        "id": "notify",
        "initialStepId": "hook",
        "steps": {"hook": {"type": "webhook", "config": {"url": server.url}}},
    }
    engine = Engine(MemoryStore(), HandlerRegistry(), FlowRegistry([flow]))

    failed = engine.run(engine.create("notify", {}).execution.id)

    assert failed.error is not None and failed.error.code == ErrorCode.HTTP_ERROR
    assert "FLOWMONKEY_HTTP_ALLOW_PRIVATE" in failed.error.message
    assert server.seen == []


def test_no_callback_in_time_takes_on_timeout_and_revokes_the_token(server: LocalServer) -> None:
    engine, clock = make(
        {"url": server.url + "/hook"}, waitTimeoutMs=60_000, transitions={"onTimeout": "late"}
    )
    execution_id = engine.create("notify", {}).execution.id
    engine.run(execution_id)
    token = server.seen[0].json()["token"]

    clock.advance(60)
    engine.wake_due()
    finished = engine.run(execution_id, simulate_time=True)

    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["_error"]["code"] == ErrorCode.WAIT_TIMEOUT
    with pytest.raises(ExecutionError) as late:
        engine.resume_with_token(token)
    assert late.value.code == ErrorCode.INVALID_RESUME_TOKEN


def test_a_webhook_needs_a_url() -> None:
    flow = {
        "id": "notify",
        "initialStepId": "hook",
        "steps": {"hook": {"type": "webhook", "config": {"outcomes": []}}},
    }
    with pytest.raises(FlowValidationError) as raised:
        FlowRegistry(handlers=HandlerRegistry()).register(flow)
    assert {path for path, _ in raised.value.issues} == {
        "steps.hook.config",
        "steps.hook.config.outcomes",
    }


def test_a_redirect_is_a_failed_delivery_not_a_lost_token(server: LocalServer) -> None:
    server.routes["/moved"] = lambda seen: (302, {"Location": server.url + "/elsewhere"}, b"")
    engine, _ = make({"url": server.url + "/moved"})

    failed = engine.run(engine.create("notify", {}).execution.id)

    assert failed.error is not None and failed.error.code == "HTTP_302"
    assert [seen.path for seen in server.seen] == ["/moved"]


def test_a_header_of_the_step_replaces_a_default_of_the_same_name_in_any_case(
    server: LocalServer,
) -> None:
    headers = {"idempotency-key": "order-${order.id}", "content-type": "application/x.hook+json"}
    engine, _ = make({"url": server.url + "/hook", "headers": headers})

    engine.run(engine.create("notify", {"order": {"id": "A-9"}}).execution.id)

    (delivery,) = server.seen
    assert delivery.values("Idempotency-Key") == ["order-A-9"]  # sent once, the step's
    assert delivery.values("Content-Type") == ["application/x.hook+json"]


@pytest.mark.parametrize(("value", "sent"), [(True, "true"), (False, "false"), (3, "3")])
def test_a_header_filled_with_a_number_or_a_boolean_is_sent_as_http_sends_it(
    server: LocalServer, value: Any, sent: str
) -> None:
    engine, _ = make({"url": server.url + "/hook", "headers": {"X-Flag": "${value}"}})

    waiting = engine.run(engine.create("notify", {"value": value}).execution.id)

    assert waiting.status is ExecutionStatus.WAITING
    assert server.seen[0].values("X-Flag") == [sent]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"id": 7}, "header 'X-Order' must be text, got {'id': 7}"),
        (None, "header 'X-Order' must be text, got None"),
        ("7\r\nX-Admin: yes", "header 'X-Order' holds a line break"),
    ],
)
def test_a_header_that_cannot_be_one_fails_with_input_error_and_sends_nothing(
    server: LocalServer, value: Any, problem: str
) -> None:
    engine, _ = make(
        {"url": server.url + "/hook", "headers": {"X-Order": "${order}"}},
        retry={"maxAttempts": 3, "backoffMs": 10},
    )

    failed = engine.run(engine.create("notify", {"order": value}).execution.id)

    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.INPUT_ERROR
    assert problem in failed.error.message
    assert server.seen == []


def test_a_header_name_that_is_not_one_is_refused_at_registration() -> None:
    flow = {
        "id": "notify",
        "initialStepId": "hook",
        "steps": {
            "hook": {
                "type": "webhook",
                "config": {"url": "https://hooks.example.com", "headers": {"X Shop": "north"}},
            }
        },
    }
    flows = FlowRegistry(handlers=HandlerRegistry([WebhookHandler()]))
    with pytest.raises(FlowValidationError) as raised:
        flows.register(flow)
    assert [path for path, _ in raised.value.issues] == ["steps.hook.config.headers"]
    assert "X Shop" in raised.value.issues[0][1]
    assert "notify" not in flows


def test_the_reason_is_a_template_over_the_input(server: LocalServer) -> None:
    engine, _ = make(
        {"url": server.url + "/hooks/${order.id}", "reason": "carrier ${carrier} on ${order.id}"}
    )
    context = {"order": {"id": "A-9"}, "carrier": "north-post"}
    waiting = engine.run(engine.create("notify", context).execution.id)
    assert waiting.wait_reason == "carrier north-post on A-9"

    engine, _ = make({"url": server.url + "/hooks/${order.id}"})
    waiting = engine.run(engine.create("notify", context).execution.id)
    assert waiting.wait_reason == f"waiting for the callback of {server.url}/hooks/A-9"


def test_the_delivery_connects_only_to_a_checked_address(server: LocalServer) -> None:
    # The host rules and the resolve-once connection are the http step's: a name that
    # resolves to a public address for the check and to loopback for the connection.
    resolver = Names({"localhost": ["93.184.215.14", "127.0.0.1"]})
    flow = {
        "id": "notify",
        "initialStepId": "hook",
        "steps": {
            "hook": {"type": "webhook", "config": {"url": f"http://localhost:{server.port}/"}}
        },
    }
    handlers = HandlerRegistry([WebhookHandler(resolver=resolver)])
    engine = Engine(MemoryStore(), handlers, FlowRegistry([flow]))

    failed = engine.run(engine.create("notify", {}).execution.id)

    assert failed.error is not None and failed.error.code == ErrorCode.HTTP_ERROR
    assert "it resolves to 127.0.0.1, a loopback address" in failed.error.message
    assert server.seen == []
