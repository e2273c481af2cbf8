"""Triggers: what starts executions without a caller. Schedule (cron), HTTP (a webhook
posted to `/webhooks/{id}`) and event (`emit(type, payload)`) triggers.

The models are pure (stdlib + pydantic). Cron syntax is checked where croniter lives,
`flowmonkey_celery.triggers.schedule.validate_cron`; here a schedule is only a non-empty string.
A flow file may declare its own triggers under `triggers:`; `flow_triggers(flow)` turns them
into `ScheduleTrigger`s that start that flow.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.core.conditions import condition_issues
from flowmonkey_celery.core.paths import MISSING, get_path, set_path

if TYPE_CHECKING:
    from flowmonkey_celery.core.flow import Flow

SCHEDULE: Literal["schedule"] = "schedule"
HTTP: Literal["http"] = "http"
EVENT: Literal["event"] = "event"
TRIGGER_TYPES = (SCHEDULE, HTTP, EVENT)
# Where a secret may come from: an environment variable's name, like the llm step's key. It
# must look like one, so that a secret pasted into the field by mistake is refused.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


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


class TriggerInput(TriggerModel):
    """How a trigger turns what it received (a webhook body, an event payload) into the new
    execution's context: `static_context`, then the whole payload at `context_key` (the seed's
    `contextKey`; without it and without a mapping, an object payload is the context), then each
    `context_mapping` entry (context path -> payload path, "" for the whole payload)."""

    context_key: str | None = Field(default=None, min_length=1)
    context_mapping: dict[str, str] | None = None
    static_context: dict[str, Any] = Field(default_factory=dict)

    def context_for(self, payload: Any, extra: dict[str, Any]) -> dict[str, Any]:
        """The execution context for `payload`, with `extra` (what fired it) at `trigger`."""
        context: dict[str, Any] = dict(self.static_context)
        if self.context_key is not None:
            set_path(context, self.context_key, payload)
        elif self.context_mapping is None and isinstance(payload, dict):
            context.update(payload)
        for target, source in (self.context_mapping or {}).items():
            value = payload if source == "" else get_path(payload, source)
            if value is not MISSING:
                set_path(context, target, value)
        context["trigger"] = extra
        return context


class TriggerAuth(TriggerModel):
    """Who may fire an HTTP trigger.

    * `none`: anyone who can reach the endpoint.
    * `bearer`: `Authorization: Bearer <secret>`.
    * `hmac`: a SHA-256 HMAC of the raw body with the secret. `scheme: timestamped` (the
      default, Stripe's shape): header `X-FlowMonkey-Signature: t=<unix seconds>,v1=<hex of
      HMAC("<t>.<body>")>`, refused when `t` is more than `tolerance_seconds` away (replays).
      `scheme: github`: header `X-Hub-Signature-256: sha256=<hex of HMAC(body)>`.

    The secret is `secret` (stored with the trigger, never shown by the API) or the value of
    the environment variable named by `secret_env` (read at each request).
    """

    type: Literal["none", "bearer", "hmac"] = "none"
    secret: str | None = Field(default=None, min_length=16, repr=False)
    secret_env: str | None = None
    scheme: Literal["timestamped", "github"] = "timestamped"
    header: str | None = None
    tolerance_seconds: int = Field(default=300, ge=1, le=86_400, strict=True)

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise PydanticCustomError(
                "secret_env", "secret_env names an environment variable, like SHOP_HOOK_SECRET"
            )
        return value

    @model_validator(mode="after")
    def _secret_when_needed(self) -> TriggerAuth:
        if self.type == "none":
            if self.secret is not None or self.secret_env is not None:
                raise PydanticCustomError(
                    "auth_secret", "auth type none takes no secret; use bearer or hmac"
                )
            return self
        if (self.secret is None) == (self.secret_env is None):
            raise PydanticCustomError(
                "auth_secret", f"auth type {self.type} needs exactly one of secret or secret_env"
            )
        return self

    @property
    def signature_header(self) -> str:
        if self.header:
            return self.header
        return "X-Hub-Signature-256" if self.scheme == "github" else "X-FlowMonkey-Signature"

    def public(self) -> dict[str, Any]:
        """The settings without the secret (what the API shows)."""
        shown = self.model_dump(mode="json", exclude={"secret"})
        shown["has_secret"] = self.secret is not None
        return shown


class HttpTrigger(TriggerInput):
    """Start `flow_id` when a body is POSTed to `/webhooks/{id}`.

    The body must be JSON and, with `input_schema` (JSON Schema), valid against it: otherwise
    400 with every problem and its path, and nothing stored. `idempotency_key_path` (a body
    path), else the `Idempotency-Key` header, becomes the execution's idempotency key: the
    same delivery twice starts one execution.
    """

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["http"] = HTTP
    name: str | None = None
    flow_id: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    tenant_id: str | None = None
    input_schema: dict[str, Any] | None = None
    auth: TriggerAuth = Field(default_factory=TriggerAuth)
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES, ge=1, le=64 * 1024 * 1024, strict=True
    )
    idempotency_key_path: str | None = Field(default=None, min_length=1)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_validator("created_at", "updated_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return ensure_aware(value, "trigger timestamps") if value is not None else None


class EventTrigger(TriggerInput):
    """Start `flow_id` for every event of `event_type` whose payload meets `conditions` (the
    `conditional` step's language: `{path, op, value}`, `{all: [...]}`, `{any: [...]}`,
    `{not: {...}}`; a list means all of them). One execution per (event, trigger), however
    many processes see the event."""

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["event"] = EVENT
    name: str | None = None
    flow_id: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    tenant_id: str | None = None
    event_type: str = Field(min_length=1, max_length=200)
    conditions: list[dict[str, Any]] | dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_validator("conditions")
    @classmethod
    def _valid_conditions(
        cls, value: list[dict[str, Any]] | dict[str, Any] | None
    ) -> list[dict[str, Any]] | dict[str, Any] | None:
        if value is None:
            return None
        listed = value if isinstance(value, list) else [value]
        problems = [
            f"{where}: {message}"
            for index, condition in enumerate(listed)
            for where, message in condition_issues(condition, f"conditions.{index}")
        ]
        if problems:
            raise PydanticCustomError("conditions", "; ".join(problems))
        return value

    @property
    def condition(self) -> dict[str, Any] | None:
        """The conditions as one condition (`all` of a list)."""
        if self.conditions is None:
            return None
        return {"all": self.conditions} if isinstance(self.conditions, list) else self.conditions

    @field_validator("created_at", "updated_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return ensure_aware(value, "trigger timestamps") if value is not None else None


TRIGGER_MODELS: dict[str, type[ScheduleTrigger | HttpTrigger | EventTrigger]] = {
    SCHEDULE: ScheduleTrigger,
    HTTP: HttpTrigger,
    EVENT: EventTrigger,
}
Trigger = Annotated[ScheduleTrigger | HttpTrigger | EventTrigger, Field(discriminator="type")]
_TRIGGER: TypeAdapter[ScheduleTrigger | HttpTrigger | EventTrigger] = TypeAdapter(Trigger)


def parse_trigger(data: Any) -> ScheduleTrigger | HttpTrigger | EventTrigger:
    """A trigger of any type from its JSON (camelCase or snake_case) form.

    Raises:
        pydantic.ValidationError: every problem, with its location.
    """
    if isinstance(data, ScheduleTrigger | HttpTrigger | EventTrigger):
        return data
    if isinstance(data, dict) and "type" not in data:
        data = {**data, "type": SCHEDULE}  # the only type there was before
    return _TRIGGER.validate_python(data)


FireStatus = Literal["accepted", "duplicate", "rejected", "failed"]


class TriggerFireRecord(TriggerModel):
    """One attempt to fire a trigger (a webhook delivery, a matched event), kept as history:
    `accepted` (an execution started), `duplicate` (its idempotency key or event had started
    one already), `rejected` (bad auth, body or schema: nothing started) or `failed`."""

    id: str
    trigger_id: str
    at: datetime
    status: FireStatus
    latency_ms: float | None = None
    execution_id: str | None = None
    event_id: str | None = None
    error: dict[str, Any] | None = None

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return ensure_aware(value, "fire times")

    @classmethod
    def new(
        cls,
        trigger_id: str,
        at: datetime,
        status: FireStatus,
        *,
        began: float | None = None,
        execution_id: str | None = None,
        event_id: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> TriggerFireRecord:
        """A new entry with an id of its own; `began` (a `time.perf_counter()` reading from
        when the fire started) gives its latency."""
        latency = None if began is None else round((time.perf_counter() - began) * 1000, 3)
        return cls(
            id=str(uuid.uuid4()),
            trigger_id=trigger_id,
            at=at,
            status=status,
            latency_ms=latency,
            execution_id=execution_id,
            event_id=event_id,
            error=error,
        )


class TriggerStats(TriggerModel):
    """What a trigger's history adds up to."""

    trigger_id: str
    fires: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    failed: int = 0
    last_fired_at: datetime | None = None
    mean_latency_ms: float | None = None


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


def flow_triggers(flow: Flow) -> list[ScheduleTrigger | HttpTrigger | EventTrigger]:
    """The triggers declared in a flow file (schedule, http or event), each starting that flow.

    `Flow.from_dict` / `from_file` already validated them, so this does not fail for a flow
    built that way.
    """
    return [
        parse_trigger({**_without_flow_id(entry), "flow_id": flow.id}) for entry in flow.triggers
    ]


def _without_flow_id(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key not in ("flow_id", "flowId")}


def without_secrets(trigger: TriggerModel) -> dict[str, Any]:
    """A trigger's fields as JSON for people and clients: an HTTP trigger's secret is never
    shown, only whether it has one."""
    data: dict[str, Any] = trigger.model_dump(mode="json")
    if isinstance(trigger, HttpTrigger):
        data["auth"] = trigger.auth.public()
    return data
