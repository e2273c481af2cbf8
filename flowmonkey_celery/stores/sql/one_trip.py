"""PostgreSQL: a step's save (compare-and-set of the execution row plus its history events) as
one statement, run in autocommit, so it costs one round trip instead of four (BEGIN, UPDATE,
INSERT, COMMIT). A single statement is atomic: either the row and all events are written, or
(version mismatch) nothing is.

    WITH saved AS (UPDATE fm_executions SET ... WHERE id = :match_id AND version = :match_version
                   RETURNING 1),
         written AS (INSERT INTO fm_events (...) SELECT ... FROM (VALUES (...), ...) AS v (...)
                     WHERE EXISTS (SELECT 1 FROM saved))
    SELECT count(*) FROM saved

Events go in with one multi-row INSERT, as the transactional path writes them, so their `seq`
follows their order in the list.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import psycopg2 as postgresql_psycopg2

from flowmonkey_celery.stores.sql.schema import events, executions

_DIALECT = postgresql_psycopg2.dialect()  # type: ignore[no-untyped-call]
_EXECUTION_COLUMNS = [c for c in executions.columns if c.name != "id"]
_EVENT_COLUMNS = [c for c in events.columns if c.name != "seq"]


def _sql_type(column: Any) -> str:
    return str(column.type.compile(dialect=_DIALECT))


@lru_cache(maxsize=32)
def save_statement(event_count: int) -> TextClause:
    """The statement for a save with `event_count` events (built once per count)."""
    assignments = ", ".join(f'"{c.name}" = :{c.name}' for c in _EXECUTION_COLUMNS)
    sql = (
        f"WITH saved AS (UPDATE {executions.name} SET {assignments} "
        "WHERE id = :match_id AND version = :match_version RETURNING 1)"
    )
    binds = [bindparam(c.name, type_=c.type) for c in _EXECUTION_COLUMNS]
    binds += [bindparam("match_id"), bindparam("match_version")]
    if event_count:
        names = ", ".join(f'"{c.name}"' for c in _EVENT_COLUMNS)
        # VALUES rows carry no column types of their own: each value is cast explicitly.
        rows = ", ".join(
            "(" + ", ".join(f"CAST(:e{i}_{c.name} AS {_sql_type(c)})" for c in _EVENT_COLUMNS) + ")"
            for i in range(event_count)
        )
        sql += (
            f", written AS (INSERT INTO {events.name} ({names}) SELECT * FROM (VALUES {rows}) "
            f"AS v ({names}) WHERE EXISTS (SELECT 1 FROM saved))"
        )
        binds += [
            bindparam(f"e{i}_{c.name}", type_=c.type)
            for i in range(event_count)
            for c in _EVENT_COLUMNS
        ]
    return text(sql + " SELECT count(*) FROM saved").bindparams(*binds)


def save_parameters(row: dict[str, Any], event_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Parameters for `save_statement(len(event_rows))`; `row` already holds match_id and
    match_version."""
    parameters = dict(row)
    for i, event in enumerate(event_rows):
        for column in _EVENT_COLUMNS:
            parameters[f"e{i}_{column.name}"] = event[column.name]
    return parameters
