"""Events with real concurrency on PostgreSQL and a SQLite file: two processes' engines
dispatching one event at the same instant start one execution per trigger, and two events for
one wait resume it once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from flowmonkey_celery import Engine, ExecutionStatus, FlowRegistry, HandlerRegistry
from flowmonkey_celery.core.inbox import Event
from flowmonkey_celery.core.triggers import EventTrigger
from flowmonkey_celery.runtime import register_trigger
from flowmonkey_celery.stores.sql import SqlStore

FLOWS = [
    {"id": "ship", "initialStepId": "w", "steps": {"w": {"type": "wait_for_signal"}}},
    {
        "id": "checkout",
        "initialStepId": "pay",
        "steps": {
            "pay": {
                "type": "wait_for_event",
                "config": {"event": "paid", "match": {"order": "${order}"}},
                "outputKey": "payment",
            }
        },
    },
]
RACERS = 6


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    url = f"sqlite:///{request.getfixturevalue('tmp_path')}/events.db"
    store = SqlStore(url)
    store.migrate()
    store.dispose()
    return url


@pytest.fixture
def engines(db_url: str) -> Iterator[list[Engine]]:
    """One engine per racer, each with a store (a connection pool) of its own: processes."""
    stores = [SqlStore(db_url) for _ in range(RACERS)]
    yield [Engine(store, HandlerRegistry(), FlowRegistry(FLOWS)) for store in stores]
    for store in stores:
        store.dispose()


def race(calls: list[Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls), timeout=60)
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_one_event_dispatched_by_many_processes_at_once_starts_one_execution_per_trigger(
    engines: list[Engine],
) -> None:
    first = engines[0]
    for trigger_id in ("a", "b"):
        trigger = EventTrigger(id=trigger_id, flow_id="ship", event_type="order.paid")
        register_trigger(first.store, trigger, first.clock.now())
    event = Event(id="e-1", type="order.paid", payload={}, created_at=first.clock.now())
    with first.store.transaction() as tx:
        tx.insert_event(event)

    results = race([lambda e=e: e._dispatch_event(event) for e in engines])

    started = [execution_id for result in results for execution_id in result.started]
    assert len(started) == 2 and len(set(started)) == 2
    assert len(first.store.list_executions(flow_id="ship")) == 2
    fires = [f.status for t in ("a", "b") for f in first.store.list_trigger_fires(t)]
    assert sorted(fires) == ["accepted"] * 2 + ["duplicate"] * (2 * RACERS - 2)


def test_many_matching_events_at_once_end_one_wait_once(engines: list[Engine]) -> None:
    first = engines[0]
    execution_id = first.create("checkout", {"order": "A-1"}).execution.id
    first.run(execution_id)

    results = race(
        [lambda e=e, n=n: e.emit("paid", {"order": "A-1", "n": n}) for n, e in enumerate(engines)]
    )

    resumed = [r.resumed for r in results]
    assert sum(len(r) for r in resumed) == 1
    execution = first.get(execution_id)
    assert execution is not None and execution.status is ExecutionStatus.COMPLETED
    history = [e for e in first.history(execution_id) if e.data.get("trigger") == "event"]
    assert len(history) == 1
