"""Running stateful handlers as background jobs (see `core/jobs.py`)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from flowmonkey_celery.core.draft import ExecutionDraft
from flowmonkey_celery.core.engine_base import CommitEffects
from flowmonkey_celery.core.events import EventType
from flowmonkey_celery.core.execution import (
    ErrorInfo,
    Execution,
    ExecutionStatus,
    StepOutcome,
    WaitKind,
)
from flowmonkey_celery.core.flow import Step
from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.jobs import Job, JobControl, JobStatus, new_job_id, new_runner_id
from flowmonkey_celery.core.joins import Joins
from flowmonkey_celery.core.json_values import to_json_value
from flowmonkey_celery.core.log_context import step_log_context
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.snapshots import snapshot_of
from flowmonkey_celery.errors import ErrorCode

log = logging.getLogger("flowmonkey_celery.jobs")

# Without a runtime lease (an in-process engine), jobs still hold a lease this long.
DEFAULT_JOB_LEASE = timedelta(seconds=30)
# A job whose runner is lost this many times (its worker killed by the work itself, say: out of
# memory) fails with HANDLER_ERROR, so its step's retry policy and on_failure decide, instead of
# being handed to the next runner forever.
MAX_JOB_CLAIMS = 5


class JobRunner(Joins):
    """`run_job` (claim, call, commit) and `reap_jobs` (the tick's sweep)."""

    @property
    def job_lease(self) -> timedelta:
        return self.lease or DEFAULT_JOB_LEASE

    def _start_job(self, draft: ExecutionDraft, step: Step, step_input: Any, attempt: int) -> None:
        execution = draft.execution
        job = Job(
            id=new_job_id(),
            execution_id=execution.id,
            step_id=step.id,
            handler_type=step.type,
            sequence=execution.step_count,
            attempt=attempt,
            input=to_json_value(step_input),
            # Until claimed, the lease is the time a runner has to pick it up: a job whose
            # message was lost is re-sent by the reaper after it.
            lease_expires_at=draft.now + self.job_lease,
            created_at=draft.now,
            updated_at=draft.now,
        )
        wait_timeout = execution.timeout.wait_timeout_ms if execution.timeout else None
        draft.wait_for_job(step, job, wait_timeout)

    def run_job(self, job_id: str) -> StepOutcome | None:
        """Claim the job, run its handler (renewing the lease meanwhile) and commit the result
        with the execution's next state. None if the job was not claimable (finished, or
        held by a live runner), or its result no longer counts (superseded, or its execution
        moved on).

        Raises:
            ExecutionError: FLOW_NOT_FOUND / HANDLER_NOT_FOUND if the worker lacks them (the
                job stays claimable once the lease runs out).
        """
        runner = new_runner_id()
        now = self.clock.now()
        job = self.store.claim_job(job_id, runner, now, now + self.job_lease)
        if job is None:
            return None
        execution = self._load(job.execution_id)
        if not _waits_for(execution, job):
            self._abandon(job, runner, "its execution no longer waits for it")
            return None
        flow = self._flow_of(execution)
        step = flow.steps[job.step_id]
        handler = self.handlers.get(step.type)

        def touch(**fields: Any) -> bool:
            at = self.clock.now()
            values = {k: to_json_value(v) for k, v in fields.items()}
            return self.store.touch_job(job.id, runner, at, at + self.job_lease, values)

        control = JobControl(job, touch)
        snapshot = execution.clone()
        params = HandlerParams(
            input=job.input,
            context=MappingProxyType(snapshot.context),
            step=step,
            execution=snapshot,
            attempt=job.attempt,
            step_key=f"{execution.id}:{step.id}:{job.attempt}",
            clock=self.clock,
            job=control,
        )
        started_at = self.clock.now()
        # As a step attempt: its logs (the handler's too) and its commit name the attempt.
        with step_log_context(execution, step, job.attempt):
            with _Heartbeat(touch, self.job_lease.total_seconds() / 3):
                invocation = self.hooks.invoke(
                    handler, params, step.timeout_ms, self.timeout_exceptions
                )
            return self._finish(
                job, runner, step, invocation.result, started_at, invocation.duration_ms
            )

    def reap_jobs(self, now: datetime | None = None, limit: int = 100) -> list[str]:
        """Jobs to hand to a runner again: those whose lease expired (a dead runner, a lost
        message), deferred by one lease so each is re-sent once per lease. A job running
        longer than `max_step_duration` is failed instead (HANDLER_TIMEOUT, through the
        step's retry policy and on_failure); its hung runner can no longer write."""
        now = now or self.clock.now()
        longest = self.max_step_duration
        started_before = now - longest if longest is not None else None
        resend: list[str] = []
        for job in self.store.find_jobs_to_reap(now, started_before=started_before, limit=limit):
            overdue = (
                started_before is not None
                and job.status is JobStatus.RUNNING
                and job.started_at is not None
                and job.started_at < started_before
                and job.runner_id is not None
            )
            lost_too_often = (
                job.status is JobStatus.RUNNING
                and job.claims >= MAX_JOB_CLAIMS
                and job.runner_id is not None
                and job.lease_expires_at is not None
                and job.lease_expires_at < now
            )
            if overdue or lost_too_often:
                assert job.runner_id is not None
                if overdue:
                    message = (
                        f"job {job.id} of step {job.step_id!r} ran longer than the maximum step "
                        f"duration ({longest}); its runner was let go"
                    )
                    result = Result.failure(ErrorCode.HANDLER_TIMEOUT.value, message)
                else:
                    message = (
                        f"job {job.id} of step {job.step_id!r} lost its runner {job.claims} times "
                        "(each stopped heartbeating: a crash, a kill, out of memory?)"
                    )
                    result = Result.failure(
                        ErrorCode.HANDLER_ERROR.value, message, {"claims": job.claims}
                    )
                execution = self.store.get_execution(job.execution_id)
                flow = (
                    self.flows.find(execution.flow_id, execution.flow_version)
                    if execution
                    else None
                )
                step = flow.steps.get(job.step_id) if flow is not None else None
                try:
                    outcome = (
                        self._finish(job, job.runner_id, step, result, job.started_at or now, 0.0)
                        if step is not None
                        else None
                    )
                    if outcome is not None and outcome.execution is not None:
                        self._hand_off([outcome.execution, *outcome.runnable_executions])
                except Exception:  # one bad job must not stop the sweep
                    log.exception("cannot fail overdue job %s", job.id)
                continue
            if self.store.defer_job(job.id, now, now + self.job_lease):
                resend.append(job.id)
        return resend

    # -- internals -------------------------------------------------------------------------------

    def _finish(
        self,
        job: Job,
        runner: str,
        step: Step,
        result: StepResult,
        started_at: datetime,
        duration_ms: float,
    ) -> StepOutcome | None:
        now = self.clock.now()
        output: Any = None
        if result.start_children is not None:
            result = Result.failure(
                ErrorCode.INVALID_ARGUMENT.value,
                f"stateful handler of step {step.id!r} returned Result.start_children; start "
                "children from a step that is not stateful",
                retryable=False,
            )
        if result.outcome == "success" and result.output is not None:
            try:
                output = to_json_value(result.output)
            except TypeError as exc:
                result = Result.failure(
                    ErrorCode.HANDLER_ERROR.value,
                    f"output of step {step.id!r} cannot be stored as JSON: {exc}",
                )
        error = (
            ErrorInfo(
                code=result.error.code,
                message=result.error.message,
                step_id=step.id,
                details=result.error.details,
            )
            if result.error
            else None
        )
        status = JobStatus.FAILED if result.outcome == "failure" else JobStatus.COMPLETED
        effects = CommitEffects()
        with self.store.transaction() as tx:
            error_json = error.model_dump(mode="json") if error else None
            # The execution's row first, then the job's: the order a cancel takes.
            execution = tx.get_execution(job.execution_id, lock=True)
            if not tx.finish_job(job.id, runner, status, output, error_json, now):
                log.info("job %s finished after it was taken over; its result is dropped", job.id)
                return None
            if execution is None or not _waits_for(execution, job):
                return None
            flow = self._flow_of(execution)
            draft = ExecutionDraft(execution, now)
            draft.leave_wait("job")
            draft.execution.step_count += 1
            limit = self.history_snapshot_bytes
            draft.record(
                EventType.STEP_STARTED,
                at=started_at,
                step_id=step.id,
                attempt=job.attempt,
                data=snapshot_of("context", execution.context, limit),
            )
            draft.record(
                EventType.STEP_COMPLETED,
                step_id=step.id,
                handler_type=step.type,
                outcome=result.outcome,
                attempt=job.attempt,
                started_at=started_at,
                finished_at=now,
                duration_ms=round(duration_ms, 3),
                error=error,
                data={
                    "job_id": job.id,
                    "claims": job.claims,
                    **(snapshot_of("output", output, limit) if output is not None else {}),
                },
            )
            self._apply_result(draft, flow, step, result, output)
            resumed = draft.finalise()
            resumed.lease_expires_at = self._lease_for(resumed, now)
            saved = self._save_in(tx, draft, effects)
        outcome = self._after_commit(
            draft, saved, effects, step_id=step.id, kind=result.outcome, hand_off=False
        )
        saved = outcome.execution or saved
        outcome.runnable_executions = (
            [saved, *effects.runnable] if _runnable(saved) else [*effects.runnable]
        )
        outcome.runnable = [e.id for e in outcome.runnable_executions]
        return outcome

    def _abandon(self, job: Job, runner: str, why: str) -> None:
        with self.store.transaction() as tx:
            tx.finish_job(
                job.id,
                runner,
                JobStatus.CANCELLED,
                None,
                {"code": "JOB_ABANDONED", "message": why},
                self.clock.now(),
            )


def _waits_for(execution: Execution, job: Job) -> bool:
    return (
        execution.status is ExecutionStatus.WAITING
        and execution.wait_kind is WaitKind.JOB
        and execution.current_step_id == job.step_id
        and execution.step_count == job.sequence
    )


def _runnable(execution: Execution) -> bool:
    return execution.status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


class _Heartbeat:
    """Renews a running job's lease every `period` seconds until the block ends (or the job
    is lost: then it stops; the handler finds out at its next report)."""

    def __init__(self, touch: Any, period: float) -> None:
        self._touch = touch
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="flowmonkey-job-heartbeat", daemon=True
        )

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                if not self._touch():
                    return
            except Exception:  # a database blip: the next beat tries again
                log.warning("job heartbeat failed", exc_info=True)
