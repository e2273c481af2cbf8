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
from tests.integration.handlers.test_http_handler import LocalServer, json_reply

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
