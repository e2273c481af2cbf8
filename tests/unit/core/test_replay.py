"""Replay from a step: the context before it, patched, in a new execution; the original kept."""

from __future__ import annotations

import random
from datetime import UTC, datetime
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
)
from flowmonkey_celery.core.replay import merge_patch
from flowmonkey_celery.core.snapshots import snapshot_of

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


class Price:
    """Multiplies `qty` by `unit`."""

    type = "price"

    def execute(self, params: HandlerParams) -> StepResult:
        return Result.success(params.context["qty"] * params.context["unit"])


class Charge:
    """Fails for a card marked bad; remembers every total it charged."""

    type = "charge"

    def __init__(self) -> None:
        self.charged: list[Any] = []

    def execute(self, params: HandlerParams) -> StepResult:
        if params.context.get("card") == "bad":
            return Result.failure("CARD_DECLINED", "the card was declined")
        self.charged.append(params.context["total"])
        return Result.success({"charged": params.context["total"]})


ORDER = {
    "id": "order",
    "version": "1.0.0",
    "initialStepId": "price",
    "steps": {
        "price": {"type": "price", "outputKey": "total", "transitions": {"onSuccess": "charge"}},
        "charge": {"type": "charge", "outputKey": "receipt", "transitions": {"onSuccess": None}},
    },
}


def make_engine(**options: Any) -> tuple[Engine, Charge]:
    charge = Charge()
    engine = Engine(
        MemoryStore(),
        HandlerRegistry([Price(), charge]),
        FlowRegistry([ORDER]),
        clock=ManualClock(START),
        rng=random.Random(0),
        **options,
    )
    return engine, charge


def failed_order(engine: Engine, **context: Any) -> str:
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    clock.advance(1)  # one second apart: listed in the order they were made
    execution_id = engine.create(
        "order", {"qty": 2, "unit": 5, "card": "bad", **context}, tenant_id="acme"
    ).execution.id
    assert engine.run(execution_id).status is ExecutionStatus.FAILED
    return execution_id


def test_history_keeps_the_context_before_each_step_and_each_output() -> None:
    engine, _ = make_engine()
    execution_id = engine.create("order", {"qty": 2, "unit": 5}).execution.id
    engine.run(execution_id)

    started = [e for e in engine.history(execution_id) if e.type is EventType.STEP_STARTED]
    completed = [e for e in engine.history(execution_id) if e.type is EventType.STEP_COMPLETED]
    assert [e.data["context"] for e in started] == [
        {"qty": 2, "unit": 5},
        {"qty": 2, "unit": 5, "total": 10},
    ]
    assert [e.data["output"] for e in completed] == [10, {"charged": 10}]


def test_a_context_over_the_snapshot_limit_is_left_out_with_its_size() -> None:
    engine, _ = make_engine(history_snapshot_bytes=20)
    execution_id = engine.create("order", {"qty": 2, "unit": 5, "note": "x" * 40}).execution.id
    engine.run(execution_id)

    first = next(e for e in engine.history(execution_id) if e.type is EventType.STEP_STARTED)
    assert "context" not in first.data
    assert first.data["context_omitted_bytes"] > 20
    with pytest.raises(ExecutionError, match="over the history's snapshot limit") as caught:
        engine.replay(execution_id, "price")
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


def test_replay_runs_from_the_step_with_the_patched_context_and_leaves_the_original() -> None:
    engine, charge = make_engine()
    original_id = failed_order(engine)
    before = engine.get(original_id)
    history_before = engine.history(original_id)

    result = engine.replay(original_id, "charge", {"card": "visa"})

    assert result.created
    replayed = result.execution
    assert replayed.id != original_id
    assert replayed.current_step_id == "charge"
    assert replayed.context == {"qty": 2, "unit": 5, "card": "visa", "total": 10}
    assert replayed.flow_version == "1.0.0"
    assert replayed.tenant_id == "acme"
    assert replayed.metadata == {"replay_of": original_id, "replay_from_step": "charge"}
    done = engine.run(replayed.id)
    assert done.status is ExecutionStatus.COMPLETED
    assert done.context["receipt"] == {"charged": 10}
    assert charge.charged == [10]  # price did not run again: charge saw the recorded total
    ran = [e.step_id for e in engine.history(replayed.id) if e.type is EventType.STEP_STARTED]
    assert ran == ["charge"]
    assert engine.get(original_id) == before
    assert engine.history(original_id) == history_before


def test_replay_from_the_first_step_recomputes_from_the_patched_input() -> None:
    engine, charge = make_engine()
    original_id = failed_order(engine)

    replayed = engine.replay(original_id, "price", {"qty": 3, "card": None}).execution
    done = engine.run(replayed.id)

    assert done.status is ExecutionStatus.COMPLETED
    assert "card" not in done.context  # null in a merge patch removes the key
    assert charge.charged == [15]


def test_replay_of_an_unknown_execution_or_step_names_it() -> None:
    engine, _ = make_engine()
    original_id = failed_order(engine)

    with pytest.raises(ExecutionError) as unknown:
        engine.replay("nope", "charge")
    assert unknown.value.code is ErrorCode.EXECUTION_NOT_FOUND
    with pytest.raises(ExecutionError, match="has no step 'chrage'; its steps: price, charge"):
        engine.replay(original_id, "chrage")
    with pytest.raises(ExecutionError, match="context_patch"):
        engine.replay(original_id, "charge", ["not", "an", "object"])  # type: ignore[arg-type]


def test_replay_from_a_step_the_execution_never_reached_says_which_ran() -> None:
    engine, _ = make_engine()
    execution_id = engine.create("order", {"qty": 1, "unit": 1}).execution.id  # never run

    with pytest.raises(ExecutionError, match=r"never ran step 'charge'.*steps it ran: none"):
        engine.replay(execution_id, "charge")
    assert len(engine.store.list_executions()) == 1  # nothing half-created


def test_replay_hands_the_new_execution_off_to_be_enqueued() -> None:
    engine, _ = make_engine()
    original_id = failed_order(engine)
    handed: list[str] = []
    engine.on_hand_off(lambda executions: handed.extend(e.id for e in executions))

    replayed = engine.replay(original_id, "charge", {"card": "visa"}).execution

    assert handed == [replayed.id]


def test_replay_failed_replays_each_failure_from_its_failed_step_once() -> None:
    engine, charge = make_engine()
    failed = [failed_order(engine, n=n) for n in range(3)]
    completed = engine.create("order", {"qty": 1, "unit": 1}).execution.id
    engine.run(completed)

    first = engine.replay_failed(flow_id="order", context_patch={"card": "visa"})
    again = engine.replay_failed(flow_id="order", context_patch={"card": "visa"})

    assert [o.original_id for o in first.outcomes] == failed
    assert [o.from_step for o in first.outcomes] == ["charge"] * 3
    assert first.replayed == 3
    assert again.replayed == 0  # the same bulk replay again starts nothing more
    assert [o.execution_id for o in again.outcomes] == [o.execution_id for o in first.outcomes]
    for outcome in first.outcomes:
        assert outcome.execution_id is not None
        assert engine.run(outcome.execution_id).status is ExecutionStatus.COMPLETED
    # The completed order was charged once and not replayed; each failed one once, with the
    # total its price step recorded (price did not run again).
    assert charge.charged == [1, 10, 10, 10]


def test_replay_failed_filters_by_error_code_and_limit() -> None:
    engine, _ = make_engine()
    ids = [failed_order(engine, n=n) for n in range(3)]

    none = engine.replay_failed(error_code="SOMETHING_ELSE")
    two = engine.replay_failed(error_code="CARD_DECLINED", limit=2)

    assert none.outcomes == []
    assert [o.original_id for o in two.outcomes] == ids[:2]
    with pytest.raises(ExecutionError, match="limit"):
        engine.replay_failed(limit=0)


def test_replay_failed_reports_a_replay_that_cannot_start_and_goes_on() -> None:
    engine, _ = make_engine()
    ids = [failed_order(engine, n=n) for n in range(2)]

    result = engine.replay_failed(from_step="missing")

    assert [o.original_id for o in result.outcomes] == ids
    assert all(o.error is not None and o.error.code == "STEP_NOT_FOUND" for o in result.outcomes)
    assert result.replayed == 0


def test_merge_patch_follows_rfc_7386() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {
        "a": {"c": 2, "d": 3}
    }
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_patch({"a": 1}, {}) == {"a": 1}


def test_a_snapshot_is_a_copy_not_the_live_context() -> None:
    context: dict[str, Any] = {"items": [1]}
    kept = snapshot_of("context", context, 1000)
    context["items"].append(2)
    assert kept == {"context": {"items": [1]}}
    assert snapshot_of("context", context, 0) == {}


def test_a_failed_replay_is_not_replayed_again_by_the_next_bulk_run() -> None:
    engine, _ = make_engine()
    original_id = failed_order(engine)

    first = engine.replay_failed()  # no patch: the replay fails again
    (outcome,) = first.outcomes
    assert outcome.execution_id is not None
    assert engine.run(outcome.execution_id).status is ExecutionStatus.FAILED
    again = engine.replay_failed()
    chained = engine.replay_failed(include_replays=True)

    assert [(o.original_id, o.created) for o in again.outcomes] == [(original_id, False)]
    assert outcome.execution_id in {o.original_id for o in chained.outcomes}


def test_replay_from_the_step_it_stopped_at_before_its_handler_ran_uses_its_context() -> None:
    engine, _ = make_engine()
    execution_id = engine.create("order", {"qty": 4, "unit": 1}).execution.id  # never run

    replayed = engine.replay(execution_id, "price", {"unit": 2}).execution

    assert replayed.context == {"qty": 4, "unit": 2}
    assert engine.run(replayed.id).context["total"] == 8
