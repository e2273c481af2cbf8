"""jobs: runs of stateful handlers, claimed with a lease by one runner at a time

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 18:46:04

0001 created a placeholder fm_jobs that no release ever wrote to; it is replaced.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import flowmonkey_celery.stores.sql.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_INSTANT = flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("fm_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_jobs_status_heartbeat_at"))
        batch_op.drop_index(batch_op.f("ix_fm_jobs_execution_id"))
    op.drop_table("fm_jobs")
    op.create_table(
        "fm_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("handler_type", sa.String(length=200), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input", _json(), nullable=True),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("runner_id", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", _INSTANT, nullable=True),
        sa.Column("heartbeat_at", _INSTANT, nullable=True),
        sa.Column("started_at", _INSTANT, nullable=True),
        sa.Column("progress", _json(), nullable=True),
        sa.Column("checkpoint", _json(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("error", _json(), nullable=True),
        sa.Column("created_at", _INSTANT, nullable=False),
        sa.Column("updated_at", _INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fm_jobs")),
    )
    with op.batch_alter_table("fm_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fm_jobs_execution_id"), ["execution_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_fm_jobs_status_lease_expires_at"),
            ["status", "lease_expires_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("fm_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_jobs_status_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_fm_jobs_execution_id"))
    op.drop_table("fm_jobs")
    op.create_table(
        "fm_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("handler_type", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input", _json(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("error", _json(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("runner_id", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", _INSTANT, nullable=True),
        sa.Column("created_at", _INSTANT, nullable=False),
        sa.Column("updated_at", _INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fm_jobs")),
    )
    with op.batch_alter_table("fm_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fm_jobs_execution_id"), ["execution_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_fm_jobs_status_heartbeat_at"), ["status", "heartbeat_at"], unique=False
        )
