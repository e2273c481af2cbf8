"""Creating SQLAlchemy engines that behave well for this workload on PostgreSQL and SQLite."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import StaticPool

# SQLite allows one writer at a time. Write transactions start with BEGIN IMMEDIATE so that
# they queue for the write lock up front (waiting up to busy_timeout) instead of failing with
# "database is locked" when a read transaction later tries to upgrade.
WRITE = {"flowmonkey_write": True}
SQLITE_BUSY_TIMEOUT_MS = 30_000


# A pooled connection idle for longer than this is checked (one `SELECT 1`) before use; one in
# steady use is not. A connection dropped within the window (say, the database restarted under
# a busy worker) fails one operation with a retryable StoreUnavailableError and is replaced.
PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(
    url: str | URL,
    *,
    ping_after_idle_seconds: float | None = PING_AFTER_IDLE_SECONDS,
    **options: Any,
) -> Engine:
    """An Engine for `url` (postgresql+psycopg2://... or sqlite:///path).

    On PostgreSQL, pooled connections idle for `ping_after_idle_seconds` or more are checked
    before use (None: never; `pool_pre_ping=True`: always, SQLAlchemy's own check). SQLAlchemy's
    pre-ping costs a round trip on every checkout, a third of the time of a short transaction;
    a worker stepping executions back to back needs none of them.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, **options)
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 20)
    engine = create_engine(parsed, **options)
    if ping_after_idle_seconds is not None and not options.get("pool_pre_ping"):
        ping_idle_connections(engine, ping_after_idle_seconds)
    return engine


def ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Check a pooled connection before use if it sat idle `idle_seconds` or more."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["flowmonkey_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("flowmonkey_idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # new, or in steady use
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(f"pooled connection failed its liveness check: {exc}") from exc


def _sqlite_engine(url: URL, **options: Any) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    connect_args = options.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    if in_memory:
        # One shared connection, or every thread would see its own empty database.
        options.setdefault("poolclass", StaticPool)
    engine = create_engine(url, connect_args=connect_args, **options)
    configure_sqlite(engine, wal=not in_memory)
    return engine


def configure_sqlite(engine: Engine, *, wal: bool = True) -> None:
    """Pragmas and explicit transaction control for a SQLite engine."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from pysqlite, which would otherwise BEGIN lazily.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get("flowmonkey_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _switch_to_wal(cursor: Any) -> None:
    # While another connection is switching a new file to WAL, SQLite answers "database is
    # locked" at once, ignoring busy_timeout. A worker and the beat starting together on a
    # fresh FLOWMONKEY_HOME hit exactly that, so wait it out here.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def describe(url: str | URL) -> str:
    """The URL with its password hidden, for error messages and logs."""
    return make_url(url).render_as_string(hide_password=True)
