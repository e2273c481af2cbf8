"""Following one execution until it finishes or stops to wait for something: in this process
(the engine runs it), or through the store while workers run it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from flowmonkey_celery.core.clock import Clock
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import Execution, ExecutionStatus, WaitKind
from flowmonkey_celery.core.ports import Store
from flowmonkey_celery.errors import ErrorCode, ExecutionError

# Waits that time alone ends: a delay, a retry backoff.
TIMED_WAITS = frozenset({WaitKind.TIMER, WaitKind.RETRY})
# Waits that workers end by themselves: children (sub-flows, branches), background jobs.
WORKER_WAITS = frozenset({WaitKind.CHILDREN, WaitKind.JOB})
# A little past a wake time, so the engine finds it due rather than a moment early.
_WAKE_MARGIN_SECONDS = 0.01


def next_timer(store: Store, execution: Execution) -> datetime | None:
    """When time alone will move this waiting execution on: its own delay or retry backoff,
    or the earliest of its children's (for a parent waiting on them); None if only a signal,
    a resume or a job can."""
    if execution.status is not ExecutionStatus.WAITING:
        return None
    if execution.wait_kind in TIMED_WAITS:
        return execution.wake_at
    if execution.wait_kind is WaitKind.CHILDREN:
        wakes = [
            wake
            for child in store.list_children(execution.id)
            if (wake := next_timer(store, child)) is not None
        ]
        return min(wakes, default=None)
    return None


def follow_here(
    engine: Engine,
    execution_id: str,
    *,
    until: datetime,
    on_sleep: Callable[[datetime], None] = lambda wake: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Execution:
    """Run the execution in this process (`engine.run`) until it completes, fails, is
    cancelled, or waits for a signal, or for a timer due after `until`. Timers due before
    `until` (a retry backoff, a short delay) are slept through, `on_sleep(wake_at)` first.

    Raises:
        ExecutionError: EXECUTION_NOT_FOUND.
    """
    while True:
        execution = engine.run(execution_id)
        wake = next_timer(engine.store, execution)
        if wake is None or wake > until:
            return execution
        on_sleep(wake)
        sleep(max(0.0, (wake - engine.clock.now()).total_seconds()) + _WAKE_MARGIN_SECONDS)


def follow_in_store(
    store: Store,
    execution_id: str,
    *,
    clock: Clock,
    until: datetime,
    on_event: Callable[[HistoryEvent], None],
    poll_seconds: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> Execution:
    """Watch an execution that workers run: pass each newly committed history event to
    `on_event`, until it completes, fails, is cancelled, waits for a signal (or for a timer
    due after `until`), or `until` passes (it may then still be pending or running).

    Raises:
        ExecutionError: EXECUTION_NOT_FOUND, also if it is deleted meanwhile.
    """
    seen = 0
    while True:
        # The execution first, then its events: every event up to the state read is shown.
        execution = store.get_execution(execution_id)
        if execution is None:
            raise ExecutionError(
                f"execution {execution_id!r} not found",
                ErrorCode.EXECUTION_NOT_FOUND,
                {"execution_id": execution_id},
            )
        events = store.list_events(execution_id)
        for event in events[seen:]:
            on_event(event)
        seen = len(events)
        if execution.is_terminal or clock.now() >= until:
            return execution
        if execution.status is ExecutionStatus.WAITING and execution.wait_kind not in WORKER_WAITS:
            wake = next_timer(store, execution)
            if wake is None or wake > until:
                return execution
        sleep(poll_seconds)
