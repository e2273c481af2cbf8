"""PostgreSQL: the save every step makes (compare-and-set of the execution row plus its
history events) as one prepared statement, run in autocommit: one round trip instead of four
(BEGIN, UPDATE, INSERT, COMMIT), and no parsing or planning of a 100-parameter statement on
either side after the first time a connection runs it. One statement is atomic: either the row
and all its events are written, or (version mismatch) nothing is.

    PREPARE fm_save_3 AS
    WITH saved AS (UPDATE fm_executions SET ... WHERE id = $29 AND version = $30 RETURNING 1),
         written AS (INSERT INTO fm_events (...) SELECT * FROM (VALUES (...), ...) AS v (...)
                     WHERE EXISTS (SELECT 1 FROM saved))
    SELECT count(*) FROM saved

Events go in with one multi-row INSERT, as the transactional path writes them, so their `seq`
follows their order in the list. Each connection prepares a statement the first time it needs
it (one per number of events); if the server has forgotten it (a pooler's DISCARD ALL), it is
prepared again. If it is forgotten again at once, or a PREPARE finds the name taken, statements
are not reaching one server session (a transaction-mode pooler such as PgBouncer, which keeps
only protocol-level prepared statements): `PreparedStatementsLost` tells the store to save
with transactions instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Column, Connection, Dialect
from sqlalchemy.exc import DBAPIError

from flowmonkey_celery.stores.sql.schema import events, executions

_EXECUTION_COLUMNS = [c for c in executions.columns if c.name != "id"]
_EVENT_COLUMNS = [c for c in events.columns if c.name != "seq"]
_PREPARED = "flowmonkey_prepared"  # key in the pooled connection's info: names prepared there
_UNKNOWN_STATEMENT = "26000"  # invalid_sql_statement_name: "prepared statement ... does not exist"
_DUPLICATE_STATEMENT = "42P05"  # duplicate_prepared_statement: "... already exists"


class PreparedStatementsLost(Exception):
    """The server sessions behind this connection do not keep prepared statements. Nothing of
    the save was executed."""


def pgcode(error: DBAPIError) -> str | None:
    return getattr(error.orig, "pgcode", None)


class OneTripSaves:
    """Prepared saves on one PostgreSQL dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._execution_values = [(c.name, _bind(c, dialect)) for c in _EXECUTION_COLUMNS]
        self._event_values = [(c.name, _bind(c, dialect)) for c in _EVENT_COLUMNS]

    def save(
        self,
        conn: Connection,
        row: dict[str, Any],
        match_id: str,
        match_version: int,
        event_rows: Sequence[dict[str, Any]],
    ) -> bool:
        """Run the save on `conn` (in autocommit); False if the version did not match."""
        values: list[Any] = [convert(row[name]) for name, convert in self._execution_values]
        values += [match_id, match_version]
        for event in event_rows:
            values += [convert(event[name]) for name, convert in self._event_values]
        name = f"fm_save_{len(event_rows)}"
        execute = f"EXECUTE {name} ({', '.join(['%s'] * len(values))})"
        self._prepare(conn, name, len(event_rows))
        try:
            saved = conn.exec_driver_sql(execute, tuple(values)).scalar_one()
        except DBAPIError as exc:
            if pgcode(exc) != _UNKNOWN_STATEMENT:
                raise
            conn.info.pop(_PREPARED, None)
            self._prepare(conn, name, len(event_rows))
            try:
                saved = conn.exec_driver_sql(execute, tuple(values)).scalar_one()
            except DBAPIError as again:
                if pgcode(again) == _UNKNOWN_STATEMENT:
                    raise PreparedStatementsLost(str(again.orig).strip()) from again
                raise
        return bool(saved == 1)

    def _prepare(self, conn: Connection, name: str, event_count: int) -> None:
        prepared: set[str] = conn.info.setdefault(_PREPARED, set())
        if name not in prepared:
            try:
                conn.exec_driver_sql(f"PREPARE {name} AS {self._statement(event_count)}")
            except DBAPIError as exc:
                if pgcode(exc) == _DUPLICATE_STATEMENT:  # made by another client of the pooler
                    raise PreparedStatementsLost(str(exc.orig).strip()) from exc
                raise
            prepared.add(name)

    def _statement(self, event_count: int) -> str:
        count = len(_EXECUTION_COLUMNS)
        assignments = ", ".join(f'"{c.name}" = ${n}' for n, c in enumerate(_EXECUTION_COLUMNS, 1))
        sql = (
            f"WITH saved AS (UPDATE {executions.name} SET {assignments} "
            f"WHERE id = ${count + 1} AND version = ${count + 2} RETURNING 1)"
        )
        if event_count:
            names = ", ".join(f'"{c.name}"' for c in _EVENT_COLUMNS)
            first = count + 3
            width = len(_EVENT_COLUMNS)
            # VALUES rows carry no column types of their own: each parameter is cast.
            rows = ", ".join(
                "("
                + ", ".join(
                    f"CAST(${first + i * width + j} AS {self._sql_type(c)})"
                    for j, c in enumerate(_EVENT_COLUMNS)
                )
                + ")"
                for i in range(event_count)
            )
            sql += (
                f", written AS (INSERT INTO {events.name} ({names}) SELECT * FROM (VALUES {rows}) "
                f"AS v ({names}) WHERE EXISTS (SELECT 1 FROM saved))"
            )
        return sql + " SELECT count(*) FROM saved"

    def _sql_type(self, column: Column[Any]) -> str:
        return str(column.type.compile(dialect=self._dialect))


def _bind(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any]:
    """The column type's own conversion of a Python value for the driver (JSON documents to
    text, datetimes to UTC), as SQLAlchemy applies it to compiled statements."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _unchanged


def _unchanged(value: Any) -> Any:
    return value
