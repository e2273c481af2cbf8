"""Triggers and their fires in `fm_triggers` / `fm_trigger_fires` (the SqlStore's trigger half).

A trigger row keeps the columns every trigger type shares; the schedule, time zone and static
context live in the `config` JSON document, so new trigger types need no schema change.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.core.triggers import SCHEDULE, ScheduleTrigger, TriggerFire
from flowmonkey_celery.stores.sql.schema import trigger_fires, triggers

_CONFIG_FIELDS = {"schedule", "timezone", "static_context"}
_UPDATED_ON_CONFLICT = ("type", "name", "flow_id", "enabled", "config", "updated_at")

# The unique (trigger_id, scheduled_for) decides races between beat processes: a concurrent
# insert of the same slot waits for the first to commit, then does nothing.
_INSERT_FIRE = {
    "postgresql": postgresql.insert(trigger_fires).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(trigger_fires).on_conflict_do_nothing(),
}


def save(
    conn: Connection, dialect: str, trigger: ScheduleTrigger, now: datetime
) -> ScheduleTrigger:
    """Upsert in one statement, so two processes saving one new id cannot both insert; the
    stored `created_at` survives updates."""
    now = ensure_aware(now, "now")
    config = trigger.model_dump(mode="json", include=_CONFIG_FIELDS)
    values = {
        "id": trigger.id,
        "type": trigger.type,
        "name": trigger.name,
        "flow_id": trigger.flow_id,
        "enabled": trigger.enabled,
        "config": config,
        "created_at": trigger.created_at or now,
        "updated_at": now,
    }
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(triggers).values(values)
    upsert = insert.on_conflict_do_update(
        index_elements=[triggers.c.id],
        set_={name: insert.excluded[name] for name in _UPDATED_ON_CONFLICT},
    ).returning(triggers.c.created_at)
    created_at = conn.execute(upsert).scalar_one()
    return trigger.model_copy(deep=True, update={"created_at": created_at, "updated_at": now})


def get(conn: Connection, trigger_id: str) -> ScheduleTrigger | None:
    row = conn.execute(select(triggers).where(triggers.c.id == trigger_id)).mappings().first()
    return _trigger_from_row(row) if row else None


def list_all(conn: Connection, enabled_only: bool) -> list[ScheduleTrigger]:
    query = select(triggers).where(triggers.c.type == SCHEDULE).order_by(triggers.c.id)
    if enabled_only:
        query = query.where(triggers.c.enabled.is_(True))
    return [_trigger_from_row(row) for row in conn.execute(query).mappings()]


def remove(conn: Connection, trigger_id: str) -> bool:
    conn.execute(delete(trigger_fires).where(trigger_fires.c.trigger_id == trigger_id))
    return conn.execute(delete(triggers).where(triggers.c.id == trigger_id)).rowcount == 1


def record_fire(conn: Connection, dialect: str, fire: TriggerFire) -> bool:
    values = {"id": uuid.uuid4().hex, **fire.model_dump(mode="python")}
    return conn.execute(_INSERT_FIRE[dialect], values).rowcount == 1


def last_fire(conn: Connection, trigger_id: str) -> TriggerFire | None:
    row = (
        conn.execute(
            select(trigger_fires)
            .where(trigger_fires.c.trigger_id == trigger_id)
            .order_by(trigger_fires.c.scheduled_for.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return TriggerFire.model_validate({k: v for k, v in row.items() if k != "id"})


def _trigger_from_row(row: RowMapping) -> ScheduleTrigger:
    data: dict[str, Any] = {k: v for k, v in row.items() if k != "config"}
    data.update({k: v for k, v in row["config"].items() if k in _CONFIG_FIELDS})
    return ScheduleTrigger.model_validate(data)
