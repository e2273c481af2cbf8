"""Execution and wait timeouts: deadlines, enforcement by run/resume/cancel_timed_out."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    EventType,
    ExecutionError,
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    TimeoutConfig,
)

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


class Calls:
    """Handlers `work` (succeeds), `hold` (signal wait), `sleep-a-day` (timed wait),
    `fail-once` (fails the first call), all counting their calls by step id."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def handlers(self) -> list[Any]:
        calls = self.calls

        class Work:
            type = "work"

            def execute(self, params: HandlerParams) -> StepResult:
                calls.append(params.step.id)
                return Result.success({"done": params.step.id})

        class Hold:
            type = "hold"

            def execute(self, params: HandlerParams) -> StepResult:
                calls.append(params.step.id)
                return Result.wait_for_signal("waiting for a person")

        class SleepADay:
            type = "sleep-a-day"

            def execute(self, params: HandlerParams) -> StepResult:
                calls.append(params.step.id)
                return Result.wait(delay=timedelta(days=1), reason="overnight")

        class FailOnce:
            type = "fail-once"

            def execute(self, params: HandlerParams) -> StepResult:
                calls.append(params.step.id)
                if params.attempt == 1:
                    return Result.failure("TEMPORARY", "try later")
                return Result.success({"attempt": params.attempt})

        return [Work(), Hold(), SleepADay(), FailOnce()]


def flow(first_type: str, flow_id: str = "timed", **first: Any) -> dict[str, Any]:
    return {
        "id": flow_id,
        "initialStepId": "first",
        "steps": {
            "first": {"type": first_type, "transitions": {"onSuccess": "last"}, **first},
            "last": {"type": "work"},
        },
    }


def make_engine(*flows: dict[str, Any]) -> tuple[Engine, ManualClock, Calls]:
    calls = Calls()
    clock = ManualClock(START)
    engine = Engine(
        MemoryStore(),
        HandlerRegistry(calls.handlers()),
        FlowRegistry(flows or (flow("work"),)),
        clock=clock,
        rng=random.Random(0),
    )
    return engine, clock, calls


def assert_timed_out(engine: Engine, execution_id: str, code: ErrorCode) -> None:
    execution = engine.get(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.CANCELLED
    assert execution.cancellation is not None
    assert execution.cancellation.source == "timeout"
    assert execution.error is not None
    assert execution.error.code == code.value


# -- configuration ---------------------------------------------------------------------------


def test_timeout_config_object_sets_the_execution_deadline() -> None:
    engine, _, _ = make_engine()

    execution = engine.create("timed", timeout=TimeoutConfig(execution_timeout_ms=90_000)).execution

    assert execution.timeout == TimeoutConfig(execution_timeout_ms=90_000)
    assert execution.deadline_at == execution.created_at + timedelta(seconds=90)
    assert engine.get(execution.id).deadline_at == START + timedelta(seconds=90)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "timeout",
    [
        {"executionTimeoutMs": 5000, "waitTimeoutMs": 1000},
        {"execution_timeout_ms": 5000, "wait_timeout_ms": 1000},
    ],
)
def test_timeout_config_accepts_a_dict_in_either_case(timeout: dict[str, int]) -> None:
    engine, _, _ = make_engine()

    execution = engine.create("timed", timeout=timeout).execution

    assert execution.timeout is not None
    assert execution.timeout.execution_timeout_ms == 5000
    assert execution.timeout.wait_timeout_ms == 1000
    assert execution.deadline_at == START + timedelta(seconds=5)


@pytest.mark.parametrize(
    "timeout",
    [
        {"execution_timeout_ms": 0},
        {"execution_timeout_ms": -10},
        {"wait_timeout_ms": -1},
        {"execution_timeout_ms": "soon"},
        5000,
    ],
)
def test_invalid_timeout_config_is_rejected_and_nothing_is_stored(timeout: Any) -> None:
    store = MemoryStore()
    engine = Engine(
        store,
        HandlerRegistry(Calls().handlers()),
        FlowRegistry([flow("work")]),
        clock=ManualClock(START),
    )

    with pytest.raises(ExecutionError) as raised:
        engine.create("timed", timeout=timeout)

    assert raised.value.code is ErrorCode.INVALID_ARGUMENT
    assert "timeout" in raised.value.message
    assert store.list_executions() == []


def test_a_misspelt_timeout_key_is_rejected_rather_than_meaning_no_timeout() -> None:
    engine, _, _ = make_engine()

    with pytest.raises(ExecutionError) as raised:
        engine.create("timed", timeout={"executionTimeout": 5000})

    assert raised.value.code is ErrorCode.INVALID_ARGUMENT
    assert "executionTimeout" in raised.value.message


# -- execution timeout -----------------------------------------------------------------------


def test_run_after_the_execution_deadline_cancels_without_calling_handlers() -> None:
    engine, clock, calls = make_engine()
    execution_id = engine.create("timed", timeout={"execution_timeout_ms": 1000}).execution.id

    clock.advance(timedelta(seconds=2))
    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.CANCELLED
    assert calls.calls == []
    assert_timed_out(engine, execution_id, ErrorCode.EXECUTION_TIMEOUT)
    assert execution.cancellation is not None
    assert execution.cancellation.cancelled_at == START + timedelta(seconds=2)
    cancelled = [e for e in engine.history(execution_id) if e.type is EventType.EXECUTION_CANCELLED]
    assert len(cancelled) == 1


def test_step_at_the_deadline_reports_a_cancelled_outcome() -> None:
    engine, clock, calls = make_engine()
    execution_id = engine.create("timed", timeout={"execution_timeout_ms": 1000}).execution.id

    clock.advance(timedelta(seconds=1))
    outcome = engine.step(execution_id)

    assert outcome.done is True
    assert outcome.status is ExecutionStatus.CANCELLED
    assert outcome.outcome is None
    assert outcome.error is not None and outcome.error.code == "EXECUTION_TIMEOUT"
    assert calls.calls == []


def test_execution_finished_before_its_deadline_is_not_touched_later() -> None:
    engine, clock, _ = make_engine()
    execution_id = engine.create("timed", timeout={"execution_timeout_ms": 1000}).execution.id
    engine.run(execution_id)

    clock.advance(timedelta(hours=1))

    assert engine.cancel_timed_out() == []
    assert engine.get(execution_id).status is ExecutionStatus.COMPLETED  # type: ignore[union-attr]


def test_simulated_time_stops_at_an_execution_deadline_before_a_timed_wait_ends() -> None:
    engine, clock, calls = make_engine(flow("sleep-a-day"))
    execution_id = engine.create("timed", timeout={"execution_timeout_ms": 3_600_000}).execution.id

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.CANCELLED
    assert_timed_out(engine, execution_id, ErrorCode.EXECUTION_TIMEOUT)
    assert clock.now() == START + timedelta(hours=1)
    assert calls.calls == ["first"]  # the step after the wait never ran


def test_resume_after_the_execution_deadline_raises_and_cancels() -> None:
    engine, clock, calls = make_engine(flow("hold"))
    execution_id = engine.create("timed", timeout={"execution_timeout_ms": 60_000}).execution.id
    engine.run(execution_id)

    clock.advance(timedelta(minutes=2))
    with pytest.raises(ExecutionError) as raised:
        engine.resume(execution_id, {"ok": True})

    assert raised.value.code is ErrorCode.EXECUTION_TIMEOUT
    assert_timed_out(engine, execution_id, ErrorCode.EXECUTION_TIMEOUT)
    assert calls.calls == ["first"]


# -- wait timeout ----------------------------------------------------------------------------


def test_wait_deadline_starts_when_the_wait_starts() -> None:
    engine, clock, _ = make_engine(flow("hold"))
    execution_id = engine.create("timed", timeout={"wait_timeout_ms": 60_000}).execution.id

    clock.advance(timedelta(minutes=10))
    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.WAITING
    assert execution.wait_deadline_at == START + timedelta(minutes=11)
    assert execution.deadline_at is None


def test_cancel_timed_out_cancels_a_signal_wait_past_its_wait_timeout_once() -> None:
    engine, _, _ = make_engine(flow("hold"))
    execution_id = engine.create("timed", timeout={"wait_timeout_ms": 60_000}).execution.id
    engine.run(execution_id)

    too_early = engine.cancel_timed_out(START + timedelta(seconds=59))
    swept = engine.cancel_timed_out(START + timedelta(seconds=60))
    again = engine.cancel_timed_out(START + timedelta(seconds=61))

    assert too_early == []
    assert swept == [execution_id]
    assert again == []
    assert_timed_out(engine, execution_id, ErrorCode.WAIT_TIMEOUT)


def test_cancel_timed_out_also_cancels_executions_past_their_execution_deadline() -> None:
    engine, _, _ = make_engine(flow("hold"))
    execution_id = engine.create("timed", timeout={"execution_timeout_ms": 5000}).execution.id

    swept = engine.cancel_timed_out(START + timedelta(seconds=5))

    assert swept == [execution_id]
    assert_timed_out(engine, execution_id, ErrorCode.EXECUTION_TIMEOUT)


def test_run_after_the_wait_deadline_cancels_with_wait_timeout() -> None:
    engine, clock, calls = make_engine(flow("hold"))
    execution_id = engine.create("timed", timeout={"wait_timeout_ms": 60_000}).execution.id
    engine.run(execution_id)

    clock.advance(timedelta(minutes=1))
    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.CANCELLED
    assert_timed_out(engine, execution_id, ErrorCode.WAIT_TIMEOUT)
    assert calls.calls == ["first"]


def test_resume_after_the_wait_deadline_raises_wait_timeout_and_cancels() -> None:
    engine, clock, calls = make_engine(flow("hold"))
    execution_id = engine.create("timed", timeout={"wait_timeout_ms": 60_000}).execution.id
    engine.run(execution_id)

    clock.advance(timedelta(minutes=5))
    with pytest.raises(ExecutionError) as raised:
        engine.resume(execution_id, {"approved": True})

    assert raised.value.code is ErrorCode.WAIT_TIMEOUT
    assert_timed_out(engine, execution_id, ErrorCode.WAIT_TIMEOUT)
    execution = engine.get(execution_id)
    assert execution is not None and "approved" not in execution.context
    assert calls.calls == ["first"]


def test_resume_within_the_wait_timeout_continues() -> None:
    engine, clock, calls = make_engine(flow("hold"))
    execution_id = engine.create("timed", timeout={"wait_timeout_ms": 60_000}).execution.id
    engine.run(execution_id)

    clock.advance(timedelta(seconds=59))
    engine.resume(execution_id)
    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.COMPLETED
    assert calls.calls == ["first", "last"]


def test_wait_timeout_does_not_apply_to_retry_backoffs() -> None:
    retrying = flow("fail-once", retry={"maxAttempts": 1, "backoffMs": 10_000})
    engine, clock, calls = make_engine(retrying)
    execution_id = engine.create("timed", timeout={"wait_timeout_ms": 1000}).execution.id

    backing_off = engine.run(execution_id)
    swept = engine.cancel_timed_out(START + timedelta(seconds=9))
    clock.advance(timedelta(seconds=10))
    execution = engine.run(execution_id)

    assert backing_off.status is ExecutionStatus.WAITING
    assert backing_off.wait_deadline_at is None
    assert swept == []
    assert execution.status is ExecutionStatus.COMPLETED
    assert calls.calls == ["first", "first", "last"]


# -- children --------------------------------------------------------------------------------


def test_children_of_an_execution_swept_for_timeout_are_cancelled_by_parent() -> None:
    engine, _, _ = make_engine(flow("hold"), flow("hold", flow_id="child"))
    parent_id = engine.create("timed", timeout={"execution_timeout_ms": 1000}).execution.id
    child_id = engine.create("child", parent_execution_id=parent_id).execution.id
    engine.run(parent_id)
    engine.run(child_id)

    swept = engine.cancel_timed_out(START + timedelta(seconds=2))

    assert swept == [parent_id]
    child = engine.get(child_id)
    assert child is not None
    assert child.status is ExecutionStatus.CANCELLED
    assert child.cancellation is not None and child.cancellation.source == "parent"


def test_children_of_an_execution_timed_out_by_run_are_cancelled_by_parent() -> None:
    engine, clock, _ = make_engine(flow("hold"), flow("hold", flow_id="child"))
    parent_id = engine.create("timed", timeout={"execution_timeout_ms": 1000}).execution.id
    child_id = engine.create("child", parent_execution_id=parent_id).execution.id
    engine.run(child_id)

    clock.advance(timedelta(seconds=2))
    parent = engine.run(parent_id)

    assert parent.status is ExecutionStatus.CANCELLED
    child = engine.get(child_id)
    assert child is not None
    assert child.status is ExecutionStatus.CANCELLED
    assert child.cancellation is not None and child.cancellation.source == "parent"


def test_children_of_an_execution_timed_out_at_resume_are_cancelled_by_parent() -> None:
    engine, clock, _ = make_engine(flow("hold"), flow("hold", flow_id="child"))
    parent_id = engine.create("timed", timeout={"wait_timeout_ms": 1000}).execution.id
    child_id = engine.create("child", parent_execution_id=parent_id).execution.id
    engine.run(parent_id)
    engine.run(child_id)

    clock.advance(timedelta(seconds=2))
    with pytest.raises(ExecutionError):
        engine.resume(parent_id)

    child = engine.get(child_id)
    assert child is not None
    assert child.status is ExecutionStatus.CANCELLED
    assert child.cancellation is not None and child.cancellation.source == "parent"
