"""Engine hooks a distributed runtime builds on: leases, stale-message detection, timeout
exceptions raised by the runtime, and failures delivered to a waiting step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ExecutionError,
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    VersionConflictError,
    handler,
)

START = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


class RuntimeTimeLimit(Exception):
    """Stands in for Celery's SoftTimeLimitExceeded."""


@handler("ok")
def ok(params: HandlerParams) -> StepResult:
    return Result.success({"ok": True})


@handler("await-task")
def await_task(params: HandlerParams) -> StepResult:
    return Result.wait_for_signal("waiting for the external task")


@handler("slow")
def slow(params: HandlerParams) -> StepResult:
    raise RuntimeTimeLimit("soft time limit")


@handler("recover")
def recover(params: HandlerParams) -> StepResult:
    return Result.success({"recovered_from": params.context["_error"]["code"]})


def make(steps: dict[str, Any], **options: Any) -> tuple[Engine, ManualClock]:
    clock = ManualClock(START)
    flows = FlowRegistry([{"id": "f", "initialStepId": next(iter(steps)), "steps": steps}])
    handlers = HandlerRegistry([ok, await_task, slow, recover])
    return Engine(MemoryStore(), handlers, flows, clock=clock, **options), clock


def test_with_a_lease_runnable_executions_carry_an_expiry_and_finished_ones_do_not() -> None:
    engine, _ = make(
        {"a": {"type": "ok", "transitions": {"onSuccess": "b"}}, "b": {"type": "ok"}},
        lease=timedelta(minutes=5),
    )
    created = engine.create("f").execution
    assert created.lease_expires_at == START + timedelta(minutes=5)
    engine.step(created.id)
    assert engine.get(created.id).lease_expires_at == START + timedelta(minutes=5)  # type: ignore[union-attr]
    finished = engine.run(created.id)
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.lease_expires_at is None


def test_without_a_lease_nothing_is_ever_considered_stalled() -> None:
    engine, clock = make({"a": {"type": "ok"}})
    created = engine.create("f").execution
    assert created.lease_expires_at is None
    clock.advance(timedelta(days=1))
    assert engine.store.claim_stalled(clock.now(), 10, clock.now()) == []


def test_a_waiting_execution_holds_no_lease() -> None:
    engine, _ = make({"a": {"type": "await-task"}}, lease=timedelta(minutes=5))
    waiting = engine.run(engine.create("f").execution.id)
    assert waiting.status is ExecutionStatus.WAITING
    assert waiting.lease_expires_at is None


def test_a_stale_step_message_runs_nothing() -> None:
    engine, _ = make({"a": {"type": "ok", "transitions": {"onSuccess": "b"}}, "b": {"type": "ok"}})
    created = engine.create("f").execution
    engine.step(created.id, expected_version=created.version)
    with pytest.raises(VersionConflictError, match="already taken"):
        engine.step(created.id, expected_version=created.version)  # the duplicate delivery
    assert engine.get(created.id).step_count == 1  # type: ignore[union-attr]


def test_runtime_timeout_exceptions_become_handler_timeout() -> None:
    engine, _ = make({"a": {"type": "slow"}}, timeout_exceptions=(RuntimeTimeLimit,))
    failed = engine.run(engine.create("f").execution.id)
    assert failed.error is not None and failed.error.code == "HANDLER_TIMEOUT"


def test_without_registration_the_same_exception_is_a_handler_error() -> None:
    engine, _ = make({"a": {"type": "slow"}})
    failed = engine.run(engine.create("f").execution.id)
    assert failed.error is not None and failed.error.code == "HANDLER_ERROR"


def test_fail_waiting_routes_to_on_failure_with_the_error_in_context() -> None:
    engine, _ = make(
        {
            "a": {"type": "await-task", "transitions": {"onFailure": "b"}},
            "b": {"type": "recover", "outputKey": "r"},
        }
    )
    execution_id = engine.create("f").execution.id
    engine.run(execution_id)
    engine.fail_waiting(execution_id, "TASK_FAILED", "ZeroDivisionError: division by zero")
    done = engine.run(execution_id)
    assert done.status is ExecutionStatus.COMPLETED
    assert done.context["r"] == {"recovered_from": "TASK_FAILED"}
    triggers = [
        e.data.get("trigger") for e in engine.history(execution_id) if e.type == "execution.resumed"
    ]
    assert triggers == ["failure"]


def test_fail_waiting_without_on_failure_fails_the_execution() -> None:
    engine, _ = make({"a": {"type": "await-task"}})
    execution_id = engine.create("f").execution.id
    engine.run(execution_id)
    failed = engine.fail_waiting(execution_id, "TASK_FAILED", "boom", {"task": "billing.charge"})
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None
    assert (failed.error.code, failed.error.step_id, failed.error.details) == (
        "TASK_FAILED",
        "a",
        {"task": "billing.charge"},
    )


def test_fail_waiting_honours_the_retry_policy_by_running_the_step_again() -> None:
    engine, clock = make(
        {"a": {"type": "await-task", "retry": {"maxAttempts": 1, "backoffMs": 500}}}
    )
    execution_id = engine.create("f").execution.id
    engine.run(execution_id)
    retrying = engine.fail_waiting(execution_id, "TASK_FAILED", "flaky")
    assert retrying.status is ExecutionStatus.WAITING
    assert retrying.wake_at == clock.now() + timedelta(milliseconds=500)
    again = engine.run(execution_id, simulate_time=True)
    assert again.status is ExecutionStatus.WAITING and again.wait_kind == "signal"
    steps = [e.attempt for e in engine.history(execution_id) if e.type == "step.completed"]
    assert steps == [1, 2]


def test_fail_waiting_on_an_execution_that_is_not_waiting_is_refused() -> None:
    engine, _ = make({"a": {"type": "ok"}})
    execution_id = engine.create("f").execution.id
    engine.run(execution_id)
    with pytest.raises(ExecutionError) as raised:
        engine.fail_waiting(execution_id, "TASK_FAILED", "late")
    assert raised.value.code == "EXECUTION_NOT_WAITING"


def test_non_positive_lease_is_refused() -> None:
    with pytest.raises(ValueError, match="lease"):
        make({"a": {"type": "ok"}}, lease=timedelta(0))


def test_a_killed_handler_call_is_recorded_as_a_failure_of_the_current_step() -> None:
    engine, _ = make(
        {
            "a": {"type": "ok", "transitions": {"onFailure": "b"}},
            "b": {"type": "recover", "outputKey": "r"},
        }
    )
    created = engine.create("f").execution
    updated = engine.fail_running_step(
        created.id, expected_version=created.version, code="HANDLER_TIMEOUT", message="killed"
    )
    assert updated is not None and updated.current_step_id == "b"
    done = engine.run(created.id)
    assert done.context["r"] == {"recovered_from": "HANDLER_TIMEOUT"}
    calls = [
        (e.step_id, e.outcome) for e in engine.history(created.id) if e.type == "step.completed"
    ]
    assert calls == [("a", "failure"), ("b", "success")]


def test_a_kill_reported_for_an_old_version_changes_nothing() -> None:
    engine, _ = make({"a": {"type": "ok", "transitions": {"onSuccess": "b"}}, "b": {"type": "ok"}})
    created = engine.create("f").execution
    engine.step(created.id)
    assert (
        engine.fail_running_step(
            created.id, expected_version=created.version, code="HANDLER_TIMEOUT", message="late"
        )
        is None
    )
    assert engine.run(created.id).status is ExecutionStatus.COMPLETED
