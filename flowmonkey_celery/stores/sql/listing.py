"""The query behind `SqlStore.list_executions`: one SELECT, whatever the filters, walking an
index on `(..., created_at, id)` in order (by status, flow or tenant if one is given).

Metadata filters compare like the MemoryStore: a text value as it is, a number, boolean or
null by its JSON text (`42` matches "42", `true` matches "true", a text "42" matches "42"
too). The JSON document is read in SQL, per dialect:

- PostgreSQL: `metadata ->> key` is a text value as it is and anything else as its JSON
  text (a JSON null is SQL NULL there, so "null" also accepts `jsonb_typeof = 'null'`).
- SQLite: `json_each(metadata)` gives every entry's raw `key` (no JSON path to escape), its
  `type` and its value as SQL (`atom`); a boolean's atom is 1, so the type decides. A number is
  compared as the number its text stands for, of the same JSON type (integer or real).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, tuple_

from flowmonkey_celery.core.execution import ExecutionStatus
from flowmonkey_celery.stores.sql.schema import executions

_INT64 = range(-(2**63), 2**63)


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
) -> Select[Any]:
    c = executions.c
    query = select(executions)
    if status is not None:
        query = query.where(c.status == ExecutionStatus(status).value)
    if flow_id is not None:
        query = query.where(c.flow_id == flow_id)
    if tenant_id is not None:
        query = query.where(c.tenant_id == tenant_id)
    if created_after is not None:
        query = query.where(c.created_at >= created_after)
    if created_before is not None:
        query = query.where(c.created_at < created_before)
    for key, value in (metadata or {}).items():
        query = query.where(metadata_equals(dialect, key, value))
    if after is not None:
        # The cursor's position read in the same statement; a cursor naming no execution
        # compares with NULL and matches nothing (the caller then says so).
        cursor = executions.alias("page_cursor")
        anchor = select(cursor.c.created_at).where(cursor.c.id == after).scalar_subquery()
        query = query.where(tuple_(c.created_at, c.id) > tuple_(anchor, after))
    return query.order_by(c.created_at, c.id).limit(limit)


def metadata_equals(dialect: str, key: str, value: str) -> ColumnElement[bool]:
    """The execution's metadata has `key`, and its value is `value` as text (see above)."""
    if not isinstance(value, str):
        raise TypeError(f"metadata filter values are text, got {value!r} for {key!r}")
    document = executions.c.metadata
    if dialect == "postgresql":
        matches: ColumnElement[bool] = document[key].as_string() == value
        if value == "null":
            matches = or_(matches, func.jsonb_typeof(document[key]) == "null")
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
