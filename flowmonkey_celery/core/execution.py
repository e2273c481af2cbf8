"""Runtime state: executions, their statuses, errors, timeouts, and what the engine returns."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from flowmonkey_celery.core.json_values import copy_json
from flowmonkey_celery.errors import ErrorCode, ExecutionError


class StateModel(BaseModel):
    """Base for runtime models: snake_case attributes, camelCase accepted on input."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ExecutionStatus(StrEnum):
    """Lifecycle of an execution. Between steps of a live execution the status is `running`."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)

# The one table of allowed status changes. A single engine step is one committed change, so it
# may go straight from pending to completed (a one-step flow) or from waiting to waiting (woken,
# then the next step waits again). Terminal statuses never change.
_LIVE = {
    ExecutionStatus.RUNNING,
    ExecutionStatus.WAITING,
    ExecutionStatus.COMPLETED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
}
ALLOWED_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.PENDING: frozenset(_LIVE),
    ExecutionStatus.RUNNING: frozenset(_LIVE),
    ExecutionStatus.WAITING: frozenset(_LIVE),
    ExecutionStatus.COMPLETED: frozenset(),
    ExecutionStatus.FAILED: frozenset(),
    ExecutionStatus.CANCELLED: frozenset(),
}


def check_transition(current: ExecutionStatus, new: ExecutionStatus, execution_id: str) -> None:
    """Raise if the status table forbids `current -> new`."""
    if new not in ALLOWED_TRANSITIONS[current]:
        raise ExecutionError(
            f"execution {execution_id} is {current.value}; it cannot become {new.value}",
            ErrorCode.INVALID_TRANSITION,
            {"execution_id": execution_id, "from": current.value, "to": new.value},
        )


class WaitKind(StrEnum):
    """Why a waiting execution waits: a timer, a signal (`resume()`), a retry backoff, or its
    child executions (a sub-flow, parallel branches: their join resumes it)."""

    TIMER = "timer"
    SIGNAL = "signal"
    RETRY = "retry"
    CHILDREN = "children"
    JOB = "job"  # a stateful handler running as a background job
    EVENT = "event"  # a wait_for_event step: an emitted event resumes it


class ErrorInfo(StateModel):
    """Why an execution failed or was cancelled by a timeout."""

    code: str
    message: str
    step_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Cancellation(StateModel):
    """Who cancelled an execution, why, and when."""

    source: str
    reason: str | None = None
    cancelled_at: datetime


class TimeoutConfig(StateModel):
    """Deadlines: the whole execution, and each wait (from the moment it starts waiting)."""

    # A misspelt key must not silently mean "no timeout".
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    execution_timeout_ms: int | None = Field(default=None, gt=0)
    wait_timeout_ms: int | None = Field(default=None, gt=0)


class Execution(StateModel):
    """One run of a flow. Persisted after every step; `version` guards concurrent saves."""

    id: str
    flow_id: str
    flow_version: str
    status: ExecutionStatus = ExecutionStatus.PENDING
    current_step_id: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    wake_at: datetime | None = None
    wait_reason: str | None = None
    error: ErrorInfo | None = None
    step_count: int = 0
    tenant_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    parent_execution_id: str | None = None
    idempotency_key: str | None = None
    idempotency_expires_at: datetime | None = None
    cancellation: Cancellation | None = None
    timeout: TimeoutConfig | None = None
    retry_attempts: int = 0
    created_at: datetime
    updated_at: datetime
    version: int = 0
    # Added by flowmonkey-celery: what a waiting execution waits for, and absolute deadlines,
    # stored as columns so the beat can find due work with an index instead of a scan.
    wait_kind: WaitKind | None = None
    wait_started_at: datetime | None = None
    wait_deadline_at: datetime | None = None
    deadline_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Set by the distributed runtime while a step is in flight: a running execution whose
    # lease has expired is presumed stalled (a worker died, a message was lost) and re-sent.
    lease_expires_at: datetime | None = None
    # A child started by a step (sub-flow, parallel branch): the join it reports to, its
    # place in it, and what cancelling the parent does to it ("cancel" or "abandon").
    join_id: str | None = None
    branch_index: int | None = None
    parent_close: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status_from_string(cls, value: Any) -> Any:
        return ExecutionStatus(value) if isinstance(value, str) else value

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def clone(self) -> Execution:
        """An independent copy (what `model_copy(deep=True)` gives, made for the engine's hot
        path: the context and metadata are plain JSON, copied without `copy.deepcopy`)."""
        nested = {
            name: value.model_copy(deep=True)
            for name in ("error", "cancellation", "timeout")
            if (value := getattr(self, name)) is not None
        }
        return self.model_copy(
            update={
                "context": copy_json(self.context),
                "metadata": copy_json(self.metadata),
                **nested,
            }
        )

    def next_due_at(self) -> datetime | None:
        """The earliest instant at which time alone changes this execution (wake or deadline)."""
        if self.is_terminal:
            return None
        moments = [self.deadline_at]
        if self.status is ExecutionStatus.WAITING:
            moments += [self.wake_at, self.wait_deadline_at]
        present = [m for m in moments if m is not None]
        return min(present) if present else None


StepOutcomeKind = Literal["success", "failure", "wait", "retry"]


class StepOutcome(StateModel):
    """What one `engine.step()` did, and what should happen next.

    `done` is True once the execution is terminal. `outcome` is None when no handler ran
    (the execution was already finished, not yet due, or was cancelled by a deadline).
    """

    execution_id: str
    flow_id: str = ""
    flow_version: str = ""
    done: bool
    status: ExecutionStatus
    step_id: str | None = None
    outcome: StepOutcomeKind | None = None
    next_step_id: str | None = None
    wake_at: datetime | None = None
    error: ErrorInfo | None = None
    version: int = 0
    # The execution as committed by this step (None if nothing was written). A runtime that
    # continues with the next step itself passes it back as `engine.step(..., known=...)`.
    execution: Execution | None = Field(default=None, exclude=True, repr=False)
    # Other executions this commit made runnable: children it started, parents a finished
    # child resumed. A runtime enqueues them (the commit is done; a lost message is re-sent
    # by the stalled-lease sweep).
    runnable: list[str] = Field(default_factory=list)
    # The same, as committed (what a runtime needs to enqueue them without loading them).
    runnable_executions: list[Execution] = Field(default_factory=list, exclude=True, repr=False)
    # Jobs this commit created (stateful handlers): a runtime hands each to a job runner.
    jobs: list[str] = Field(default_factory=list)


class CreateResult(StateModel):
    """What `engine.create()` returns: the execution, and whether it is new."""

    execution: Execution
    created: bool
    idempotency_hit: bool = False


class CancelResult(StateModel):
    """What `engine.cancel()` returns. `error` explains a refusal (cancelled=False)."""

    cancelled: bool
    previous_status: ExecutionStatus | None = None
    error: str | None = None
    children_cancelled: list[str] = Field(default_factory=list)
