"""bench/dashboard.py's data: N executions (and the history of a sample of them) written
straight into a migrated PostgreSQL database with `INSERT ... SELECT generate_series`, a few
seconds per 100,000 rows on 2 CPUs.

What a deployment that has run for a month looks like, deterministically (the same rows for
the same `rows` and `now`; ids are `md5('fm-dash-<i>')` as a UUID):

- flows: `orders` 35 %, `invoices` 20 %, `shipping` 15 %, `onboarding` 12 %, `reports` 10 %,
  `approvals` 8 %; tenants `acme` 30 %, `globex` 25 %, `initech` 20 %, `umbrella` 10 %,
  `hooli` 5 %, no tenant 10 %;
- created over the 30 days before `now`; statuses: 90.5 % completed, 5 % failed, 1.5 %
  cancelled, 2 % waiting (for a signal, over the whole month), 0.7 % running and 0.3 % pending
  (created in the last hour);
- metadata `{"region": eu|us|apac, "customer": "c-<i mod 50,000>"}` (a customer has 20
  executions at 1,000,000 rows), plus `"order_id": "o-<i>"` (one execution each) for `orders`;
- an idempotency key `idem-<i>` on every third execution;
- a context of about 300 bytes (an order and its customer), an error for the failed ones, a
  cancellation for the cancelled ones;
- history: every `HISTORY_EVERY`-th execution has its events (created, started, three steps of
  step.started / step.completed / transition, and its end), 12 events each.

The rows are inserted with the schema's indexes in place (as the runtime would have written
them), then `VACUUM ANALYZE` (what autovacuum does to a table this size within minutes) sets
the visibility map and the planner's statistics.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text

FLOWS = (
    ("orders", 0.35),
    ("invoices", 0.20),
    ("shipping", 0.15),
    ("onboarding", 0.12),
    ("reports", 0.10),
    ("approvals", 0.08),
)
TENANTS = (
    ("acme", 0.30),
    ("globex", 0.25),
    ("initech", 0.20),
    ("umbrella", 0.10),
    ("hooli", 0.05),
    (None, 0.10),
)
# Cumulative: a uniform draw below the first bound is completed, and so on.
STATUSES = (
    ("completed", 0.905),
    ("failed", 0.955),
    ("cancelled", 0.970),
    ("waiting", 0.990),
    ("running", 0.997),
    ("pending", 1.0),
)
CUSTOMERS = 50_000
HISTORY_EVERY = 50  # 20,000 executions with a history at 1,000,000 rows
EVENTS_PER_EXECUTION = 12
STEPS = ("validate", "charge", "notify")
DAYS = 30


def execution_id(i: int) -> str:
    """The id of the i-th generated execution (1-based), as the SQL below makes it."""
    return str(uuid.UUID(hashlib.md5(f"fm-dash-{i}".encode()).hexdigest()))


def _case(draw: str, choices: tuple[tuple[str | None, float], ...]) -> str:
    """A CASE picking a choice by a uniform draw in [0, 1) and the choices' weights."""
    arms, bound = [], 0.0
    for value, weight in choices[:-1]:
        bound += weight
        arms.append(f"WHEN {draw} < {bound:.4f} THEN {_literal(value)}")
    return f"CASE {' '.join(arms)} ELSE {_literal(choices[-1][0])} END"


def _status_case(draw: str) -> str:
    arms = [f"WHEN {draw} < {bound} THEN '{status}'" for status, bound in STATUSES[:-1]]
    return f"CASE {' '.join(arms)} ELSE '{STATUSES[-1][0]}' END"


def _literal(value: str | None) -> str:
    return "NULL" if value is None else f"'{value}'"


# One row of draws per execution; the columns are computed from them in the outer SELECT.
# `g.age` is how long before :now the execution was created: live ones (running, pending) in
# the last hour, everything else anywhere in the month.
_DRAWS = f"""
SELECT g.i, g.rs, g.rf, g.rt, g.ra, g.status,
       (:now)::timestamptz - CASE WHEN g.status IN ('running', 'pending')
                                  THEN g.ra * interval '1 hour'
                                  ELSE g.ra * interval '{DAYS} days' END AS created_at
FROM (
    SELECT d.*, {_status_case("d.rs")} AS status
    FROM (
        SELECT i, random() AS rs, random() AS rf, random() AS rt, random() AS ra
        FROM generate_series(:first, :last) AS i
    ) AS d
) AS g
"""

_INSERT_EXECUTIONS = f"""
INSERT INTO fm_executions (
    id, flow_id, flow_version, status, current_step_id, context, wake_at, wait_reason,
    wait_kind, wait_started_at, wait_deadline_at, deadline_at, lease_expires_at, error,
    step_count, tenant_id, metadata, parent_execution_id, idempotency_key,
    idempotency_expires_at, cancellation, timeout, retry_attempts, created_at, updated_at,
    started_at, finished_at, version, join_id, branch_index, parent_close
)
SELECT
    md5('fm-dash-' || x.i)::uuid::text,
    x.flow_id,
    '1.0.0',
    x.status,
    CASE x.status WHEN 'completed' THEN 'notify' WHEN 'pending' THEN 'validate'
                  WHEN 'waiting' THEN 'approve' ELSE 'charge' END,
    jsonb_build_object(
        'order', jsonb_build_object(
            'id', 'o-' || x.i, 'total', round((x.rf * 500)::numeric, 2), 'currency', 'EUR',
            'items', jsonb_build_array(
                jsonb_build_object('sku', 'MONKEY-01', 'qty', 1 + x.i % 4, 'price', 12.5),
                jsonb_build_object('sku', 'BANANA-09', 'qty', 12, 'price', 0.35))),
        'customer', jsonb_build_object(
            'id', 'c-' || x.i % {CUSTOMERS}, 'email', 'c' || x.i % {CUSTOMERS} || '@example.com',
            'tier', CASE WHEN x.rt < 0.2 THEN 'gold' ELSE 'standard' END)),
    NULL,
    CASE WHEN x.status = 'waiting' THEN 'approval by a manager' END,
    CASE WHEN x.status = 'waiting' THEN 'signal' END,
    CASE WHEN x.status = 'waiting' THEN x.created_at + interval '2 seconds' END,
    NULL,
    NULL,
    CASE WHEN x.status IN ('running', 'pending') THEN (:now)::timestamptz + interval '5 minutes'
    END,
    CASE WHEN x.status = 'failed' THEN jsonb_build_object(
        'code', 'HANDLER_ERROR', 'message', 'card declined', 'step_id', 'charge',
        'details', jsonb_build_object('attempts', 3)) END,
    CASE x.status WHEN 'completed' THEN 3 WHEN 'pending' THEN 0 ELSE 2 END,
    x.tenant_id,
    jsonb_build_object('region', (ARRAY['eu', 'us', 'apac'])[1 + x.i % 3],
                       'customer', 'c-' || x.i % {CUSTOMERS})
        || CASE WHEN x.flow_id = 'orders' THEN jsonb_build_object('order_id', 'o-' || x.i)
                ELSE '{{}}'::jsonb END,
    NULL,
    CASE WHEN x.i % 3 = 0 THEN 'idem-' || x.i END,
    CASE WHEN x.i % 3 = 0 THEN x.created_at + interval '1 day' END,
    CASE WHEN x.status = 'cancelled' THEN jsonb_build_object(
        'source', 'user', 'reason', 'customer asked',
        'cancelled_at', to_char((x.created_at + interval '1 minute') AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS"Z"')) END,
    NULL,
    CASE WHEN x.status = 'failed' THEN 2 ELSE 0 END,
    x.created_at,
    x.created_at + interval '3 seconds',
    CASE WHEN x.status <> 'pending' THEN x.created_at + interval '50 milliseconds' END,
    CASE WHEN x.status IN ('completed', 'failed', 'cancelled')
         THEN x.created_at + x.rt * interval '2 minutes' END,
    CASE x.status WHEN 'completed' THEN 6 WHEN 'pending' THEN 0 ELSE 4 END,
    NULL,
    NULL,
    NULL
FROM (
    SELECT g.*, {_case("g.rf", FLOWS)} AS flow_id, {_case("g.rt", TENANTS)} AS tenant_id
    FROM ({_DRAWS}) AS g
) AS x
"""

# 12 events for each sampled execution, in order: created, started, then per step
# step.started / step.completed / transition, then its end (or its wait).
_INSERT_EVENTS = f"""
INSERT INTO fm_events (id, execution_id, type, at, step_id, handler_type, outcome, attempt,
                       started_at, finished_at, duration_ms, error, data)
SELECT md5(e.id || '/' || n.k), e.id, n.type, e.created_at + n.k * interval '10 milliseconds',
       n.step_id,
       CASE WHEN n.type = 'step.completed' THEN 'bench-' || n.step_id END,
       CASE WHEN n.type = 'step.completed' THEN 'success' END,
       CASE WHEN n.type = 'step.completed' THEN 1 END,
       CASE WHEN n.type = 'step.completed'
            THEN e.created_at + (n.k - 1) * interval '10 milliseconds' END,
       CASE WHEN n.type = 'step.completed' THEN e.created_at + n.k * interval '10 milliseconds'
       END,
       CASE WHEN n.type = 'step.completed' THEN 9.5 END,
       NULL,
       CASE WHEN n.type = 'transition' THEN jsonb_build_object('to', n.next_step)
            ELSE '{{}}'::jsonb END
FROM fm_executions AS e
CROSS JOIN LATERAL (
    SELECT k, type, step_id, next_step FROM (VALUES
        (0, 'execution.created', NULL, NULL),
        (1, 'execution.started', NULL, NULL),
        (2, 'step.started', '{STEPS[0]}', NULL),
        (3, 'step.completed', '{STEPS[0]}', NULL),
        (4, 'transition', '{STEPS[0]}', '{STEPS[1]}'),
        (5, 'step.started', '{STEPS[1]}', NULL),
        (6, 'step.completed', '{STEPS[1]}', NULL),
        (7, 'transition', '{STEPS[1]}', '{STEPS[2]}'),
        (8, 'step.started', '{STEPS[2]}', NULL),
        (9, 'step.completed', '{STEPS[2]}', NULL),
        (10, 'transition', '{STEPS[2]}', NULL),
        (11, CASE e.status WHEN 'completed' THEN 'execution.completed'
                           WHEN 'failed' THEN 'execution.failed'
                           WHEN 'cancelled' THEN 'execution.cancelled'
                           ELSE 'execution.waiting' END, NULL, NULL)
    ) AS v (k, type, step_id, next_step)
) AS n
WHERE e.id = ANY(:ids)
"""

BATCH = 100_000  # rows per INSERT: one transaction each, so progress can be shown


@dataclass(frozen=True)
class Loaded:
    rows: int
    events: int
    seconds_insert: float
    seconds_vacuum: float


def load(
    engine: Engine,
    rows: int,
    now: datetime,
    *,
    progress: Callable[[int, int], object] | None = None,
) -> Loaded:
    """Insert `rows` executions created before `now` and the history of every
    `HISTORY_EVERY`-th one, then VACUUM ANALYZE. `progress(done, rows)` is called after each
    batch when given."""
    started = time.monotonic()
    for first in range(1, rows + 1, BATCH):
        last = min(rows, first + BATCH - 1)
        with engine.begin() as connection:
            _seed(connection, first)
            connection.execute(text(_INSERT_EXECUTIONS), {"now": now, "first": first, "last": last})
            sampled = [execution_id(i) for i in range(first, last + 1) if i % HISTORY_EVERY == 0]
            if sampled:
                connection.execute(text(_INSERT_EVENTS), {"ids": sampled})
        if progress is not None:
            progress(last, rows)
    inserted = time.monotonic()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE fm_executions"))
        connection.execute(text("VACUUM ANALYZE fm_events"))
        events = connection.execute(text("SELECT count(*) FROM fm_events")).scalar_one()
    return Loaded(rows, int(events), inserted - started, time.monotonic() - inserted)


def _seed(connection: Connection, first: int) -> None:
    """The same draws for the same batch, whatever ran before it in the session."""
    connection.execute(text("SELECT setseed(:seed)"), {"seed": (first % 9973) / 9973.0})
