"""The database schema, as SQLAlchemy Core tables. Alembic migrations must match it exactly
(a test compares them). Table names carry an `fm_` prefix so they can share a database with the
application's own tables."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from flowmonkey_celery.stores.sql.types import JsonDocument, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(64)

executions = Table(
    "fm_executions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("flow_id", String(200), nullable=False),
    Column("flow_version", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("current_step_id", String(200)),
    Column("context", JsonDocument, nullable=False),
    Column("wake_at", UtcDateTime),
    Column("wait_reason", Text),
    Column("wait_kind", String(16)),
    Column("wait_started_at", UtcDateTime),
    Column("wait_deadline_at", UtcDateTime),
    Column("deadline_at", UtcDateTime),
    Column("lease_expires_at", UtcDateTime),
    Column("error", JsonDocument),
    Column("step_count", Integer, nullable=False),
    Column("tenant_id", String(200)),
    Column("metadata", JsonDocument, nullable=False),
    Column("parent_execution_id", ID),
    Column("idempotency_key", String(500)),
    Column("idempotency_expires_at", UtcDateTime),
    Column("cancellation", JsonDocument),
    Column("timeout", JsonDocument),
    Column("retry_attempts", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("version", Integer, nullable=False),
    Column("join_id", ID),
    Column("branch_index", Integer),
    Column("parent_close", String(16)),
    # Each query the runtime makes has an index: the beat's sweeps, children, listings.
    Index(None, "status", "wake_at"),
    Index(None, "status", "wait_started_at"),  # the oldest wait (waiting_stats)
    Index(None, "status", "wait_deadline_at"),
    Index(None, "deadline_at"),
    Index(None, "status", "lease_expires_at"),
    Index(None, "parent_execution_id", "created_at", "id"),  # children, paged (0007)
    Index(None, "created_at", "id"),
    Index(None, "status", "created_at", "id"),
    Index(None, "flow_id", "created_at", "id"),
    Index(None, "tenant_id", "created_at", "id"),
    Index(None, "status", "finished_at"),
    Index(None, "join_id"),
    # The listing's lookups by an idempotency key (only rows that have one) and by metadata
    # (`metadata @> {...}`, GIN). SQLite has no index for JSON containment: there the index
    # exists (one schema) but is empty (`WHERE 0`), so it costs its writes nothing.
    Index(
        "ix_fm_executions_idempotency_key",
        "idempotency_key",
        postgresql_where=text("idempotency_key IS NOT NULL"),
        sqlite_where=text("idempotency_key IS NOT NULL"),
    ),
    Index(
        "ix_fm_executions_metadata",
        "metadata",
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
        sqlite_where=text("0"),
    ),
)

# Executions per (tenant, flow, status), for counts that do not read a million rows. On
# PostgreSQL, triggers on fm_executions (migration 0006) append every change to
# fm_execution_count_changes (+1 / -1 rows, in the writer's own transaction: never a lock on
# a shared row, so no writer waits for another or deadlocks); `SqlStore` folds them into
# fm_execution_counts now and then. A count is both tables summed, in one snapshot. SQLite
# keeps both tables empty and counts the executions themselves. NULL tenants are "" (as in
# fm_idempotency_keys: a primary key column cannot be NULL).
execution_counts = Table(
    "fm_execution_counts",
    metadata,
    Column("tenant_key", String(200), primary_key=True),
    Column("flow_id", String(200), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

execution_count_changes = Table(
    "fm_execution_count_changes",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("tenant_key", String(200), nullable=False),
    Column("flow_id", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("delta", BigInteger, nullable=False),
)

events = Table(
    "fm_events",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(64), nullable=False, unique=True),
    Column(
        "execution_id",
        ID,
        ForeignKey("fm_executions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("type", String(40), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("step_id", String(200)),
    Column("handler_type", String(200)),
    Column("outcome", String(16)),
    Column("attempt", Integer),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("duration_ms", Float),
    Column("error", JsonDocument),
    Column("data", JsonDocument, nullable=False),
    Index(None, "execution_id", "seq"),
)

# One row per live key. NULL tenants are stored as "" because NULLs never collide in a
# unique constraint, and a key without a tenant must still be unique.
idempotency_keys = Table(
    "fm_idempotency_keys",
    metadata,
    Column("tenant_key", String(200), primary_key=True),
    Column("flow_id", String(200), primary_key=True),
    Column("key", String(500), primary_key=True),
    Column("execution_id", ID, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index(None, "execution_id"),
)

flow_definitions = Table(
    "fm_flow_definitions",
    metadata,
    Column("flow_id", String(200), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("definition", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

triggers = Table(
    "fm_triggers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("name", String(200)),
    Column("flow_id", String(200), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("config", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index(None, "type", "enabled"),
)

# The unique (trigger_id, scheduled_for) makes "one fire per cron slot" a database guarantee.
trigger_fires = Table(
    "fm_trigger_fires",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("trigger_id", String(200), nullable=False),
    Column("scheduled_for", UtcDateTime, nullable=False),
    Column("execution_id", ID),
    Column("fired_at", UtcDateTime, nullable=False),
    UniqueConstraint("trigger_id", "scheduled_for"),
)

# Only a token's SHA-256 is stored: whoever reads the database cannot resume anything. A
# token is bound to the handler call that issued it (`sequence`, the execution's step_count
# then), so it can only end the wait that call committed.
resume_tokens = Table(
    "fm_resume_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("execution_id", ID, nullable=False),
    Column("step_id", String(200), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("outcomes", JsonDocument),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("used_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
    Column("revoked_reason", Text),
    Index(None, "execution_id"),
)

# Runs of stateful handlers: claimed with a lease; `runner_id` names the one instance whose
# writes still count.
jobs = Table(
    "fm_jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("execution_id", ID, nullable=False),
    Column("step_id", String(200), nullable=False),
    Column("handler_type", String(200), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", JsonDocument),
    Column("claims", Integer, nullable=False),
    Column("runner_id", String(64)),
    Column("lease_expires_at", UtcDateTime),
    Column("heartbeat_at", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("progress", JsonDocument),
    Column("checkpoint", JsonDocument),
    Column("result", JsonDocument),
    Column("error", JsonDocument),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index(None, "status", "lease_expires_at"),
    Index(None, "execution_id"),
)

# A parent step's wait for its children: counters changed only under this row's lock, so the
# branch that decides the join (and resumes the parent) is exactly one.
joins = Table(
    "fm_joins",
    metadata,
    Column("id", ID, primary_key=True),
    Column("parent_execution_id", ID, nullable=False),
    Column("step_id", String(200), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("policy", JsonDocument, nullable=False),
    Column("total", Integer, nullable=False),
    Column("started", Integer, nullable=False),
    Column("succeeded", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("max_concurrency", Integer),
    Column("parent_close", String(16), nullable=False),
    Column("output", JsonDocument),
    Column("created_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    Column("outcome", String(16)),
    Column("cancel_running", Boolean, nullable=False),
    Index(None, "parent_execution_id"),
)

join_branches = Table(
    "fm_join_branches",
    metadata,
    Column("join_id", ID, primary_key=True),
    Column("index", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("execution_id", ID),
    Column("spec", JsonDocument, nullable=False),
    Column("output", JsonDocument),
    Column("error", JsonDocument),
    Column("finished_at", UtcDateTime),
)

# Emitted events (`emit(type, payload, key=None)`), kept as an inbox. (`fm_events` is the
# executions' history.) `dedupe_key` encodes (tenant, key) so that a unique index can decide
# which of two emits of one key is stored: NULL tenants would never collide in a unique index
# on (tenant_id, key). It is NULL for an event without a key (NULLs never collide).
inbox_events = Table(
    "fm_inbox_events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("type", String(200), nullable=False),
    Column("payload", JsonDocument),
    Column("key", String(500)),
    Column("tenant_id", String(200)),
    Column("source", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("dispatched_at", UtcDateTime),
    Column("dedupe_key", Text),
    Index(None, "dedupe_key", unique=True),
    Index(None, "created_at", "id"),
    Index(None, "type", "created_at", "id"),
    # Only the few events whose dispatch has not finished (the tick's sweep looks for them).
    Index(
        "ix_fm_inbox_events_undispatched",
        "created_at",
        "id",
        postgresql_where=text("dispatched_at IS NULL"),
        sqlite_where=text("dispatched_at IS NULL"),
    ),
)

# `wait_for_event` steps waiting: taken (deleted) once, by whoever resumes the execution.
event_waits = Table(
    "fm_event_waits",
    metadata,
    Column("execution_id", ID, primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("step_id", String(200), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("match", JsonDocument, nullable=False),
    Column("tenant_id", String(200)),
    Column("since", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("inbox_checked_at", UtcDateTime),
    Index(None, "event_type", "created_at"),
    # The few waits whose inbox was never searched (the tick's sweep; migration 0007).
    Index(
        "ix_fm_event_waits_unchecked",
        "created_at",
        postgresql_where=text("inbox_checked_at IS NULL"),
        sqlite_where=text("inbox_checked_at IS NULL"),
    ),
)

# What happened each time an HTTP or event trigger fired (schedule slots: fm_trigger_fires).
trigger_history = Table(
    "fm_trigger_history",
    metadata,
    Column("id", ID, primary_key=True),
    Column("trigger_id", String(200), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("latency_ms", Float),
    Column("execution_id", ID),
    Column("event_id", ID),
    Column("error", JsonDocument),
    Index(None, "trigger_id", "at"),
    Index(None, "at"),  # retention: `delete_finished_before` (migration 0007)
)

# -- what the REST API keeps (stores/sql/operators.py) -----------------------------------------

# Only a key's SHA-256 is stored (like a resume token's); it is looked up by that hash.
api_keys = Table(
    "fm_api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("tenant_id", String(200)),
    Column("admin", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Index(None, "key_hash", unique=True),
    Index(None, "name", unique=True),
)

# Which tenant registered a flow id through the API: the primary key decides between two
# tenants registering one id at once (first claimer wins).
flow_owners = Table(
    "fm_flow_owners",
    metadata,
    Column("flow_id", String(200), primary_key=True),
    Column("tenant_id", String(200), nullable=False),
)

# When each periodic process ("tick", "api") last ran: one row per name, upserted.
heartbeats = Table(
    "fm_heartbeats",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
)
