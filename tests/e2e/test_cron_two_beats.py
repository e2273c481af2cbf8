"""One execution per cron slot, even with two beat processes ticking the same database
(DESIGN.md §3 invariant 4), on the Redis and the RabbitMQ broker."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from itertools import pairwise

import pytest
from sqlalchemy import func, select

from flowmonkey_celery.stores.sql.schema import trigger_fires
from tests.e2e.conftest import BROKER_URLS, FlowMonkeyCluster

pytestmark = pytest.mark.slow

SLOTS_TO_OBSERVE = 6


@pytest.mark.parametrize("tick_lock", [False, True], ids=["database-only", "redis-tick-lock"])
def test_two_beats_and_a_per_second_cron_fire_exactly_one_execution_per_slot(
    cluster: FlowMonkeyCluster, tick_lock: bool
) -> None:
    if tick_lock:  # one sweep per period through Redis; the database still decides
        cluster.set_env(FLOWMONKEY_REDIS_URL=BROKER_URLS["redis"])
    cluster.start_worker()
    cluster.start_beat()
    cluster.start_beat()  # a second beat: every tick now runs twice as often, concurrently
    client = cluster.client
    client.register_trigger(
        {
            "id": "every-second",
            "type": "schedule",
            "flowId": "e2e-five",
            "schedule": "* * * * * *",  # croniter's sixth field: seconds
            "staticContext": {"source": "cron"},
        }
    )
    store = client.runtime.store

    def fired() -> list[str]:
        executions = store.list_executions(flow_id="e2e-five", limit=1000)
        return [e.context["trigger"]["scheduled_for"] for e in executions if "trigger" in e.context]

    cluster.wait_for(
        lambda: len(set(fired())) >= SLOTS_TO_OBSERVE,
        timeout=SLOTS_TO_OBSERVE + 15,
        what=f"{SLOTS_TO_OBSERVE} cron slots to fire",
    )
    trigger = store.get_trigger("every-second")
    assert trigger is not None
    store.save_trigger(trigger.model_copy(update={"enabled": False}), client.runtime.clock.now())

    def fire_rows() -> dict[datetime, int]:
        with store.engine.connect() as connection:
            rows = connection.execute(
                select(trigger_fires.c.scheduled_for, func.count())
                .where(trigger_fires.c.trigger_id == "every-second")
                .group_by(trigger_fires.c.scheduled_for)
            ).all()
        return {slot: count for slot, count in rows}

    def all_recorded() -> dict[datetime, int] | None:
        # A tick that was firing when the trigger was disabled may still be recording its slot.
        rows = fire_rows()
        return rows if rows and len(rows) >= len(set(fired())) else None

    recorded = cluster.wait_for(
        all_recorded, timeout=10, what="every fired slot to be recorded in fm_trigger_fires"
    )
    slots = fired()
    per_slot = Counter(slots)
    assert per_slot and max(per_slot.values()) == 1, per_slot  # never two executions for a slot
    instants = sorted(datetime.fromisoformat(s) for s in per_slot)
    gaps = [(b - a).total_seconds() for a, b in pairwise(instants)]
    # Whole, distinct seconds. A slot may be skipped when the machine is slow (a late tick
    # fires the latest due slot only, by design), never doubled.
    assert all(gap >= 1 and gap == int(gap) for gap in gaps), gaps
    assert len(recorded) >= len(per_slot)
    # And every fired execution runs to completion on the worker.
    ids = [e.id for e in store.list_executions(flow_id="e2e-five", limit=1000)]
    cluster.wait_finished(ids, timeout=30)
