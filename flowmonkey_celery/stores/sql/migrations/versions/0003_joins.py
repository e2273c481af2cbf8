"""joins: parents waiting for child executions

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 18:28:12.392033
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import flowmonkey_celery.stores.sql.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fm_join_branches",
        sa.Column("join_id", sa.String(length=64), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=True),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "output",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "error",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "finished_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("join_id", "index", name=op.f("pk_fm_join_branches")),
    )
    op.create_table(
        "fm_joins",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("parent_execution_id", sa.String(length=64), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("started", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=True),
        sa.Column("parent_close", sa.String(length=16), nullable=False),
        sa.Column(
            "output",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "created_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "resolved_at",
            flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("cancel_running", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fm_joins")),
    )
    with op.batch_alter_table("fm_joins", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_joins_parent_execution_id"), ["parent_execution_id"], unique=False
        )

    with op.batch_alter_table("fm_executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("join_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("branch_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("parent_close", sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f("ix_fm_executions_join_id"), ["join_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fm_executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_executions_join_id"))
        batch_op.drop_column("parent_close")
        batch_op.drop_column("branch_index")
        batch_op.drop_column("join_id")

    with op.batch_alter_table("fm_joins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_joins_parent_execution_id"))

    op.drop_table("fm_joins")
    op.drop_table("fm_join_branches")
