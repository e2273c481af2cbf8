"""`ExecutionDraft`: the changes one engine operation makes to an execution, before commit.

Every state change the engine can make is a method here, each recording the history events
that describe it. The engine loads an execution, builds a draft, and commits the draft's
execution and events in one compare-and-set save.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowmonkey_celery.core.children import Branch, Join
from flowmonkey_celery.core.events import EventType, HistoryEvent
from flowmonkey_celery.core.execution import (
    Cancellation,
    ErrorInfo,
    Execution,
    ExecutionStatus,
    WaitKind,
    check_transition,
)
from flowmonkey_celery.core.flow import Flow, Step
from flowmonkey_celery.core.inbox import EventWait
from flowmonkey_celery.core.jobs import Job
from flowmonkey_celery.core.paths import set_path
from flowmonkey_celery.core.results import EventWaitRequest, StepError
from flowmonkey_celery.errors import ErrorCode

# Where a failure routed through `on_failure` is left for the error-handling step to read.
LAST_ERROR_KEY = "_error"


@dataclass
class ChildrenPlan:
    """What starting children writes with the parent's change: the join (None for detached
    children), its branches, and the executions started now with their first events."""

    join: Join | None
    branches: list[Branch]
    executions: list[tuple[Execution, list[HistoryEvent]]] = field(default_factory=list)


class ExecutionDraft:
    """A mutable copy of an execution plus the events describing what changed."""

    def __init__(self, execution: Execution, now: datetime) -> None:
        self.expected_version = execution.version
        self.initial_status = execution.status
        self.execution = execution.clone()
        self.now = now
        self.events: list[HistoryEvent] = []
        self.children_cancelled: list[str] = []  # filled in after a cancellation commits
        # Set when the change ends every wait for good (a cancellation): the execution's
        # unused resume tokens are revoked in the same transaction.
        self.revoke_tokens_reason: str | None = None
        self.initial_wait_kind = execution.wait_kind
        # Children this change starts (a join and its first executions), committed with it.
        self.children: ChildrenPlan | None = None
        self.job: Job | None = None  # a job this change starts (a stateful handler's run)
        self.event_wait: EventWait | None = None  # a wait_for_event's subscription

    # -- bookkeeping ---------------------------------------------------------------------------

    def record(self, event_type: EventType, **fields: Any) -> HistoryEvent:
        fields.setdefault("at", self.now)
        event = HistoryEvent(execution_id=self.execution.id, type=event_type, **fields)
        self.events.append(event)
        return event

    def finalise(self) -> Execution:
        """Check the status change against the table and stamp `updated_at`."""
        check_transition(self.initial_status, self.execution.status, self.execution.id)
        self.execution.updated_at = self.now
        return self.execution

    @property
    def status(self) -> ExecutionStatus:
        return self.execution.status

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.execution.status is ExecutionStatus.PENDING:
            self.execution.status = ExecutionStatus.RUNNING
            self.execution.started_at = self.now
            self.record(EventType.EXECUTION_STARTED, step_id=self.execution.current_step_id)

    def complete(self, step_id: str | None) -> None:
        self._clear_wait()
        self.execution.status = ExecutionStatus.COMPLETED
        self.execution.finished_at = self.now
        self.record(EventType.EXECUTION_COMPLETED, step_id=step_id)

    def fail(
        self, code: str, message: str, step_id: str | None, details: dict[str, Any] | None = None
    ) -> None:
        self._clear_wait()
        error = ErrorInfo(code=code, message=message, step_id=step_id, details=details or {})
        self.execution.status = ExecutionStatus.FAILED
        self.execution.error = error
        self.execution.finished_at = self.now
        self.record(EventType.EXECUTION_FAILED, step_id=step_id, error=error)

    def cancel(self, source: str, reason: str | None, error: ErrorInfo | None = None) -> None:
        self._clear_wait()
        self.execution.status = ExecutionStatus.CANCELLED
        self.execution.cancellation = Cancellation(
            source=source, reason=reason, cancelled_at=self.now
        )
        if error is not None:
            self.execution.error = error
        self.execution.finished_at = self.now
        self.revoke_tokens_reason = f"the execution was cancelled ({source}: {reason})"
        self.record(
            EventType.EXECUTION_CANCELLED,
            step_id=self.execution.current_step_id,
            error=error,
            data={"source": source, "reason": reason},
        )

    def go_to(self, flow: Flow, from_step_id: str, target: str | None, **data: Any) -> None:
        """Follow a transition: None completes; an unknown step fails with INVALID_TRANSITION."""
        if target is None:
            self.complete(from_step_id)
            return
        if target not in flow.steps:
            self.fail(
                ErrorCode.INVALID_TRANSITION.value,
                f"step {from_step_id!r} routes to {target!r}, which is not a step of flow "
                f"{flow.id!r} {flow.version} (steps: {', '.join(sorted(flow.steps))})",
                from_step_id,
                {"target": target},
            )
            return
        self.execution.status = ExecutionStatus.RUNNING
        self.execution.current_step_id = target
        self.record(
            EventType.TRANSITION,
            step_id=from_step_id,
            data={"from": from_step_id, "to": target, **data},
        )

    # -- step results --------------------------------------------------------------------------

    def succeed(self, flow: Flow, step: Step, output: Any, target: str | None) -> None:
        self.execution.retry_attempts = 0
        if step.output_key and output is not None:
            try:
                set_path(self.execution.context, step.output_key, output)
            except ValueError as exc:  # the path runs through a value that is not an object
                error = StepError(
                    ErrorCode.STEP_FAILED.value,
                    f"cannot store the output of step {step.id!r}: {exc}",
                    {"output_key": step.output_key},
                )
                self.route_failure(flow, step, error, step.transitions.on_failure)
                return
        self.go_to(flow, step.id, target)

    def schedule_retry(self, step: Step, error: StepError, delay: timedelta) -> None:
        """Durable backoff: the execution waits (status waiting, wake_at set), never sleeps."""
        assert step.retry is not None
        self.execution.retry_attempts += 1
        retry_number = self.execution.retry_attempts
        wake_at = self.now + delay
        self.execution.status = ExecutionStatus.WAITING
        self.execution.wake_at = wake_at
        self.execution.wait_kind = WaitKind.RETRY
        self.execution.wait_started_at = self.now
        self.execution.wait_deadline_at = None
        self.execution.wait_reason = (
            f"retry {retry_number} of {step.retry.max_attempts} for step {step.id!r} "
            f"after {error.code}"
        )
        self.record(
            EventType.STEP_RETRY,
            step_id=step.id,
            attempt=retry_number + 1,
            error=ErrorInfo(
                code=error.code, message=error.message, step_id=step.id, details=error.details
            ),
            data={"wake_at": wake_at.isoformat(), "delay_ms": delay / timedelta(milliseconds=1)},
        )

    def route_failure(self, flow: Flow, step: Step, error: StepError, target: str | None) -> None:
        self.execution.retry_attempts = 0
        info = ErrorInfo(
            code=error.code, message=error.message, step_id=step.id, details=error.details
        )
        if target is None:
            self.fail(error.code, error.message, step.id, error.details)
            return
        self.execution.context[LAST_ERROR_KEY] = info.model_dump(mode="json")
        self.go_to(flow, step.id, target, error=info.model_dump(mode="json"))

    def wait_for_children(
        self, step: Step, reason: str | None, wait_timeout_ms: int | None, plan: ChildrenPlan
    ) -> None:
        """Wait for a join: resumed by the commit of the child that decides it."""
        self.wait(step, None, reason, wait_timeout_ms, kind=WaitKind.CHILDREN)
        self.children = plan

    def wait_for_job(self, step: Step, job: Job, wait_timeout_ms: int | None) -> None:
        """Wait for a stateful handler's job: its result, committed by the job's runner,
        continues the execution."""
        reason = f"running {job.handler_type} as job {job.id}"
        self.wait(step, None, reason, wait_timeout_ms, kind=WaitKind.JOB)
        self.job = job

    def wait_for_event(
        self, step: Step, request: EventWaitRequest, reason: str | None, wait_timeout_ms: int | None
    ) -> None:
        """Wait for an emitted event; the subscription is committed with the wait."""
        self.wait(step, None, reason, wait_timeout_ms, kind=WaitKind.EVENT)
        execution = self.execution
        self.event_wait = EventWait(
            execution_id=execution.id,
            step_id=step.id,
            sequence=execution.step_count,
            event_type=request.event_type,
            match=request.match,
            tenant_id=execution.tenant_id,
            since=self.now - request.look_back,
            created_at=self.now,
        )

    def wait(
        self,
        step: Step,
        wake_at: datetime | None,
        reason: str | None,
        wait_timeout_ms: int | None,
        *,
        kind: WaitKind | None = None,
    ) -> None:
        # The retry counter survives the wait: what the step waits for (a Celery task, say) may
        # still fail and must count against the same retry budget. Leaving the step resets it.
        self.execution.status = ExecutionStatus.WAITING
        self.execution.wait_kind = kind or (
            WaitKind.TIMER if wake_at is not None else WaitKind.SIGNAL
        )
        if step.wait_timeout_ms is not None:
            # The step's own wait deadline is a wake like any other (found by the same sweep);
            # on waking, `wait_timed_out` tells it from the end of a timer.
            step_deadline = self.now + timedelta(milliseconds=step.wait_timeout_ms)
            wake_at = step_deadline if wake_at is None else min(wake_at, step_deadline)
        self.execution.wake_at = wake_at
        self.execution.wait_reason = reason
        self.execution.wait_started_at = self.now
        self.execution.wait_deadline_at = (
            self.now + timedelta(milliseconds=wait_timeout_ms) if wait_timeout_ms else None
        )
        self.record(
            EventType.EXECUTION_WAITING,
            step_id=step.id,
            data={
                "kind": self.execution.wait_kind.value,
                "wake_at": wake_at.isoformat() if wake_at else None,
                "reason": reason,
            },
        )

    # -- leaving a wait ------------------------------------------------------------------------

    def wake(self, flow: Flow) -> None:
        """A due timer or retry backoff: a retry runs the same step again; a timer moves on."""
        kind = self.execution.wait_kind
        step_id = self.execution.current_step_id
        self._clear_wait()
        self.execution.status = ExecutionStatus.RUNNING
        trigger = kind.value if kind else "timer"
        self.record(EventType.EXECUTION_RESUMED, step_id=step_id, data={"trigger": trigger})
        if kind is not WaitKind.RETRY and step_id is not None:
            self.execution.retry_attempts = 0
            step = flow.steps.get(step_id)
            target = step.transitions.resume_target() if step else None
            self.go_to(flow, step_id, target)

    def resume(
        self, flow: Flow, step: Step, data: Any, *, trigger: str = "signal", **detail: Any
    ) -> None:
        """Resume with data: stored at the step's output_key, else merged into the context."""
        if data is not None:
            if step.output_key:
                set_path(self.execution.context, step.output_key, data)
            else:
                self.execution.context.update(data)
        self._clear_wait()
        self.execution.status = ExecutionStatus.RUNNING
        self.execution.retry_attempts = 0
        self.record(
            EventType.EXECUTION_RESUMED,
            step_id=step.id,
            data={"trigger": trigger, "with_data": data is not None, **detail},
        )
        self.go_to(flow, step.id, step.transitions.resume_target())

    def time_out_wait(self, flow: Flow, step: Step, error: StepError) -> bool:
        """The step's wait outlived its `wait_timeout_ms`: leave it for `on_timeout` (True), or
        leave it without moving on (False: the caller retries or routes the failure). The
        wait's resume tokens are revoked either way."""
        self.leave_wait("timeout")
        self.revoke_tokens_reason = f"the wait of step {step.id!r} timed out"
        if not step.transitions.has_timeout_target:
            return False
        self.execution.retry_attempts = 0
        info = ErrorInfo(
            code=error.code, message=error.message, step_id=step.id, details=error.details
        )
        self.execution.context[LAST_ERROR_KEY] = info.model_dump(mode="json")
        self.go_to(flow, step.id, step.transitions.on_timeout, error=info.model_dump(mode="json"))
        return True

    def leave_wait(self, trigger: str) -> None:
        """End the wait without moving on (the caller decides what comes next)."""
        step_id = self.execution.current_step_id
        self._clear_wait()
        self.execution.status = ExecutionStatus.RUNNING
        self.record(EventType.EXECUTION_RESUMED, step_id=step_id, data={"trigger": trigger})

    def _clear_wait(self) -> None:
        self.execution.wake_at = None
        self.execution.wait_reason = None
        self.execution.wait_kind = None
        self.execution.wait_started_at = None
        self.execution.wait_deadline_at = None
