"""Versioned flow definitions in the database, so every worker runs the same flows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.validation import build_flow
from flowmonkey_celery.errors import FlowValidationError
from flowmonkey_celery.stores.sql.schema import flow_definitions


def save(
    conn: Connection,
    flow: Flow,
    now: datetime,
    insert_ignore: Callable[[Any, dict[str, Any]], Any],
) -> bool:
    definition = flow.to_dict()
    values = {
        "flow_id": flow.id,
        "version": flow.version,
        "definition": definition,
        "created_at": now,
    }
    if conn.execute(insert_ignore(flow_definitions, values)).rowcount == 1:
        return True
    stored = conn.execute(
        select(flow_definitions.c.definition).where(
            flow_definitions.c.flow_id == flow.id, flow_definitions.c.version == flow.version
        )
    ).scalar_one()
    if build_flow(stored).to_dict() != flow.to_dict():
        raise FlowValidationError(
            f"flow {flow.id!r} version {flow.version} is already stored with a different "
            "definition; give the changed flow a new version",
            [("version", "already stored with a different definition")],
        )
    return False


def load_all(conn: Connection) -> list[Flow]:
    rows = conn.execute(
        select(flow_definitions.c.definition).order_by(
            flow_definitions.c.flow_id, flow_definitions.c.created_at
        )
    ).scalars()
    return [build_flow(definition) for definition in rows]
