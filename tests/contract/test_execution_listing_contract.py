"""The executions list at scale, on every store: lookup by idempotency key, newest-first keyset
paging (both orders), and counts per status that agree with the list whatever the filters
and however the executions got there (created, saved, in a transaction rolled back, deleted
by retention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from flowmonkey_celery import (
    ErrorCode,
    Execution,
    ExecutionError,
    ExecutionStatus,
    Store,
    WaitKind,
)
from tests.contract.test_store_contract import at, create, make_execution

ALL_STATUSES = [s.value for s in ExecutionStatus]


def no_counts(**counts: int) -> dict[str, int]:
    return {**dict.fromkeys(ALL_STATUSES, 0), **counts}


def keyed(store: Store, key: str, **fields: Any) -> Execution:
    return create(
        store,
        idempotency_key=key,
        idempotency_expires_at=datetime(2100, 1, 1, tzinfo=UTC),
        **fields,
    )


# -- idempotency key ---------------------------------------------------------------------------


def test_the_idempotency_key_filter_finds_the_executions_created_with_that_key(
    store: Store,
) -> None:
    mine = keyed(store, "order-1001", flow_id="orders", tenant_id="acme", created_at=at(1))
    other_flow = keyed(store, "order-1001", flow_id="refunds", tenant_id="acme", created_at=at(2))
    other_tenant = keyed(
        store, "order-1001", flow_id="orders", tenant_id="globex", created_at=at(3)
    )
    keyed(store, "order-1002", flow_id="orders", tenant_id="acme", created_at=at(4))
    create(store, flow_id="orders", tenant_id="acme", created_at=at(5))  # no key

    def ids(**filters: Any) -> list[str]:
        return [e.id for e in store.list_executions(**filters)]

    assert ids(idempotency_key="order-1001") == [mine.id, other_flow.id, other_tenant.id]
    assert ids(idempotency_key="order-1001", tenant_id="acme") == [mine.id, other_flow.id]
    assert ids(idempotency_key="order-1001", flow_id="orders", tenant_id="acme") == [mine.id]
    assert ids(idempotency_key="order-1001", newest_first=True) == [
        other_tenant.id,
        other_flow.id,
        mine.id,
    ]
    assert ids(idempotency_key="order-10") == []  # exact, not a prefix
    assert ids(idempotency_key="nobody's") == []


# -- wait kind -----------------------------------------------------------------------------------


def test_the_wait_kind_filter_keeps_the_executions_waiting_in_those_kinds(store: Store) -> None:
    waiting = ExecutionStatus.WAITING
    timer = create(store, status=waiting, wait_kind=WaitKind.TIMER, created_at=at(1))
    signal = create(store, status=waiting, wait_kind=WaitKind.SIGNAL, created_at=at(2))
    event = create(store, status=waiting, wait_kind=WaitKind.EVENT, created_at=at(3))
    create(store, status=ExecutionStatus.RUNNING, created_at=at(4))  # no wait at all

    def ids(*kinds: WaitKind | str, **filters: Any) -> list[str]:
        return [e.id for e in store.list_executions(wait_kinds=kinds, **filters)]

    assert ids(WaitKind.SIGNAL, WaitKind.EVENT) == [signal.id, event.id]
    assert ids("signal", "event", newest_first=True) == [event.id, signal.id]
    assert ids(WaitKind.SIGNAL, WaitKind.EVENT, limit=1, after=signal.id) == [event.id]
    assert ids(WaitKind.TIMER, status=waiting) == [timer.id]
    assert ids() == []  # no kind asked for: nothing waits in none of them


# -- newest first --------------------------------------------------------------------------------


def test_newest_first_orders_by_creation_time_then_id_descending(store: Store) -> None:
    third = create(store, created_at=at(30))
    first = create(store, created_at=at(10))
    tie_b = create(store, id="tie-b", created_at=at(20))
    tie_a = create(store, id="tie-a", created_at=at(20))

    newest = [e.id for e in store.list_executions(newest_first=True)]

    assert newest == [third.id, tie_b.id, tie_a.id, first.id]
    assert [e.id for e in store.list_executions(newest_first=True, limit=2)] == newest[:2]


@pytest.mark.parametrize("newest_first", [False, True], ids=["oldest first", "newest first"])
@pytest.mark.parametrize("page_size", [1, 3, 4, 11])
def test_keyset_pages_in_either_order_cover_everything_once(
    store: Store, page_size: int, newest_first: bool
) -> None:
    # Three per instant: the id breaks ties, on the page boundaries too.
    made = [create(store, id=f"p-{i:02d}", created_at=at(i // 3)) for i in range(10)]
    expected = sorted((e.created_at, e.id) for e in made)
    if newest_first:
        expected.reverse()

    seen: list[str] = []
    after: str | None = None
    for _ in range(20):
        page = store.list_executions(limit=page_size, after=after, newest_first=newest_first)
        if not page:
            break
        assert len(page) <= page_size
        seen += [e.id for e in page]
        after = page[-1].id

    assert seen == [ident for _, ident in expected]


def test_newest_first_paging_combines_with_filters(store: Store) -> None:
    running = [
        create(store, status=ExecutionStatus.RUNNING, tenant_id="acme", created_at=at(i)).id
        for i in range(0, 12, 2)
    ]
    for i in range(1, 12, 2):
        create(store, status=ExecutionStatus.RUNNING, tenant_id="globex", created_at=at(i))

    filters: dict[str, Any] = {"status": "running", "tenant_id": "acme", "newest_first": True}
    first = store.list_executions(limit=4, **filters)
    second = store.list_executions(limit=4, after=first[-1].id, **filters)
    # A cursor of another tenant's execution still marks a position in time.
    from_middle = store.list_executions(limit=2, after=running[3], **filters)

    assert [e.id for e in first + second] == running[::-1]
    assert [e.id for e in from_middle] == [running[2], running[1]]


def test_newest_first_with_a_cursor_naming_no_execution_is_invalid_argument(
    store: Store,
) -> None:
    oldest = create(store, created_at=at(1))
    create(store, created_at=at(2))

    with pytest.raises(ExecutionError) as raised:
        store.list_executions(after="no-such-execution", newest_first=True)

    assert raised.value.code == ErrorCode.INVALID_ARGUMENT
    assert store.list_executions(after=oldest.id, newest_first=True) == []  # the end


# -- counts --------------------------------------------------------------------------------------


def test_an_empty_store_counts_zero_for_every_status(store: Store) -> None:
    assert store.count_executions() == no_counts()
    assert store.count_executions(tenant_id="acme", flow_id="orders") == no_counts()


def populate(store: Store) -> None:
    """Twenty executions over two tenants (and none), two flows, every status, metadata,
    keys, created over twenty seconds."""
    statuses = list(ExecutionStatus)
    for i in range(20):
        fields: dict[str, Any] = {
            "id": f"c-{i:02d}",
            "flow_id": "orders" if i % 3 else "refunds",
            "tenant_id": ["acme", "globex", None][i % 3 if i % 5 else 2],
            "status": statuses[i % len(statuses)],
            "created_at": at(i),
            "metadata": {"region": "eu" if i % 2 else "us", "n": i % 4},
        }
        if i % 4 == 0:
            keyed(store, f"key-{i % 8}", **fields)
        else:
            create(store, **fields)


COUNT_FILTERS: list[dict[str, Any]] = [
    {},
    {"tenant_id": "acme"},
    {"tenant_id": "globex"},
    {"tenant_id": "nobody"},
    {"flow_id": "orders"},
    {"flow_id": "refunds", "tenant_id": "acme"},
    {"created_after": at(5)},
    {"created_before": at(12)},
    {"created_after": at(3), "created_before": at(15), "tenant_id": "acme"},
    {"metadata": {"region": "eu"}},
    {"metadata": {"n": "2", "region": "us"}},
    {"metadata": {"n": "2.0"}},
    {"idempotency_key": "key-0"},
    {"idempotency_key": "key-4", "tenant_id": "globex"},
    {"idempotency_key": "key-3"},
]


def test_counts_per_status_are_what_the_list_finds_with_the_same_filters(store: Store) -> None:
    populate(store)

    for filters in COUNT_FILTERS:
        counts = store.count_executions(**filters)

        listed = {
            status: len(store.list_executions(status=status, limit=1000, **filters))
            for status in ALL_STATUSES
        }
        assert counts == listed, filters
    assert store.count_executions() == no_counts(
        pending=4, running=4, waiting=3, cancelled=3, completed=3, failed=3
    )


def test_counts_follow_every_status_change_and_deletion(store: Store) -> None:
    orders = [create(store, flow_id="orders", tenant_id="acme") for _ in range(3)]
    create(store, flow_id="refunds", tenant_id="globex")
    assert store.count_executions(tenant_id="acme") == no_counts(pending=3)

    running = store.save_execution(
        orders[0].model_copy(update={"status": ExecutionStatus.RUNNING}), expected_version=0
    )
    # A save that keeps the status changes no count.
    running = store.save_execution(
        running.model_copy(update={"step_count": 1}), expected_version=running.version
    )
    done = store.save_execution(
        orders[1].model_copy(update={"status": ExecutionStatus.COMPLETED, "finished_at": at(1)}),
        expected_version=0,
    )
    assert store.count_executions(tenant_id="acme") == no_counts(pending=1, running=1, completed=1)
    assert store.count_executions(flow_id="orders", tenant_id="acme") == no_counts(
        pending=1, running=1, completed=1
    )
    assert store.count_executions() == no_counts(pending=2, running=1, completed=1)

    assert store.delete_finished_before(at(2)) == 1  # `done`, by retention

    assert store.get_execution(done.id) is None
    assert store.count_executions(tenant_id="acme") == no_counts(pending=1, running=1)
    assert store.count_executions() == no_counts(pending=2, running=1)


def test_a_rolled_back_transaction_changes_no_count(store: Store) -> None:
    kept = create(store, tenant_id="acme")

    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.insert_execution(make_execution(tenant_id="acme"))
        tx.save_execution(
            kept.model_copy(update={"status": ExecutionStatus.FAILED}), expected_version=0
        )
        raise RuntimeError("the step's handler crashed before the commit")

    assert store.count_executions(tenant_id="acme") == no_counts(pending=1)
    with store.transaction() as tx:
        tx.insert_execution(make_execution(tenant_id="acme", status=ExecutionStatus.WAITING))
    assert store.count_executions(tenant_id="acme") == no_counts(pending=1, waiting=1)


def test_counts_take_an_instant_in_any_zone(store: Store) -> None:
    create(store, created_at=at(0))
    create(store, created_at=at(60), status=ExecutionStatus.COMPLETED)
    half_a_minute_in = at(30).astimezone(timezone(timedelta(hours=-5)))

    assert store.count_executions(created_after=half_a_minute_in) == no_counts(completed=1)
