"""Firing a trigger by hand (`flowmonkey triggers fire`): an operator's test of any trigger."""

from __future__ import annotations

import time
from typing import Any

from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.execution import CreateResult
from flowmonkey_celery.core.ports import AnyTrigger, TriggerStore
from flowmonkey_celery.core.triggers import ScheduleTrigger, TriggerFireRecord


def fire_now(
    engine: Engine, triggers: TriggerStore, trigger: AnyTrigger, payload: Any = None
) -> CreateResult:
    """Start the trigger's flow now, with `payload` as what it received (a webhook body, an
    event payload; a schedule trigger takes none), and record it in the trigger's history.
    No signature or condition is checked: whoever can run this can reach the database."""
    began = time.perf_counter()
    fired_by = {"id": trigger.id, "type": trigger.type, "manual": True}
    if isinstance(trigger, ScheduleTrigger):
        context = {**trigger.static_context, "trigger": fired_by}
        tenant = None
    else:
        context = trigger.context_for(payload, fired_by)
        tenant = trigger.tenant_id
    created = engine.create(
        trigger.flow_id,
        context,
        tenant_id=tenant,
        metadata={"trigger_id": trigger.id, "manual": True},
    )
    triggers.record_trigger_fire(
        TriggerFireRecord.new(
            trigger.id,
            engine.clock.now(),
            "accepted",
            began=began,
            execution_id=created.execution.id,
        )
    )
    return created
