"""Emitted events (fm_inbox_events) and the waits of running flows for them (fm_event_waits).

Two races are decided by the database, not by a read first: of two emits of one key (per
tenant) the unique index on `dedupe_key` stores one, and of two takers of one wait the single
DELETE ... RETURNING gives it to one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, literal, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.core.inbox import Event, EventWait
from flowmonkey_celery.stores.sql.schema import event_waits, inbox_events

# Without a conflict target: a taken id is skipped like a taken key (both leave nothing
# written). On PostgreSQL a concurrent insert of the same key waits for the first to commit,
# then does nothing (or inserts, if the first rolled back).
_INSERT_EVENT = {
    "postgresql": postgresql.insert(inbox_events).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(inbox_events).on_conflict_do_nothing(),
}
_NO_TENANT = "-"


def dedupe_key(key: str | None, tenant_id: str | None) -> str | None:
    """(tenant, key) as one non-null string, distinct for every pair (a NULL tenant, an empty
    one, and tenants that contain the separator included); None without a key."""
    if key is None:
        return None
    tenant = _NO_TENANT if tenant_id is None else f"{len(tenant_id)}:{tenant_id}"
    return f"{tenant}:{key}"


def event_row(event: Event) -> dict[str, Any]:
    row = event.model_dump(mode="python", exclude={"payload"})
    row["payload"] = event.model_dump(mode="json", include={"payload"})["payload"]
    row["dedupe_key"] = dedupe_key(event.key, event.tenant_id)
    return row


def event_from_row(row: RowMapping) -> Event:
    return Event.model_validate({k: v for k, v in row.items() if k != "dedupe_key"})


def insert_event(conn: Connection, event: Event) -> bool:
    return bool(conn.execute(_INSERT_EVENT[conn.dialect.name], event_row(event)).rowcount == 1)


def get_event(conn: Connection, event_id: str) -> Event | None:
    row = conn.execute(select(inbox_events).where(inbox_events.c.id == event_id)).mappings().first()
    return event_from_row(row) if row else None


def get_event_by_key(conn: Connection, key: str, tenant_id: str | None) -> Event | None:
    query = select(inbox_events).where(inbox_events.c.dedupe_key == dedupe_key(key, tenant_id))
    row = conn.execute(query).mappings().first()
    return event_from_row(row) if row else None


def list_events(
    conn: Connection,
    *,
    event_type: str | None,
    tenant_id: str | None,
    since: datetime | None,
    after: str | None,
    limit: int,
) -> list[Event]:
    c = inbox_events.c
    query = select(inbox_events)
    if event_type is not None:
        query = query.where(c.type == event_type)
    if tenant_id is not None:
        query = query.where(c.tenant_id == tenant_id)
    if since is not None:
        query = query.where(c.created_at >= since)
    if after is not None:
        # One statement: a cursor naming no event compares with NULL, so the page is empty.
        anchor = select(c.created_at).where(c.id == after).scalar_subquery()
        query = query.where(tuple_(c.created_at, c.id) > tuple_(anchor, after))
    query = query.order_by(c.created_at, c.id).limit(limit)
    return [event_from_row(row) for row in conn.execute(query).mappings()]


def mark_dispatched(conn: Connection, event_id: str, now: datetime) -> bool:
    statement = (
        update(inbox_events)
        .where(inbox_events.c.id == event_id, inbox_events.c.dispatched_at.is_(None))
        .values(dispatched_at=ensure_aware(now, "dispatched_at"))
    )
    return bool(conn.execute(statement).rowcount == 1)


def undispatched(conn: Connection, created_before: datetime, limit: int) -> list[Event]:
    c = inbox_events.c
    query = (
        select(inbox_events)
        .where(c.dispatched_at.is_(None), c.created_at < created_before)
        .order_by(c.created_at, c.id)
        .limit(limit)
    )
    return [event_from_row(row) for row in conn.execute(query).mappings()]


# -- waits -------------------------------------------------------------------------------------


def wait_row(wait: EventWait) -> dict[str, Any]:
    row = wait.model_dump(mode="python", exclude={"match"})
    row["match"] = wait.model_dump(mode="json", include={"match"})["match"]
    return row


def wait_from_row(row: RowMapping) -> EventWait:
    return EventWait.model_validate(dict(row))


def insert_wait(conn: Connection, wait: EventWait) -> None:
    """Insert, or replace the execution's wait of the same sequence."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(event_waits).values(wait_row(wait))
    replaced = [c.name for c in event_waits.columns if not c.primary_key]
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[event_waits.c.execution_id, event_waits.c.sequence],
            set_={name: insert.excluded[name] for name in replaced},
        )
    )


def find_waits(
    conn: Connection,
    event_type: str,
    limit: int,
    after: tuple[datetime, str, int] | None = None,
) -> list[EventWait]:
    c = event_waits.c
    query = (
        select(event_waits)
        .where(c.event_type == event_type)
        .order_by(c.created_at, c.execution_id, c.sequence)
        .limit(limit)
    )
    if after is not None:
        created_at, execution_id, sequence = after
        cursor = tuple_(
            literal(ensure_aware(created_at, "after"), type_=c.created_at.type),
            literal(execution_id, type_=c.execution_id.type),
            literal(sequence, type_=c.sequence.type),
        )
        query = query.where(tuple_(c.created_at, c.execution_id, c.sequence) > cursor)
    return [wait_from_row(row) for row in conn.execute(query).mappings()]


def take_wait(conn: Connection, execution_id: str, sequence: int) -> EventWait | None:
    # One DELETE ... RETURNING: a concurrent taker blocks on the row, then deletes nothing.
    statement = (
        delete(event_waits)
        .where(event_waits.c.execution_id == execution_id, event_waits.c.sequence == sequence)
        .returning(*event_waits.columns)
    )
    row = conn.execute(statement).mappings().first()
    return wait_from_row(row) if row else None


def delete_waits(conn: Connection, execution_id: str) -> int:
    statement = delete(event_waits).where(event_waits.c.execution_id == execution_id)
    return int(conn.execute(statement).rowcount)


def mark_wait_checked(conn: Connection, execution_id: str, sequence: int, at: datetime) -> bool:
    c = event_waits.c
    statement = (
        update(event_waits)
        .where(c.execution_id == execution_id, c.sequence == sequence)
        .values(inbox_checked_at=ensure_aware(at, "inbox_checked_at"))
    )
    return bool(conn.execute(statement).rowcount)


def unchecked_waits(conn: Connection, created_before: datetime, limit: int) -> list[EventWait]:
    c = event_waits.c
    query = (
        select(event_waits)
        # `IS NULL` as the partial index states it (ix_fm_event_waits_unchecked).
        .where(c.inbox_checked_at.is_(None), c.created_at < ensure_aware(created_before, "before"))
        .order_by(c.created_at, c.execution_id, c.sequence)
        .limit(limit)
    )
    return [wait_from_row(row) for row in conn.execute(query).mappings()]
