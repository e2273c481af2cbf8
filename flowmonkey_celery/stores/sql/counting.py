"""`SqlStore.count_executions`: executions per status, exact, without reading a million rows.

On PostgreSQL a count filtered at most by flow and tenant (what the dashboard's live counts
ask for most) sums `fm_execution_counts` and the changes the triggers of migration 0006 have
appended to `fm_execution_count_changes` since they were last folded in: one statement, one
snapshot, a few hundred rows whatever the number of executions. Any other filter (creation
time, metadata, idempotency key) narrows the executions through an index, and they are
counted with `GROUP BY status`, as every count is on SQLite.

Folding (`compact`) moves the changes into the counts in one transaction (a count reads
either both before or both after). Only the folder ever locks a row of `fm_execution_counts`
(writers only append changes), and folders take turns behind an advisory lock, so no writer
ever waits for a count or a fold. `SqlStore.count_executions` folds when a count has summed
more than `FOLD_AFTER` changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Select, func, literal, select, text, union_all

from flowmonkey_celery.core.execution import ExecutionStatus
from flowmonkey_celery.stores.sql import listing
from flowmonkey_celery.stores.sql.schema import (
    execution_count_changes,
    execution_counts,
    executions,
)

FOLD_AFTER = 5_000  # changes a count may sum before it folds them in
FOLD_BATCH = 50_000  # changes folded per transaction
_FOLD_LOCK_ID = 0x466D436E74  # "FmCnt": names "folding execution counts" among advisory locks

# One statement: take up to :batch changes, add them to the counts, say how many were taken.
_FOLD = text(
    """
    WITH moved AS (
        DELETE FROM fm_execution_count_changes
        WHERE seq IN (SELECT seq FROM fm_execution_count_changes ORDER BY seq LIMIT :batch)
        RETURNING tenant_key, flow_id, status, delta
    ), added AS (
        INSERT INTO fm_execution_counts (tenant_key, flow_id, status, count)
        SELECT tenant_key, flow_id, status, sum(delta) FROM moved
        GROUP BY tenant_key, flow_id, status ORDER BY tenant_key, flow_id, status
        ON CONFLICT (tenant_key, flow_id, status)
        DO UPDATE SET count = fm_execution_counts.count + excluded.count
        RETURNING 1
    )
    SELECT count(*) FROM moved
    """
)


def count(
    dialect: str,
    read: Callable[[Select[Any]], Sequence[Row[Any]]],
    *,
    flow_id: str | None = None,
    tenant_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> tuple[dict[str, int], int]:
    """Executions per status (every status a key), and how many pending changes the count
    summed (0 when it counted the executions themselves); `read` runs one query."""
    counts = dict.fromkeys((status.value for status in ExecutionStatus), 0)
    changes = 0
    if uses_counters(
        dialect,
        created_after=created_after,
        created_before=created_before,
        metadata=metadata,
        idempotency_key=idempotency_key,
    ):
        for row in read(counters_query(flow_id=flow_id, tenant_id=tenant_id)):
            status, amount, summed = tuple(row)
            counts[status] = int(amount)
            changes += int(summed)
        return counts, changes
    query = rows_query(
        dialect,
        flow_id=flow_id,
        tenant_id=tenant_id,
        created_after=created_after,
        created_before=created_before,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )
    for row in read(query):
        found = row._mapping
        if found["status"] == "*":  # one row, a column per status
            counts = {status: int(found[status]) for status in counts}
        else:
            counts[found["status"]] = int(found["n"])
    return counts, changes


def uses_counters(
    dialect: str,
    *,
    created_after: datetime | None,
    created_before: datetime | None,
    metadata: dict[str, str] | None,
    idempotency_key: str | None,
) -> bool:
    """Whether the kept counts answer these filters (flow and tenant only, on PostgreSQL)."""
    return (
        dialect == "postgresql"
        and created_after is None
        and created_before is None
        and not metadata
        and idempotency_key is None
    )


def counters_query(*, flow_id: str | None, tenant_id: str | None) -> Select[Any]:
    """(status, executions, changes summed) from the kept counts and the pending changes."""
    parts = []
    for table, amount, is_change in (
        (execution_counts, execution_counts.c.count, 0),
        (execution_count_changes, execution_count_changes.c.delta, 1),
    ):
        part = select(
            table.c.status,
            amount.label("amount"),
            literal(is_change).label("is_change"),
        )
        if flow_id is not None:
            part = part.where(table.c.flow_id == flow_id)
        if tenant_id is not None:
            part = part.where(table.c.tenant_key == tenant_id)
        parts.append(part)
    both = union_all(*parts).subquery("kept")
    return select(both.c.status, func.sum(both.c.amount), func.sum(both.c.is_change)).group_by(
        both.c.status
    )


def rows_query(dialect: str, **filters: Any) -> Select[Any]:
    """(status, executions) counted from the executions themselves.

    A range of creation times (without a metadata or key lookup, which find few rows) is
    counted one status at a time, each a range of the `(status, created_at, id)` index (read
    without the table once vacuumed): a `GROUP BY` would read that whole index, there being
    no skip scan in PostgreSQL 15, or every row of the range from the table."""
    clauses = listing.filters(dialect, **filters)
    ranged = filters.get("created_after") is not None or filters.get("created_before") is not None
    if ranged and not filters.get("metadata") and filters.get("idempotency_key") is None:
        each = [
            select(func.count())
            .where(executions.c.status == status.value, *clauses)
            .scalar_subquery()
            .label(status.value)
            for status in ExecutionStatus
        ]
        return select(literal("*").label("status"), *each)
    return (
        select(executions.c.status, func.count().label("n"))
        .where(*clauses)
        .group_by(executions.c.status)
    )


def fold(conn: Connection, batch: int = FOLD_BATCH) -> int | None:
    """Fold up to `batch` changes into the counts, in the caller's transaction; how many were
    folded, or None if another fold holds the lock (it folds them)."""
    if not conn.execute(
        text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _FOLD_LOCK_ID}
    ).scalar_one():
        return None
    folded = int(conn.execute(_FOLD, {"batch": batch}).scalar_one())
    if folded:
        # A (tenant, flow, status) whose executions are all gone (retention) needs no row.
        conn.execute(execution_counts.delete().where(execution_counts.c.count == 0))
    return folded
