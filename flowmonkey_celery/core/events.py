"""History events (the audit log) and the in-process subscription hook."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from flowmonkey_celery.core.execution import ErrorInfo, StateModel

log = logging.getLogger("flowmonkey_celery.events")


class EventType(StrEnum):
    """FlowMonkey's event names."""

    EXECUTION_CREATED = "execution.created"
    EXECUTION_STARTED = "execution.started"
    STEP_STARTED = "step.started"
    STEP_COMPLETED = "step.completed"
    STEP_RETRY = "step.retry"
    TRANSITION = "transition"
    EXECUTION_WAITING = "execution.waiting"
    EXECUTION_RESUMED = "execution.resumed"
    EXECUTION_COMPLETED = "execution.completed"
    EXECUTION_FAILED = "execution.failed"
    EXECUTION_CANCELLED = "execution.cancelled"
    IDEMPOTENCY_HIT = "idempotency.hit"


class HistoryEvent(StateModel):
    """One recorded fact about an execution.

    Every event of a step carries `step_id`. `step.completed` is the one record per handler
    call, whatever its outcome, and fills `handler_type, outcome, attempt, started_at,
    finished_at, duration_ms, error`. Other facts (transition targets, wake times, reasons)
    are in `data`.
    """

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    execution_id: str
    type: EventType
    at: datetime
    step_id: str | None = None
    handler_type: str | None = None
    outcome: str | None = None
    attempt: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    error: ErrorInfo | None = None
    data: dict[str, Any] = Field(default_factory=dict)


EventCallback = Callable[[HistoryEvent], Any]
ANY_EVENT = "*"


class EventBus:
    """Delivers events to subscribers. A failing subscriber is logged and never breaks a flow."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[EventCallback]] = {}
        self._lock = threading.Lock()

    def on(self, event_type: str, callback: EventCallback) -> Callable[[], None]:
        """Subscribe to one event type (or "*" for all); returns the unsubscribe function."""
        key = ANY_EVENT if event_type == ANY_EVENT else EventType(event_type).value
        with self._lock:
            self._subscribers.setdefault(key, []).append(callback)

        def unsubscribe() -> None:
            with self._lock:
                callbacks = self._subscribers.get(key, [])
                if callback in callbacks:
                    callbacks.remove(callback)

        return unsubscribe

    def emit(self, events: list[HistoryEvent]) -> None:
        for event in events:
            with self._lock:
                callbacks = [
                    *self._subscribers.get(event.type.value, []),
                    *self._subscribers.get(ANY_EVENT, []),
                ]
            for callback in callbacks:
                try:
                    callback(event)
                except Exception:
                    log.exception(
                        "event subscriber %r failed on %s for execution %s; the execution "
                        "is unaffected",
                        callback,
                        event.type.value,
                        event.execution_id,
                    )
