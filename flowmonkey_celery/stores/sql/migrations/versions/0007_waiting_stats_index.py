"""an index for the oldest wait: (status, wait_started_at) on fm_executions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 03:00:00

`waiting_stats` (read by every /metrics scrape and the dashboard's fleet page) asks for the
oldest `wait_started_at` of the waiting executions. Without this index PostgreSQL reads every
waiting row for it: 70-105 ms with 100,000 waiting among a million; with it, the first entry of
the index (about 18 ms for the whole query). Building it reads the table once and holds off
writers meanwhile (about a second per million executions).
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_fm_executions_status_wait_started_at"),
        "fm_executions",
        ["status", "wait_started_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_fm_executions_status_wait_started_at"), table_name="fm_executions")
