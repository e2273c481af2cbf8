"""Triggers: what starts executions without a caller. Schedule (cron) triggers for now.

The models are pure (stdlib + pydantic). Cron syntax is checked where croniter lives,
`flowmonkey_celery.triggers.schedule.validate_cron`; here a schedule is only a non-empty string.
A flow file may declare its own triggers under `triggers:`; `flow_triggers(flow)` turns them
into `ScheduleTrigger`s that start that flow.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from flowmonkey_celery.core.clock import ensure_aware

if TYPE_CHECKING:
    from flowmonkey_celery.core.flow import Flow

SCHEDULE: Literal["schedule"] = "schedule"
TRIGGER_TYPES = (SCHEDULE,)


def load_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (e.g. "Europe/Berlin").

    Raises:
        ValueError: no such zone; the message names it.
    """
    try:
        if not name or name != name.strip():
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}; use an IANA name such as 'UTC', 'Europe/Berlin' "
            "or 'America/New_York'"
        ) from None


class TriggerModel(BaseModel):
    """Base for trigger models: camelCase or snake_case keys, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        loc_by_alias=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """FlowMonkey's camelCase JSON form (round-trips through `model_validate`)."""
        return self.model_dump(mode="json", by_alias=True)


class ScheduleTrigger(TriggerModel):
    """Start `flow_id` on a cron schedule, in the trigger's time zone.

    `schedule` is a cron expression: five fields (minute hour day month weekday), or six with
    seconds last (`"* * * * * */10"` is every ten seconds). Each execution's context is
    `static_context` plus `trigger: {id, scheduled_for, fired_at}`. Only slots from
    `created_at` on fire, and after downtime only the most recent missed slot fires.
    """

    id: str = Field(min_length=1, max_length=200)
    type: Literal["schedule"] = SCHEDULE
    name: str | None = None
    flow_id: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    schedule: str = Field(min_length=1)
    timezone: str = "UTC"
    static_context: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            load_zone(value)
        except ValueError as exc:
            raise PydanticCustomError("unknown_timezone", str(exc)) from None
        return value

    @field_validator("schedule")
    @classmethod
    def _tidy_schedule(cls, value: str) -> str:
        tidy = " ".join(value.split())
        if not tidy:
            raise PydanticCustomError("empty_schedule", "a schedule needs a cron expression")
        return tidy

    @field_validator("created_at", "updated_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return ensure_aware(value, "trigger timestamps") if value is not None else None

    @property
    def zoneinfo(self) -> ZoneInfo:
        """The trigger's time zone, in which its cron slots are wall-clock times."""
        return load_zone(self.timezone)


class TriggerFire(TriggerModel):
    """One fired slot of a trigger. `(trigger_id, scheduled_for)` is unique in every store:
    that is what makes "one fire per cron slot" hold with several beat processes."""

    trigger_id: str
    scheduled_for: datetime
    execution_id: str | None = None
    fired_at: datetime

    @field_validator("scheduled_for", "fired_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return ensure_aware(value, "trigger fire times")


def flow_triggers(flow: Flow) -> list[ScheduleTrigger]:
    """The triggers declared in a flow file, each starting that flow.

    `Flow.from_dict` / `from_file` already validated them, so this does not fail for a flow
    built that way.
    """
    return [
        ScheduleTrigger.model_validate({**_without_flow_id(entry), "flow_id": flow.id})
        for entry in flow.triggers
    ]


def _without_flow_id(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key not in ("flow_id", "flowId")}
