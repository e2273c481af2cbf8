"""Triggers, their fires and their history in `fm_triggers` / `fm_trigger_fires` /
`fm_trigger_history` (the SqlStore's trigger half).

A trigger row keeps the columns every trigger type shares; the rest of each type's fields (a
schedule's cron and time zone, an HTTP trigger's auth and input schema, an event trigger's
event type and conditions, ...) live in the `config` JSON document, so new trigger types need
no schema change. Rows written before there were other types hold a schedule's fields there
and read back unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, Delete, RowMapping, case, delete, exists, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.core.ports import AnyTrigger
from flowmonkey_celery.core.triggers import (
    EVENT,
    HTTP,
    SCHEDULE,
    TRIGGER_TYPES,
    EventTrigger,
    HttpTrigger,
    ScheduleTrigger,
    TriggerFire,
    TriggerFireRecord,
    TriggerStats,
    parse_trigger,
)
from flowmonkey_celery.stores.sql.schema import trigger_fires, trigger_history, triggers

# The fields with a column of their own; every other field of a trigger is in `config`.
_COLUMNS = frozenset({"id", "type", "name", "flow_id", "enabled", "created_at", "updated_at"})
_MODELS: dict[str, type[BaseModel]] = {
    SCHEDULE: ScheduleTrigger,
    HTTP: HttpTrigger,
    EVENT: EventTrigger,
}
_UPDATED_ON_CONFLICT = ("type", "name", "flow_id", "enabled", "config", "updated_at")

# The unique (trigger_id, scheduled_for) decides races between beat processes: a concurrent
# insert of the same slot waits for the first to commit, then does nothing.
_INSERT_FIRE = {
    "postgresql": postgresql.insert(trigger_fires).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(trigger_fires).on_conflict_do_nothing(),
}


def create(conn: Connection, dialect: str, trigger: AnyTrigger, now: datetime) -> bool:
    """Insert unless the id is taken (ON CONFLICT DO NOTHING: of two creators, one)."""
    values = _values(trigger, ensure_aware(now, "now"))
    insert_ = (postgresql if dialect == "postgresql" else sqlite).insert(triggers).values(values)
    return bool(conn.execute(insert_.on_conflict_do_nothing()).rowcount == 1)


def _values(trigger: AnyTrigger, now: datetime) -> dict[str, Any]:
    return {
        "id": trigger.id,
        "type": trigger.type,
        "name": trigger.name,
        "flow_id": trigger.flow_id,
        "enabled": trigger.enabled,
        "config": trigger.model_dump(mode="json", exclude=set(_COLUMNS)),
        "created_at": trigger.created_at or now,
        "updated_at": now,
    }


def save(conn: Connection, dialect: str, trigger: AnyTrigger, now: datetime) -> AnyTrigger:
    """Upsert in one statement, so two processes saving one new id cannot both insert; the
    stored `created_at` survives updates."""
    now = ensure_aware(now, "now")
    values = _values(trigger, now)
    insert_ = (postgresql if dialect == "postgresql" else sqlite).insert(triggers).values(values)
    upsert = insert_.on_conflict_do_update(
        index_elements=[triggers.c.id],
        set_={name: insert_.excluded[name] for name in _UPDATED_ON_CONFLICT},
    ).returning(triggers.c.created_at)
    created_at = conn.execute(upsert).scalar_one()
    return trigger.model_copy(deep=True, update={"created_at": created_at, "updated_at": now})


def get(conn: Connection, trigger_id: str) -> AnyTrigger | None:
    row = conn.execute(select(triggers).where(triggers.c.id == trigger_id)).mappings().first()
    return _trigger_from_row(row) if row else None


def list_all(conn: Connection, enabled_only: bool, trigger_type: str | None) -> list[AnyTrigger]:
    # Rows of a type this version does not know (written by a newer one) are not listed.
    types = TRIGGER_TYPES if trigger_type is None else (trigger_type,)
    query = select(triggers).where(triggers.c.type.in_(types)).order_by(triggers.c.id)
    if enabled_only:
        query = query.where(triggers.c.enabled.is_(True))
    return [_trigger_from_row(row) for row in conn.execute(query).mappings()]


def remove(conn: Connection, trigger_id: str) -> bool:
    conn.execute(delete(trigger_fires).where(trigger_fires.c.trigger_id == trigger_id))
    conn.execute(delete(trigger_history).where(trigger_history.c.trigger_id == trigger_id))
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


def _trigger_from_row(row: RowMapping) -> AnyTrigger:
    data: dict[str, Any] = {k: v for k, v in row.items() if k != "config"}
    # Only the fields of the row's type: a key the model no longer has is left behind (as the
    # schedule-only reader always did) rather than making the trigger unreadable.
    model = _MODELS.get(row["type"])
    known = model.model_fields.keys() - _COLUMNS if model is not None else set()
    config: Mapping[str, Any] = row["config"] or {}
    data.update({k: v for k, v in config.items() if k in known})
    return parse_trigger(data)


# -- history ------------------------------------------------------------------------------------


def record_history(conn: Connection, record: TriggerFireRecord) -> None:
    row = record.model_dump(mode="python", exclude={"error"})
    row["error"] = record.model_dump(mode="json", include={"error"})["error"]
    conn.execute(insert(trigger_history), row)


def history_before(cutoff: datetime, batch_size: int) -> list[Delete]:
    """A batch of each: the history entries from before `cutoff`; the cron slots fired for
    before it, except each trigger's latest (its schedule goes on from there)."""
    h = trigger_history.c
    old_entries = select(h.id).where(h.at < cutoff).order_by(h.at).limit(batch_size)
    f = trigger_fires.c
    newer = trigger_fires.alias("newer")
    superseded = (
        select(f.id)
        .where(
            f.scheduled_for < cutoff,
            exists().where(
                newer.c.trigger_id == f.trigger_id, newer.c.scheduled_for > f.scheduled_for
            ),
        )
        .limit(batch_size)
    )
    return [
        delete(trigger_history).where(h.id.in_(old_entries.scalar_subquery())),
        delete(trigger_fires).where(f.id.in_(superseded.scalar_subquery())),
    ]


def list_history(
    conn: Connection, trigger_id: str, limit: int, before: datetime | None
) -> list[TriggerFireRecord]:
    c = trigger_history.c
    query = select(trigger_history).where(c.trigger_id == trigger_id)
    if before is not None:
        query = query.where(c.at < before)
    query = query.order_by(c.at.desc(), c.id.desc()).limit(limit)
    return [TriggerFireRecord.model_validate(dict(r)) for r in conn.execute(query).mappings()]


def stats(conn: Connection, trigger_id: str) -> TriggerStats:
    """One aggregate per status; added up here (an average of averages would be wrong, so the
    latency's sum and count are what come back)."""
    c = trigger_history.c
    timed = case((c.latency_ms.is_(None), 0), else_=1)
    query = (
        select(
            c.status,
            func.count().label("fires"),
            func.max(c.at).label("last"),
            func.sum(c.latency_ms).label("latency"),
            func.sum(timed).label("timed"),
        )
        .where(c.trigger_id == trigger_id)
        .group_by(c.status)
    )
    counts: dict[str, int] = {}
    last: datetime | None = None
    latency, timed_fires = 0.0, 0
    for row in conn.execute(query).mappings():
        counts[row["status"]] = int(row["fires"])
        if row["last"] is not None and (last is None or row["last"] > last):
            last = row["last"]
        latency += float(row["latency"] or 0)
        timed_fires += int(row["timed"] or 0)
    return TriggerStats(
        trigger_id=trigger_id,
        fires=sum(counts.values()),
        accepted=counts.get("accepted", 0),
        duplicate=counts.get("duplicate", 0),
        rejected=counts.get("rejected", 0),
        failed=counts.get("failed", 0),
        last_fired_at=last,
        mean_latency_ms=latency / timed_fires if timed_fires else None,
    )
