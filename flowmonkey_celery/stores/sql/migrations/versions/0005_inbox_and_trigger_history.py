"""inbox: emitted events and the waits for them; the history of HTTP and event triggers; the
REST API's keys, flow owners and heartbeats

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 20:46:52

Trigger rows need no change: a schedule trigger's `config` keeps the same fields, and the
other trigger types keep theirs there too.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import flowmonkey_celery.stores.sql.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_INSTANT = flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True)
_UNDISPATCHED = "dispatched_at IS NULL"


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "fm_event_waits",
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("match", _json(), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=True),
        sa.Column("since", _INSTANT, nullable=False),
        sa.Column("created_at", _INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("execution_id", "sequence", name=op.f("pk_fm_event_waits")),
    )
    with op.batch_alter_table("fm_event_waits", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_event_waits_event_type_created_at"),
            ["event_type", "created_at"],
            unique=False,
        )

    op.create_table(
        "fm_inbox_events",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("payload", _json(), nullable=True),
        sa.Column("key", sa.String(length=500), nullable=True),
        sa.Column("tenant_id", sa.String(length=200), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("created_at", _INSTANT, nullable=False),
        sa.Column("dispatched_at", _INSTANT, nullable=True),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fm_inbox_events")),
    )
    with op.batch_alter_table("fm_inbox_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_inbox_events_created_at_id"), ["created_at", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_fm_inbox_events_dedupe_key"), ["dedupe_key"], unique=True
        )
        batch_op.create_index(
            batch_op.f("ix_fm_inbox_events_type_created_at_id"),
            ["type", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_fm_inbox_events_undispatched",
            ["created_at", "id"],
            unique=False,
            postgresql_where=sa.text(_UNDISPATCHED),
            sqlite_where=sa.text(_UNDISPATCHED),
        )

    op.create_table(
        "fm_trigger_history",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("trigger_id", sa.String(length=200), nullable=False),
        sa.Column("at", _INSTANT, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("execution_id", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("error", _json(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fm_trigger_history")),
    )
    with op.batch_alter_table("fm_trigger_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_trigger_history_trigger_id_at"), ["trigger_id", "at"], unique=False
        )

    op.create_table(
        "fm_api_keys",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=True),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", _INSTANT, nullable=False),
        sa.Column("revoked_at", _INSTANT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fm_api_keys")),
    )
    with op.batch_alter_table("fm_api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fm_api_keys_key_hash"), ["key_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_fm_api_keys_name"), ["name"], unique=True)

    op.create_table(
        "fm_flow_owners",
        sa.Column("flow_id", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("flow_id", name=op.f("pk_fm_flow_owners")),
    )

    op.create_table(
        "fm_heartbeats",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("at", _INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_fm_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("fm_heartbeats")
    op.drop_table("fm_flow_owners")

    with op.batch_alter_table("fm_api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_api_keys_name"))
        batch_op.drop_index(batch_op.f("ix_fm_api_keys_key_hash"))
    op.drop_table("fm_api_keys")

    with op.batch_alter_table("fm_trigger_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_trigger_history_trigger_id_at"))
    op.drop_table("fm_trigger_history")

    with op.batch_alter_table("fm_inbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_fm_inbox_events_undispatched")
        batch_op.drop_index(batch_op.f("ix_fm_inbox_events_type_created_at_id"))
        batch_op.drop_index(batch_op.f("ix_fm_inbox_events_dedupe_key"))
        batch_op.drop_index(batch_op.f("ix_fm_inbox_events_created_at_id"))
    op.drop_table("fm_inbox_events")

    with op.batch_alter_table("fm_event_waits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_event_waits_event_type_created_at"))
    op.drop_table("fm_event_waits")
