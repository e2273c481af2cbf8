"""Creating SQLAlchemy engines that behave well for this workload on PostgreSQL and SQLite."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

# SQLite allows one writer at a time. Write transactions start with BEGIN IMMEDIATE so that
# they queue for the write lock up front (waiting up to busy_timeout) instead of failing with
# "database is locked" when a read transaction later tries to upgrade.
WRITE = {"flowmonkey_write": True}
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str | URL, **options: Any) -> Engine:
    """An Engine for `url` (postgresql+psycopg2://... or sqlite:///path)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, **options)
    options.setdefault("pool_pre_ping", True)
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 20)
    return create_engine(parsed, **options)


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
