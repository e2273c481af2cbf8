"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 04:03:35.439571
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import flowmonkey_celery.stores.sql.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "fm_executions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("flow_id", sa.String(length=200), nullable=False),
        sa.Column("flow_version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_step_id", sa.String(length=200), nullable=True),
        sa.Column(
            "context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "wake_at", flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("wait_reason", sa.Text(), nullable=True),
        sa.Column("wait_kind", sa.String(length=16), nullable=True),
        sa.Column(
            "wait_started_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "wait_deadline_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "deadline_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "lease_expires_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "error",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("step_count", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("parent_execution_id", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=500), nullable=True),
        sa.Column(
            "idempotency_expires_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "cancellation",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "timeout",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("retry_attempts", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "started_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "finished_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fm_executions")),
    )
    with op.batch_alter_table("fm_executions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_executions_created_at_id"), ["created_at", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_fm_executions_deadline_at"), ["deadline_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_fm_executions_flow_id_created_at_id"),
            ["flow_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_fm_executions_parent_execution_id"),
            ["parent_execution_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_fm_executions_status_created_at_id"),
            ["status", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_fm_executions_status_finished_at"),
            ["status", "finished_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_fm_executions_status_lease_expires_at"),
            ["status", "lease_expires_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_fm_executions_status_wait_deadline_at"),
            ["status", "wait_deadline_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_fm_executions_status_wake_at"), ["status", "wake_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_fm_executions_tenant_id_created_at_id"),
            ["tenant_id", "created_at", "id"],
            unique=False,
        )

    op.create_table(
        "fm_flow_definitions",
        sa.Column("flow_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("flow_id", "version", name=op.f("pk_fm_flow_definitions")),
    )
    op.create_table(
        "fm_idempotency_keys",
        sa.Column("tenant_key", sa.String(length=200), nullable=False),
        sa.Column("flow_id", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column(
            "expires_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "tenant_key", "flow_id", "key", name=op.f("pk_fm_idempotency_keys")
        ),
    )
    with op.batch_alter_table("fm_idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_idempotency_keys_execution_id"), ["execution_id"], unique=False
        )

    op.create_table(
        "fm_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("handler_type", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "input",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "error",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("runner_id", sa.String(length=200), nullable=True),
        sa.Column(
            "heartbeat_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "created_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fm_jobs")),
    )
    with op.batch_alter_table("fm_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fm_jobs_execution_id"), ["execution_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_fm_jobs_status_heartbeat_at"), ["status", "heartbeat_at"], unique=False
        )

    op.create_table(
        "fm_resume_tokens",
        sa.Column("token", sa.String(length=128), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "expires_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "used_at", flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_fm_resume_tokens")),
    )
    with op.batch_alter_table("fm_resume_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_resume_tokens_execution_id"), ["execution_id"], unique=False
        )

    op.create_table(
        "fm_trigger_fires",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("trigger_id", sa.String(length=200), nullable=False),
        sa.Column(
            "scheduled_for",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column("execution_id", sa.String(length=64), nullable=True),
        sa.Column(
            "fired_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fm_trigger_fires")),
        sa.UniqueConstraint(
            "trigger_id", "scheduled_for", name=op.f("uq_fm_trigger_fires_trigger_id_scheduled_for")
        ),
    )
    op.create_table(
        "fm_triggers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("flow_id", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fm_triggers")),
    )
    with op.batch_alter_table("fm_triggers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_triggers_type_enabled"), ["type", "enabled"], unique=False
        )

    op.create_table(
        "fm_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column(
            "at", flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("step_id", sa.String(length=200), nullable=True),
        sa.Column("handler_type", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column(
            "started_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "finished_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column(
            "error",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["fm_executions.id"],
            name=op.f("fk_fm_events_execution_id_fm_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_fm_events")),
        sa.UniqueConstraint("id", name=op.f("uq_fm_events_id")),
    )
    with op.batch_alter_table("fm_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_events_execution_id_seq"), ["execution_id", "seq"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("fm_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_events_execution_id_seq"))

    op.drop_table("fm_events")
    with op.batch_alter_table("fm_triggers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_triggers_type_enabled"))

    op.drop_table("fm_triggers")
    op.drop_table("fm_trigger_fires")
    with op.batch_alter_table("fm_resume_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_resume_tokens_execution_id"))

    op.drop_table("fm_resume_tokens")
    with op.batch_alter_table("fm_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_jobs_status_heartbeat_at"))
        batch_op.drop_index(batch_op.f("ix_fm_jobs_execution_id"))

    op.drop_table("fm_jobs")
    with op.batch_alter_table("fm_idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_idempotency_keys_execution_id"))

    op.drop_table("fm_idempotency_keys")
    op.drop_table("fm_flow_definitions")
    with op.batch_alter_table("fm_executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_executions_tenant_id_created_at_id"))
        batch_op.drop_index(batch_op.f("ix_fm_executions_status_wake_at"))
        batch_op.drop_index(batch_op.f("ix_fm_executions_status_wait_deadline_at"))
        batch_op.drop_index(batch_op.f("ix_fm_executions_status_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_fm_executions_status_finished_at"))
        batch_op.drop_index(batch_op.f("ix_fm_executions_status_created_at_id"))
        batch_op.drop_index(batch_op.f("ix_fm_executions_parent_execution_id"))
        batch_op.drop_index(batch_op.f("ix_fm_executions_flow_id_created_at_id"))
        batch_op.drop_index(batch_op.f("ix_fm_executions_deadline_at"))
        batch_op.drop_index(batch_op.f("ix_fm_executions_created_at_id"))

    op.drop_table("fm_executions")
