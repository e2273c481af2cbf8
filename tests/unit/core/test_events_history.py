"""History is the audit log; `engine.on()` delivers the same events to subscribers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    EventType,
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    HistoryEvent,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    handler,
)

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)

THREE_STEPS = {
    "a": {"type": "tick", "transitions": {"onSuccess": "b"}},
    "b": {"type": "tick", "transitions": {"onSuccess": "c"}},
    "c": {"type": "tick"},
}


@handler("tick")
def tick(params: HandlerParams) -> StepResult:
    """Succeeds after one simulated second, so every step has its own moment in time."""
    assert isinstance(params.clock, ManualClock)
    params.clock.advance(1)
    return Result.success({"step": params.step.id})


@handler("decline")
def decline(params: HandlerParams) -> StepResult:
    return Result.failure("DECLINED", "card declined")


@handler("approval")
def approval(params: HandlerParams) -> StepResult:
    return Result.wait_for_signal("manager approval")


@handler("pause")
def pause(params: HandlerParams) -> StepResult:
    return Result.wait(delay=timedelta(minutes=10), reason="cool down")


def make_engine(
    steps: dict[str, Any] | None = None, *, initial: str = "a", **options: Any
) -> Engine:
    flows = FlowRegistry([{"id": "f", "initialStepId": initial, "steps": steps or THREE_STEPS}])
    handlers = HandlerRegistry([tick, decline, approval, pause])
    return Engine(MemoryStore(), handlers, flows, clock=ManualClock(START), **options)


def start(engine: Engine, **create_options: Any) -> str:
    return engine.create("f", {}, **create_options).execution.id


def types_of(events: list[HistoryEvent]) -> list[str]:
    return [event.type.value for event in events]


# -- the audit log -----------------------------------------------------------------------------


def test_three_step_flow_history_lists_every_event_in_order() -> None:
    engine = make_engine()
    execution_id = start(engine)
    engine.run(execution_id)

    assert types_of(engine.history(execution_id)) == [
        "execution.created",
        "execution.started",
        "step.started",
        "step.completed",
        "transition",
        "step.started",
        "step.completed",
        "transition",
        "step.started",
        "step.completed",
        "execution.completed",
    ]


def test_history_is_oldest_first() -> None:
    engine = make_engine()
    execution_id = start(engine)
    engine.run(execution_id)

    moments = [event.at for event in engine.history(execution_id)]

    assert moments == sorted(moments)
    assert moments[0] == START
    assert moments[-1] == START + timedelta(seconds=3)


def test_history_events_belong_to_the_execution_and_name_their_step() -> None:
    engine = make_engine()
    execution_id = start(engine)
    engine.run(execution_id)

    history = engine.history(execution_id)

    assert all(event.execution_id == execution_id for event in history)
    step_events = [
        e for e in history if e.type in (EventType.STEP_STARTED, EventType.STEP_COMPLETED)
    ]
    assert [e.step_id for e in step_events] == ["a", "a", "b", "b", "c", "c"]
    assert len({event.id for event in history}) == len(history)


def test_transition_events_carry_from_and_to() -> None:
    engine = make_engine()
    execution_id = start(engine)
    engine.run(execution_id)

    transitions = [e for e in engine.history(execution_id) if e.type is EventType.TRANSITION]

    assert [(e.data["from"], e.data["to"]) for e in transitions] == [("a", "b"), ("b", "c")]


def test_step_completed_records_the_handler_call() -> None:
    engine = make_engine()
    execution_id = start(engine)
    engine.run(execution_id)

    first = next(e for e in engine.history(execution_id) if e.type is EventType.STEP_COMPLETED)

    assert first.step_id == "a"
    assert first.handler_type == "tick"
    assert first.outcome == "success"
    assert first.attempt == 1
    assert first.started_at == START
    assert first.finished_at == START + timedelta(seconds=1)
    assert first.duration_ms is not None
    assert first.duration_ms >= 0
    assert first.error is None


def test_step_completed_of_a_failure_carries_the_error() -> None:
    engine = make_engine({"a": {"type": "decline"}})
    execution_id = start(engine)
    engine.run(execution_id)

    completed = [e for e in engine.history(execution_id) if e.type is EventType.STEP_COMPLETED]

    assert len(completed) == 1
    assert completed[0].outcome == "failure"
    assert completed[0].error is not None
    assert completed[0].error.code == "DECLINED"
    assert completed[0].error.message == "card declined"
    assert completed[0].error.step_id == "a"


def test_each_retry_is_its_own_step_completed_with_its_attempt_number() -> None:
    calls: list[int] = []

    @handler("flaky")
    def flaky(params: HandlerParams) -> StepResult:
        calls.append(params.attempt)
        if params.attempt < 3:
            return Result.failure("BUSY", "try later")
        return Result.success()

    engine = make_engine({"a": {"type": "flaky", "retry": {"maxAttempts": 3, "backoffMs": 100}}})
    engine.handlers.register(flaky)
    execution_id = start(engine)

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.COMPLETED
    history = engine.history(execution_id)
    completed = [e for e in history if e.type is EventType.STEP_COMPLETED]
    assert [(e.attempt, e.outcome) for e in completed] == [
        (1, "failure"),
        (2, "failure"),
        (3, "success"),
    ]
    assert calls == [1, 2, 3]
    assert types_of(history).count("step.retry") == 2


def test_failed_execution_records_execution_failed_with_the_error() -> None:
    engine = make_engine({"a": {"type": "decline"}})
    execution_id = start(engine)
    engine.run(execution_id)

    history = engine.history(execution_id)

    assert types_of(history)[-1] == "execution.failed"
    assert history[-1].error is not None
    assert history[-1].error.code == "DECLINED"
    assert "execution.completed" not in types_of(history)


def test_waiting_execution_records_step_completed_wait_and_execution_waiting() -> None:
    engine = make_engine({"a": {"type": "approval"}})
    execution_id = start(engine)
    engine.run(execution_id)

    history = engine.history(execution_id)

    assert types_of(history)[-2:] == ["step.completed", "execution.waiting"]
    assert history[-2].outcome == "wait"
    assert history[-1].step_id == "a"
    assert history[-1].data["kind"] == "signal"
    assert history[-1].data["reason"] == "manager approval"


def test_resume_records_execution_resumed_by_signal() -> None:
    engine = make_engine(
        {"a": {"type": "approval", "transitions": {"onSuccess": "b"}}, "b": {"type": "tick"}}
    )
    execution_id = start(engine)
    engine.run(execution_id)

    engine.resume(execution_id, {"approved": True})
    engine.run(execution_id)

    history = engine.history(execution_id)
    resumed = [e for e in history if e.type is EventType.EXECUTION_RESUMED]
    assert len(resumed) == 1
    assert resumed[0].data["trigger"] == "signal"
    assert types_of(history)[-1] == "execution.completed"


def test_timer_wake_records_execution_resumed_by_timer() -> None:
    engine = make_engine(
        {"a": {"type": "pause", "transitions": {"onSuccess": "b"}}, "b": {"type": "tick"}}
    )
    execution_id = start(engine)

    engine.run(execution_id, simulate_time=True)

    history = engine.history(execution_id)
    waiting = types_of(history).index("execution.waiting")
    resumed = types_of(history).index("execution.resumed")
    assert waiting < resumed
    assert history[resumed].data["trigger"] == "timer"
    assert history[resumed].at == START + timedelta(minutes=10)


def test_cancel_records_execution_cancelled_with_source_and_reason() -> None:
    engine = make_engine({"a": {"type": "approval"}})
    execution_id = start(engine)
    engine.run(execution_id)

    engine.cancel(execution_id, source="user", reason="customer changed their mind")

    last = engine.history(execution_id)[-1]
    assert last.type is EventType.EXECUTION_CANCELLED
    assert last.data == {"source": "user", "reason": "customer changed their mind"}


def test_idempotency_hit_is_recorded_on_the_original_execution() -> None:
    engine = make_engine()
    first = engine.create("f", {}, idempotency_key="order-1")

    second = engine.create("f", {}, idempotency_key="order-1")

    assert second.execution.id == first.execution.id
    history = engine.history(first.execution.id)
    assert types_of(history) == ["execution.created", "idempotency.hit"]
    assert history[1].data["idempotency_key"] == "order-1"


# -- subscribers -------------------------------------------------------------------------------


def test_subscriber_to_one_type_gets_only_that_type() -> None:
    engine = make_engine()
    received: list[HistoryEvent] = []
    engine.on("step.completed", received.append)

    engine.run(start(engine))

    assert [(e.type, e.step_id) for e in received] == [
        (EventType.STEP_COMPLETED, "a"),
        (EventType.STEP_COMPLETED, "b"),
        (EventType.STEP_COMPLETED, "c"),
    ]


def test_wildcard_subscriber_gets_every_recorded_event_in_order() -> None:
    engine = make_engine()
    received: list[HistoryEvent] = []
    engine.on("*", received.append)
    execution_id = start(engine)

    engine.run(execution_id)

    assert [e.id for e in received] == [e.id for e in engine.history(execution_id)]


def test_subscribers_get_events_after_they_are_committed() -> None:
    engine = make_engine()
    seen_status: list[ExecutionStatus] = []

    def on_completed(event: HistoryEvent) -> None:
        seen_status.append(engine.get(event.execution_id).status)  # type: ignore[union-attr]

    engine.on(EventType.EXECUTION_COMPLETED, on_completed)

    engine.run(start(engine))

    assert seen_status == [ExecutionStatus.COMPLETED]


def test_unsubscribe_stops_delivery() -> None:
    engine = make_engine()
    received: list[HistoryEvent] = []
    unsubscribe = engine.on("step.completed", received.append)
    execution_id = start(engine)
    engine.step(execution_id)

    unsubscribe()
    engine.run(execution_id)

    assert [e.step_id for e in received] == ["a"]


def test_raising_subscriber_does_not_break_the_execution_or_other_subscribers() -> None:
    engine = make_engine()
    received: list[str] = []

    def broken(event: HistoryEvent) -> None:
        raise RuntimeError("metrics backend down")

    engine.on("*", broken)
    engine.on("step.completed", broken)
    engine.on("*", lambda event: received.append(event.type.value))
    execution_id = start(engine)

    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.COMPLETED
    assert received == types_of(engine.history(execution_id))


def test_record_history_false_stores_nothing_but_subscribers_still_get_events() -> None:
    engine = make_engine(record_history=False)
    received: list[str] = []
    engine.on("*", lambda event: received.append(event.type.value))
    execution_id = start(engine)

    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.COMPLETED
    assert engine.history(execution_id) == []
    assert received[0] == "execution.created"
    assert received[-1] == "execution.completed"
    assert received.count("step.completed") == 3


def test_on_with_an_unknown_event_type_raises_value_error() -> None:
    engine = make_engine()

    with pytest.raises(ValueError):
        engine.on("step.finished", lambda event: None)
