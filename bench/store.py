"""Write throughput of SqlStore, next to the same writes hand-written with SQLAlchemy Core.

Run from the repository root:

    .venv/bin/python bench/store.py [--postgres-url URL] [--seconds N] [--writers 1,2]

What is measured, on PostgreSQL (a throwaway database `fm_bench_<random>`, dropped at the end)
and on SQLite (a file in a temporary directory), with 1 and 2 concurrent writers (separate
processes, each with its own SqlStore and its own raw engine):

- create: `SqlStore.create_execution` of a pending execution (context ~1 KB of JSON) with its
  one `execution.created` history event, as `Engine.create` does. No idempotency key.
- create+key: the same with a unique idempotency key each time (one more row, in
  fm_idempotency_keys).
- save: `SqlStore.save_execution(execution, expected_version=v, events=[step.completed])`, the
  write the engine makes after every step: a compare-and-set UPDATE of the execution row plus
  one history INSERT. Each writer saves its own executions in turn; nothing is loaded.

Each operation is also written "raw" in the same run, by the same processes: plain SQLAlchemy
Core statements on the same tables carrying the same rows (for save: UPDATE ... WHERE id AND
version, then INSERT the event), one transaction per operation, statements built once. The raw
engine has SQLAlchemy's defaults (so no pool_pre_ping), except on SQLite where it gets the
store's pragmas (WAL, synchronous=NORMAL, busy_timeout, BEGIN IMMEDIATE) so that both sides pay
the same durability and locking cost. Both sides make their input by copying a template (a
pydantic model for SqlStore, as the engine would hand it over; a dict for raw).

Each operation is warmed up, then timed for a fixed wall time per side, split into slices that
alternate between the sides (A B B A A B) so that a slow moment of the machine hits both. All
writers start each slice together; ops/s is the number completed by all writers divided by the
timed seconds. Latency is per operation, over all writers.

How to read the ratio: flowmonkey ops/s divided by raw SQL ops/s. 1.00 means SqlStore costs
nothing over hand-written SQL; 0.80 means it reaches 80% of the raw throughput, the rest being
SqlStore's own work (model dumps and copies, statement building, error translation, connection
checks). The p50 latencies of the two sides differ by that overhead per operation.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, bindparam, create_engine, insert, text, update
from sqlalchemy.engine import make_url

from flowmonkey_celery.core.events import EventType, HistoryEvent
from flowmonkey_celery.core.execution import Execution, ExecutionStatus
from flowmonkey_celery.stores.sql import SqlStore
from flowmonkey_celery.stores.sql.connection import WRITE, configure_sqlite
from flowmonkey_celery.stores.sql.rows import event_row, execution_row
from flowmonkey_celery.stores.sql.schema import events, executions, idempotency_keys

DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
WARMUP_SECONDS = 0.5
ROUNDS = 3  # each side's timed seconds are split into this many alternating slices
OPERATIONS = ("create", "create+key", "save")
SIDES = ("flowmonkey", "raw")
EXECUTIONS_PER_SAVER = 8
# Generous: a barrier only waits this long if another writer died.
BARRIER_TIMEOUT_SECONDS = 120


# -- the data written --------------------------------------------------------------------------


def order_context() -> dict[str, Any]:
    """A realistic workflow context: an order with a few lines, about 1 KB as JSON."""
    return {
        "order": {
            "id": "ord_7f3a9c2e41",
            "placed_at": "2024-05-01T12:30:00Z",
            "currency": "EUR",
            "customer": {
                "id": "cus_42",
                "email": "ada@example.com",
                "name": "Ada Lovelace",
                "tier": "gold",
            },
            "lines": [
                {"sku": f"SKU-{n:04d}", "quantity": n % 3 + 1, "unit_price": 9.5 + n}
                for n in range(8)
            ],
            "shipping": {
                "method": "express",
                "address": {"street": "12 Analytical Way", "city": "London", "zip": "N1 9GU"},
            },
        },
        "payment": {"provider": "stripe", "intent": "pi_3NqYx2", "status": "authorized"},
        "notes": "Leave the parcel with the neighbour if nobody answers the door.",
        "flags": {"gift": False, "priority": True, "fraud_checked": True},
    }


def template_execution(now: datetime) -> Execution:
    return Execution(
        id="template",
        flow_id="order-fulfilment",
        flow_version="1.0.0",
        status=ExecutionStatus.PENDING,
        current_step_id="reserve-stock",
        context=order_context(),
        tenant_id="acme",
        metadata={"source": "bench"},
        created_at=now,
        updated_at=now,
    )


def created_event(execution: Execution) -> HistoryEvent:
    return HistoryEvent(
        execution_id=execution.id,
        type=EventType.EXECUTION_CREATED,
        at=execution.created_at,
        step_id=execution.current_step_id,
        data={"flow_id": execution.flow_id, "flow_version": execution.flow_version},
    )


def step_completed_event(execution: Execution, now: datetime) -> HistoryEvent:
    return HistoryEvent(
        execution_id=execution.id,
        type=EventType.STEP_COMPLETED,
        at=now,
        step_id="reserve-stock",
        handler_type="http",
        outcome="success",
        attempt=1,
        started_at=now - timedelta(milliseconds=12),
        finished_at=now,
        duration_ms=12.0,
    )


# -- the two sides ------------------------------------------------------------------------------


class RawSql:
    """The same writes with plain SQLAlchemy Core statements, one transaction each."""

    INSERT_KEY = insert(idempotency_keys)
    INSERT_EXECUTION = insert(executions)
    INSERT_EVENT = insert(events)
    SAVE = update(executions).where(
        executions.c.id == bindparam("match_id"),
        executions.c.version == bindparam("match_version"),
    )

    def __init__(self, url: str) -> None:
        self.engine = raw_engine(url)

    def create(
        self, row: dict[str, Any], event: dict[str, Any], key: dict[str, Any] | None
    ) -> None:
        with self.engine.begin() as conn:
            if key is not None:
                conn.execute(self.INSERT_KEY, key)
            conn.execute(self.INSERT_EXECUTION, row)
            conn.execute(self.INSERT_EVENT, event)

    def save(self, row: dict[str, Any], version: int, event: dict[str, Any]) -> None:
        params = {**row, "match_id": row["id"], "match_version": version}
        del params["id"]
        with self.engine.begin() as conn:
            if conn.execute(self.SAVE, params).rowcount != 1:
                raise RuntimeError(f"raw save of {row['id']} found no row at version {version}")
            conn.execute(self.INSERT_EVENT, event)


def raw_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": 30})
    configure_sqlite(engine)  # same pragmas as the store: same durability cost
    return engine.execution_options(**WRITE)


def operations(store: SqlStore, raw: RawSql) -> dict[tuple[str, str], Callable[[], None]]:
    """For each (operation, side), a function doing one operation. Setup happens here."""
    now = datetime.now(UTC)
    key_expires_at = now + timedelta(hours=24)
    template = template_execution(now)
    template_row = execution_row(template)
    template_event_row = event_row(created_event(template))

    def store_create(with_key: bool) -> Callable[[], None]:
        def create() -> None:
            fields: dict[str, Any] = {"id": str(uuid.uuid4())}
            if with_key:
                fields |= {
                    "idempotency_key": uuid.uuid4().hex,
                    "idempotency_expires_at": key_expires_at,
                }
            execution = template.model_copy(update=fields)
            store.create_execution(execution, now=now, events=[created_event(execution)])

        return create

    def raw_create(with_key: bool) -> Callable[[], None]:
        def create() -> None:
            row = {**template_row, "id": str(uuid.uuid4())}
            event = {**template_event_row, "id": uuid.uuid4().hex, "execution_id": row["id"]}
            key = None
            if with_key:
                row |= {
                    "idempotency_key": uuid.uuid4().hex,
                    "idempotency_expires_at": key_expires_at,
                }
                key = {
                    "tenant_key": row["tenant_id"],
                    "flow_id": row["flow_id"],
                    "key": row["idempotency_key"],
                    "execution_id": row["id"],
                    "expires_at": key_expires_at,
                }
            raw.create(row, event, key)

        return create

    return {
        ("create", "flowmonkey"): store_create(with_key=False),
        ("create", "raw"): raw_create(with_key=False),
        ("create+key", "flowmonkey"): store_create(with_key=True),
        ("create+key", "raw"): raw_create(with_key=True),
        ("save", "flowmonkey"): store_saver(store, template, now),
        ("save", "raw"): raw_saver(store, raw, template, now),
    }


def saved_executions(store: SqlStore, template: Execution, now: datetime) -> list[Execution]:
    """Fresh executions for one writer to save over and over (created untimed)."""
    created = []
    for _ in range(EXECUTIONS_PER_SAVER):
        execution = template.model_copy(update={"id": str(uuid.uuid4())})
        created.append(store.create_execution(execution, now=now)[0])
    return created


def store_saver(store: SqlStore, template: Execution, now: datetime) -> Callable[[], None]:
    targets = saved_executions(store, template, now)
    slots = itertools.cycle(range(len(targets)))

    def save() -> None:
        slot = next(slots)
        execution = targets[slot]
        event = step_completed_event(execution, now)
        targets[slot] = store.save_execution(
            execution, expected_version=execution.version, events=[event]
        )

    return save


def raw_saver(
    store: SqlStore, raw: RawSql, template: Execution, now: datetime
) -> Callable[[], None]:
    rows = [execution_row(e) for e in saved_executions(store, template, now)]
    event = event_row(step_completed_event(template, now))
    turns = itertools.cycle(rows)

    def save() -> None:
        row = next(turns)
        version = row["version"]
        row["version"] = version + 1
        raw.save(row, version, {**event, "id": uuid.uuid4().hex, "execution_id": row["id"]})

    return save


# -- measuring ----------------------------------------------------------------------------------


def warm_up(operation: Callable[[], None], seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        operation()


def timed(operation: Callable[[], None], seconds: float) -> list[float]:
    """Run `operation` back to back for `seconds`; the latency of each, in seconds."""
    latencies = []
    stop_at = time.perf_counter() + seconds
    while (started := time.perf_counter()) < stop_at:
        operation()
        latencies.append(time.perf_counter() - started)
    return latencies


def schedule(seconds: float) -> Iterator[tuple[str, float]]:
    """(side, seconds) slices: the two sides alternate (A B B A A B) so that a slow moment
    of the machine (a checkpoint, another process) hits both rather than one."""
    for round_ in range(ROUNDS):
        for side in SIDES if round_ % 2 == 0 else SIDES[::-1]:
            yield side, seconds / ROUNDS


def writer_process(url: str, writer: int, seconds: float, barrier: Any, results: Any) -> None:
    """One writer: each operation on both sides, every slice started with the other writers."""
    try:
        store, raw = SqlStore(url), RawSql(url)
        try:
            runs = operations(store, raw)
            for operation in OPERATIONS:
                for side in SIDES:
                    barrier.wait(BARRIER_TIMEOUT_SECONDS)
                    warm_up(runs[operation, side], WARMUP_SECONDS)
                for side, slice_seconds in schedule(seconds):
                    barrier.wait(BARRIER_TIMEOUT_SECONDS)
                    latencies = timed(runs[operation, side], slice_seconds)
                    results.put((operation, side, latencies))  # plain data: pickles anywhere
        finally:
            store.dispose()
            raw.engine.dispose()
    except BaseException:
        barrier.abort()
        results.put(f"writer {writer} failed:\n{traceback.format_exc()}")


def run_cell(url: str, writers: int, seconds: float) -> dict[tuple[str, str], list[float]]:
    """Latencies of every (operation, side) on one database, over `writers` processes."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(writers), context.Queue()
    processes = [
        context.Process(target=writer_process, args=(url, n, seconds, barrier, results))
        for n in range(writers)
    ]
    for process in processes:
        process.start()
    latencies: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(writers * len(OPERATIONS) * len(SIDES) * ROUNDS):
            message = results.get(timeout=BARRIER_TIMEOUT_SECONDS + seconds)
            if isinstance(message, str):
                raise RuntimeError(message)
            operation, side, measured = message
            latencies.setdefault((operation, side), []).extend(measured)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
    return latencies


@dataclass
class Result:
    """One table row: an operation on one database with N writers, both sides."""

    database: str
    writers: int
    operation: str
    ops: dict[str, float]  # side -> ops/s over all writers
    p50: dict[str, float]  # side -> ms
    p95: dict[str, float]  # side -> ms

    @property
    def ratio(self) -> float:
        raw = self.ops["raw"]
        return self.ops["flowmonkey"] / raw if raw else float("nan")


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def summarize(
    database: str, writers: int, seconds: float, latencies: dict[tuple[str, str], list[float]]
) -> list[Result]:
    results = []
    for operation in OPERATIONS:
        ops, p50, p95 = {}, {}, {}
        for side in SIDES:
            measured = sorted(latencies[operation, side])
            ops[side] = len(measured) / seconds
            p50[side] = percentile(measured, 0.50) * 1000
            p95[side] = percentile(measured, 0.95) * 1000
        results.append(Result(database, writers, operation, ops, p50, p95))
    return results


# -- databases ----------------------------------------------------------------------------------


def postgres_admin(url: str) -> Engine:
    """An AUTOCOMMIT engine on the admin URL, or exit with a clear message."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        sys.exit(
            f"error: PostgreSQL is not reachable at {shown} ({reason}).\n"
            "Start it (e.g. `docker compose -f deploy/docker-compose.yml up -d postgres`) or "
            "pass --postgres-url with a user allowed to create databases."
        )
    return admin


@contextmanager
def postgres_database(admin: Engine) -> Iterator[str]:
    """A fresh, migrated database; dropped afterwards."""
    name = f"fm_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        migrate(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def sqlite_database() -> Iterator[str]:
    """A fresh, migrated SQLite file in a temporary directory; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="fm_bench_") as directory:
        url = f"sqlite:///{directory}/fm.db"
        migrate(url)
        yield url


def migrate(url: str) -> None:
    store = SqlStore(url)
    store.migrate()
    store.dispose()


def server_version(admin: Engine) -> str:
    with admin.connect() as connection:
        return str(connection.execute(text("SHOW server_version")).scalar())


# -- output -------------------------------------------------------------------------------------


def results_table(results: list[Result]) -> Table:
    table = Table(title="SqlStore vs raw SQLAlchemy Core (ops/s over all writers)")
    for name in ("database", "writers", "operation"):
        table.add_column(name)
    for name in (
        "flowmonkey ops/s",
        "raw SQL ops/s",
        "ratio",
        "flowmonkey p50/p95 ms",
        "raw p50/p95 ms",
    ):
        table.add_column(name, justify="right")
    for r in results:
        table.add_row(
            r.database,
            str(r.writers),
            r.operation,
            f"{r.ops['flowmonkey']:,.0f}",
            f"{r.ops['raw']:,.0f}",
            f"{r.ratio:.2f}",
            f"{r.p50['flowmonkey']:.2f} / {r.p95['flowmonkey']:.2f}",
            f"{r.p50['raw']:.2f} / {r.p95['raw']:.2f}",
        )
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="admin URL; a throwaway database is created and dropped (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="timed seconds per measurement (default: 3)"
    )
    parser.add_argument(
        "--writers",
        default="1,2",
        type=lambda value: [int(n) for n in value.split(",")],
        help="concurrent writer processes, comma separated (default: 1,2)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    admin = postgres_admin(args.postgres_url)
    console = Console()
    if not console.is_terminal:  # piped to a file: do not squeeze the table into 80 columns
        console = Console(width=132)
    console.print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"PostgreSQL {server_version(admin)}, SQLite {sqlite3.sqlite_version}, "
        f"{args.seconds:g} s per measurement after {WARMUP_SECONDS:g} s warm-up"
    )
    results: list[Result] = []
    databases = {"PostgreSQL": lambda: postgres_database(admin), "SQLite": sqlite_database}
    for database, fresh in databases.items():
        for writers in args.writers:
            with fresh() as url:
                console.print(f"measuring {database} with {writers} writer(s)...")
                latencies = run_cell(url, writers, args.seconds)
            results.extend(summarize(database, writers, args.seconds, latencies))
    admin.dispose()
    console.print(results_table(results))


if __name__ == "__main__":
    main()
