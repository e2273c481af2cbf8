"""Idempotent create (keys, scopes, TTL, concurrency) and cancel (statuses, cascade)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmonkey_celery import (
    CreateResult,
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

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


class Counting:
    """Handlers `work` (succeeds), `hold` (signal wait), `nap` (1 h timer), `fail`, counting
    every call by step id."""

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

        class Nap:
            type = "nap"

            def execute(self, params: HandlerParams) -> StepResult:
                calls.append(params.step.id)
                return Result.wait(delay=3600, reason="nap")

        class Fail:
            type = "fail"

            def execute(self, params: HandlerParams) -> StepResult:
                calls.append(params.step.id)
                return Result.failure("DECLINED", "card declined")

        return [Work(), Hold(), Nap(), Fail()]


def flow(first_type: str, flow_id: str) -> dict[str, Any]:
    return {
        "id": flow_id,
        "initialStepId": "first",
        "steps": {
            "first": {"type": first_type, "transitions": {"onSuccess": "second"}},
            "second": {"type": "work"},
        },
    }


FLOWS = (
    flow("work", "orders"),
    flow("work", "refunds"),
    flow("hold", "approval"),
    flow("nap", "napping"),
    flow("fail", "failing"),
)


def make_engine(store: MemoryStore | None = None) -> tuple[Engine, ManualClock, Counting]:
    counting = Counting()
    clock = ManualClock(START)
    engine = Engine(
        store or MemoryStore(),
        HandlerRegistry(counting.handlers()),
        FlowRegistry(FLOWS),
        clock=clock,
        rng=random.Random(0),
    )
    return engine, clock, counting


# -- idempotency -----------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_existing_execution() -> None:
    engine, _, _ = make_engine()
    first = engine.create("orders", {"order": 1}, idempotency_key="order-1")

    second = engine.create("orders", {"order": 999}, idempotency_key="order-1")

    assert first.created is True and first.idempotency_hit is False
    assert second.created is False
    assert second.idempotency_hit is True
    assert second.execution.id == first.execution.id
    assert second.execution.context == {"order": 1}


def test_an_idempotency_hit_is_recorded_in_the_existing_executions_history() -> None:
    engine, _, _ = make_engine()
    execution_id = engine.create("orders", idempotency_key="order-1").execution.id

    engine.create("orders", idempotency_key="order-1")

    types = [e.type for e in engine.history(execution_id)]
    assert types == [EventType.EXECUTION_CREATED, EventType.IDEMPOTENCY_HIT]


def test_an_idempotency_hit_returns_the_execution_even_after_it_finished() -> None:
    engine, clock, counting = make_engine()
    execution_id = engine.create("orders", idempotency_key="order-1").execution.id
    engine.run(execution_id)
    clock.advance(timedelta(hours=1))

    again = engine.create("orders", idempotency_key="order-1")

    assert again.created is False
    assert again.execution.status is ExecutionStatus.COMPLETED
    assert counting.calls == ["first", "second"]


def test_idempotency_keys_are_scoped_by_tenant() -> None:
    engine, _, _ = make_engine()
    acme = engine.create("orders", idempotency_key="k", tenant_id="acme")

    globex = engine.create("orders", idempotency_key="k", tenant_id="globex")
    untenanted = engine.create("orders", idempotency_key="k")
    acme_again = engine.create("orders", idempotency_key="k", tenant_id="acme")

    assert globex.created is True and untenanted.created is True
    assert len({acme.execution.id, globex.execution.id, untenanted.execution.id}) == 3
    assert acme_again.created is False
    assert acme_again.execution.id == acme.execution.id


def test_idempotency_keys_are_scoped_by_flow() -> None:
    engine, _, _ = make_engine()
    order = engine.create("orders", idempotency_key="k")

    refund = engine.create("refunds", idempotency_key="k")

    assert refund.created is True
    assert refund.execution.id != order.execution.id
    assert refund.execution.flow_id == "refunds"


def test_idempotency_defaults_to_24_hours() -> None:
    engine, clock, _ = make_engine()
    first = engine.create("orders", idempotency_key="k")

    clock.advance(timedelta(hours=23, minutes=59))
    within = engine.create("orders", idempotency_key="k")
    clock.advance(timedelta(minutes=1, seconds=1))
    after = engine.create("orders", idempotency_key="k")

    assert first.execution.idempotency_expires_at == START + timedelta(hours=24)
    assert within.created is False
    assert after.created is True
    assert after.execution.id != first.execution.id


def test_a_new_execution_after_the_ttl_owns_the_key_from_then_on() -> None:
    engine, clock, _ = make_engine()
    engine.create("orders", idempotency_key="k", idempotency_ttl=60)
    clock.advance(61)
    renewed = engine.create("orders", idempotency_key="k", idempotency_ttl=60)

    clock.advance(30)
    again = engine.create("orders", idempotency_key="k", idempotency_ttl=60)

    assert again.created is False
    assert again.execution.id == renewed.execution.id


@pytest.mark.parametrize(
    ("ttl", "span"),
    [(60, timedelta(seconds=60)), (timedelta(minutes=5), timedelta(minutes=5))],
)
def test_a_custom_idempotency_ttl_in_seconds_or_timedelta(ttl: Any, span: timedelta) -> None:
    engine, clock, _ = make_engine()
    first = engine.create("orders", idempotency_key="k", idempotency_ttl=ttl)

    clock.advance(span - timedelta(seconds=1))
    within = engine.create("orders", idempotency_key="k", idempotency_ttl=ttl)
    clock.advance(timedelta(seconds=2))
    after = engine.create("orders", idempotency_key="k", idempotency_ttl=ttl)

    assert first.execution.idempotency_expires_at == START + span
    assert within.created is False
    assert after.created is True


@pytest.mark.parametrize("ttl", [0, -5, timedelta(0), timedelta(seconds=-1)])
def test_a_non_positive_idempotency_ttl_is_rejected(ttl: Any) -> None:
    store = MemoryStore()
    engine, _, _ = make_engine(store)

    with pytest.raises(ExecutionError) as raised:
        engine.create("orders", idempotency_key="k", idempotency_ttl=ttl)

    assert raised.value.code is ErrorCode.INVALID_ARGUMENT
    assert "idempotency_ttl" in raised.value.message
    assert store.list_executions() == []


def test_concurrent_creates_with_one_key_make_exactly_one_execution() -> None:
    store = MemoryStore()
    engine, _, _ = make_engine(store)
    barrier = threading.Barrier(20)
    results: list[CreateResult] = []
    lock = threading.Lock()

    def create() -> None:
        barrier.wait()
        result = engine.create("orders", {"n": 1}, idempotency_key="once")
        with lock:
            results.append(result)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 20
    assert sum(r.created for r in results) == 1
    assert len({r.execution.id for r in results}) == 1
    assert len(store.list_executions()) == 1
    hits = [
        e for e in engine.history(results[0].execution.id) if e.type is EventType.IDEMPOTENCY_HIT
    ]
    assert len(hits) == 19


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_a_pending_execution() -> None:
    engine, clock, counting = make_engine()
    execution_id = engine.create("orders").execution.id
    clock.advance(5)

    result = engine.cancel(execution_id, source="user", reason="customer changed their mind")

    assert result.cancelled is True
    assert result.previous_status is ExecutionStatus.PENDING
    assert result.error is None
    execution = engine.get(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.CANCELLED
    assert execution.cancellation is not None
    assert execution.cancellation.source == "user"
    assert execution.cancellation.reason == "customer changed their mind"
    assert execution.cancellation.cancelled_at == START + timedelta(seconds=5)
    assert engine.run(execution_id).status is ExecutionStatus.CANCELLED
    assert counting.calls == []


def test_cancel_a_running_execution_between_steps() -> None:
    engine, _, counting = make_engine()
    execution_id = engine.create("orders").execution.id
    engine.step(execution_id)

    result = engine.cancel(execution_id, source="admin")

    assert result.cancelled is True
    assert result.previous_status is ExecutionStatus.RUNNING
    execution = engine.run(execution_id)
    assert execution.status is ExecutionStatus.CANCELLED
    assert execution.cancellation is not None and execution.cancellation.source == "admin"
    assert counting.calls == ["first"]  # the second step never ran


def test_cancel_a_waiting_execution_clears_its_wait() -> None:
    engine, _, _ = make_engine()
    execution_id = engine.create("napping").execution.id
    engine.run(execution_id)

    result = engine.cancel(execution_id, reason="no longer needed")

    assert result.cancelled is True
    assert result.previous_status is ExecutionStatus.WAITING
    execution = engine.get(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.CANCELLED
    assert execution.wake_at is None
    assert execution.cancellation is not None and execution.cancellation.source == "user"


def test_cancel_is_recorded_in_history() -> None:
    engine, _, _ = make_engine()
    execution_id = engine.create("approval").execution.id
    engine.run(execution_id)

    engine.cancel(execution_id, source="ops", reason="duplicate")

    last = engine.history(execution_id)[-1]
    assert last.type is EventType.EXECUTION_CANCELLED
    assert last.data == {"source": "ops", "reason": "duplicate"}


@pytest.mark.parametrize(
    ("flow_id", "finish", "status"),
    [
        ("orders", "run", ExecutionStatus.COMPLETED),
        ("failing", "run", ExecutionStatus.FAILED),
        ("approval", "cancel", ExecutionStatus.CANCELLED),
    ],
)
def test_cancel_of_a_finished_execution_is_refused(
    flow_id: str, finish: str, status: ExecutionStatus
) -> None:
    engine, _, _ = make_engine()
    execution_id = engine.create(flow_id).execution.id
    if finish == "run":
        engine.run(execution_id)
    else:
        engine.cancel(execution_id, reason="first cancel")
    before = engine.get(execution_id)

    result = engine.cancel(execution_id, reason="too late")

    assert result.cancelled is False
    assert result.previous_status is status
    assert result.error is not None and status.value in result.error
    assert engine.get(execution_id) == before


def test_cancel_of_an_unknown_execution_is_not_found() -> None:
    engine, _, _ = make_engine()

    with pytest.raises(ExecutionError) as raised:
        engine.cancel("no-such-execution")

    assert raised.value.code is ErrorCode.EXECUTION_NOT_FOUND


def test_cancel_cascades_to_children_and_grandchildren() -> None:
    engine, _, _ = make_engine()
    parent = engine.create("approval").execution.id
    child = engine.create("approval", parent_execution_id=parent).execution.id
    pending_child = engine.create("orders", parent_execution_id=parent).execution.id
    grandchild = engine.create("napping", parent_execution_id=child).execution.id
    for execution_id in (parent, child, grandchild):
        engine.run(execution_id)

    result = engine.cancel(parent, reason="order withdrawn")

    assert result.cancelled is True
    assert set(result.children_cancelled) == {child, pending_child, grandchild}
    for execution_id in (child, pending_child, grandchild):
        execution = engine.get(execution_id)
        assert execution is not None
        assert execution.status is ExecutionStatus.CANCELLED
        assert execution.cancellation is not None
        assert execution.cancellation.source == "parent"
    top = engine.get(parent)
    assert top is not None and top.cancellation is not None
    assert top.cancellation.source == "user"


def test_cancel_leaves_finished_children_alone() -> None:
    engine, _, _ = make_engine()
    parent = engine.create("approval").execution.id
    done_child = engine.create("orders", parent_execution_id=parent).execution.id
    failed_child = engine.create("failing", parent_execution_id=parent).execution.id
    live_child = engine.create("approval", parent_execution_id=parent).execution.id
    for execution_id in (parent, done_child, failed_child, live_child):
        engine.run(execution_id)

    result = engine.cancel(parent)

    assert result.children_cancelled == [live_child]
    done = engine.get(done_child)
    failed = engine.get(failed_child)
    assert done is not None and done.status is ExecutionStatus.COMPLETED
    assert done.cancellation is None
    assert failed is not None and failed.status is ExecutionStatus.FAILED


def test_wake_due_does_not_claim_a_cancelled_execution() -> None:
    engine, _, counting = make_engine()
    execution_id = engine.create("napping").execution.id
    engine.run(execution_id)
    engine.cancel(execution_id)

    claimed = engine.wake_due(START + timedelta(hours=2))

    assert claimed == []
    execution = engine.run(execution_id, simulate_time=True)
    assert execution.status is ExecutionStatus.CANCELLED
    assert counting.calls == ["first"]
