"""A step's own wait deadline (`wait_timeout_ms`) and `transitions.on_timeout`: unlike the
execution's wait timeout it does not cancel anything; it routes the step."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    ExecutionError,
    ExecutionStatus,
    FlowRegistry,
    FlowValidationError,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    WaitKind,
)

START = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


class Ask:
    """Waits for a signal each call, counting calls (each call is a fresh request)."""

    type = "ask"

    def __init__(self) -> None:
        self.calls = 0

    def execute(self, params: HandlerParams) -> StepResult:
        self.calls += 1
        return Result.wait_for_signal(f"asked {self.calls} time(s)")


class Note:
    type = "note"

    def execute(self, params: HandlerParams) -> StepResult:
        return Result.success(params.step.id)


def flow_with(wait_step: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "f",
        "initialStepId": "wait",
        "steps": {
            "wait": {"outputKey": "answer", **wait_step},
            "after": {"type": "note", "outputKey": "after"},
            "late": {"type": "note", "outputKey": "late"},
            "failed": {"type": "note", "outputKey": "failed"},
        },
    }


def engine_for(flow: dict[str, Any]) -> tuple[Engine, ManualClock, Ask]:
    clock = ManualClock(START)
    ask = Ask()
    engine = Engine(
        MemoryStore(),
        HandlerRegistry([ask, Note()]),
        FlowRegistry([flow]),
        clock=clock,
        rng=random.Random(0),
    )
    return engine, clock, ask


def started(engine: Engine) -> str:
    execution_id = engine.create("f", {}).execution.id
    assert engine.run(execution_id).status is ExecutionStatus.WAITING
    return execution_id


def test_a_signal_wait_gets_a_wake_at_its_deadline_and_stays_a_signal_wait() -> None:
    engine, _, _ = engine_for(
        flow_with({"type": "ask", "waitTimeoutMs": 90_000, "transitions": {"onTimeout": "late"}})
    )
    execution = engine.get(started(engine))

    assert execution.wait_kind is WaitKind.SIGNAL
    assert execution.wake_at == START + timedelta(seconds=90)


def test_on_timeout_runs_when_nobody_resumes_in_time() -> None:
    engine, clock, _ = engine_for(
        flow_with(
            {
                "type": "ask",
                "waitTimeoutMs": 90_000,
                "transitions": {"onSuccess": "after", "onTimeout": "late"},
            }
        )
    )
    execution_id = started(engine)
    clock.advance(89)
    assert engine.wake_due() == []

    clock.advance(1)
    assert engine.wake_due() == [execution_id]
    finished = engine.run(execution_id)

    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["late"] == "late" and "after" not in finished.context
    assert finished.context["_error"]["code"] == ErrorCode.WAIT_TIMEOUT
    assert "90000 ms" in finished.context["_error"]["message"]


def test_a_resume_in_time_takes_the_usual_path() -> None:
    engine, clock, _ = engine_for(
        flow_with(
            {
                "type": "ask",
                "waitTimeoutMs": 90_000,
                "transitions": {"onSuccess": "after", "onTimeout": "late"},
            }
        )
    )
    execution_id = started(engine)
    clock.advance(60)
    engine.resume(execution_id, {"yes": True})
    clock.advance(3600)
    engine.wake_due()

    finished = engine.run(execution_id)
    assert finished.context["answer"] == {"yes": True}
    assert "late" not in finished.context


def test_a_resume_after_the_deadline_is_refused_with_wait_timeout_and_the_timeout_applies() -> None:
    engine, clock, _ = engine_for(
        flow_with({"type": "ask", "waitTimeoutMs": 1_000, "transitions": {"onTimeout": "late"}})
    )
    execution_id = started(engine)
    clock.advance(2)

    with pytest.raises(ExecutionError) as raised:
        engine.resume(execution_id, {"yes": True})

    assert raised.value.code == ErrorCode.WAIT_TIMEOUT
    assert engine.run(execution_id).context["late"] == "late"


def test_without_on_timeout_the_timeout_is_retried_then_follows_on_failure() -> None:
    engine, clock, ask = engine_for(
        flow_with(
            {
                "type": "ask",
                "waitTimeoutMs": 10_000,
                "retry": {"maxAttempts": 1, "backoffMs": 5_000},
                "transitions": {"onFailure": "failed"},
            }
        )
    )
    execution_id = started(engine)

    clock.advance(10)
    engine.wake_due()
    backing_off = engine.get(execution_id)
    assert backing_off.wait_kind is WaitKind.RETRY
    clock.advance(5)
    engine.wake_due()
    asking_again = engine.run(execution_id)
    assert ask.calls == 2 and asking_again.status is ExecutionStatus.WAITING

    clock.advance(10)
    engine.wake_due()
    finished = engine.run(execution_id)
    assert finished.context["failed"] == "failed"
    assert finished.context["_error"]["code"] == ErrorCode.WAIT_TIMEOUT


def test_without_on_timeout_or_retry_the_execution_fails_with_wait_timeout() -> None:
    engine, clock, _ = engine_for(flow_with({"type": "ask", "waitTimeoutMs": 10_000}))
    execution_id = started(engine)
    clock.advance(10)
    engine.wake_due()

    failed = engine.get(execution_id)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.WAIT_TIMEOUT
    assert failed.error.step_id == "wait"


def test_an_explicit_null_on_timeout_completes_the_flow() -> None:
    engine, clock, _ = engine_for(
        flow_with({"type": "ask", "waitTimeoutMs": 10_000, "transitions": {"onTimeout": None}})
    )
    execution_id = started(engine)
    clock.advance(10)
    engine.wake_due()

    assert engine.get(execution_id).status is ExecutionStatus.COMPLETED


def test_a_timer_shorter_than_the_deadline_wakes_as_usual() -> None:
    engine, _, _ = engine_for(
        flow_with(
            {
                "type": "delay",
                "config": {"seconds": 30},
                "waitTimeoutMs": 60_000,
                "transitions": {"onSuccess": "after", "onTimeout": "late"},
            }
        )
    )
    execution_id = engine.create("f", {}).execution.id

    finished = engine.run(execution_id, simulate_time=True)
    assert finished.context["after"] == "after" and "late" not in finished.context


def test_a_timer_longer_than_the_deadline_times_out() -> None:
    engine, _, _ = engine_for(
        flow_with(
            {
                "type": "delay",
                "config": {"minutes": 5},
                "waitTimeoutMs": 60_000,
                "transitions": {"onSuccess": "after", "onTimeout": "late"},
            }
        )
    )
    execution_id = engine.create("f", {}).execution.id

    finished = engine.run(execution_id, simulate_time=True)
    assert finished.context["late"] == "late" and "after" not in finished.context


def test_simulated_time_does_not_time_out_a_signal_wait() -> None:
    engine, clock, _ = engine_for(
        flow_with({"type": "ask", "waitTimeoutMs": 10_000, "transitions": {"onTimeout": "late"}})
    )
    execution_id = engine.create("f", {}).execution.id

    waiting = engine.run(execution_id, simulate_time=True)
    assert waiting.status is ExecutionStatus.WAITING
    assert clock.now() == START


def test_on_timeout_must_name_a_step() -> None:
    with pytest.raises(FlowValidationError) as raised:
        FlowRegistry([flow_with({"type": "ask", "transitions": {"onTimeout": "nowhere"}})])

    assert [path for path, _ in raised.value.issues] == ["steps.wait.transitions.on_timeout"]


def test_wait_timeout_ms_must_be_positive() -> None:
    with pytest.raises(FlowValidationError) as raised:
        FlowRegistry([flow_with({"type": "ask", "waitTimeoutMs": 0})])

    assert [path for path, _ in raised.value.issues] == ["steps.wait.wait_timeout_ms"]
