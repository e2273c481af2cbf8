"""Waits (timers and signals), resume(), and the wake_due() sweep."""

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
    VersionConflictError,
    WaitKind,
    handler,
)

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


class Pause:
    """A `pause` handler returning the wait described by the step's config."""

    type = "pause"

    def __init__(self) -> None:
        self.calls = 0

    def execute(self, params: HandlerParams) -> StepResult:
        self.calls += 1
        config = params.config
        if config.get("signal"):
            return Result.wait_for_signal(config.get("reason"))
        if "wake_in_seconds" in config:
            wake_at = params.clock.now() + timedelta(seconds=config["wake_in_seconds"])
            return Result.wait(wake_at=wake_at, reason=config.get("reason"))
        if "delay_days" in config:
            delay = timedelta(days=config["delay_days"])
            return Result.wait(delay=delay, reason=config.get("reason"))
        if "delay" in config:
            return Result.wait(delay=config["delay"], reason=config.get("reason"))
        return Result.wait(reason=config.get("reason"))


class Record:
    """A `record` handler remembering which steps ran and what input they saw."""

    type = "record"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.inputs: list[Any] = []

    def execute(self, params: HandlerParams) -> StepResult:
        self.calls.append(params.step.id)
        self.inputs.append(params.input)
        return Result.success({"ran": params.step.id})


def wait_flow(
    config: dict[str, Any],
    *,
    flow_id: str = "waiting",
    output_key: str | None = None,
    transitions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    pause: dict[str, Any] = {
        "type": "pause",
        "config": config,
        "transitions": transitions if transitions is not None else {"onSuccess": "next"},
    }
    if output_key:
        pause["outputKey"] = output_key
    return {
        "id": flow_id,
        "initialStepId": "pause",
        "steps": {
            "pause": pause,
            "next": {"type": "record", "outputKey": "next"},
            "resumed": {"type": "record", "outputKey": "resumed"},
        },
    }


def make_engine(*flows: dict[str, Any], extra: tuple[Any, ...] = ()) -> tuple[Engine, Record]:
    record = Record()
    engine = Engine(
        MemoryStore(),
        HandlerRegistry([Pause(), record, *extra]),
        FlowRegistry(flows),
        clock=ManualClock(START),
        rng=random.Random(0),
    )
    return engine, record


def clock_of(engine: Engine) -> ManualClock:
    assert isinstance(engine.clock, ManualClock)
    return engine.clock


def start(engine: Engine, flow_id: str = "waiting", context: dict[str, Any] | None = None) -> str:
    return engine.create(flow_id, context or {}).execution.id


# -- timed waits -----------------------------------------------------------------------------


def test_wait_with_delay_returns_waiting_until_due() -> None:
    engine, record = make_engine(wait_flow({"delay": 3600, "reason": "cool-off"}))
    execution_id = start(engine)

    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.WAITING
    assert execution.wait_kind is WaitKind.TIMER
    assert execution.wake_at == START + timedelta(hours=1)
    assert execution.wait_reason == "cool-off"
    assert execution.current_step_id == "pause"
    assert record.calls == []


def test_wait_with_wake_at_returns_waiting_with_that_instant() -> None:
    engine, _ = make_engine(wait_flow({"wake_in_seconds": 90}))
    execution_id = start(engine)

    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.WAITING
    assert execution.wait_kind is WaitKind.TIMER
    assert execution.wake_at == START + timedelta(seconds=90)


def test_step_on_a_wait_that_is_not_due_reports_no_outcome() -> None:
    engine, record = make_engine(wait_flow({"delay": 60}))
    execution_id = start(engine)
    first = engine.step(execution_id)

    again = engine.step(execution_id)

    assert first.outcome == "wait"
    assert again.done is False
    assert again.status is ExecutionStatus.WAITING
    assert again.outcome is None
    assert again.wake_at == START + timedelta(seconds=60)
    assert record.calls == []


def test_run_continues_to_on_success_once_the_clock_passes_wake_at() -> None:
    engine, record = make_engine(wait_flow({"delay": 60}))
    execution_id = start(engine)
    engine.run(execution_id)

    clock_of(engine).advance(59)
    still_waiting = engine.run(execution_id)
    clock_of(engine).advance(1)
    finished = engine.run(execution_id)

    assert still_waiting.status is ExecutionStatus.WAITING
    assert finished.status is ExecutionStatus.COMPLETED
    assert record.calls == ["next"]
    resumed = [e for e in engine.history(execution_id) if e.type is EventType.EXECUTION_RESUMED]
    assert [e.data["trigger"] for e in resumed] == ["timer"]


def test_a_fired_timer_follows_on_resume_when_given() -> None:
    flow = wait_flow({"delay": 60}, transitions={"onSuccess": "next", "onResume": "resumed"})
    engine, record = make_engine(flow)
    execution_id = start(engine)

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.COMPLETED
    assert record.calls == ["resumed"]


def test_an_explicit_null_on_resume_completes_after_the_timer() -> None:
    flow = wait_flow({"delay": 60}, transitions={"onSuccess": "next", "onResume": None})
    engine, record = make_engine(flow)
    execution_id = start(engine)

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.COMPLETED
    assert record.calls == []


def test_simulate_time_skips_the_wait_and_moves_the_manual_clock_to_wake_at() -> None:
    engine, record = make_engine(wait_flow({"delay_days": 3}))
    execution_id = start(engine)

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.COMPLETED
    assert clock_of(engine).now() == START + timedelta(days=3)
    assert record.calls == ["next"]


def test_a_naive_wake_at_is_rejected_with_a_message_about_timezones() -> None:
    @handler("naive")
    def naive(params: HandlerParams) -> StepResult:
        return Result.wait(wake_at=datetime(2024, 5, 2, 9, 0))

    flow = {"id": "naive-flow", "initialStepId": "w", "steps": {"w": {"type": "naive"}}}
    engine, _ = make_engine(flow, extra=(naive,))
    execution_id = start(engine, "naive-flow")

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == ErrorCode.HANDLER_ERROR.value
    assert "timezone" in execution.error.message


# -- signal waits ----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [{"signal": True, "reason": "approval"}, {"reason": "approval"}])
def test_a_signal_wait_blocks_even_with_simulated_time(config: dict[str, Any]) -> None:
    engine, record = make_engine(wait_flow(config))
    execution_id = start(engine)

    execution = engine.run(execution_id, simulate_time=True)
    again = engine.run(execution_id, simulate_time=True)

    for waiting in (execution, again):
        assert waiting.status is ExecutionStatus.WAITING
        assert waiting.wait_kind is WaitKind.SIGNAL
        assert waiting.wake_at is None
        assert waiting.wait_reason == "approval"
    assert clock_of(engine).now() == START
    assert record.calls == []


def test_resume_returns_a_running_execution_and_run_completes_it() -> None:
    engine, record = make_engine(wait_flow({"signal": True}))
    execution_id = start(engine)
    engine.run(execution_id)

    resumed = engine.resume(execution_id)

    assert resumed.status is ExecutionStatus.RUNNING
    assert resumed.current_step_id == "next"
    assert record.calls == []  # resume() commits; it does not run the next step
    finished = engine.run(execution_id)
    assert finished.status is ExecutionStatus.COMPLETED
    assert record.calls == ["next"]
    events = [e for e in engine.history(execution_id) if e.type is EventType.EXECUTION_RESUMED]
    assert [e.data["trigger"] for e in events] == ["signal"]


def test_resume_follows_on_resume_when_given() -> None:
    flow = wait_flow({"signal": True}, transitions={"onSuccess": "next", "onResume": "resumed"})
    engine, record = make_engine(flow)
    execution_id = start(engine)
    engine.run(execution_id)

    engine.resume(execution_id)
    engine.run(execution_id)

    assert record.calls == ["resumed"]


def test_resume_data_is_stored_at_the_steps_output_key() -> None:
    engine, _ = make_engine(wait_flow({"signal": True}, output_key="approval.decision"))
    execution_id = start(engine, context={"order": 1})
    engine.run(execution_id)

    resumed = engine.resume(execution_id, {"approved": True})

    assert resumed.context == {"order": 1, "approval": {"decision": {"approved": True}}}


def test_non_object_resume_data_is_fine_with_an_output_key() -> None:
    engine, _ = make_engine(wait_flow({"signal": True}, output_key="answer"))
    execution_id = start(engine)
    engine.run(execution_id)

    resumed = engine.resume(execution_id, "yes")

    assert resumed.context["answer"] == "yes"


def test_resume_data_is_merged_into_the_context_without_an_output_key() -> None:
    engine, _ = make_engine(wait_flow({"signal": True}))
    execution_id = start(engine, context={"order": 1, "approved": False})
    engine.run(execution_id)

    resumed = engine.resume(execution_id, {"approved": True, "by": "ana"})

    assert resumed.context == {"order": 1, "approved": True, "by": "ana"}


@pytest.mark.parametrize("data", ["yes", 42, [1, 2]])
def test_non_object_resume_data_without_output_key_is_rejected(data: Any) -> None:
    engine, _ = make_engine(wait_flow({"signal": True}))
    execution_id = start(engine)
    engine.run(execution_id)

    with pytest.raises(ExecutionError) as raised:
        engine.resume(execution_id, data)

    assert raised.value.code is ErrorCode.INVALID_ARGUMENT
    assert "output_key" in raised.value.message
    still = engine.get(execution_id)
    assert still is not None and still.status is ExecutionStatus.WAITING


def test_resume_and_fail_waiting_with_an_expected_version_touch_only_that_wait() -> None:
    engine, _ = make_engine(wait_flow({"signal": True}, output_key="answer"))
    execution_id = start(engine)
    engine.run(execution_id)
    seen = engine.get(execution_id)
    assert seen is not None and seen.status is ExecutionStatus.WAITING
    engine.store.save_execution(
        seen.model_copy(update={"metadata": {"touched": True}}),
        expected_version=seen.version,
        events=[],
    )
    moved_on = engine.get(execution_id)

    with pytest.raises(VersionConflictError, match=f"not {seen.version}"):
        engine.resume(execution_id, {"ok": True}, expected_version=seen.version)
    with pytest.raises(VersionConflictError):
        engine.fail_waiting(execution_id, "BOOM", "it broke", expected_version=seen.version)
    assert engine.get(execution_id) == moved_on  # nothing written

    assert moved_on is not None
    resumed = engine.resume(execution_id, {"ok": True}, expected_version=moved_on.version)
    assert resumed.status is ExecutionStatus.RUNNING
    assert resumed.context["answer"] == {"ok": True}


def test_resume_of_a_running_execution_is_refused() -> None:
    flow = {
        "id": "two",
        "initialStepId": "a",
        "steps": {
            "a": {"type": "record", "transitions": {"onSuccess": "b"}},
            "b": {"type": "record"},
        },
    }
    engine, _ = make_engine(flow)
    execution_id = start(engine, "two")
    engine.step(execution_id)

    with pytest.raises(ExecutionError) as raised:
        engine.resume(execution_id, {"x": 1})

    assert raised.value.code is ErrorCode.EXECUTION_NOT_WAITING
    assert "running" in raised.value.message


def test_resume_of_a_completed_execution_is_refused() -> None:
    engine, _ = make_engine(wait_flow({"delay": 5}))
    execution_id = start(engine)
    engine.run(execution_id, simulate_time=True)

    with pytest.raises(ExecutionError) as raised:
        engine.resume(execution_id)

    assert raised.value.code is ErrorCode.EXECUTION_NOT_WAITING
    assert "completed" in raised.value.message


def test_a_timed_wait_can_be_resumed_early() -> None:
    engine, record = make_engine(wait_flow({"delay_days": 7}, output_key="reply"))
    execution_id = start(engine)
    engine.run(execution_id)

    engine.resume(execution_id, {"early": True})
    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context["reply"] == {"early": True}
    assert record.calls == ["next"]
    assert clock_of(engine).now() == START


# -- wake_due --------------------------------------------------------------------------------


def test_wake_due_claims_a_due_timer_once() -> None:
    engine, _ = make_engine(wait_flow({"delay": 60}))
    execution_id = start(engine)
    engine.run(execution_id)
    later = START + timedelta(seconds=61)

    first = engine.wake_due(later)
    second = engine.wake_due(later)

    assert first == [execution_id]
    assert second == []


def test_wake_due_ignores_timers_not_yet_due_and_signal_waits() -> None:
    engine, _ = make_engine(
        wait_flow({"delay": 3600}, flow_id="timer"),
        wait_flow({"signal": True}, flow_id="signal"),
    )
    timer_id = start(engine, "timer")
    signal_id = start(engine, "signal")
    engine.run(timer_id)
    engine.run(signal_id)

    claimed = engine.wake_due(START + timedelta(minutes=59))
    much_later = engine.wake_due(START + timedelta(days=365))

    assert claimed == []
    assert much_later == [timer_id]
    signal = engine.get(signal_id)
    assert signal is not None and signal.status is ExecutionStatus.WAITING


def test_a_claimed_timer_moves_to_the_next_step_ready_to_run() -> None:
    engine, record = make_engine(wait_flow({"delay": 60}))
    execution_id = start(engine)
    engine.run(execution_id)

    engine.wake_due(START + timedelta(minutes=5))

    claimed = engine.get(execution_id)
    assert claimed is not None
    assert claimed.status is ExecutionStatus.RUNNING
    assert claimed.current_step_id == "next"
    assert claimed.wake_at is None
    assert record.calls == []
    assert engine.run(execution_id).status is ExecutionStatus.COMPLETED
    assert record.calls == ["next"]


def test_a_claimed_retry_stays_on_its_step() -> None:
    attempts: list[int] = []

    @handler("flaky")
    def flaky(params: HandlerParams) -> StepResult:
        attempts.append(params.attempt)
        if params.attempt == 1:
            return Result.failure("TEMPORARY", "try again")
        return Result.success({"attempt": params.attempt})

    flow = {
        "id": "retrying",
        "initialStepId": "call",
        "steps": {"call": {"type": "flaky", "retry": {"maxAttempts": 2, "backoffMs": 1000}}},
    }
    engine, _ = make_engine(flow, extra=(flaky,))
    execution_id = start(engine, "retrying")
    engine.run(execution_id)

    assert engine.wake_due(START + timedelta(seconds=2)) == [execution_id]

    claimed = engine.get(execution_id)
    assert claimed is not None
    assert claimed.status is ExecutionStatus.RUNNING
    assert claimed.current_step_id == "call"
    assert claimed.retry_attempts == 1
    assert engine.run(execution_id).status is ExecutionStatus.COMPLETED
    assert attempts == [1, 2]


def test_wake_due_uses_the_engine_clock_when_no_time_is_given() -> None:
    engine, _ = make_engine(wait_flow({"delay": 60}))
    execution_id = start(engine)
    engine.run(execution_id)

    before = engine.wake_due()
    clock_of(engine).advance(60)
    after = engine.wake_due()

    assert before == []
    assert after == [execution_id]


# -- the seed README's approval example ------------------------------------------------------


class WaitForApproval:
    type = "wait-for-approval"

    def execute(self, params: HandlerParams) -> StepResult:
        return Result.wait(
            wake_at=params.clock.now() + timedelta(days=7),
            reason="Waiting for manager approval",
        )


@handler("process-approval")
def process_approval(params: HandlerParams) -> StepResult:
    decision = params.input
    if not decision.get("approved"):
        return Result.failure("NOT_APPROVED", "the manager did not approve")
    return Result.success({"processed": True, "approvedBy": decision["approvedBy"]})


def test_approval_flow_waits_for_the_manager_then_continues() -> None:
    flow = {
        "id": "expense-approval",
        "initialStepId": "await-approval",
        "steps": {
            "await-approval": {
                "type": "wait-for-approval",
                "transitions": {"onSuccess": "process"},
            },
            "process": {
                "type": "process-approval",
                "input": {"type": "keys", "keys": ["approved", "approvedBy"]},
                "outputKey": "result",
            },
        },
    }
    engine, _ = make_engine(flow, extra=(WaitForApproval(), process_approval))
    execution_id = start(engine, "expense-approval", {"expense": {"amount": 420}})

    waiting = engine.run(execution_id)
    assert waiting.status is ExecutionStatus.WAITING
    assert waiting.wait_reason == "Waiting for manager approval"
    assert waiting.wake_at == START + timedelta(days=7)

    clock_of(engine).advance(timedelta(hours=5))  # the manager answers the same day
    engine.resume(execution_id, {"approved": True, "approvedBy": "manager@co.com"})
    finished = engine.run(execution_id)

    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context == {
        "expense": {"amount": 420},
        "approved": True,
        "approvedBy": "manager@co.com",
        "result": {"processed": True, "approvedBy": "manager@co.com"},
    }
    assert engine.wake_due(START + timedelta(days=8)) == []
