"""`Store.waiting_stats`: the numbers behind the waiting gauges of `/metrics` and the fleet page,
the same on every backend."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flowmonkey_celery import Execution, ExecutionStatus, Store
from flowmonkey_celery.core.execution import WaitKind
from flowmonkey_celery.core.stats import WaitingStats

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def create(store: Store, status: ExecutionStatus, **fields: Any) -> Execution:
    execution = Execution(
        id=uuid.uuid4().hex,
        flow_id="orders",
        flow_version="1.0.0",
        current_step_id="validate",
        status=status,
        created_at=T0,
        updated_at=T0,
        **fields,
    )
    stored, created = store.create_execution(execution, now=T0)
    assert created
    return stored


def waiting(store: Store, started: float, wake: float | None, **fields: Any) -> Execution:
    return create(
        store,
        ExecutionStatus.WAITING,
        wait_started_at=at(started),
        wake_at=at(wake) if wake is not None else None,
        wait_kind=WaitKind.TIMER if wake is not None else WaitKind.SIGNAL,
        **fields,
    )


def test_an_empty_store_has_nothing_waiting(store: Store) -> None:
    assert store.waiting_stats(T0) == WaitingStats(
        waiting_count=0, oldest_waiting_since=None, due_count=0, oldest_due_at=None
    )


def test_waiting_stats_count_waits_and_the_due_ones(store: Store) -> None:
    waiting(store, started=10, wake=None)  # a signal wait: never due
    waiting(store, started=-300, wake=160)  # the oldest wait, not due yet
    waiting(store, started=20, wake=40)  # due at 40
    waiting(store, started=25, wake=30)  # due at 30: the oldest due
    waiting(store, started=50, wake=100)  # due exactly at now
    # Not waiting: none of them counts, whatever their timestamps say.
    create(store, ExecutionStatus.RUNNING, wake_at=at(0), wait_started_at=at(-900))
    create(store, ExecutionStatus.COMPLETED, finished_at=at(1))
    create(store, ExecutionStatus.PENDING)

    stats = store.waiting_stats(at(100))

    assert stats == WaitingStats(
        waiting_count=5, oldest_waiting_since=at(-300), due_count=3, oldest_due_at=at(30)
    )
    assert stats.oldest_waiting_since is not None
    assert stats.oldest_waiting_since.tzinfo is not None  # aware UTC, like every instant
    assert stats.oldest_waiting_seconds(at(100)) == 400.0
    assert stats.due_lag_seconds(at(100)) == 70.0


def test_a_claimed_wake_is_no_longer_due(store: Store) -> None:
    first = waiting(store, started=0, wake=10)
    waiting(store, started=0, wake=20)

    claimed = store.claim_due_wakes(at(30), limit=1, claim_until=at(90))

    assert [e.id for e in claimed] == [first.id]
    stats = store.waiting_stats(at(30))
    assert (stats.waiting_count, stats.due_count, stats.oldest_due_at) == (2, 1, at(20))


def test_a_woken_execution_leaves_the_stats(store: Store) -> None:
    execution = waiting(store, started=0, wake=10)
    assert store.waiting_stats(at(30)).due_count == 1

    woken = execution.model_copy(
        update={
            "status": ExecutionStatus.RUNNING,
            "wake_at": None,
            "wait_started_at": None,
            "wait_kind": None,
        }
    )
    store.save_execution(woken, expected_version=execution.version)

    assert store.waiting_stats(at(30)) == WaitingStats()
