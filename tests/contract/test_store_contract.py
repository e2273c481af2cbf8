"""The Store contract: what every backend (MemoryStore, SqlStore...) must do, run against each.

Tests build `Execution` and `HistoryEvent` objects directly, so they exercise the store alone.
Parents are always created before their children and events are only attached to stored
executions, because durable backends enforce both with constraints.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from flowmonkey_celery import (
    ErrorCode,
    EventType,
    Execution,
    ExecutionError,
    ExecutionStatus,
    HistoryEvent,
    Store,
    VersionConflictError,
)
from flowmonkey_celery.core.execution import Cancellation, ErrorInfo, TimeoutConfig, WaitKind

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LIVE_STATUSES = [ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.WAITING]
TERMINAL_STATUSES = [
    ExecutionStatus.COMPLETED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
]
R = TypeVar("R")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_id() -> str:
    return uuid.uuid4().hex


def make_execution(**fields: Any) -> Execution:
    values: dict[str, Any] = {
        "id": new_id(),
        "flow_id": "orders",
        "flow_version": "1.0.0",
        "current_step_id": "validate",
        "context": {"order": {"id": "A-1", "total": 10}},
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return Execution(**values)


def make_event(
    execution_id: str, type_: EventType = EventType.STEP_STARTED, **fields: Any
) -> HistoryEvent:
    return HistoryEvent(execution_id=execution_id, type=type_, at=fields.pop("at", T0), **fields)


def create(store: Store, **fields: Any) -> Execution:
    stored, created = store.create_execution(make_execution(**fields), now=T0)
    assert created
    return stored


def event_types(store: Store, execution_id: str) -> list[str]:
    return [e.type.value for e in store.list_events(execution_id)]


def race(threads: int, work: Callable[[int], R]) -> list[R | BaseException]:
    """Run `work(i)` in `threads` threads released together; each result or raised error."""
    barrier = threading.Barrier(threads)
    results: list[R | BaseException] = [RuntimeError("did not run")] * threads

    def runner(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except BaseException as exc:
            results[index] = exc

    workers = [threading.Thread(target=runner, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return results


def assert_all_aware_utc(model: Any) -> None:
    for name, value in model:
        if isinstance(value, datetime):
            assert value.utcoffset() == timedelta(0), f"{name} is {value!r}, not aware UTC"
        elif isinstance(value, BaseModel):
            assert_all_aware_utc(value)


def fully_populated(status: ExecutionStatus, parent_id: str) -> Execution:
    return Execution(
        id=new_id(),
        flow_id="orders",
        flow_version="2.1.0-rc.1",
        status=status,
        current_step_id="charge-payment",
        context={
            "order": {"id": "A-1", "items": [{"sku": "mug", "qty": 2, "price": 12.5}]},
            "flags": [True, False, None],
            "unicode": "Grüße, 東京",
            "empty": {},
        },
        wake_at=at(60),
        wait_reason="waiting for the card network",
        error=ErrorInfo(
            code="CARD_DECLINED",
            message="card declined",
            step_id="charge-payment",
            details={"attempts": 3, "last": {"status": 402}},
        ),
        step_count=7,
        tenant_id="tenant-1",
        metadata={"source": "api", "tags": ["a", "b"]},
        parent_execution_id=parent_id,
        idempotency_key="order-A-1",
        idempotency_expires_at=at(86_400),
        cancellation=Cancellation(source="user", reason="customer asked", cancelled_at=at(30)),
        timeout=TimeoutConfig(execution_timeout_ms=60_000, wait_timeout_ms=5_000),
        retry_attempts=2,
        created_at=at(1.5),
        updated_at=at(20.25),
        version=4,
        wait_kind=WaitKind.RETRY,
        wait_started_at=at(10),
        wait_deadline_at=at(15),
        deadline_at=at(61.5),
        started_at=at(2),
        finished_at=at(40),
        lease_expires_at=at(45),
        join_id="join-1",
        branch_index=3,
        parent_close="abandon",
    )


# -- the protocol ------------------------------------------------------------------------------


def test_store_implements_every_method_of_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)


# -- create_execution --------------------------------------------------------------------------


def test_create_returns_the_stored_copy_and_true(store: Store) -> None:
    execution = make_execution(status=ExecutionStatus.PENDING)

    stored, created = store.create_execution(execution, now=T0)

    assert created is True
    assert stored.model_dump() == execution.model_dump()
    assert stored is not execution
    loaded = store.get_execution(execution.id)
    assert loaded is not None and loaded.model_dump() == execution.model_dump()


def test_create_keeps_the_version_it_was_given(store: Store) -> None:
    stored, _ = store.create_execution(make_execution(version=3), now=T0)
    loaded = store.get_execution(stored.id)
    assert stored.version == 3
    assert loaded is not None and loaded.version == 3


def test_create_does_not_keep_a_reference_to_the_callers_object(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution, now=T0)

    execution.context["order"]["total"] = 999
    execution.status = ExecutionStatus.FAILED

    loaded = store.get_execution(execution.id)
    assert loaded is not None
    assert loaded.context["order"]["total"] == 10
    assert loaded.status is ExecutionStatus.PENDING


def test_create_stores_its_first_events_with_the_execution(store: Store) -> None:
    execution = make_execution()
    events = [
        make_event(execution.id, EventType.EXECUTION_CREATED, at=at(0)),
        make_event(execution.id, EventType.EXECUTION_STARTED, at=at(1)),
    ]

    store.create_execution(execution, now=T0, events=events)

    assert event_types(store, execution.id) == ["execution.created", "execution.started"]


def test_create_with_a_taken_id_raises_execution_exists_and_writes_nothing(
    store: Store,
) -> None:
    first = make_execution(context={"who": "first"})
    store.create_execution(
        first, now=T0, events=[make_event(first.id, EventType.EXECUTION_CREATED)]
    )
    duplicate = make_execution(id=first.id, context={"who": "second"})

    with pytest.raises(ExecutionError) as caught:
        store.create_execution(
            duplicate, now=T0, events=[make_event(first.id, EventType.EXECUTION_FAILED)]
        )

    assert caught.value.code == ErrorCode.EXECUTION_EXISTS
    assert first.id in str(caught.value)
    loaded = store.get_execution(first.id)
    assert loaded is not None and loaded.context == {"who": "first"}
    assert event_types(store, first.id) == ["execution.created"]


# -- idempotent create -------------------------------------------------------------------------


ONE_HOUR_IN = T0 + timedelta(hours=1)


def keyed(key: str = "order-A-1", expires_at: datetime = ONE_HOUR_IN, **fields: Any) -> Execution:
    return make_execution(idempotency_key=key, idempotency_expires_at=expires_at, **fields)


def test_live_idempotency_key_returns_the_existing_execution_and_writes_nothing(
    store: Store,
) -> None:
    first = keyed(context={"n": 1})
    store.create_execution(
        first, now=T0, events=[make_event(first.id, EventType.EXECUTION_CREATED)]
    )
    second = keyed(context={"n": 2})

    existing, created = store.create_execution(
        second, now=at(60), events=[make_event(second.id, EventType.EXECUTION_CREATED)]
    )

    assert created is False
    assert existing.id == first.id
    assert existing.context == {"n": 1}
    assert store.get_execution(second.id) is None
    assert store.list_events(second.id) == []
    assert event_types(store, first.id) == ["execution.created"]
    assert [e.id for e in store.list_executions()] == [first.id]


@pytest.mark.parametrize("expired_by", [timedelta(0), timedelta(seconds=1)])
def test_expired_idempotency_key_is_taken_over_by_the_new_execution(
    store: Store, expired_by: timedelta
) -> None:
    first = keyed(expires_at=at(3600))
    store.create_execution(first, now=T0)
    second = keyed(expires_at=at(3600) + expired_by + timedelta(hours=1), created_at=at(1))

    stored, created = store.create_execution(second, now=at(3600) + expired_by)
    third, third_created = store.create_execution(keyed(), now=at(3600) + expired_by)

    assert created is True and stored.id == second.id
    assert third_created is False and third.id == second.id
    assert store.get_execution(first.id) is not None  # the old execution is kept


@pytest.mark.parametrize(
    "other_scope",
    [
        {"tenant_id": "tenant-2"},
        {"tenant_id": None},
        {"flow_id": "refunds"},
    ],
    ids=["other-tenant", "no-tenant", "other-flow"],
)
def test_idempotency_key_is_scoped_by_tenant_and_flow(
    store: Store, other_scope: dict[str, Any]
) -> None:
    first = keyed(tenant_id="tenant-1", flow_id="orders")
    store.create_execution(first, now=T0)
    other = keyed(**{"tenant_id": "tenant-1", "flow_id": "orders", **other_scope})

    stored, created = store.create_execution(other, now=T0)

    assert created is True and stored.id == other.id
    same_scope, again = store.create_execution(keyed(tenant_id="tenant-1"), now=T0)
    assert again is False and same_scope.id == first.id


def test_sixteen_concurrent_creates_with_one_key_create_exactly_one_execution(
    store: Store,
) -> None:
    candidates = [keyed(key="webhook-42", context={"caller": i}) for i in range(16)]

    results = race(
        16,
        lambda i: store.create_execution(
            candidates[i],
            now=T0,
            events=[make_event(candidates[i].id, EventType.EXECUTION_CREATED)],
        ),
    )

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    outcomes = [r for r in results if not isinstance(r, BaseException)]
    winners = [stored for stored, created in outcomes if created]
    assert len(winners) == 1
    assert {stored.id for stored, _ in outcomes} == {winners[0].id}
    assert [e.id for e in store.list_executions(flow_id="orders")] == [winners[0].id]
    assert event_types(store, winners[0].id) == ["execution.created"]


# -- get_execution -----------------------------------------------------------------------------


def test_get_unknown_execution_returns_none(store: Store) -> None:
    assert store.get_execution("no-such-execution") is None


def test_mutating_a_returned_execution_changes_nothing_stored(store: Store) -> None:
    stored = create(store, metadata={"source": "api"})

    stored.context["order"]["total"] = 0
    loaded = store.get_execution(stored.id)
    assert loaded is not None
    loaded.context["order"]["id"] = "hacked"
    loaded.metadata["source"] = "hacked"
    loaded.status = ExecutionStatus.COMPLETED
    store.list_executions()[0].context.clear()

    again = store.get_execution(stored.id)
    assert again is not None
    assert again.context == {"order": {"id": "A-1", "total": 10}}
    assert again.metadata == {"source": "api"}
    assert again.status is ExecutionStatus.PENDING


@pytest.mark.parametrize("status", list(ExecutionStatus))
def test_every_execution_field_round_trips(store: Store, status: ExecutionStatus) -> None:
    parent = create(store)
    original = fully_populated(status, parent.id)
    assert original.model_fields_set == set(Execution.model_fields), "set every field"

    created, _ = store.create_execution(original, now=T0)
    loaded = store.get_execution(original.id)

    assert loaded is not None
    assert created.model_dump() == original.model_dump()
    assert loaded.model_dump() == original.model_dump()
    assert loaded.status is status
    assert loaded.wait_kind is WaitKind.RETRY
    assert isinstance(loaded.error, ErrorInfo) and isinstance(loaded.cancellation, Cancellation)
    assert_all_aware_utc(loaded)


# -- save_execution ----------------------------------------------------------------------------


def test_save_bumps_the_version_to_expected_plus_one(store: Store) -> None:
    stored = create(store)
    stored.status = ExecutionStatus.RUNNING
    stored.context["validated"] = {"total": 10}

    saved = store.save_execution(stored, expected_version=0)
    loaded = store.get_execution(stored.id)

    assert saved.version == 1
    assert loaded is not None
    assert loaded.version == 1
    assert loaded.status is ExecutionStatus.RUNNING
    assert loaded.context["validated"] == {"total": 10}
    resaved = store.save_execution(loaded, expected_version=1)
    assert resaved.version == 2


def test_save_returns_a_copy(store: Store) -> None:
    stored = create(store)
    saved = store.save_execution(stored, expected_version=0)

    saved.context["order"]["total"] = -1
    stored.context["order"]["total"] = -2

    loaded = store.get_execution(stored.id)
    assert loaded is not None and loaded.context["order"]["total"] == 10


def test_stale_save_raises_version_conflict_and_writes_neither_row_nor_events(
    store: Store,
) -> None:
    stored = create(store)
    fresh = stored.model_copy(deep=True)
    fresh.status = ExecutionStatus.RUNNING
    store.save_execution(
        fresh, expected_version=0, events=[make_event(stored.id, EventType.EXECUTION_STARTED)]
    )
    stale = stored.model_copy(deep=True)
    stale.status = ExecutionStatus.CANCELLED
    stale.context["cancelled"] = True

    with pytest.raises(VersionConflictError) as caught:
        store.save_execution(
            stale, expected_version=0, events=[make_event(stored.id, EventType.EXECUTION_CANCELLED)]
        )

    assert caught.value.code == ErrorCode.VERSION_CONFLICT
    loaded = store.get_execution(stored.id)
    assert loaded is not None
    assert loaded.status is ExecutionStatus.RUNNING
    assert "cancelled" not in loaded.context
    assert loaded.version == 1
    assert event_types(store, stored.id) == ["execution.started"]


def test_saving_an_unknown_execution_raises_version_conflict(store: Store) -> None:
    ghost = make_execution()
    with pytest.raises(VersionConflictError):
        store.save_execution(ghost, expected_version=0)
    assert store.get_execution(ghost.id) is None


def test_eight_concurrent_saves_from_one_version_have_exactly_one_winner(store: Store) -> None:
    stored = create(store)

    def save(i: int) -> Execution:
        mine = stored.model_copy(deep=True)
        mine.context["winner"] = i
        return store.save_execution(
            mine,
            expected_version=0,
            events=[make_event(stored.id, EventType.STEP_COMPLETED, data={"writer": i})],
        )

    results = race(8, save)

    wins = [r for r in results if isinstance(r, Execution)]
    conflicts = [r for r in results if isinstance(r, VersionConflictError)]
    assert len(wins) == 1 and len(conflicts) == 7, results
    winner = wins[0].context["winner"]
    loaded = store.get_execution(stored.id)
    assert loaded is not None
    assert loaded.version == 1 and loaded.context["winner"] == winner
    assert [e.data for e in store.list_events(stored.id)] == [{"writer": winner}]


# -- history -----------------------------------------------------------------------------------


def test_events_saved_with_the_execution_are_listed_oldest_first(store: Store) -> None:
    stored = create(store)
    store.save_execution(
        stored,
        expected_version=0,
        events=[
            make_event(stored.id, EventType.EXECUTION_STARTED, at=at(1)),
            make_event(stored.id, EventType.STEP_STARTED, at=at(2), step_id="validate"),
        ],
    )
    loaded = store.get_execution(stored.id)
    assert loaded is not None
    store.save_execution(
        loaded,
        expected_version=1,
        events=[make_event(stored.id, EventType.STEP_COMPLETED, at=at(3), step_id="validate")],
    )

    assert event_types(store, stored.id) == [
        "execution.started",
        "step.started",
        "step.completed",
    ]


def test_events_with_the_same_instant_keep_insertion_order(store: Store) -> None:
    stored = create(store)
    names = [f"e{i}" for i in range(12)]
    store.append_events([make_event(stored.id, data={"name": n}, at=at(5)) for n in names[:6]])
    store.append_events([make_event(stored.id, data={"name": n}, at=at(5)) for n in names[6:]])

    assert [e.data["name"] for e in store.list_events(stored.id)] == names


def test_every_event_field_round_trips(store: Store) -> None:
    stored = create(store)
    event = HistoryEvent(
        execution_id=stored.id,
        type=EventType.STEP_COMPLETED,
        at=at(3.25),
        step_id="charge-payment",
        handler_type="charge-card",
        outcome="failure",
        attempt=2,
        started_at=at(3),
        finished_at=at(3.25),
        duration_ms=250.5,
        error=ErrorInfo(
            code="CARD_DECLINED",
            message="card declined",
            step_id="charge-payment",
            details={"status": 402, "retryable": False},
        ),
        data={"wake_at": at(10).isoformat(), "nested": {"list": [1, "two", None]}},
    )

    store.append_events([event])
    [loaded] = store.list_events(stored.id)

    assert loaded.model_dump() == event.model_dump()
    assert loaded.type is EventType.STEP_COMPLETED
    assert isinstance(loaded.error, ErrorInfo)
    assert_all_aware_utc(loaded)


def test_append_events_adds_to_history_of_each_execution(store: Store) -> None:
    first = create(store)
    second = create(store)
    store.append_events([make_event(first.id, EventType.EXECUTION_CREATED)])

    store.append_events(
        [
            make_event(second.id, EventType.IDEMPOTENCY_HIT, at=at(1)),
            make_event(first.id, EventType.IDEMPOTENCY_HIT, at=at(2)),
        ]
    )

    assert event_types(store, first.id) == ["execution.created", "idempotency.hit"]
    assert event_types(store, second.id) == ["idempotency.hit"]
    assert store.list_events("no-such-execution") == []


def test_mutating_returned_events_changes_nothing_stored(store: Store) -> None:
    stored = create(store)
    store.append_events([make_event(stored.id, data={"n": 1})])

    store.list_events(stored.id)[0].data["n"] = 99

    assert store.list_events(stored.id)[0].data == {"n": 1}


# -- list_children -----------------------------------------------------------------------------


def test_list_children_returns_only_that_parents_children_oldest_first(store: Store) -> None:
    parent = create(store)
    other_parent = create(store)
    later = create(store, parent_execution_id=parent.id, created_at=at(20))
    earliest = create(store, parent_execution_id=parent.id, created_at=at(5))
    tie_b = create(store, id="child-b", parent_execution_id=parent.id, created_at=at(10))
    tie_a = create(store, id="child-a", parent_execution_id=parent.id, created_at=at(10))
    create(store, parent_execution_id=other_parent.id)

    children = store.list_children(parent.id)

    assert [c.id for c in children] == [earliest.id, tie_a.id, tie_b.id, later.id]
    assert store.list_children(earliest.id) == []
    assert store.list_children("no-such-execution") == []


@pytest.mark.parametrize("page_size", [1, 2, 3, 5])
def test_children_page_by_cursor_in_order_and_a_stranger_cursor_gives_nothing(
    store: Store, page_size: int
) -> None:
    parent, other_parent = create(store), create(store)
    children = [
        create(store, id=f"child-{i}", parent_execution_id=parent.id, created_at=at(i // 2))
        for i in range(5)  # ties two by two: ordered by id within a time
    ]
    stranger = create(store, parent_execution_id=other_parent.id, created_at=at(0))

    seen: list[str] = []
    after: str | None = None
    while page := store.list_children(parent.id, limit=page_size, after=after):
        assert len(page) <= page_size
        seen += [c.id for c in page]
        after = page[-1].id

    assert seen == [c.id for c in children]
    assert store.list_children(parent.id, after=stranger.id) == []
    assert store.list_children(parent.id, after="no-such-execution") == []


# -- find_due_wakes / claim_due_wakes ----------------------------------------------------------


def test_find_due_wakes_returns_waiting_executions_due_by_now_earliest_first(
    store: Store,
) -> None:
    waiting = ExecutionStatus.WAITING
    due_late = create(store, status=waiting, wake_at=at(50))
    due_now = create(store, status=waiting, wake_at=at(100))
    due_early = create(store, status=waiting, wake_at=at(10))
    create(store, status=waiting, wake_at=at(101))  # not yet
    create(store, status=waiting, wake_at=None, wait_kind=WaitKind.SIGNAL)  # waits for resume
    create(store, status=ExecutionStatus.RUNNING, wake_at=at(10))
    create(store, status=ExecutionStatus.COMPLETED, wake_at=at(10))

    due = store.find_due_wakes(at(100))

    assert [e.id for e in due] == [due_early.id, due_late.id, due_now.id]
    assert [e.id for e in store.find_due_wakes(at(100), limit=2)] == [due_early.id, due_late.id]
    assert store.find_due_wakes(at(9)) == []


def test_find_due_wakes_is_read_only(store: Store) -> None:
    due = create(store, status=ExecutionStatus.WAITING, wake_at=at(10))

    store.find_due_wakes(at(100))

    assert [e.id for e in store.find_due_wakes(at(100))] == [due.id]
    loaded = store.get_execution(due.id)
    assert loaded is not None and loaded.model_dump() == due.model_dump()


def test_claim_due_wakes_hands_each_execution_out_once_until_the_claim_expires(
    store: Store,
) -> None:
    due = create(store, status=ExecutionStatus.WAITING, wake_at=at(10))
    claim_until = at(160)

    [claimed] = store.claim_due_wakes(at(100), 10, claim_until)

    assert claimed.id == due.id
    assert claimed.wake_at == at(10)  # returned as it was before the claim
    loaded = store.get_execution(due.id)
    assert loaded is not None
    assert loaded.wake_at == claim_until
    assert loaded.version == due.version
    assert store.claim_due_wakes(at(100), 10, at(200)) == []
    assert [e.id for e in store.claim_due_wakes(claim_until, 10, at(300))] == [due.id]


def test_concurrent_claimers_claim_each_due_wake_exactly_once(store: Store) -> None:
    due = {create(store, status=ExecutionStatus.WAITING, wake_at=at(i)).id for i in range(24)}

    results = race(8, lambda _: store.claim_due_wakes(at(100), 5, at(1000)))

    batches = [r for r in results if isinstance(r, list)]
    assert len(batches) == 8, results
    claimed = [e.id for batch in batches for e in batch]
    assert sorted(claimed) == sorted(due)


# -- find_timed_out ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", LIVE_STATUSES)
def test_find_timed_out_finds_live_executions_past_their_deadline(
    store: Store, status: ExecutionStatus
) -> None:
    passed = create(store, status=status, deadline_at=at(100))
    create(store, status=status, deadline_at=at(101))

    assert [e.id for e in store.find_timed_out(at(100))] == [passed.id]


def test_find_timed_out_finds_waits_past_their_wait_deadline(store: Store) -> None:
    waiting = create(store, status=ExecutionStatus.WAITING, wait_deadline_at=at(50))
    # a wait deadline left on an execution that is no longer waiting does not count
    create(store, status=ExecutionStatus.RUNNING, wait_deadline_at=at(50))
    create(store, status=ExecutionStatus.WAITING, wait_deadline_at=at(150))

    assert [e.id for e in store.find_timed_out(at(100))] == [waiting.id]


@pytest.mark.parametrize("status", TERMINAL_STATUSES)
def test_find_timed_out_ignores_finished_executions(store: Store, status: ExecutionStatus) -> None:
    create(store, status=status, deadline_at=at(10), wait_deadline_at=at(10))
    assert store.find_timed_out(at(100)) == []


def test_find_timed_out_honours_limit(store: Store) -> None:
    for i in range(5):
        create(store, status=ExecutionStatus.RUNNING, deadline_at=at(i), created_at=at(i))

    found = store.find_timed_out(at(100), limit=3)

    assert len(found) == 3
    assert all(e.deadline_at is not None and e.deadline_at <= at(100) for e in found)


# -- claim_stalled -----------------------------------------------------------------------------


def test_claim_stalled_hands_out_expired_leases_of_pending_and_running_once(
    store: Store,
) -> None:
    pending = create(store, status=ExecutionStatus.PENDING, lease_expires_at=at(10))
    running = create(store, status=ExecutionStatus.RUNNING, lease_expires_at=at(20))
    create(store, status=ExecutionStatus.RUNNING, lease_expires_at=at(200))  # still leased
    create(store, status=ExecutionStatus.WAITING, lease_expires_at=at(10))
    create(store, status=ExecutionStatus.COMPLETED, lease_expires_at=at(10))

    claimed = store.claim_stalled(at(100), 10, at(400))

    assert [e.id for e in claimed] == [pending.id, running.id]
    assert [e.lease_expires_at for e in claimed] == [at(10), at(20)]
    reloaded = store.get_execution(running.id)
    assert reloaded is not None
    assert reloaded.lease_expires_at == at(400)
    assert reloaded.version == running.version
    assert store.claim_stalled(at(100), 10, at(500)) == []


def test_extend_lease_moves_a_live_executions_lease_at_its_version_only(store: Store) -> None:
    running = create(store, status=ExecutionStatus.RUNNING, lease_expires_at=at(10))
    waiting = create(store, status=ExecutionStatus.WAITING, lease_expires_at=None)

    assert store.extend_lease(running.id, expected_version=running.version, until=at(300))
    assert not store.extend_lease(running.id, expected_version=running.version + 1, until=at(900))
    assert not store.extend_lease(waiting.id, expected_version=waiting.version, until=at(900))
    assert not store.extend_lease("no-such-execution", expected_version=0, until=at(900))

    reloaded = store.get_execution(running.id)
    assert reloaded is not None
    assert reloaded.lease_expires_at == at(300)
    assert reloaded.version == running.version  # a heartbeat is not a step
    assert store.get_execution(waiting.id) == waiting
    assert store.claim_stalled(at(100), 10, at(500)) == []  # no longer presumed stalled


# -- delete_finished_before --------------------------------------------------------------------


def test_delete_finished_before_removes_old_finished_executions_and_their_history(
    store: Store,
) -> None:
    old = [
        create(store, status=status, finished_at=at(10 + i))
        for i, status in enumerate(TERMINAL_STATUSES * 2)
    ]
    for execution in old:
        store.append_events([make_event(execution.id, EventType.EXECUTION_COMPLETED)])
    at_cutoff = create(store, status=ExecutionStatus.COMPLETED, finished_at=at(100))
    live = create(store, status=ExecutionStatus.RUNNING, finished_at=at(10))

    deleted = store.delete_finished_before(at(100), batch_size=4)

    assert deleted == len(old)
    assert all(store.get_execution(e.id) is None for e in old)
    assert all(store.list_events(e.id) == [] for e in old)
    remaining = {e.id for e in store.list_executions()}
    assert remaining == {at_cutoff.id, live.id}
    assert store.delete_finished_before(at(100)) == 0


def test_idempotency_key_of_a_deleted_execution_is_free_again(store: Store) -> None:
    first = keyed(status=ExecutionStatus.COMPLETED, finished_at=at(1), expires_at=at(10**6))
    store.create_execution(first, now=T0)
    store.delete_finished_before(at(2))

    second = keyed(expires_at=at(10**6))
    stored, created = store.create_execution(second, now=at(3))

    assert created is True and stored.id == second.id


# -- list_executions ---------------------------------------------------------------------------


def test_list_executions_filters_by_status_flow_and_tenant(store: Store) -> None:
    a = create(store, status=ExecutionStatus.RUNNING, flow_id="orders", tenant_id="t1")
    b = create(store, status=ExecutionStatus.WAITING, flow_id="orders", tenant_id="t2")
    c = create(store, status=ExecutionStatus.RUNNING, flow_id="refunds", tenant_id="t1")
    d = create(store, status=ExecutionStatus.RUNNING, flow_id="orders", tenant_id=None)

    def ids(**filters: Any) -> set[str]:
        return {e.id for e in store.list_executions(**filters)}

    assert ids() == {a.id, b.id, c.id, d.id}
    assert ids(status=ExecutionStatus.RUNNING) == {a.id, c.id, d.id}
    assert ids(status="waiting") == {b.id}
    assert ids(flow_id="orders") == {a.id, b.id, d.id}
    assert ids(tenant_id="t1") == {a.id, c.id}
    assert ids(status="running", flow_id="orders", tenant_id="t1") == {a.id}
    assert ids(status="completed") == set()


def test_list_executions_is_ordered_by_creation_time_then_id(store: Store) -> None:
    third = create(store, created_at=at(30))
    first = create(store, created_at=at(10))
    tie_b = create(store, id="tie-b", created_at=at(20))
    tie_a = create(store, id="tie-a", created_at=at(20))

    listed = store.list_executions()

    assert [e.id for e in listed] == [first.id, tie_a.id, tie_b.id, third.id]
    assert [e.id for e in store.list_executions(limit=2)] == [first.id, tie_a.id]


@pytest.mark.parametrize("page_size", [1, 3, 4, 10])
def test_keyset_pages_do_not_overlap_and_cover_everything(store: Store, page_size: int) -> None:
    made = [create(store, id=f"x-{i:02d}", created_at=at(i // 3)) for i in range(10)]
    expected = [e.id for e in sorted(made, key=lambda e: (e.created_at, e.id))]

    seen: list[str] = []
    after: str | None = None
    for _ in range(20):
        page = store.list_executions(limit=page_size, after=after)
        if not page:
            break
        assert len(page) <= page_size
        seen += [e.id for e in page]
        after = page[-1].id

    assert seen == expected


def test_keyset_paging_combines_with_filters(store: Store) -> None:
    running = [
        create(store, status=ExecutionStatus.RUNNING, created_at=at(i)).id for i in range(0, 10, 2)
    ]
    for i in range(1, 10, 2):
        create(store, status=ExecutionStatus.WAITING, created_at=at(i))

    first_page = store.list_executions(status="running", limit=3)
    second_page = store.list_executions(status="running", limit=3, after=first_page[-1].id)

    assert [e.id for e in first_page + second_page] == running


def test_a_cursor_naming_no_execution_is_invalid_argument(store: Store) -> None:
    last = create(store, created_at=at(10))

    with pytest.raises(ExecutionError) as raised:
        store.list_executions(after="no-such-execution")
    with pytest.raises(ExecutionError):
        store.list_executions(after="no-such-execution", status="running", metadata={"a": "b"})

    assert raised.value.code == ErrorCode.INVALID_ARGUMENT
    assert store.list_executions(after=last.id) == []  # the end of the list, not an error


# -- list_executions: creation time and metadata -------------------------------------------------


def test_created_after_is_inclusive_and_created_before_exclusive(store: Store) -> None:
    made = {seconds: create(store, created_at=at(seconds)).id for seconds in (0, 10, 20, 30)}

    def seconds(**filters: Any) -> list[int]:
        by_id = {execution_id: s for s, execution_id in made.items()}
        return [by_id[e.id] for e in store.list_executions(**filters)]

    assert seconds(created_after=at(10)) == [10, 20, 30]
    assert seconds(created_before=at(30)) == [0, 10, 20]
    assert seconds(created_after=at(10), created_before=at(30)) == [10, 20]
    assert seconds(created_after=at(10), created_before=at(10)) == []
    assert seconds(created_after=at(10.5), created_before=at(20.5)) == [20]
    assert seconds(created_after=at(31)) == []
    # The same instants written in another zone.
    minus_five = timezone(timedelta(hours=-5))
    assert seconds(
        created_after=at(10).astimezone(minus_five), created_before=at(30).astimezone(minus_five)
    ) == [10, 20]


METADATA_CASES: dict[str, dict[str, Any]] = {
    "text": {"region": "eu", "priority": "42", "vip": "true", "team.name": "a\"b'c"},
    "number": {"region": "us", "priority": 42, "ratio": 1.5, "weight": 2.0},
    "boolean": {"region": "eu", "vip": True, "trial": False},
    "one": {"vip": 1, "priority": 42.0, "ratio": "1.50"},
    "null": {"note": None, "region": "EU"},
    "empty": {},
}


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"region": "eu"}, {"text", "boolean"}),
        ({"region": "EU"}, {"null"}),  # text compares exactly
        ({"region": '"eu"'}, set()),  # no JSON quoting of text values
        ({"priority": "42"}, {"text", "number"}),  # 42.0 is written "42.0"
        ({"priority": "42.0"}, {"one"}),
        ({"ratio": "1.5"}, {"number"}),
        ({"ratio": "1.50"}, {"one"}),
        ({"weight": "2.0"}, {"number"}),
        ({"weight": "2"}, set()),
        ({"vip": "true"}, {"text", "boolean"}),
        ({"vip": "1"}, {"one"}),  # a number 1 is not true, nor true 1
        ({"vip": "True"}, set()),
        ({"trial": "false"}, {"boolean"}),
        ({"trial": "0"}, set()),
        ({"note": "null"}, {"null"}),
        ({"team.name": "a\"b'c"}, {"text"}),  # any key, any characters
        ({"missing": "eu"}, set()),
        ({"missing": "null"}, set()),  # a missing key is not a null value
        ({"region": "eu", "vip": "true"}, {"text", "boolean"}),  # every key must match
        ({"region": "eu", "priority": "42"}, {"text"}),
        ({"region": "us", "vip": "true"}, set()),
        ({}, set(METADATA_CASES)),
    ],
    ids=lambda value: repr(sorted(value) if isinstance(value, set) else value),  # same on every run
)
def test_metadata_filters_compare_text_and_json_text(
    store: Store, metadata: dict[str, str], expected: set[str]
) -> None:
    ids = {
        create(store, id=f"meta-{name}", metadata=values).id: name
        for name, values in METADATA_CASES.items()
    }

    found = {ids[e.id] for e in store.list_executions(metadata=metadata)}

    assert found == expected


def test_metadata_and_creation_filters_combine_with_status_tenant_and_keyset_paging(
    store: Store,
) -> None:
    expected: list[str] = []
    for i in range(40):
        running, acme, eu, seconds = i % 2 == 1, i % 3 != 0, i % 4 != 3, i // 2
        create(
            store,
            id=f"combo-{i:02d}",
            created_at=at(seconds),  # two per instant: ties broken by id
            status=ExecutionStatus.RUNNING if running else ExecutionStatus.WAITING,
            tenant_id="acme" if acme else "globex",
            metadata={"region": "eu" if eu else "us", "n": i},
        )
        if running and acme and eu and 2 <= seconds < 17:
            expected.append(f"combo-{i:02d}")
    filters: dict[str, Any] = {
        "status": "running",
        "tenant_id": "acme",
        "metadata": {"region": "eu"},
        "created_after": at(2),
        "created_before": at(17),
    }

    seen: list[str] = []
    after: str | None = None
    for _ in range(20):
        page = store.list_executions(limit=2, after=after, **filters)
        if not page:
            break
        assert len(page) <= 2
        seen += [e.id for e in page]
        after = page[-1].id

    assert expected == ["combo-05", "combo-13", "combo-17", "combo-25", "combo-29"]
    assert seen == expected
    assert [e.id for e in store.list_executions(**filters)] == expected
    assert [e.id for e in store.list_executions(limit=2, after="combo-06", **filters)] == [
        "combo-13",
        "combo-17",
    ]
    assert [e.id for e in store.list_executions(metadata={"n": "7"}, status="running")] == [
        "combo-07"
    ]
    assert store.list_executions(metadata={"n": "7", "region": "eu"}) == []
