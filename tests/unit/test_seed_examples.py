"""The seed documents' examples (README, Engine page, DESIGN.md §4), translated to Python.

They are the specification: each must work as the documents show it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    ExecutionError,
    Flow,
    FlowRegistry,
    FlowValidationError,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    handler,
)

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def make_engine(handlers: list[Any], flows: list[Any]) -> Engine:
    return Engine(
        MemoryStore(), HandlerRegistry(handlers), FlowRegistry(flows), clock=ManualClock(START)
    )


# -- README "Basic Example" / DESIGN.md §4 -----------------------------------------------------

GREETING_FLOW = {
    "id": "greeting",
    "version": "1.0.0",
    "name": "Greeting Flow",
    "initialStepId": "say-hello",
    "steps": {
        "say-hello": {
            "id": "say-hello",
            "type": "greet",
            "config": {},
            "input": {"type": "key", "key": "user"},
            "outputKey": "greeting",
            "transitions": {"onSuccess": None},  # None = complete
        },
    },
}


class GreetHandler:
    """The README's handler object: a `type` and an async `execute`."""

    type = "greet"

    async def execute(self, params: HandlerParams) -> StepResult:
        name = params.input["name"]
        return Result.success({"message": f"Hello, {name}!"})


def test_readme_basic_example_greets_the_world() -> None:
    store = MemoryStore()
    handlers = HandlerRegistry()
    flows = FlowRegistry()
    handlers.register(GreetHandler())
    flows.register(GREETING_FLOW)
    engine = Engine(store, handlers, flows)

    res = engine.create("greeting", {"user": {"name": "World"}})
    result = engine.run(res.execution.id, simulate_time=True)

    assert res.created is True
    assert result.status == "completed"
    assert result.context["greeting"] == {"message": "Hello, World!"}


def test_design_example_with_a_decorated_sync_handler_greets_the_world() -> None:
    @handler("greet")
    def greet(params: HandlerParams) -> StepResult:
        return Result.success({"message": f"Hello, {params.input['name']}!"})

    flows = FlowRegistry()
    handlers = HandlerRegistry()
    store = MemoryStore()
    engine = Engine(store, handlers, flows)
    handlers.register(greet)
    flows.register(Flow.from_dict(GREETING_FLOW))

    res = engine.create("greeting", {"user": {"name": "World"}})
    ex = engine.run(res.execution.id, simulate_time=True)

    assert (res.created, res.idempotency_hit) == (True, False)
    assert ex.status == "completed"
    assert ex.context["greeting"] == {"message": "Hello, World!"}
    assert ex.context["user"] == {"name": "World"}


# -- README "Flows": the order-processing flow -------------------------------------------------

ORDER_FLOW = {
    "id": "process-order",
    "version": "1.0.0",
    "initialStepId": "validate",
    "steps": {
        "validate": {
            "id": "validate",
            "type": "validate-order",
            "config": {},
            "input": {"type": "key", "key": "order"},
            "outputKey": "validated",
            "transitions": {"onSuccess": "charge-payment", "onFailure": "notify-invalid"},
        },
        "charge-payment": {
            "id": "charge-payment",
            "type": "http",
            "config": {},
            "input": {
                "type": "template",
                "template": {
                    "url": "https://api.stripe.com/v1/charges",
                    "method": "POST",
                    "body": {"amount": "${validated.total}"},
                },
            },
            "outputKey": "payment",
            "transitions": {"onSuccess": "send-confirmation"},
        },
        "send-confirmation": {
            "id": "send-confirmation",
            "type": "email",
            "config": {},
            "input": {"type": "full"},
            "transitions": {"onSuccess": None},
        },
        "notify-invalid": {
            "id": "notify-invalid",
            "type": "log",
            "config": {},
            "input": {"type": "static", "value": {"error": "Invalid order"}},
            "transitions": {"onSuccess": None},
        },
    },
}


class OrderStubs:
    """Stub handlers for the order flow that record what each step received."""

    def __init__(self) -> None:
        self.calls: dict[str, list[Any]] = {
            "validate-order": [],
            "http": [],
            "email": [],
            "log": [],
        }

    def handlers(self) -> list[Any]:
        calls = self.calls

        @handler("validate-order")
        def validate(params: HandlerParams) -> StepResult:
            calls["validate-order"].append(params.input)
            items = params.input.get("items", [])
            if not items:
                return Result.failure({"code": "INVALID_ORDER", "message": "no items"})
            return Result.success({"total": sum(i["price"] * i["qty"] for i in items)})

        @handler("http")
        def http(params: HandlerParams) -> StepResult:
            calls["http"].append(params.input)
            return Result.success({"status": 200, "body": {"id": "ch_1", "paid": True}})

        @handler("email")
        def email(params: HandlerParams) -> StepResult:
            calls["email"].append(params.input)
            return Result.success({"sent": True})

        @handler("log")
        def log(params: HandlerParams) -> StepResult:
            calls["log"].append(params.input)
            return Result.success()

        return [validate, http, email, log]


VALID_ORDER = {"id": "123", "items": [{"price": 40, "qty": 2}, {"price": 20, "qty": 1}]}


def run_order(order: dict[str, Any]) -> tuple[Engine, OrderStubs, Any]:
    stubs = OrderStubs()
    engine = make_engine(stubs.handlers(), [ORDER_FLOW])
    created = engine.create("process-order", {"order": order})
    return engine, stubs, engine.run(created.execution.id, simulate_time=True)


def test_order_flow_charges_the_validated_total_through_the_template() -> None:
    _, stubs, execution = run_order(VALID_ORDER)

    assert execution.status == "completed"
    assert stubs.calls["http"] == [
        {
            "url": "https://api.stripe.com/v1/charges",
            "method": "POST",
            "body": {"amount": 100},  # "${validated.total}" alone keeps the number's type
        }
    ]
    assert execution.context["validated"] == {"total": 100}
    assert execution.context["payment"] == {"status": 200, "body": {"id": "ch_1", "paid": True}}


def test_order_flow_sends_the_confirmation_with_the_full_context() -> None:
    _, stubs, execution = run_order(VALID_ORDER)

    [confirmation_input] = stubs.calls["email"]
    assert confirmation_input == {
        "order": VALID_ORDER,
        "validated": {"total": 100},
        "payment": {"status": 200, "body": {"id": "ch_1", "paid": True}},
    }
    assert stubs.calls["log"] == []
    assert execution.step_count == 3


def test_order_flow_history_follows_validate_charge_confirm() -> None:
    engine, _, execution = run_order(VALID_ORDER)

    transitions = [
        (e.data["from"], e.data["to"])
        for e in engine.history(execution.id)
        if e.type == "transition"
    ]
    assert transitions == [
        ("validate", "charge-payment"),
        ("charge-payment", "send-confirmation"),
    ]


def test_invalid_order_goes_to_notify_invalid_with_its_static_input() -> None:
    _, stubs, execution = run_order({"id": "124", "items": []})

    assert execution.status == "completed"  # notify-invalid ends the flow normally
    assert stubs.calls["log"] == [{"error": "Invalid order"}]
    assert stubs.calls["http"] == [] and stubs.calls["email"] == []
    assert execution.context["_error"]["code"] == "INVALID_ORDER"
    assert execution.context["_error"]["step_id"] == "validate"
    assert "payment" not in execution.context


# -- README "Waiting & Resume": an approval ----------------------------------------------------


@handler("wait-for-approval")
def wait_for_approval(params: HandlerParams) -> StepResult:
    return Result.wait(
        wake_at=params.clock.now() + timedelta(days=7), reason="Waiting for manager approval"
    )


@handler("ship")
def ship(params: HandlerParams) -> StepResult:
    return Result.success({"shipped": True, "approved_by": params.input.get("approvedBy")})


APPROVAL_FLOW = {
    "id": "approval",
    "initialStepId": "approve",
    "steps": {
        "approve": {"type": "wait-for-approval", "transitions": {"onSuccess": "ship"}},
        "ship": {"type": "ship", "outputKey": "shipment"},
    },
}


def test_approval_waits_then_resume_continues_with_the_external_data() -> None:
    engine = make_engine([wait_for_approval, ship], [APPROVAL_FLOW])
    execution_id = engine.create("approval", {"order": {"id": "123"}}).execution.id

    waiting = engine.run(execution_id)
    assert waiting.status == "waiting"
    assert waiting.wait_reason == "Waiting for manager approval"
    assert waiting.wake_at == START + timedelta(days=7)

    engine.resume(execution_id, {"approved": True, "approvedBy": "manager@co.com"})
    done = engine.run(execution_id)

    assert done.status == "completed"
    assert done.context["approved"] is True
    assert done.context["shipment"] == {"shipped": True, "approved_by": "manager@co.com"}


def test_approval_not_resumed_continues_when_its_seven_days_are_up() -> None:
    engine = make_engine([wait_for_approval, ship], [APPROVAL_FLOW])
    execution_id = engine.create("approval", {}).execution.id

    done = engine.run(execution_id, simulate_time=True)

    assert done.status == "completed"
    assert done.context["shipment"] == {"shipped": True, "approved_by": None}
    assert engine.clock.now() == START + timedelta(days=7)


def test_resuming_a_finished_execution_is_refused() -> None:
    engine = make_engine([wait_for_approval, ship], [APPROVAL_FLOW])
    execution_id = engine.create("approval", {}).execution.id
    engine.run(execution_id, simulate_time=True)

    with pytest.raises(ExecutionError) as caught:
        engine.resume(execution_id, {"approved": True})

    assert caught.value.code == ErrorCode.EXECUTION_NOT_WAITING


# -- Engine page: create options, step(), cancel() ---------------------------------------------


def test_engine_page_create_with_options_deduplicates_by_idempotency_key() -> None:
    engine = make_engine([wait_for_approval, ship], [APPROVAL_FLOW])
    options: dict[str, Any] = {
        "tenant_id": "tenant-1",
        "idempotency_key": "order-123",
        "idempotency_ttl": 86_400,
        "metadata": {"source": "api"},
    }

    first = engine.create("approval", {"order": {"id": "123"}}, **options)
    second = engine.create("approval", {"order": {"id": "123"}}, **options)

    assert first.created is True
    assert second.created is False and second.execution.id == first.execution.id
    assert first.execution.tenant_id == "tenant-1"
    assert first.execution.metadata == {"source": "api"}
    assert first.execution.idempotency_expires_at == START + timedelta(hours=24)


def test_engine_page_step_reports_step_outcome_and_next_step() -> None:
    stubs = OrderStubs()
    engine = make_engine(stubs.handlers(), [ORDER_FLOW])
    execution_id = engine.create("process-order", {"order": VALID_ORDER}).execution.id

    step_result = engine.step(execution_id)

    assert step_result.step_id == "validate"
    assert step_result.outcome == "success"
    assert step_result.next_step_id == "charge-payment"
    assert step_result.done is False


def test_engine_page_cancel_cancels_a_waiting_execution_once() -> None:
    engine = make_engine([wait_for_approval, ship], [APPROVAL_FLOW])
    execution_id = engine.create("approval", {}).execution.id
    engine.run(execution_id)

    result = engine.cancel(execution_id, source="user", reason="Customer requested cancellation")
    again = engine.cancel(execution_id, source="user")

    assert result.cancelled is True
    cancelled = engine.get(execution_id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert cancelled.cancellation is not None
    assert cancelled.cancellation.reason == "Customer requested cancellation"
    assert again.cancelled is False and again.error and "cancelled" in again.error


# -- Engine page: error handling ---------------------------------------------------------------


@handler("validate-email")
def validate_email(params: HandlerParams) -> StepResult:
    if "@" not in params.input:
        return Result.failure({"code": "VALIDATION_ERROR", "message": "Invalid email format"})
    return Result.success(params.input)


@handler("record")
def record(params: HandlerParams) -> StepResult:
    return Result.success(params.input)


SIGNUP_FLOW = {
    "id": "signup",
    "initialStepId": "check",
    "steps": {
        "check": {
            "type": "validate-email",
            "input": {"type": "key", "key": "email"},
            "transitions": {"onSuccess": "next-step", "onFailure": "handle-error"},
        },
        "next-step": {"type": "record", "input": {"type": "static", "value": "welcome"}},
        "handle-error": {
            "type": "record",
            "input": {"type": "key", "key": "_error"},
            "outputKey": "handled",
        },
    },
}


def test_handler_failure_follows_on_failure_to_handle_error() -> None:
    engine = make_engine([validate_email, record], [SIGNUP_FLOW])
    execution_id = engine.create("signup", {"email": "not-an-email"}).execution.id

    execution = engine.run(execution_id)

    assert execution.status == "completed"
    assert execution.context["handled"]["code"] == "VALIDATION_ERROR"
    assert execution.context["handled"]["message"] == "Invalid email format"
    steps = [e.step_id for e in engine.history(execution_id) if e.type == "step.completed"]
    assert steps == ["check", "handle-error"]


def test_missing_handler_is_an_execution_error_with_handler_not_found() -> None:
    engine = make_engine([validate_email], [SIGNUP_FLOW])  # no "record" handler

    with pytest.raises(ExecutionError) as caught:
        engine.create("signup", {"email": "a@b.c"})

    assert caught.value.code == ErrorCode.HANDLER_NOT_FOUND
    assert "record" in caught.value.message
    assert engine.store.list_executions() == []


def test_handler_removed_after_create_fails_the_execution_with_handler_not_found() -> None:
    handlers = HandlerRegistry([validate_email, record])
    engine = Engine(MemoryStore(), handlers, FlowRegistry([SIGNUP_FLOW]), clock=ManualClock(START))
    execution_id = engine.create("signup", {"email": "a@b.c"}).execution.id
    handlers.unregister("validate-email")

    execution = engine.run(execution_id)

    assert execution.status == "failed"
    assert execution.error is not None
    assert execution.error.code == "HANDLER_NOT_FOUND"
    assert execution.error.step_id == "check"


def test_invalid_flow_is_refused_with_invalid_flow() -> None:
    broken = {**SIGNUP_FLOW, "initialStepId": "nowhere"}

    with pytest.raises(FlowValidationError) as caught:
        FlowRegistry().register(broken)

    assert caught.value.code == ErrorCode.INVALID_FLOW
    assert any("nowhere" in message for _, message in caught.value.issues)
