"""Stepping: advance an execution one handler call (or one due wake / deadline) at a time."""

from __future__ import annotations

import functools
from types import MappingProxyType
from typing import Any

from flowmonkey_celery.core.children import StartChildren
from flowmonkey_celery.core.clock import ManualClock
from flowmonkey_celery.core.draft import ExecutionDraft
from flowmonkey_celery.core.engine_base import _check_version
from flowmonkey_celery.core.events import EventType
from flowmonkey_celery.core.execution import (
    ErrorInfo,
    Execution,
    ExecutionStatus,
    StepOutcome,
    StepOutcomeKind,
    WaitKind,
)
from flowmonkey_celery.core.flow import Flow, Step
from flowmonkey_celery.core.handlers import HandlerParams, StepHandler
from flowmonkey_celery.core.job_runner import JobRunner
from flowmonkey_celery.core.joins import child_failure
from flowmonkey_celery.core.json_values import to_json_value
from flowmonkey_celery.core.log_context import step_log_context
from flowmonkey_celery.core.results import Result, StepError, StepResult
from flowmonkey_celery.core.selectors import resolve_input
from flowmonkey_celery.core.snapshots import snapshot_of
from flowmonkey_celery.errors import (
    ErrorCode,
    FlowMonkeyError,
    HandlerNotFoundError,
    VersionConflictError,
)


class Stepping(JobRunner):
    """`step()` and `run()`: load, guard, call the handler, apply its result, commit."""

    def step(
        self,
        execution_id: str,
        *,
        expected_version: int | None = None,
        known: Execution | None = None,
    ) -> StepOutcome:
        """Advance the execution by one handler call (or one due wake / deadline), committed.

        Args:
            expected_version: if given and the stored version differs, nothing runs and
                VersionConflictError is raised: a duplicate or stale step message.
            known: the execution as this process has just committed it (`outcome.execution`
                of the previous step), to skip loading it again. If anything else changed it
                meanwhile (a cancel, say), the save's compare-and-set refuses this step with
                VersionConflictError, exactly as if the change had come during the handler.

        Raises:
            ExecutionError: EXECUTION_NOT_FOUND; FLOW_NOT_FOUND if its flow version is no
                longer registered (the execution is left untouched).
            VersionConflictError: another process saved the execution meanwhile; nothing written.
        """
        if known is not None and known.id != execution_id:
            raise ValueError(f"known execution {known.id} is not {execution_id}")
        return self._step(
            execution_id, simulate_time=False, expected_version=expected_version, known=known
        )

    def run(self, execution_id: str, *, simulate_time: bool = False) -> Execution:
        """Step until the execution completes, fails, is cancelled, or waits for something not
        yet due. A failure inside the flow is in `execution.error`, never raised.

        With `simulate_time=True`, timed waits and retry backoffs are treated as due at once;
        a ManualClock is advanced to each wake time.

        Raises:
            ExecutionError: EXECUTION_NOT_FOUND for an unknown id.
        """
        conflicts = 0
        started: list[str] = []  # children this run started: run them too
        while True:
            try:
                outcome = self._step(execution_id, simulate_time=simulate_time)
            except VersionConflictError:
                # Someone else (a cancel, another engine) moved it on: look again.
                conflicts += 1
                if conflicts > 100:
                    raise
                continue
            started += [i for i in outcome.runnable if i != execution_id]
            if outcome.done:
                break
            if outcome.status is ExecutionStatus.WAITING and outcome.outcome is None:
                if outcome.execution is None:
                    current = self._load(execution_id)
                else:
                    current = outcome.execution
                if current.wait_kind is WaitKind.CHILDREN and self._run_children(
                    execution_id, simulate_time
                ):
                    continue  # a child moved on: the join may have resumed it
                if current.wait_kind is WaitKind.JOB and self._run_jobs(execution_id):
                    continue  # in-process, this call is the job runner
                break  # still waiting on something that is not due (or not timed)
        for child_id in started:  # detached children, or ones left by a decided join
            if not self._load(child_id).is_terminal:
                self.run(child_id, simulate_time=simulate_time)
        return self._load(execution_id)

    def _run_jobs(self, execution_id: str) -> bool:
        """Run the execution's claimable jobs here; whether one committed a result."""
        ran = False
        for job in self.store.list_jobs(execution_id):
            if not job.status.is_finished and self.run_job(job.id) is not None:
                ran = True
        return ran

    def _run_children(self, parent_id: str, simulate_time: bool) -> bool:
        """Run the live children of a parent waiting for them; whether any moved on."""
        moved = False
        for child in self.store.list_children(parent_id):
            if child.is_terminal:
                continue
            after = self.run(child.id, simulate_time=simulate_time)
            moved = moved or after.version != child.version
        return moved

    def _step(
        self,
        execution_id: str,
        *,
        simulate_time: bool,
        expected_version: int | None = None,
        known: Execution | None = None,
    ) -> StepOutcome:
        execution = known if known is not None else self._load(execution_id)
        _check_version(execution, expected_version, "this step was already taken")
        if execution.is_terminal:
            return self._outcome(execution)
        now = self.clock.now()
        if (
            simulate_time
            and execution.wake_at is not None
            and execution.wait_kind not in (WaitKind.SIGNAL, WaitKind.CHILDREN, WaitKind.JOB)
        ):
            # Only a timed wait is fast-forwarded; a deadline counts only if it falls before
            # the wake. A signal wait stays a wait: nobody has resumed it.
            due = execution.next_due_at()
            if due is not None and due > now:
                now = self.clock.set(due) if isinstance(self.clock, ManualClock) else due
        draft = ExecutionDraft(execution, now)

        if self._expire_deadlines(draft) is not None:
            return self._commit(draft, hand_off=False)
        if execution.status is ExecutionStatus.WAITING:
            if execution.wake_at is None or execution.wake_at > now:
                return self._outcome(execution)
            # The wake is committed on its own, before any handler runs: whoever wakes a due
            # execution (a countdown message, the tick's sweep) takes it by compare-and-set,
            # so the others find it taken instead of running the same attempt alongside.
            draft.wake(self._flow_of(execution))
            return self._commit(draft, hand_off=False)
        draft.start()
        return self._run_current_step(draft)

    def _run_current_step(self, draft: ExecutionDraft) -> StepOutcome:
        execution = draft.execution
        step_id = execution.current_step_id
        if execution.step_count >= self.max_steps:
            draft.fail(
                ErrorCode.MAX_STEPS.value,
                f"execution {execution.id} reached max_steps={self.max_steps} handler calls; "
                "is the flow looping? Raise Engine(max_steps=...) if it is meant to run longer",
                step_id,
            )
            return self._commit(draft, hand_off=False)
        flow = self._flow_of(execution)
        step = flow.steps.get(step_id) if step_id else None
        if step is None:
            draft.fail(
                ErrorCode.STEP_NOT_FOUND.value,
                f"step {step_id!r} is not in flow {flow.id!r} {flow.version}",
                step_id,
            )
            return self._commit(draft, hand_off=False)
        try:
            handler = self.handlers.get(step.type)
        except HandlerNotFoundError as exc:
            draft.fail(exc.code.value, exc.message, step.id, exc.details)
            return self._commit(draft, hand_off=False)
        try:
            step_input = resolve_input(step.input, execution.context)
        except Exception as exc:
            draft.route_failure(
                flow,
                step,
                StepError(
                    ErrorCode.INPUT_ERROR.value, f"cannot resolve input of step {step.id!r}: {exc}"
                ),
                step.transitions.on_failure,
            )
            return self._commit(draft, step_id=step.id, kind="failure", hand_off=False)

        attempt = execution.retry_attempts + 1
        # Everything logged from here to the commit, the handler's own lines included, names
        # this attempt; the events the commit publishes are read in it too (the metrics).
        with step_log_context(execution, step, attempt):
            return self._attempt(draft, flow, step, handler, step_input, attempt)

    def _attempt(
        self,
        draft: ExecutionDraft,
        flow: Flow,
        step: Step,
        handler: StepHandler,
        step_input: Any,
        attempt: int,
    ) -> StepOutcome:
        """Call the step's handler once (or start its job) and commit what it returned."""
        execution = draft.execution
        if self.handlers.is_stateful(step.type):
            # Not called here: a job runner claims it (with a lease, heartbeats, checkpoints)
            # and commits its result; the job and this wait are committed together.
            self._start_job(draft, step, step_input, attempt)
            return self._commit(draft, step_id=step.id, kind="wait", hand_off=False)
        snapshot = execution.clone()
        issued_hashes: list[str] = []
        params = HandlerParams(
            input=step_input,
            context=MappingProxyType(snapshot.context),
            step=step,
            execution=snapshot,
            attempt=attempt,
            step_key=f"{execution.id}:{step.id}:{attempt}",
            clock=self.clock,
            issue_token=functools.partial(
                self._issue_token,
                execution.id,
                step.id,
                execution.step_count,
                issued_hashes=issued_hashes,
            ),
        )
        started_at = self.clock.now()
        draft.record(
            EventType.STEP_STARTED,
            at=started_at,
            step_id=step.id,
            attempt=attempt,
            data=snapshot_of("context", execution.context, self.history_snapshot_bytes),
        )
        with self._keep_lease(draft, step):
            invocation = self.hooks.invoke(
                handler, params, step.timeout_ms, self.timeout_exceptions
            )
        result = invocation.result
        output: Any = None
        if result.outcome == "success" and result.output is not None:
            try:
                output = to_json_value(result.output)
            except TypeError as exc:
                result = Result.failure(
                    ErrorCode.HANDLER_ERROR.value,
                    f"output of step {step.id!r} cannot be stored as JSON: {exc}",
                )
        finished_at = self.clock.now()
        # The clock may be simulated; the wall-time duration is what the audit log wants.
        draft.now = max(draft.now, finished_at)
        execution.step_count += 1
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
        draft.record(
            EventType.STEP_COMPLETED,
            at=finished_at,
            step_id=step.id,
            handler_type=step.type,
            outcome=result.outcome,
            attempt=attempt,
            started_at=started_at,
            finished_at=finished_at,
            duration_ms=round(invocation.duration_ms, 3),
            error=error,
            data=(
                snapshot_of("output", output, self.history_snapshot_bytes)
                if output is not None
                else {}
            ),
        )
        if result.start_children is not None and result.outcome != "success":
            kind = self._start_children(draft, flow, step, result.start_children, result)
        else:
            kind = self._apply_result(draft, flow, step, result, output)
        try:
            return self._commit(draft, step_id=step.id, kind=kind, hand_off=False)
        except VersionConflictError:
            if issued_hashes:
                self._revoke_lost_tokens(execution.id, issued_hashes)
            raise

    def _start_children(
        self,
        draft: ExecutionDraft,
        flow: Flow,
        step: Step,
        request: StartChildren,
        result: StepResult,
    ) -> StepOutcomeKind:
        """A handler asked for children: plan them with the step's wait (or, detached, with
        its success); the commit writes both in one transaction."""
        execution = draft.execution
        try:
            plan = self._plan_children(execution, flow, step, request, draft.now)
        except FlowMonkeyError as exc:
            draft.route_failure(flow, step, child_failure(exc), step.transitions.on_failure)
            return "failure"
        if request.detached:
            draft.children = plan
            ids = [child.id for child, _ in plan.executions]
            detached: dict[str, Any] = (
                {"execution_id": ids[0]}
                if request.kind == "subflow" and ids
                else {"execution_ids": ids}
            )
            draft.succeed(flow, step, detached, step.transitions.on_success)
            return "success"
        if not plan.branches:  # nothing to wait for: an empty foreach
            draft.succeed(flow, step, [], step.transitions.on_success)
            return "success"
        wait_timeout = execution.timeout.wait_timeout_ms if execution.timeout else None
        reason = result.wait_reason or (
            f"waiting for sub-flow {plan.branches[0].spec.flow_id!r}"
            if request.kind == "subflow"
            else f"waiting for {len(plan.branches)} branches"
        )
        draft.wait_for_children(step, reason, wait_timeout, plan)
        return "wait"
