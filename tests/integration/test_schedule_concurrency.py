"""One fire per cron slot with two beats (DESIGN §3.4): two spawned processes call
fire_due_schedules for the same `now`, round after round, against one PostgreSQL database."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from flowmonkey_celery import (
    Engine,
    Flow,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.stores.sql import SqlStore
from flowmonkey_celery.triggers import ScheduleTrigger, fire_due_schedules

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SPAWN = multiprocessing.get_context("spawn")
ROUNDS = 30
BEATS = 2
TIMEOUT = 120


@handler("build")
def build(params: HandlerParams) -> StepResult:
    return Result.success({"ok": True})


def round_time(index: int) -> datetime:
    """Round i sees slot T0 + i minutes (plus some seconds into the minute)."""
    return T0 + timedelta(minutes=index, seconds=7)


def _beat(url: str, barrier: Any, results: Any, beat: int) -> None:
    store = SqlStore(url)
    clock = ManualClock(T0)
    flows = FlowRegistry()
    flows.register(
        Flow.from_dict({"id": "report", "initialStepId": "b", "steps": {"b": {"type": "build"}}})
    )
    engine = Engine(store, HandlerRegistry([build]), flows, clock=clock)
    dispatched: list[str] = []
    recorded: list[str] = []
    try:
        for index in range(ROUNDS):
            now = round_time(index)
            clock.set(now)
            barrier.wait()  # both beats tick the same slot at the same moment
            fires = fire_due_schedules(
                engine, store, now, dispatch=lambda execution: dispatched.append(execution.id)
            )
            recorded += [fire.scheduled_for.isoformat() for fire in fires]
        results.put((beat, "ok", recorded, dispatched))
    except BaseException as exc:
        results.put((beat, "crash", f"{type(exc).__name__}: {exc}", []))
        barrier.abort()
    finally:
        store.dispose()


def test_two_beats_fire_each_slot_exactly_once(postgres_url: str) -> None:
    store = SqlStore(postgres_url)
    store.save_trigger(ScheduleTrigger(id="minutely", flow_id="report", schedule="* * * * *"), T0)
    barrier = SPAWN.Barrier(BEATS, timeout=TIMEOUT)
    results = SPAWN.Queue()
    beats = [
        SPAWN.Process(target=_beat, args=(postgres_url, barrier, results, i)) for i in range(BEATS)
    ]
    for process in beats:
        process.start()
    outcomes = [results.get(timeout=TIMEOUT) for _ in beats]
    for process in beats:
        process.join(timeout=TIMEOUT)

    assert [kind for _, kind, _, _ in outcomes] == ["ok"] * BEATS, outcomes
    slots = [round_time(i).replace(second=0).isoformat() for i in range(ROUNDS)]
    recorded = sorted(slot for _, _, fired, _ in outcomes for slot in fired)
    assert recorded == slots  # each slot reported by exactly one beat
    dispatched = [e for _, _, _, ids in outcomes for e in ids]
    assert len(dispatched) == ROUNDS == len(set(dispatched))  # each new execution sent once

    with store.engine.connect() as conn:
        per_slot = conn.execute(
            text(
                "SELECT context->'trigger'->>'scheduled_for' AS slot, count(*) "
                "FROM fm_executions GROUP BY slot ORDER BY slot"
            )
        ).all()
        fire_rows = conn.execute(
            text(
                "SELECT scheduled_for, count(*) FROM fm_trigger_fires "
                "WHERE trigger_id = 'minutely' GROUP BY scheduled_for ORDER BY scheduled_for"
            )
        ).all()
        fired_ids = sorted(
            conn.execute(text("SELECT execution_id FROM fm_trigger_fires")).scalars()
        )
        stored_ids = sorted(conn.execute(text("SELECT id FROM fm_executions")).scalars())
    store.dispose()

    assert [(slot, n) for slot, n in per_slot] == [(slot, 1) for slot in slots]
    assert [(at.astimezone(UTC).isoformat(), n) for at, n in fire_rows] == [
        (slot, 1) for slot in slots
    ]
    # the fires point at the stored executions, and those are what was dispatched
    assert fired_ids == stored_ids == sorted(dispatched)
