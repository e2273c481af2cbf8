"""Sweeps: the periodic work the Celery beat's tick is built on."""

from __future__ import annotations

from datetime import datetime

from flowmonkey_celery.core.draft import ExecutionDraft
from flowmonkey_celery.core.engine_base import (
    WAKE_CLAIM_TTL,
    EngineBase,
    log,
)
from flowmonkey_celery.core.execution import ExecutionStatus
from flowmonkey_celery.errors import (
    ExecutionError,
    VersionConflictError,
)


class Sweeps(EngineBase):
    """Find what time alone has changed: deadlines passed, wakes due."""

    def cancel_timed_out(self, now: datetime | None = None, limit: int = 100) -> list[str]:
        """Cancel every execution past its execution or wait deadline (source "timeout", error
        EXECUTION_TIMEOUT or WAIT_TIMEOUT), and their children. Returns the ids cancelled."""
        now = now or self.clock.now()
        cancelled: list[str] = []
        for execution in self.store.find_timed_out(now, limit):
            draft = ExecutionDraft(execution, now)
            expired = self._expire_deadlines(draft)
            if expired is None or draft.execution.status is not ExecutionStatus.CANCELLED:
                continue  # not past those deadlines after all (a step wait timeout is a wake)
            try:
                self._commit(draft)
            except VersionConflictError:
                continue  # another sweeper or a worker got there first
            cancelled.append(execution.id)
        return cancelled

    def wake_due(self, now: datetime | None = None, limit: int = 100) -> list[str]:
        """Claim waiting executions whose `wake_at` has passed: each is committed as running
        (a retry at the same step, a timer at its next step) and its id returned, ready to be
        stepped. Concurrent callers never claim the same execution twice."""
        now = now or self.clock.now()
        claimed: list[str] = []
        candidates = self.store.claim_due_wakes(now, limit, now + WAKE_CLAIM_TTL)
        for execution in candidates:
            draft = ExecutionDraft(execution, now)
            try:
                if self._expire_deadlines(draft) is None:
                    draft.wake(self._flow_of(execution))
                outcome = self._commit(draft)
            except VersionConflictError:
                continue
            except ExecutionError:
                log.exception("cannot wake execution %s", execution.id)
                continue
            if outcome.status is ExecutionStatus.RUNNING:
                claimed.append(execution.id)
        return claimed
