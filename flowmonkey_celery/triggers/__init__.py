"""Triggers that start executions without a caller: cron schedules (fired by beat's tick).

The models (`ScheduleTrigger`, `TriggerFire`) live in `flowmonkey_celery.core.triggers`; this
package holds what needs croniter.
"""

from flowmonkey_celery.core.triggers import ScheduleTrigger, TriggerFire, flow_triggers
from flowmonkey_celery.triggers.schedule import fire_due_schedules, latest_slot, validate_cron

__all__ = [
    "ScheduleTrigger",
    "TriggerFire",
    "fire_due_schedules",
    "flow_triggers",
    "latest_slot",
    "validate_cron",
]
