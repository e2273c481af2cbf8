"""Join rows (fm_joins) and their branches (fm_join_branches)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, insert, select, update

from flowmonkey_celery.core.children import Branch, BranchStatus, Join
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.stores.sql.rows import execution_from_row
from flowmonkey_celery.stores.sql.schema import executions, join_branches, joins

_LIVE = ("pending", "running", "waiting")


def join_row(join: Join) -> dict[str, Any]:
    row = join.model_dump(mode="python", exclude={"policy", "output"})
    row.update(join.model_dump(mode="json", include={"policy", "output"}))
    return row


def branch_row(branch: Branch) -> dict[str, Any]:
    row = branch.model_dump(mode="python", exclude={"spec", "output", "error"})
    row.update(branch.model_dump(mode="json", include={"spec", "output", "error"}))
    row["status"] = branch.status.value
    return row


def join_from_row(row: RowMapping) -> Join:
    return Join.model_validate(dict(row))


def branch_from_row(row: RowMapping) -> Branch:
    return Branch.model_validate(dict(row))


def insert_join(conn: Connection, join: Join, branches: Sequence[Branch]) -> None:
    conn.execute(insert(joins), join_row(join))
    if branches:
        conn.execute(insert(join_branches), [branch_row(b) for b in branches])


def get_join(conn: Connection, join_id: str, *, lock: bool) -> Join | None:
    query = select(joins).where(joins.c.id == join_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return join_from_row(row) if row else None


def update_join(conn: Connection, join: Join) -> None:
    row = join_row(join)
    del row["id"]
    conn.execute(update(joins).where(joins.c.id == join.id).values(row))


def joins_of(conn: Connection, parent_execution_id: str, *, open_only: bool) -> list[Join]:
    query = select(joins).where(joins.c.parent_execution_id == parent_execution_id)
    if open_only:
        query = query.where(joins.c.resolved_at.is_(None))
    rows = conn.execute(query.order_by(joins.c.created_at, joins.c.id)).mappings()
    return [join_from_row(r) for r in rows]


def list_branches(
    conn: Connection,
    join_id: str,
    *,
    status: BranchStatus | None = None,
    limit: int | None = None,
) -> list[Branch]:
    query = select(join_branches).where(join_branches.c.join_id == join_id)
    if status is not None:
        query = query.where(join_branches.c.status == status.value)
    query = query.order_by(join_branches.c.index)
    if limit is not None:
        query = query.limit(limit)
    return [branch_from_row(r) for r in conn.execute(query).mappings()]


def move_branch(
    conn: Connection, join_id: str, index: int, from_status: BranchStatus, **values: Any
) -> bool:
    # One conditional UPDATE: a branch moves on once, whoever tries it twice.
    statement = (
        update(join_branches)
        .where(
            join_branches.c.join_id == join_id,
            join_branches.c.index == index,
            join_branches.c.status == from_status.value,
        )
        .values(**values)
    )
    return bool(conn.execute(statement).rowcount == 1)


def skip_pending(conn: Connection, join_id: str, now: datetime) -> int:
    statement = (
        update(join_branches)
        .where(
            join_branches.c.join_id == join_id,
            join_branches.c.status == BranchStatus.PENDING.value,
        )
        .values(status=BranchStatus.SKIPPED.value, finished_at=now)
    )
    return int(conn.execute(statement).rowcount)


def children_to_cancel(limit: int) -> Select[Any]:
    """Live children of cancelled parents (parent_close "cancel") and of joins decided with
    cancel_running: what a crashed canceller left running."""
    parent = executions.alias("parent")
    orphaned = (
        select(executions)
        .join(parent, parent.c.id == executions.c.parent_execution_id)
        .where(
            executions.c.status.in_(_LIVE),
            executions.c.parent_close == "cancel",
            parent.c.status == "cancelled",
        )
    )
    unwanted = (
        select(executions)
        .join(joins, joins.c.id == executions.c.join_id)
        .where(executions.c.status.in_(_LIVE), joins.c.cancel_running.is_(True))
    )
    union = orphaned.union(unwanted).subquery()
    return select(union).limit(limit)


def executions_of(rows: Any) -> list[Execution]:
    return [execution_from_row(r) for r in rows]
