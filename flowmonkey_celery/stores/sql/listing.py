"""The query behind `SqlStore.list_executions`: one SELECT, whatever the filters, walking an
index on `(..., created_at, id)` in order, forwards or (newest first) backwards, by status,
flow or tenant if one is given. A metadata or idempotency key filter finds its few rows
through its own index instead (GIN on the metadata, a partial index on the key; migration
0006), and sorts them.

Metadata filters compare like the MemoryStore: a text value as it is, a number, boolean or
null by its JSON text (`42` matches "42", `true` matches "true", a text "42" matches "42"
too). The JSON document is read in SQL, per dialect:

- PostgreSQL: containment, which the GIN index (`jsonb_path_ops`) answers and whose
  selectivity the planner estimates from the column's statistics (so that a common value
  pages through the time index and a rare one through the GIN index): `metadata @> {key:
  value}` finds the text value, OR `metadata @> {key: <what the text spells as JSON>}` the
  boolean or null (`true`, `null`), or the number, object or array, which must also have
  `metadata ->> key` (its JSON text) equal to the text: containment compares numbers by
  value (42.0 contains 42), the filter by their text ("42" is not "42.0").
- SQLite: `json_each(metadata)` gives every entry's raw `key` (no JSON path to escape), its
  `type` and its value as SQL (`atom`); a boolean's atom is 1, so the type decides. A number is
  compared as the number its text stands for, of the same JSON type (integer or real).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    and_,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB

from flowmonkey_celery.core.execution import ExecutionStatus, WaitKind
from flowmonkey_celery.stores.sql.schema import executions

_INT64 = range(-(2**63), 2**63)
_NOT_JSON = object()


def list_query(
    dialect: str,
    *,
    status: ExecutionStatus | str | None = None,
    flow_id: str | None = None,
    tenant_id: str | None = None,
    limit: int = 100,
    after: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
    newest_first: bool = False,
    wait_kinds: Sequence[WaitKind | str] | None = None,
) -> Select[Any]:
    c = executions.c
    query = select(executions).where(
        *filters(
            dialect,
            flow_id=flow_id,
            tenant_id=tenant_id,
            created_after=created_after,
            created_before=created_before,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
    )
    if status is not None:
        query = query.where(c.status == ExecutionStatus(status).value)
    if wait_kinds is not None:
        query = query.where(c.wait_kind.in_([WaitKind(kind).value for kind in wait_kinds]))
    if after is not None:
        # The cursor's position read in the same statement; a cursor naming no execution
        # compares with NULL and matches nothing (the caller then says so).
        cursor = executions.alias("page_cursor")
        anchor = select(cursor.c.created_at).where(cursor.c.id == after).scalar_subquery()
        position, mark = tuple_(c.created_at, c.id), tuple_(anchor, after)
        query = query.where(position < mark if newest_first else position > mark)
    if newest_first:
        return query.order_by(c.created_at.desc(), c.id.desc()).limit(limit)
    return query.order_by(c.created_at, c.id).limit(limit)


def filters(
    dialect: str,
    *,
    flow_id: str | None = None,
    tenant_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of every filter but status (lists and counts share them)."""
    c = executions.c
    clauses: list[ColumnElement[bool]] = []
    if flow_id is not None:
        clauses.append(c.flow_id == flow_id)
    if tenant_id is not None:
        clauses.append(c.tenant_id == tenant_id)
    if created_after is not None:
        clauses.append(c.created_at >= created_after)
    if created_before is not None:
        clauses.append(c.created_at < created_before)
    if idempotency_key is not None:
        # `IS NOT NULL` is what lets PostgreSQL and SQLite use the partial index.
        clauses.append(and_(c.idempotency_key.isnot(None), c.idempotency_key == idempotency_key))
    for key, value in (metadata or {}).items():
        clauses.append(metadata_equals(dialect, key, value))
    return clauses


def metadata_equals(dialect: str, key: str, value: str) -> ColumnElement[bool]:
    """The execution's metadata has `key`, and its value is `value` as text (see above)."""
    if not isinstance(value, str):
        raise TypeError(f"metadata filter values are text, got {value!r} for {key!r}")
    document = executions.c.metadata
    if dialect == "postgresql":
        # Containment is the comparison itself for a text, boolean or null value; a number,
        # object or array it finds (42.0 for 42) is checked against its JSON text too.
        as_jsonb = type_coerce(document, JSONB())  # `@>` (the generic `contains` is LIKE)

        def contains(candidate: object) -> ColumnElement[bool]:
            return as_jsonb.contains(cast(literal(json.dumps({key: candidate}), Text), JSONB))

        matches: ColumnElement[bool] = contains(value)
        parsed = _json_value(value)
        if parsed is None or isinstance(parsed, bool):
            matches = or_(matches, contains(parsed))
        elif parsed is not _NOT_JSON:
            matches = or_(matches, and_(contains(parsed), document[key].as_string() == value))
        return matches
    entry = func.json_each(document).table_valued("key", "type", "atom")
    same = [and_(entry.c.type == "text", entry.c.atom == value)]
    scalar = _json_scalar(value)
    if isinstance(scalar, bool):
        same.append(entry.c.type == ("true" if scalar else "false"))
    elif scalar is None and value == "null":
        same.append(entry.c.type == "null")
    elif isinstance(scalar, int) and scalar in _INT64:
        same.append(and_(entry.c.type == "integer", entry.c.atom == scalar))
    elif isinstance(scalar, float):
        same.append(and_(entry.c.type == "real", entry.c.atom == scalar))
    return exists().where(entry.c.key == key, or_(*same))


def _json_value(text: str) -> object:
    """What `text` spells as JSON, unless it is not JSON or a JSON string (`_NOT_JSON`): a
    stored value whose JSON text is `text` equals it (numbers numerically), so containment of
    it finds that row."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return _NOT_JSON
    if isinstance(parsed, str) or (isinstance(parsed, float) and not math.isfinite(parsed)):
        return _NOT_JSON
    return parsed


def _json_scalar(text: str) -> object:
    """The number, boolean or null whose JSON text (as Python writes it, like the stored
    document) is exactly `text`; None if there is none (then only a text value matches)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if isinstance(parsed, str | list | dict) or json.dumps(parsed) != text:
        return None
    if isinstance(parsed, float) and not math.isfinite(parsed):
        return None
    return parsed
