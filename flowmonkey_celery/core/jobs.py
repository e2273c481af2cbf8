"""Background jobs: how stateful handlers run.

A handler whose metadata says `stateful: True` (a long export, a model training run, anything
that should survive its worker) is not called inside the step. The step commits a wait and a
`Job` row together; a job runner (a Celery task, or `engine.run_job` in-process) claims the job
with a lease, calls the handler with a `JobControl` for heartbeats, progress and checkpoints,
and commits the handler's result and the execution's next state together. Each claim gets a
new `runner_id`: once a job is re-claimed (its lease expired), reaped, or its execution is
cancelled, the older instance's writes match no row, so it can never write its result.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from flowmonkey_celery.core.execution import StateModel


class JobStatus(StrEnum):
    PENDING = "pending"  # committed, waiting for a runner
    RUNNING = "running"  # claimed; its lease must be renewed by heartbeats
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(StateModel):
    """One run of a stateful handler for one step attempt."""

    id: str
    execution_id: str
    step_id: str
    handler_type: str
    # The execution's step_count once its wait for this job is committed: the job's result
    # ends that wait, never a later one.
    sequence: int
    attempt: int
    status: JobStatus = JobStatus.PENDING
    input: Any = None
    claims: int = 0
    runner_id: str | None = None
    lease_expires_at: datetime | None = None
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None
    progress: Any = None
    checkpoint: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime


def new_job_id() -> str:
    return uuid.uuid4().hex


def new_runner_id() -> str:
    return uuid.uuid4().hex


class JobSuperseded(Exception):
    """This job instance lost its claim (re-claimed after its lease expired, reaped, or its
    execution was cancelled): stop; nothing it writes any more is kept."""


class JobControl:
    """What a stateful handler gets as `params.job`: heartbeats, progress, checkpoints.

    Every call renews the lease; each raises JobSuperseded once this instance has lost its
    claim, so a handler that reports regularly stops soon after it was replaced.
    """

    def __init__(self, job: Job, touch: Callable[..., bool]) -> None:
        self.job = job
        self._touch = touch

    @property
    def checkpoint(self) -> Any:
        """The last checkpoint saved by any instance of this job (None at first): resume from
        it instead of starting over."""
        return self.job.checkpoint

    @property
    def claims(self) -> int:
        """1 on the first run, 2 when the job was re-claimed after a lost runner, ..."""
        return self.job.claims

    def heartbeat(self) -> None:
        """Renew the lease (the runner also does it by itself while the handler runs)."""
        self._write()

    def report_progress(self, progress: Any) -> None:
        """Store a JSON progress value (a fraction, `{"done": 40, "total": 100}`...)."""
        self._write(progress=progress)
        self.job.progress = progress

    def save_checkpoint(self, checkpoint: Any) -> None:
        """Store a JSON checkpoint; a later instance of this job starts from it."""
        self._write(checkpoint=checkpoint)
        self.job.checkpoint = checkpoint

    def _write(self, **fields: Any) -> None:
        if not self._touch(**fields):
            raise JobSuperseded(
                f"job {self.job.id} of step {self.job.step_id!r} was taken over or ended"
            )
