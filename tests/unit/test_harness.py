"""TestHarness: users' flow tests run on it, so its runs and assertion messages must be right."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmonkey_celery import (
    Flow,
    HandlerParams,
    ManualClock,
    Result,
    StepResult,
    TestHarness,
    handler,
)

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


# -- the seed README's Testing example, translated ---------------------------------------------


@handler("validate-order")
def validate_handler(params: HandlerParams) -> StepResult:
    order = params.input
    if order["total"] <= 0:
        return Result.failure(
            {"code": "INVALID_ORDER", "message": f"order {order['id']} has no positive total"}
        )
    return Result.success({"total": order["total"]})


@handler("payment")
def payment_handler(params: HandlerParams) -> StepResult:
    return Result.success({"status": "success", "amount": params.input["amount"]})


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
            "transitions": {"onSuccess": "charge-payment"},
        },
        "charge-payment": {
            "id": "charge-payment",
            "type": "payment",
            "config": {},
            "input": {"type": "template", "template": {"amount": "${validated.total}"}},
            "outputKey": "payment",
            "transitions": {"onSuccess": None},
        },
    },
}


def order_harness() -> TestHarness:
    return TestHarness(handlers=[validate_handler, payment_handler], flows=[ORDER_FLOW])


def test_readme_example_completes_valid_orders() -> None:
    harness = order_harness()

    run = harness.run("process-order", {"order": {"id": "123", "total": 100}})

    harness.assert_completed(run.execution)
    harness.assert_context(run.execution, {"payment": {"status": "success"}})
    assert run.execution.context["payment"]["amount"] == 100


def test_readme_example_fails_invalid_orders() -> None:
    harness = order_harness()

    run = harness.run("process-order", {"order": {"id": "123", "total": -100}})

    harness.assert_failed(run.execution)
    harness.assert_failed(run.execution, code="INVALID_ORDER")
    assert "payment" not in run.execution.context


# -- small flows for the harness itself --------------------------------------------------------


@handler("approve")
def approve(params: HandlerParams) -> StepResult:
    return Result.wait_for_signal("waiting for a manager")


@handler("nap")
def nap(params: HandlerParams) -> StepResult:
    return Result.wait(delay=timedelta(hours=2), reason="cooling off")


@handler("note-time")
def note_time(params: HandlerParams) -> StepResult:
    return Result.success(params.clock.now().isoformat())


def one_step(flow_id: str, step_type: str, **step: Any) -> dict[str, Any]:
    return {
        "id": flow_id,
        "initialStepId": "only",
        "steps": {"only": {"type": step_type, **step}},
    }


APPROVAL_FLOW = {
    "id": "approval",
    "initialStepId": "ask",
    "steps": {
        "ask": {"type": "approve", "outputKey": "decision", "transitions": {"onResume": "after"}},
        "after": {"type": "note-time", "outputKey": "finished_at"},
    },
}
NAP_FLOW = {
    "id": "nap",
    "initialStepId": "nap",
    "steps": {
        "nap": {"type": "nap", "transitions": {"onSuccess": "after"}},
        "after": {"type": "note-time", "outputKey": "woke_at"},
    },
}


def harness(**options: Any) -> TestHarness:
    return TestHarness(
        handlers=[validate_handler, payment_handler, approve, nap, note_time],
        flows=[
            ORDER_FLOW,
            APPROVAL_FLOW,
            NAP_FLOW,
            Flow.from_dict(one_step("clock", "note-time", outputKey="now")),
        ],
        **options,
    )


def test_pytest_does_not_collect_the_harness_as_a_test_class() -> None:
    assert TestHarness.__test__ is False


def test_run_returns_the_execution_and_the_events_of_that_run() -> None:
    h = harness()

    run = h.run("process-order", {"order": {"id": "1", "total": 5}})

    types = [e.type for e in run.events]
    assert types[0] == "execution.created"
    assert types[-1] == "execution.completed"
    assert types.count("step.completed") == 2
    assert all(e.execution_id == run.execution.id for e in run.events)
    assert h.engine.get(run.execution.id) == run.execution


def test_harness_events_accumulate_across_runs() -> None:
    h = harness()

    first = h.run("process-order", {"order": {"id": "1", "total": 5}})
    second = h.run("process-order", {"order": {"id": "2", "total": 6}})

    owners = [e.execution_id for e in h.events]
    assert set(owners) == {first.execution.id, second.execution.id}
    assert owners == sorted(owners, key=[first.execution.id, second.execution.id].index)
    assert [e.type for e in h.events].count("execution.completed") == 2
    assert [e.type for e in h.history(second.execution)][-1] == "execution.completed"


def test_run_passes_create_options_through() -> None:
    h = harness()

    order = {"order": {"id": "1", "total": 5}}
    first = h.run("process-order", order, idempotency_key="k-1", tenant_id="acme")
    again = h.run("process-order", order, idempotency_key="k-1", tenant_id="acme")

    assert first.execution.tenant_id == "acme"
    assert again.execution.id == first.execution.id
    assert h.events[-1].type == "idempotency.hit"


def test_assert_completed_names_the_status_and_error_of_a_failed_execution() -> None:
    h = harness()
    run = h.run("process-order", {"order": {"id": "9", "total": 0}})

    with pytest.raises(AssertionError) as caught:
        h.assert_completed(run.execution)

    message = str(caught.value)
    assert "failed" in message and "expected completed" in message
    assert "INVALID_ORDER" in message and "no positive total" in message
    assert run.execution.id in message


def test_assert_failed_checks_the_error_code() -> None:
    h = harness()
    failed = h.run("process-order", {"order": {"id": "9", "total": 0}}).execution

    with pytest.raises(AssertionError) as caught:
        h.assert_failed(failed, code="CARD_DECLINED")

    assert "INVALID_ORDER" in str(caught.value) and "CARD_DECLINED" in str(caught.value)


def test_assert_failed_on_a_completed_execution_says_it_completed() -> None:
    h = harness()
    completed = h.run("process-order", {"order": {"id": "1", "total": 5}}).execution

    with pytest.raises(AssertionError, match=r"is completed, expected failed"):
        h.assert_failed(completed)


def test_signal_wait_is_waiting_until_resumed_with_data() -> None:
    h = harness()
    waiting = h.run("approval").execution
    h.assert_waiting(waiting)
    with pytest.raises(AssertionError, match=r"is waiting, expected completed"):
        h.assert_completed(waiting)

    resumed = h.resume(waiting.id, {"approved": True})

    h.assert_completed(resumed.execution)
    h.assert_context(resumed.execution, {"decision": {"approved": True}})


def test_resume_returns_the_events_of_the_resume_and_the_run_after_it() -> None:
    h = harness()
    waiting = h.run("approval").execution

    resumed = h.resume(waiting.id, {"approved": True})

    types = [e.type for e in resumed.events]
    assert types[0] == "execution.resumed"
    assert types[-1] == "execution.completed"


def test_assert_cancelled_after_cancelling_through_the_engine() -> None:
    h = harness()
    waiting = h.run("approval").execution

    h.engine.cancel(waiting.id, reason="no longer needed")
    cancelled = h.engine.get(waiting.id)

    assert cancelled is not None
    h.assert_cancelled(cancelled)
    with pytest.raises(AssertionError, match=r"is cancelled, expected waiting"):
        h.assert_waiting(cancelled)
    with pytest.raises(AssertionError, match=r"is waiting, expected cancelled"):
        h.assert_cancelled(waiting)


def test_assert_context_matches_nested_subsets() -> None:
    h = harness()
    run = h.run("process-order", {"order": {"id": "1", "total": 5, "lines": [1, 2]}})

    h.assert_context(run.execution, {"order": {"id": "1"}})
    h.assert_context(run.execution, {"order": {"lines": [1, 2]}, "payment": {"amount": 5}})
    h.assert_context(run.execution, {})


def test_assert_context_mismatch_names_the_path_expected_and_found() -> None:
    h = harness()
    run = h.run("process-order", {"order": {"id": "1", "total": 5}})

    with pytest.raises(AssertionError) as caught:
        h.assert_context(run.execution, {"payment": {"status": "failed"}, "order": {"id": "1"}})

    message = str(caught.value)
    assert "payment.status" in message
    assert "'failed'" in message and "'success'" in message
    assert "order.id" not in message  # only the mismatch is reported


def test_assert_context_reports_missing_keys_and_non_objects() -> None:
    h = harness()
    run = h.run("process-order", {"order": {"id": "1", "total": 5}})

    with pytest.raises(AssertionError) as missing:
        h.assert_context(run.execution, {"shipment": {"carrier": "DHL"}})
    with pytest.raises(AssertionError) as not_object:
        h.assert_context(run.execution, {"order": {"id": {"nested": 1}}})

    assert "shipment" in str(missing.value) and "missing" in str(missing.value)
    assert "order.id" in str(not_object.value) and "'1'" in str(not_object.value)


def test_default_clock_is_a_manual_clock_that_timed_waits_advance() -> None:
    h = harness()
    assert isinstance(h.clock, ManualClock)
    started = h.clock.now()

    run = h.run("nap")

    h.assert_completed(run.execution)
    woke_at = datetime.fromisoformat(run.execution.context["woke_at"])
    assert woke_at == started + timedelta(hours=2)
    assert h.clock.now() >= started + timedelta(hours=2)


def test_advancing_the_harness_clock_moves_engine_time() -> None:
    clock = ManualClock(START)
    h = harness(clock=clock)
    assert h.clock is clock

    h.clock.advance(timedelta(days=3))  # type: ignore[attr-defined]
    run = h.run("clock")

    assert run.execution.context["now"] == (START + timedelta(days=3)).isoformat()
    assert run.execution.created_at == START + timedelta(days=3)
    [completed] = [e for e in run.events if e.type == "step.completed"]
    assert completed.at == START + timedelta(days=3)
