"""resume tokens: hashed, bound to the issuing call, with outcomes and revocation

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 14:00:00

0001 created a placeholder fm_resume_tokens that no release ever wrote to; it is replaced.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import flowmonkey_celery.stores.sql.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_INSTANT = flowmonkey_celery.stores.sql.types.UtcDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("fm_resume_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_resume_tokens_execution_id"))
    op.drop_table("fm_resume_tokens")
    op.create_table(
        "fm_resume_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column(
            "outcomes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", _INSTANT, nullable=False),
        sa.Column("expires_at", _INSTANT, nullable=True),
        sa.Column("used_at", _INSTANT, nullable=True),
        sa.Column("revoked_at", _INSTANT, nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_fm_resume_tokens")),
    )
    with op.batch_alter_table("fm_resume_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_resume_tokens_execution_id"), ["execution_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("fm_resume_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fm_resume_tokens_execution_id"))
    op.drop_table("fm_resume_tokens")
    op.create_table(
        "fm_resume_tokens",
        sa.Column("token", sa.String(length=128), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", _INSTANT, nullable=False),
        sa.Column("expires_at", _INSTANT, nullable=True),
        sa.Column("used_at", _INSTANT, nullable=True),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_fm_resume_tokens")),
    )
    with op.batch_alter_table("fm_resume_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fm_resume_tokens_execution_id"), ["execution_id"], unique=False
        )
