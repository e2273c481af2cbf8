"""executions at scale: indexes for the listing's idempotency key and metadata lookups, and
per-status counts kept by triggers (PostgreSQL)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 00:30:00

On PostgreSQL, triggers on fm_executions append each insert, delete and change of status,
flow or tenant to fm_execution_count_changes, in the writer's transaction; the counts of the
rows already there are taken once here, after the triggers exist (creating a trigger locks
the table against writes until this migration commits, so no row is counted twice or
missed). Building the GIN index reads the whole table: about 3 s per million executions.
SQLite gets the same tables and indexes (one schema; its metadata index holds no row, having
nothing to offer JSON containment), keeps the count tables empty and counts the executions
themselves.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_HAS_KEY = "idempotency_key IS NOT NULL"

# Statement-level triggers for inserts and deletes (one row of changes per tenant, flow and
# status of the statement, however many rows it wrote); a row-level one for updates, called
# only when the status, flow or tenant changed (the step saves that keep the status never
# run it). NULL tenants count as "".
_TRIGGERS = """
CREATE FUNCTION fm_count_inserted_executions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fm_execution_count_changes (tenant_key, flow_id, status, delta)
    SELECT coalesce(tenant_id, ''), flow_id, status, count(*)
    FROM fm_inserted_executions GROUP BY 1, 2, 3;
    RETURN NULL;
END
$$;

CREATE FUNCTION fm_count_deleted_executions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fm_execution_count_changes (tenant_key, flow_id, status, delta)
    SELECT coalesce(tenant_id, ''), flow_id, status, -count(*)
    FROM fm_deleted_executions GROUP BY 1, 2, 3;
    RETURN NULL;
END
$$;

CREATE FUNCTION fm_count_changed_execution() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fm_execution_count_changes (tenant_key, flow_id, status, delta) VALUES
        (coalesce(OLD.tenant_id, ''), OLD.flow_id, OLD.status, -1),
        (coalesce(NEW.tenant_id, ''), NEW.flow_id, NEW.status, 1);
    RETURN NULL;
END
$$;

CREATE FUNCTION fm_count_truncated_executions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fm_execution_count_changes;
    DELETE FROM fm_execution_counts;
    RETURN NULL;
END
$$;

CREATE TRIGGER fm_count_inserts AFTER INSERT ON fm_executions
    REFERENCING NEW TABLE AS fm_inserted_executions
    FOR EACH STATEMENT EXECUTE FUNCTION fm_count_inserted_executions();

CREATE TRIGGER fm_count_deletes AFTER DELETE ON fm_executions
    REFERENCING OLD TABLE AS fm_deleted_executions
    FOR EACH STATEMENT EXECUTE FUNCTION fm_count_deleted_executions();

CREATE TRIGGER fm_count_updates AFTER UPDATE ON fm_executions
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.flow_id IS DISTINCT FROM NEW.flow_id
          OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION fm_count_changed_execution();

CREATE TRIGGER fm_count_truncates AFTER TRUNCATE ON fm_executions
    FOR EACH STATEMENT EXECUTE FUNCTION fm_count_truncated_executions();

INSERT INTO fm_execution_counts (tenant_key, flow_id, status, count)
SELECT coalesce(tenant_id, ''), flow_id, status, count(*) FROM fm_executions GROUP BY 1, 2, 3;
"""

_DROP_TRIGGERS = """
DROP TRIGGER fm_count_truncates ON fm_executions;
DROP TRIGGER fm_count_updates ON fm_executions;
DROP TRIGGER fm_count_deletes ON fm_executions;
DROP TRIGGER fm_count_inserts ON fm_executions;
DROP FUNCTION fm_count_truncated_executions();
DROP FUNCTION fm_count_changed_execution();
DROP FUNCTION fm_count_deleted_executions();
DROP FUNCTION fm_count_inserted_executions();
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("fm_executions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fm_executions_idempotency_key",
            ["idempotency_key"],
            unique=False,
            postgresql_where=sa.text(_HAS_KEY),
            sqlite_where=sa.text(_HAS_KEY),
        )
        # GIN on PostgreSQL; on SQLite (no such index) one that holds no row.
        batch_op.create_index(
            "ix_fm_executions_metadata",
            ["metadata"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
            sqlite_where=sa.text("0"),
        )

    op.create_table(
        "fm_execution_counts",
        sa.Column("tenant_key", sa.String(length=200), nullable=False),
        sa.Column("flow_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_key", "flow_id", "status", name=op.f("pk_fm_execution_counts")
        ),
    )
    op.create_table(
        "fm_execution_count_changes",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_key", sa.String(length=200), nullable=False),
        sa.Column("flow_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_fm_execution_count_changes")),
    )
    if postgres:
        op.execute(_TRIGGERS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_DROP_TRIGGERS)
    op.drop_table("fm_execution_count_changes")
    op.drop_table("fm_execution_counts")
    with op.batch_alter_table("fm_executions", schema=None) as batch_op:
        batch_op.drop_index("ix_fm_executions_metadata")
        batch_op.drop_index("ix_fm_executions_idempotency_key")
