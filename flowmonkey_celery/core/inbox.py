"""Events: what `emit(type, payload, key=None)` stores, and the waits of running flows for one.

Every event is stored once (a `key` dedupes: the same key again returns the stored event), then
matched against the enabled event triggers of its type and against the `wait_for_event` steps
waiting for it. Stored events are also an inbox: a wait registered shortly after its event
still finds it, within the step's look-back window.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.core.execution import Execution, ExecutionStatus, StateModel, WaitKind
from flowmonkey_celery.core.paths import MISSING, get_path

# Executions a trigger starts for an event get ids derived from (event, trigger): a second
# process handling the same event finds the id taken, so each pair starts one execution.
_EVENT_NAMESPACE = uuid.UUID("6f1f0a52-8d0e-4b8a-9d35-0f6c2e3c9a11")


class Event(StateModel):
    """A stored event."""

    id: str
    type: str = Field(min_length=1, max_length=200)
    payload: Any = None
    key: str | None = Field(default=None, max_length=500)
    tenant_id: str | None = None
    source: str | None = None
    created_at: datetime
    # Set once the triggers matching it have their executions and its waits are told: until
    # then the tick's sweep finishes the job (a crash in between loses nothing).
    dispatched_at: datetime | None = None

    @field_validator("created_at", "dispatched_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return ensure_aware(value, "event times") if value is not None else None

    def summary(self) -> dict[str, Any]:
        """What a resumed `wait_for_event` step stores at its output_key."""
        return {
            "id": self.id,
            "type": self.type,
            "key": self.key,
            "payload": self.payload,
            "created_at": self.created_at.isoformat(),
        }


def execution_id_for(event_id: str, trigger_id: str) -> str:
    """The id of the execution `trigger_id` starts for `event_id` (the same in every process)."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{event_id}\x1f{trigger_id}"))


class EventWait(StateModel):
    """A `wait_for_event` step waiting: for an event of `event_type` whose payload has each
    `match` path equal to its value (resolved from the execution's input when the step ran),
    created at or after `since` (the step's look-back). Bound, like a resume token, to the one
    wait its step committed (`sequence`: the execution's step_count while it waits).

    `inbox_checked_at` is when the inbox was last searched for an event stored before the
    wait existed: None until then. The tick searches again for a wait left unchecked (the
    process that committed it died first), so such an event is never missed."""

    execution_id: str
    step_id: str
    sequence: int
    event_type: str
    match: dict[str, Any] = Field(default_factory=dict)
    tenant_id: str | None = None
    since: datetime
    created_at: datetime
    inbox_checked_at: datetime | None = None

    @field_validator("since", "created_at", "inbox_checked_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else ensure_aware(value, "event wait times")

    def holds_for(self, execution: Execution) -> bool:
        """Whether `execution` still waits in the wait this subscription was made for."""
        return (
            execution.status is ExecutionStatus.WAITING
            and execution.wait_kind is WaitKind.EVENT
            and execution.current_step_id == self.step_id
            and execution.step_count == self.sequence
        )

    def accepts(self, event: Event) -> bool:
        """Whether `event` ends this wait."""
        if event.type != self.event_type or event.created_at < self.since:
            return False
        if event.tenant_id != self.tenant_id:  # an execution without a tenant too: only its own
            return False
        return all(
            _same(get_path(event.payload, path), expected) for path, expected in self.match.items()
        )


def _same(actual: Any, expected: Any) -> bool:
    if actual is MISSING:
        return False
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    # An order id may arrive as 42 in one system and "42" in the other.
    if isinstance(actual, int | float | str) and isinstance(expected, int | float | str):
        return str(actual) == str(expected)
    return bool(actual == expected)


@dataclass
class EmitResult:
    """What `emit` did: the stored event (`created` False when its key was seen before), the
    executions its triggers started, and the waiting executions it resumed."""

    event: Event
    created: bool
    started: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
