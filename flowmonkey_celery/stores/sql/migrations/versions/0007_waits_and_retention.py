"""indexes for the oldest wait and for retention, and a record of each event wait's inbox search

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 03:00:00

- `(status, wait_started_at)` on fm_executions: `waiting_stats` (every /metrics scrape, the
  dashboard's fleet page) asks for the oldest `wait_started_at` of the waiting executions.
  Without this index PostgreSQL reads every waiting row for it: 70-105 ms with 100,000 waiting
  among a million; with it, the first entry of the index (about 18 ms for the whole query).
  Building it reads the table once and holds off writers meanwhile (about a second per
  million executions).
- `inbox_checked_at` on fm_event_waits, and a partial index on the waits that have none: a
  `wait_for_event` searches the inbox for an event stored before its wait right after
  committing the wait; if its process dies in between, the tick's sweep searches instead.
  Waits already there when this runs are marked searched (they were, by the process that
  made them, or their emitter's dispatch found them).
- `(parent_execution_id, created_at, id)` on fm_executions, in place of
  `(parent_execution_id)`: an execution's children a page at a time, in order, without
  sorting all of a 100,000-branch fan-out for each page.
- `(at)` on fm_trigger_history: retention (`flowmonkey purge`) now deletes the trigger history
  from before its cutoff, oldest first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import flowmonkey_celery.stores.sql.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_INSTANT = flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True)
_UNCHECKED = "inbox_checked_at IS NULL"


def upgrade() -> None:
    op.create_index(
        op.f("ix_fm_executions_status_wait_started_at"),
        "fm_executions",
        ["status", "wait_started_at"],
        unique=False,
    )
    with op.batch_alter_table("fm_event_waits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inbox_checked_at", _INSTANT, nullable=True))
    op.execute(sa.text("UPDATE fm_event_waits SET inbox_checked_at = created_at"))
    op.create_index(
        "ix_fm_event_waits_unchecked",
        "fm_event_waits",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text(_UNCHECKED),
        sqlite_where=sa.text(_UNCHECKED),
    )
    op.create_index(op.f("ix_fm_trigger_history_at"), "fm_trigger_history", ["at"], unique=False)
    op.create_index(
        op.f("ix_fm_executions_parent_execution_id_created_at_id"),
        "fm_executions",
        ["parent_execution_id", "created_at", "id"],
        unique=False,
    )
    op.drop_index(op.f("ix_fm_executions_parent_execution_id"), table_name="fm_executions")


def downgrade() -> None:
    op.create_index(
        op.f("ix_fm_executions_parent_execution_id"),
        "fm_executions",
        ["parent_execution_id"],
        unique=False,
    )
    op.drop_index(
        op.f("ix_fm_executions_parent_execution_id_created_at_id"), table_name="fm_executions"
    )
    op.drop_index(op.f("ix_fm_trigger_history_at"), table_name="fm_trigger_history")
    op.drop_index("ix_fm_event_waits_unchecked", table_name="fm_event_waits")
    with op.batch_alter_table("fm_event_waits", schema=None) as batch_op:
        batch_op.drop_column("inbox_checked_at")
    op.drop_index(op.f("ix_fm_executions_status_wait_started_at"), table_name="fm_executions")
