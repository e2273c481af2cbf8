"""The inbox contract (`store.transaction()`): emitted events stored once per key and tenant,
listed oldest first in keyset pages, dispatched once; and the waits of `wait_for_event` steps,
each taken by exactly one taker. Run against every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from flowmonkey_celery import ExecutionStatus, Store
from flowmonkey_celery.core.inbox import Event, EventWait
from tests.contract.test_store_contract import T0, at, create, race


class Boom(Exception):
    pass


def make_event(event_type: str = "order.paid", **fields: Any) -> Event:
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "type": event_type,
        "payload": {"order": {"id": "A-1", "total": 12.5, "tags": ["new", "ünïcode"]}},
        "created_at": T0,
    }
    return Event(**{**values, **fields})


def make_wait(execution_id: str = "exec-1", sequence: int = 3, **fields: Any) -> EventWait:
    values: dict[str, Any] = {
        "execution_id": execution_id,
        "step_id": "wait-for-payment",
        "sequence": sequence,
        "event_type": "order.paid",
        "match": {"order.id": "A-1", "order.total": 12.5},
        "since": at(-60),
        "created_at": T0,
    }
    return EventWait(**{**values, **fields})


def insert(store: Store, *events: Event) -> list[bool]:
    with store.transaction() as tx:
        return [tx.insert_event(event) for event in events]


def get(store: Store, event_id: str) -> Event | None:
    with store.transaction() as tx:
        return tx.get_event(event_id)


def by_key(store: Store, key: str, tenant_id: str | None) -> Event | None:
    with store.transaction() as tx:
        return tx.get_event_by_key(key, tenant_id)


def listed(store: Store, **filters: Any) -> list[str]:
    with store.transaction() as tx:
        return [e.id for e in tx.list_events(**filters)]


def insert_waits(store: Store, *waits: EventWait) -> None:
    with store.transaction() as tx:
        for wait in waits:
            tx.insert_event_wait(wait)


def waits_for(store: Store, event_type: str = "order.paid", **options: Any) -> list[EventWait]:
    with store.transaction() as tx:
        return tx.find_event_waits(event_type, **options)


# -- storing events ------------------------------------------------------------------------------


def test_an_event_reads_back_with_every_field_in_aware_utc(store: Store) -> None:
    event = make_event(
        key="pay-A-1",
        tenant_id="acme",
        source="shop-api",
        created_at=datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1))),
    )

    assert insert(store, event) == [True]

    stored = get(store, event.id)
    assert stored == event
    assert stored is not None
    assert stored.created_at == T0.replace(microsecond=123456)
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.dispatched_at is None
    assert by_key(store, "pay-A-1", "acme") == event


@pytest.mark.parametrize(
    "payload",
    [None, [], {}, [1, "two", {"three": 3.0}], "text", 42, 0.5, True, {"a": None}],
    ids=repr,
)
def test_any_json_payload_reads_back(store: Store, payload: Any) -> None:
    event = make_event(payload=payload)
    insert(store, event)

    stored = get(store, event.id)

    assert stored is not None and stored.payload == payload
    assert type(stored.payload) is type(payload)


def test_an_unknown_event_or_key_is_none(store: Store) -> None:
    insert(store, make_event(key="k", tenant_id="acme"))

    assert get(store, "nope") is None
    assert by_key(store, "nope", None) is None
    assert by_key(store, "k", "other") is None
    assert by_key(store, "k", None) is None


def test_a_key_is_stored_once_per_tenant(store: Store) -> None:
    first = make_event(key="pay-A-1", tenant_id="acme")
    again = make_event(key="pay-A-1", tenant_id="acme", payload={"second": True}, created_at=at(5))

    assert insert(store, first) == [True]
    assert insert(store, again) == [False]

    assert get(store, again.id) is None
    assert by_key(store, "pay-A-1", "acme") == first
    assert listed(store) == [first.id]


def test_a_key_without_a_tenant_is_stored_once_too(store: Store) -> None:
    first, again = make_event(key="pay-A-1"), make_event(key="pay-A-1")

    assert insert(store, first, again) == [True, False]

    assert by_key(store, "pay-A-1", None) == first
    assert get(store, again.id) is None


def test_one_key_in_different_tenants_is_different_events(store: Store) -> None:
    scopes: list[tuple[str | None, str]] = [
        (None, "k"),
        ("", "k"),  # an empty tenant is not "no tenant"
        ("acme", "k"),
        ("globex", "k"),
        # Would collide if tenant and key were only joined by a separator.
        ("a:b", "c"),
        ("a", "b:c"),
        ("-", "k"),
    ]
    events = [make_event(key=key, tenant_id=tenant) for tenant, key in scopes]

    assert insert(store, *events) == [True] * len(events)

    for (tenant, key), event in zip(scopes, events, strict=True):
        assert by_key(store, key, tenant) == event
    assert insert(store, *[make_event(key=k, tenant_id=t) for t, k in scopes]) == [False] * len(
        scopes
    )


def test_events_without_a_key_never_collide(store: Store) -> None:
    events = [make_event(tenant_id=tenant) for tenant in (None, None, "acme", "acme")]

    assert insert(store, *events) == [True] * 4

    assert len(listed(store)) == 4


def test_an_existing_id_is_not_stored_again(store: Store) -> None:
    event = make_event(key="first")
    insert(store, event)

    same_id = event.model_copy(update={"key": "another", "type": "other", "payload": 1})
    assert insert(store, same_id) == [False]
    assert insert(store, event.model_copy(update={"key": None})) == [False]

    assert get(store, event.id) == event
    assert by_key(store, "another", None) is None


def test_concurrent_emits_of_one_key_store_exactly_one(store: Store) -> None:
    events = [make_event(key="pay-A-1", tenant_id="acme", payload={"n": i}) for i in range(8)]

    def emit(index: int) -> bool:
        with store.transaction() as tx:
            return tx.insert_event(events[index])

    results = race(8, emit)

    assert sorted(results, key=str) == [False] * 7 + [True]
    winner = events[results.index(True)]
    assert by_key(store, "pay-A-1", "acme") == winner
    assert listed(store) == [winner.id]


def test_concurrent_emits_of_one_key_without_a_tenant_store_exactly_one(store: Store) -> None:
    events = [make_event(key="pay-A-1") for _ in range(8)]

    def emit(index: int) -> bool:
        with store.transaction() as tx:
            return tx.insert_event(events[index])

    results = race(8, emit)

    assert sorted(results, key=str) == [False] * 7 + [True]
    assert by_key(store, "pay-A-1", None) == events[results.index(True)]


def test_an_event_inserted_by_a_failed_transaction_is_gone_and_its_key_free(store: Store) -> None:
    lost = make_event(key="pay-A-1")
    with pytest.raises(Boom), store.transaction() as tx:
        assert tx.insert_event(lost) is True
        raise Boom

    assert get(store, lost.id) is None
    assert by_key(store, "pay-A-1", None) is None
    retried = make_event(key="pay-A-1")
    assert insert(store, retried) == [True]
    assert by_key(store, "pay-A-1", None) == retried


def test_an_event_is_visible_to_its_own_transaction(store: Store) -> None:
    event = make_event(key="k")
    with store.transaction() as tx:
        tx.insert_event(event)
        assert tx.get_event(event.id) == event
        assert tx.get_event_by_key("k", None) == event
        assert tx.insert_event(make_event(key="k")) is False


# -- listing events ------------------------------------------------------------------------------


def test_events_are_listed_oldest_first_ties_by_id(store: Store) -> None:
    late = make_event(id="a-late", created_at=at(30))
    tie_b = make_event(id="b-tie", created_at=at(10))
    tie_a = make_event(id="a-tie", created_at=at(10))
    early = make_event(id="z-early", created_at=at(0))
    insert(store, late, tie_b, tie_a, early)

    assert listed(store) == ["z-early", "a-tie", "b-tie", "a-late"]


def test_keyset_pages_cover_every_event_once(store: Store) -> None:
    # Some share a creation time: the id orders them, and a page may end inside the tie.
    events = [make_event(id=f"e{i:02d}", created_at=at(i // 3)) for i in range(11)]
    insert(store, *reversed(events))

    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = listed(store, after=after, limit=4)
        if not page:
            break
        pages.append(page)
        after = page[-1]

    assert [len(p) for p in pages] == [4, 4, 3]
    assert [i for page in pages for i in page] == [e.id for e in events]


def test_listing_filters_by_type_tenant_and_since_and_pages_within_them(store: Store) -> None:
    rows = [
        ("t0", "order.paid", "acme", 0),
        ("t1", "order.paid", "globex", 1),
        ("t2", "order.shipped", "acme", 2),
        ("t3", "order.paid", None, 3),
        ("t4", "order.paid", "acme", 4),
        ("t5", "order.paid", "acme", 5),
    ]
    insert(
        store,
        *[make_event(t, id=i, tenant_id=tenant, created_at=at(s)) for i, t, tenant, s in rows],
    )

    assert listed(store, event_type="order.paid") == ["t0", "t1", "t3", "t4", "t5"]
    assert listed(store, tenant_id="acme") == ["t0", "t2", "t4", "t5"]
    assert listed(store, since=at(3)) == ["t3", "t4", "t5"]  # `since` is inclusive
    assert listed(store, event_type="order.paid", tenant_id="acme", since=at(1)) == ["t4", "t5"]
    assert listed(store, event_type="order.paid", tenant_id="acme", limit=2) == ["t0", "t4"]
    assert listed(store, event_type="order.paid", tenant_id="acme", after="t4") == ["t5"]
    # The cursor may be any event, even one the filters leave out.
    assert listed(store, event_type="order.paid", after="t2") == ["t3", "t4", "t5"]
    assert listed(store, event_type="order.cancelled") == []


def test_since_in_another_zone_means_the_same_instant(store: Store) -> None:
    insert(store, make_event(id="before", created_at=at(-1)), make_event(id="at", created_at=T0))

    assert listed(store, since=T0.astimezone(timezone(timedelta(hours=-5)))) == ["at"]


def test_a_cursor_naming_no_event_gives_an_empty_page(store: Store) -> None:
    insert(store, make_event())

    assert listed(store, after="nope") == []


def test_an_empty_inbox_lists_nothing(store: Store) -> None:
    assert listed(store) == []
    with store.transaction() as tx:
        assert tx.find_undispatched_events(at(3600), 10) == []


# -- dispatching ---------------------------------------------------------------------------------


def test_an_event_is_marked_dispatched_once(store: Store) -> None:
    event = make_event()
    insert(store, event)

    with store.transaction() as tx:
        assert tx.mark_event_dispatched(event.id, at(1)) is True
    with store.transaction() as tx:
        assert tx.mark_event_dispatched(event.id, at(2)) is False
        assert tx.mark_event_dispatched("nope", at(2)) is False

    stored = get(store, event.id)
    assert stored is not None and stored.dispatched_at == at(1)
    assert stored.dispatched_at.utcoffset() == timedelta(0)


def test_a_naive_dispatch_time_is_refused_and_nothing_marked(store: Store) -> None:
    event = make_event()
    insert(store, event)

    with pytest.raises(ValueError, match="naive"), store.transaction() as tx:
        tx.mark_event_dispatched(event.id, datetime(2026, 1, 5, 9, 0, 1))

    stored = get(store, event.id)
    assert stored is not None and stored.dispatched_at is None
    with store.transaction() as tx:
        assert tx.mark_event_dispatched(event.id, at(1)) is True


def test_concurrent_marks_of_one_event_have_exactly_one_winner(store: Store) -> None:
    event = make_event()
    insert(store, event)

    def mark(index: int) -> bool:
        with store.transaction() as tx:
            return tx.mark_event_dispatched(event.id, at(index))

    assert sorted(race(8, mark), key=str) == [False] * 7 + [True]


def test_a_mark_in_a_failed_transaction_is_undone(store: Store) -> None:
    event = make_event()
    insert(store, event)
    with pytest.raises(Boom), store.transaction() as tx:
        tx.mark_event_dispatched(event.id, at(1))
        raise Boom

    stored = get(store, event.id)
    assert stored is not None and stored.dispatched_at is None
    with store.transaction() as tx:
        assert tx.mark_event_dispatched(event.id, at(2)) is True


def test_undispatched_events_created_before_the_cutoff_are_found_oldest_first(
    store: Store,
) -> None:
    done, old_b, old_a, recent = (
        make_event(id="done", created_at=at(0)),
        make_event(id="old-b", created_at=at(5)),
        make_event(id="old-a", created_at=at(1)),
        make_event(id="recent", created_at=at(10)),
    )
    insert(store, done, old_b, old_a, recent)
    with store.transaction() as tx:
        tx.mark_event_dispatched("done", at(1))

    with store.transaction() as tx:
        found = tx.find_undispatched_events(at(10), 10)  # strictly before: not "recent"
        limited = tx.find_undispatched_events(at(11), 2)

    assert [e.id for e in found] == ["old-a", "old-b"]
    assert found[0] == old_a
    assert [e.id for e in limited] == ["old-a", "old-b"]
    with store.transaction() as tx:
        assert [e.id for e in tx.find_undispatched_events(at(11), 10)] == [
            "old-a",
            "old-b",
            "recent",
        ]


# -- waits ---------------------------------------------------------------------------------------


def test_a_wait_reads_back_with_every_field(store: Store) -> None:
    wait = make_wait(
        tenant_id="acme",
        match={"order.id": 42, "customer": {"tier": "gold"}, "flag": True},
        since=datetime(2026, 1, 5, 3, 59, tzinfo=timezone(timedelta(hours=-5))),
    )
    insert_waits(store, wait)

    (found,) = waits_for(store)

    assert found == wait
    assert found.since.utcoffset() == timedelta(0) and found.created_at.utcoffset() == timedelta(0)


def test_waits_are_found_by_event_type_oldest_first_with_a_limit(store: Store) -> None:
    insert_waits(
        store,
        make_wait("late", created_at=at(20)),
        make_wait("other-type", event_type="order.shipped", created_at=at(0)),
        make_wait("early", created_at=at(0)),
        make_wait("middle", created_at=at(10)),
    )

    assert [w.execution_id for w in waits_for(store)] == ["early", "middle", "late"]
    assert [w.execution_id for w in waits_for(store, limit=2)] == ["early", "middle"]
    assert [w.execution_id for w in waits_for(store, "order.shipped")] == ["other-type"]
    assert waits_for(store, "order.cancelled") == []


def test_waits_page_by_created_at_execution_and_sequence(store: Store) -> None:
    waits = [
        make_wait("e-b", 1, created_at=at(1)),
        make_wait("e-a", 2, created_at=at(1)),
        make_wait("e-a", 1, created_at=at(1)),
        make_wait("e-c", 1, created_at=at(0)),
        make_wait("e-d", 1, created_at=at(2)),
    ]
    with store.transaction() as tx:
        for wait in waits:
            tx.insert_event_wait(wait)
    seen: list[tuple[str, int]] = []
    after = None
    while True:
        with store.transaction() as tx:
            page = tx.find_event_waits("order.paid", limit=2, after=after)
        seen += [(w.execution_id, w.sequence) for w in page]
        if len(page) < 2:
            break
        after = (page[-1].created_at, page[-1].execution_id, page[-1].sequence)
    assert seen == [("e-c", 1), ("e-a", 1), ("e-a", 2), ("e-b", 1), ("e-d", 1)]


def test_a_wait_of_the_same_execution_and_sequence_replaces_the_old_one(store: Store) -> None:
    insert_waits(store, make_wait(step_id="old", match={"a": 1}))

    newer = make_wait(step_id="new", match={"b": 2}, created_at=at(5))
    insert_waits(store, newer)

    assert waits_for(store) == [newer]


def test_a_wait_is_taken_once(store: Store) -> None:
    wait, next_one, elsewhere = make_wait(), make_wait(sequence=4), make_wait("exec-2")
    insert_waits(store, wait, next_one, elsewhere)

    with store.transaction() as tx:
        assert tx.take_event_wait("exec-1", 3) == wait
    with store.transaction() as tx:
        assert tx.take_event_wait("exec-1", 3) is None
        assert tx.take_event_wait("exec-1", 99) is None
        assert tx.take_event_wait("nope", 3) is None

    assert waits_for(store) == [next_one, elsewhere]


def test_eight_concurrent_takers_of_one_wait_have_exactly_one_winner(store: Store) -> None:
    wait = make_wait()
    insert_waits(store, wait)

    def take(_: int) -> EventWait | None:
        with store.transaction() as tx:
            return tx.take_event_wait("exec-1", 3)

    results = race(8, take)

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert [r for r in results if r is not None] == [wait]
    assert waits_for(store) == []


def test_a_take_in_a_failed_transaction_leaves_the_wait(store: Store) -> None:
    wait = make_wait()
    insert_waits(store, wait)
    with pytest.raises(Boom), store.transaction() as tx:
        assert tx.take_event_wait("exec-1", 3) == wait
        raise Boom

    assert waits_for(store) == [wait]


def test_a_wait_inserted_by_a_failed_transaction_is_gone(store: Store) -> None:
    with pytest.raises(Boom), store.transaction() as tx:
        tx.insert_event_wait(make_wait())
        raise Boom

    assert waits_for(store) == []


def test_deleting_an_executions_waits_leaves_the_others(store: Store) -> None:
    kept = make_wait("exec-2")
    insert_waits(store, make_wait(sequence=3), make_wait(sequence=5, event_type="x"), kept)

    with store.transaction() as tx:
        assert tx.delete_event_waits("exec-1") == 2
        assert tx.delete_event_waits("exec-1") == 0
        assert tx.delete_event_waits("nope") == 0

    assert waits_for(store) == [kept]
    assert waits_for(store, "x") == []


def test_purging_finished_executions_removes_their_waits(store: Store) -> None:
    finished = create(store, status=ExecutionStatus.CANCELLED, finished_at=T0)
    live = create(store, status=ExecutionStatus.WAITING)
    insert_waits(store, make_wait(finished.id), make_wait(live.id, created_at=at(1)))

    assert store.delete_finished_before(T0 + timedelta(days=1)) == 1

    assert [w.execution_id for w in waits_for(store)] == [live.id]
    with store.transaction() as tx:
        assert tx.take_event_wait(finished.id, 3) is None


# -- purging -----------------------------------------------------------------------------------


def dispatch(store: Store, *events: Event, when: datetime = T0) -> None:
    with store.transaction() as tx:
        for event in events:
            assert tx.mark_event_dispatched(event.id, when) is True


def test_purging_deletes_dispatched_events_created_before_the_cutoff(store: Store) -> None:
    old_dispatched = [make_event(id=f"old-{i}", created_at=at(i)) for i in range(5)]
    old_keyed = make_event(id="old-keyed", key="pay-A-1", tenant_id="acme", created_at=at(6))
    old_undispatched = make_event(id="old-undispatched", created_at=at(7))
    at_cutoff = make_event(id="at-cutoff", created_at=at(100))
    insert(store, *old_dispatched, old_keyed, old_undispatched, at_cutoff)
    dispatch(store, *old_dispatched, old_keyed, at_cutoff, when=at(200))
    finished = create(store, status=ExecutionStatus.COMPLETED, finished_at=at(1))

    # Counts executions only, in batches of 2 (five, then six dispatched events qualify).
    assert store.delete_finished_before(at(100), batch_size=2) == 1

    assert store.get_execution(finished.id) is None
    assert listed(store) == ["old-undispatched", "at-cutoff"]
    assert all(get(store, e.id) is None for e in [*old_dispatched, old_keyed])
    with store.transaction() as tx:
        assert [e.id for e in tx.find_undispatched_events(at(1000), 10)] == ["old-undispatched"]
    # A purged event's key may be emitted again.
    assert by_key(store, "pay-A-1", "acme") is None
    again = make_event(key="pay-A-1", tenant_id="acme", created_at=at(300))
    assert insert(store, again) == [True]
    assert by_key(store, "pay-A-1", "acme") == again
    assert store.delete_finished_before(at(100)) == 0
    assert listed(store) == ["old-undispatched", "at-cutoff", again.id]


def test_purging_with_nothing_dispatched_keeps_every_event(store: Store) -> None:
    events = [make_event(created_at=at(i)) for i in range(3)]
    insert(store, *events)

    assert store.delete_finished_before(at(1000), batch_size=1) == 0

    assert listed(store) == [e.id for e in events]


def test_waits_never_searched_are_found_oldest_first_until_marked(store: Store) -> None:
    insert_waits(
        store,
        make_wait("late", created_at=at(20)),
        make_wait("early", created_at=at(0)),
        make_wait("searched", created_at=at(5), inbox_checked_at=at(6)),
        make_wait("too-new", created_at=at(30)),  # at the cutoff: not yet
    )

    def unchecked(limit: int = 100) -> list[str]:
        with store.transaction() as tx:
            return [w.execution_id for w in tx.find_unchecked_event_waits(at(30), limit)]

    assert unchecked() == ["early", "late"]
    assert unchecked(limit=1) == ["early"]

    with store.transaction() as tx:
        assert tx.mark_event_wait_checked("early", 3, at(40))
        assert not tx.mark_event_wait_checked("early", 4, at(40))  # another wait: gone
        assert not tx.mark_event_wait_checked("nobody", 3, at(40))
    assert unchecked() == ["late"]
    early = next(w for w in waits_for(store) if w.execution_id == "early")
    assert early.inbox_checked_at == at(40)


def test_a_search_marked_in_a_failed_transaction_is_undone(store: Store) -> None:
    insert_waits(store, make_wait("w", created_at=at(0)))

    with pytest.raises(RuntimeError), store.transaction() as tx:
        assert tx.mark_event_wait_checked("w", 3, at(10))
        raise RuntimeError("rolled back")

    with store.transaction() as tx:
        assert [w.execution_id for w in tx.find_unchecked_event_waits(at(30), 10)] == ["w"]
