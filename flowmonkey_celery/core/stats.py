"""What an operator watches about waiting executions: how many, for how long, and how far the
tick lags behind the waits that are due (`Store.waiting_stats`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from flowmonkey_celery.core.execution import Execution, ExecutionStatus


class WaitingStats(BaseModel):
    """The waiting executions of a store at one instant.

    Attributes:
        waiting_count: executions with status `waiting` (timers, retry backoffs, signals,
            children, jobs, events).
        oldest_waiting_since: the earliest `wait_started_at` among them (None: none waits).
        due_count: those whose `wake_at` has passed: due, and not yet woken (a sweep that
            claimed one moved its `wake_at` on, so it no longer counts).
        oldest_due_at: the earliest such `wake_at` (None: nothing is due). How long ago it
            was is how far behind the tick's wake sweep runs.
    """

    model_config = ConfigDict(frozen=True)

    waiting_count: int = 0
    oldest_waiting_since: datetime | None = None
    due_count: int = 0
    oldest_due_at: datetime | None = None

    def oldest_waiting_seconds(self, now: datetime) -> float:
        """How long the longest wait has lasted at `now`, in seconds (0 when none waits)."""
        return _seconds_since(self.oldest_waiting_since, now)

    def due_lag_seconds(self, now: datetime) -> float:
        """How long the oldest due wake has gone unwoken at `now`, in seconds (0: none)."""
        return _seconds_since(self.oldest_due_at, now)


def waiting_stats_of(executions: Iterable[Execution], now: datetime) -> WaitingStats:
    """`WaitingStats` computed from executions in hand (what the in-memory store does)."""
    count = due = 0
    since: datetime | None = None
    due_at: datetime | None = None
    for execution in executions:
        if execution.status is not ExecutionStatus.WAITING:
            continue
        count += 1
        started = execution.wait_started_at
        if started is not None and (since is None or started < since):
            since = started
        wake = execution.wake_at
        if wake is not None and wake <= now:
            due += 1
            if due_at is None or wake < due_at:
                due_at = wake
    return WaitingStats(
        waiting_count=count, oldest_waiting_since=since, due_count=due, oldest_due_at=due_at
    )


def _seconds_since(instant: datetime | None, now: datetime) -> float:
    if instant is None:
        return 0.0
    return max((now - instant).total_seconds(), 0.0)
