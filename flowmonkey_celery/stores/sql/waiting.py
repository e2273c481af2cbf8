"""The query behind `SqlStore.waiting_stats`: one statement of four scalar subqueries, each
answered from an index on `fm_executions` rather than one pass that reads every waiting row.

- the waiting count: an index-only count on `(status, wake_at)`;
- the due count and the oldest due wake: a range of that same index (`wake_at <= now`), the
  minimum being its first entry;
- the oldest `wait_started_at`: the first entry of `(status, wait_started_at)` (migration
  0007; before it, PostgreSQL read every waiting row for it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select

from flowmonkey_celery.core.execution import ExecutionStatus
from flowmonkey_celery.stores.sql.schema import executions

_WAITING = ExecutionStatus.WAITING.value


def waiting_stats_query(now: datetime) -> Select[Any]:
    """(waiting count, oldest wait_started_at, due count, oldest due wake_at) at `now`."""
    waiting = executions.c.status == _WAITING
    due = waiting & (executions.c.wake_at <= now)
    return select(
        select(func.count()).select_from(executions).where(waiting).scalar_subquery(),
        select(func.min(executions.c.wait_started_at)).where(waiting).scalar_subquery(),
        select(func.count()).select_from(executions).where(due).scalar_subquery(),
        select(func.min(executions.c.wake_at)).where(due).scalar_subquery(),
    )
