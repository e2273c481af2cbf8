"""The engine: pure, synchronous orchestration of executions over a Store.

One `step()` = load -> guard -> resolve input -> call handler -> apply result -> one
compare-and-set save of the execution and its history events -> report what comes next.
The engine keeps no state of its own between calls; any number of engines (threads, processes,
Celery workers) can share one store.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from flowmonkey_celery.core.clock import Clock, ManualClock, SystemClock, as_timedelta
from flowmonkey_celery.core.draft import ExecutionDraft
from flowmonkey_celery.core.events import EventBus, EventCallback, EventType, HistoryEvent
from flowmonkey_celery.core.execution import (
    CancelResult,
    CreateResult,
    ErrorInfo,
    Execution,
    ExecutionStatus,
    StepOutcome,
    StepOutcomeKind,
    TimeoutConfig,
    WaitKind,
)
from flowmonkey_celery.core.flow import Flow, Step
from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.invoke import invoke_handler
from flowmonkey_celery.core.json_values import to_json_value
from flowmonkey_celery.core.lease import LeaseKeeper
from flowmonkey_celery.core.ports import Store
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.core.results import Result, StepError
from flowmonkey_celery.core.retry import compute_backoff, should_retry
from flowmonkey_celery.core.selectors import resolve_input
from flowmonkey_celery.errors import (
    ErrorCode,
    ExecutionError,
    HandlerNotFoundError,
    VersionConflictError,
)

log = logging.getLogger("flowmonkey_celery.engine")

DEFAULT_IDEMPOTENCY_TTL = timedelta(hours=24)
# A sweeper that claimed a wake and died leaves it due again after this long.
WAKE_CLAIM_TTL = timedelta(seconds=60)
# User commands (resume, cancel) reload and retry when they race a worker's save.
_COMMAND_ATTEMPTS = 10


class Engine:
    """Creates, steps, runs, resumes and cancels executions.

    Args:
        store: where executions and history live (MemoryStore, SqlStore...).
        handlers: step type -> handler.
        flows: flow id/version -> Flow.
        max_steps: handler calls allowed per execution before it fails with MAX_STEPS.
        record_history: store history events (subscribers get them either way).
        clock: source of time (default SystemClock); tests pass a ManualClock.
        rng: randomness for retry jitter (seed it for repeatable tests).
    """

    def __init__(
        self,
        store: Store,
        handlers: HandlerRegistry,
        flows: FlowRegistry,
        *,
        max_steps: int = 1000,
        record_history: bool = True,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        lease: timedelta | None = None,
        timeout_exceptions: tuple[type[BaseException], ...] = (),
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if lease is not None and lease <= timedelta(0):
            raise ValueError("lease must be positive")
        # A distributed runtime sets a lease: a pending or running execution whose lease
        # expires without progress is presumed stalled (lost message, dead worker) and re-sent.
        self.lease = lease
        # Exceptions a runtime raises inside a handler to enforce timeout_ms (e.g. Celery's
        # SoftTimeLimitExceeded): recorded as HANDLER_TIMEOUT rather than HANDLER_ERROR.
        self.timeout_exceptions = timeout_exceptions
        self.store = store
        self.handlers = handlers
        self.flows = flows
        self.max_steps = max_steps
        self.record_history = record_history
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        # While a handler runs, its lease keeps moving: a long step is not presumed stalled.
        self._lease_keeper = LeaseKeeper(store, self.clock, lease) if lease is not None else None
        self._bus = EventBus()

    # -- events --------------------------------------------------------------------------------

    def on(self, event_type: str, callback: EventCallback) -> Callable[[], None]:
        """Call `callback(event)` for each committed event of `event_type` ("*" for all).

        Returns the function that unsubscribes. A subscriber that raises is logged and
        never affects the execution.
        """
        return self._bus.on(event_type, callback)

    # -- create / read -------------------------------------------------------------------------

    def create(
        self,
        flow_id: str,
        context: dict[str, Any] | None = None,
        *,
        tenant_id: str | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl: timedelta | float | int | None = None,
        parent_execution_id: str | None = None,
        timeout: TimeoutConfig | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        execution_id: str | None = None,
        flow_version: str | None = None,
    ) -> CreateResult:
        """Create a pending execution of the latest (or given) version of a flow.

        With `idempotency_key`, a second create with the same key for the same tenant and flow
        within `idempotency_ttl` (default 24 h) returns the first execution (created=False).

        Raises:
            FlowNotFoundError: FLOW_NOT_FOUND. HandlerNotFoundError: a step type has no handler.
            ExecutionError: INVALID_ARGUMENT for bad context/options, EXECUTION_NOT_FOUND for
                an unknown parent, EXECUTION_EXISTS for a taken execution_id.
        """
        flow = self.flows.get(flow_id, flow_version)
        self._check_handlers(flow)
        json_context = self._json_object(context or {}, "context")
        timeout_config = self._timeout_config(timeout)
        ttl = (
            as_timedelta(idempotency_ttl, "idempotency_ttl")
            if idempotency_ttl is not None
            else DEFAULT_IDEMPOTENCY_TTL
        )
        if ttl <= timedelta(0):
            raise ExecutionError("idempotency_ttl must be positive", ErrorCode.INVALID_ARGUMENT)
        if (
            parent_execution_id is not None
            and self.store.get_execution(parent_execution_id) is None
        ):
            raise ExecutionError(
                f"parent execution {parent_execution_id} does not exist",
                details={"execution_id": parent_execution_id},
            )
        now = self.clock.now()
        execution = Execution(
            id=execution_id or str(uuid.uuid4()),
            flow_id=flow.id,
            flow_version=flow.version,
            status=ExecutionStatus.PENDING,
            current_step_id=flow.initial_step_id,
            context=json_context,
            tenant_id=tenant_id,
            metadata=self._json_object(metadata or {}, "metadata"),
            parent_execution_id=parent_execution_id,
            idempotency_key=idempotency_key,
            idempotency_expires_at=now + ttl if idempotency_key else None,
            timeout=timeout_config,
            deadline_at=(
                now + timedelta(milliseconds=timeout_config.execution_timeout_ms)
                if timeout_config and timeout_config.execution_timeout_ms
                else None
            ),
            created_at=now,
            updated_at=now,
        )
        execution.lease_expires_at = self._lease_for(execution, now)
        created_event = HistoryEvent(
            execution_id=execution.id,
            type=EventType.EXECUTION_CREATED,
            at=now,
            step_id=flow.initial_step_id,
            data={"flow_id": flow.id, "flow_version": flow.version},
        )
        stored, created = self.store.create_execution(
            execution, now=now, events=[created_event] if self.record_history else []
        )
        if created:
            self._bus.emit([created_event])
            return CreateResult(execution=stored, created=True)
        hit = HistoryEvent(
            execution_id=stored.id,
            type=EventType.IDEMPOTENCY_HIT,
            at=now,
            data={"idempotency_key": idempotency_key},
        )
        if self.record_history:
            self.store.append_events([hit])
        self._bus.emit([hit])
        return CreateResult(execution=stored, created=False, idempotency_hit=True)

    def get(self, execution_id: str) -> Execution | None:
        """The execution, or None if the id is unknown."""
        return self.store.get_execution(execution_id)

    def history(self, execution_id: str) -> list[HistoryEvent]:
        """The execution's recorded events, oldest first.

        Raises:
            ExecutionError: EXECUTION_NOT_FOUND for an unknown id.
        """
        self._load(execution_id)
        return self.store.list_events(execution_id)

    # -- stepping ------------------------------------------------------------------------------

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
        while True:
            try:
                outcome = self._step(execution_id, simulate_time=simulate_time)
            except VersionConflictError:
                # Someone else (a cancel, another engine) moved it on: look again.
                conflicts += 1
                if conflicts > 100:
                    raise
                continue
            if outcome.done:
                break
            if outcome.status is ExecutionStatus.WAITING and outcome.outcome is None:
                break  # still waiting on something that is not due (or not timed)
        return self._load(execution_id)

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
        if simulate_time and execution.wake_at is not None:
            # Only a timed wait is fast-forwarded; a deadline counts only if it falls before
            # the wake. A signal wait stays a wait: nobody has resumed it.
            due = execution.next_due_at()
            if due is not None and due > now:
                now = self.clock.set(due) if isinstance(self.clock, ManualClock) else due
        draft = ExecutionDraft(execution, now)

        if self._expire_deadlines(draft):
            return self._commit(draft)
        if execution.status is ExecutionStatus.WAITING:
            if execution.wake_at is None or execution.wake_at > now:
                return self._outcome(execution)
            # The wake is committed on its own, before any handler runs: whoever wakes a due
            # execution (a countdown message, the tick's sweep) takes it by compare-and-set,
            # so the others find it taken instead of running the same attempt alongside.
            draft.wake(self._flow_of(execution))
            return self._commit(draft)
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
            return self._commit(draft)
        flow = self._flow_of(execution)
        step = flow.steps.get(step_id) if step_id else None
        if step is None:
            draft.fail(
                ErrorCode.STEP_NOT_FOUND.value,
                f"step {step_id!r} is not in flow {flow.id!r} {flow.version}",
                step_id,
            )
            return self._commit(draft)
        try:
            handler = self.handlers.get(step.type)
        except HandlerNotFoundError as exc:
            draft.fail(exc.code.value, exc.message, step.id, exc.details)
            return self._commit(draft)
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
            return self._commit(draft, step_id=step.id, kind="failure")

        attempt = execution.retry_attempts + 1
        snapshot = execution.clone()
        params = HandlerParams(
            input=step_input,
            context=MappingProxyType(snapshot.context),
            step=step,
            execution=snapshot,
            attempt=attempt,
            step_key=f"{execution.id}:{step.id}:{attempt}",
            clock=self.clock,
        )
        started_at = self.clock.now()
        draft.record(EventType.STEP_STARTED, at=started_at, step_id=step.id, attempt=attempt)
        with self._keep_lease(draft, step):
            invocation = invoke_handler(handler, params, step.timeout_ms, self.timeout_exceptions)
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
        )
        kind: StepOutcomeKind = result.outcome
        if result.outcome == "success":
            target = (
                result.next_step if result.overrides_transition else step.transitions.on_success
            )
            draft.succeed(flow, step, output, target)
        elif result.outcome == "wait":
            wake_at = result.wake_at
            if wake_at is None and result.delay is not None:
                wake_at = draft.now + result.delay
            wait_timeout = execution.timeout.wait_timeout_ms if execution.timeout else None
            draft.wait(step, wake_at, result.wait_reason, wait_timeout)
        else:
            assert result.error is not None
            if should_retry(step.retry, execution.retry_attempts, result.error.code):
                assert step.retry is not None
                delay = compute_backoff(step.retry, execution.retry_attempts + 1, self.rng)
                draft.schedule_retry(step, result.error, delay)
                kind = "retry"
            else:
                target = (
                    result.next_step if result.overrides_transition else step.transitions.on_failure
                )
                draft.route_failure(flow, step, result.error, target)
        return self._commit(draft, step_id=step.id, kind=kind)

    def _expire_deadlines(self, draft: ExecutionDraft) -> bool:
        """Cancel the draft if its execution or wait deadline has passed."""
        execution = draft.execution
        now = draft.now
        if execution.deadline_at is not None and execution.deadline_at <= now:
            code, what = ErrorCode.EXECUTION_TIMEOUT, "execution"
            limit = execution.timeout.execution_timeout_ms if execution.timeout else None
        elif (
            execution.status is ExecutionStatus.WAITING
            and execution.wait_deadline_at is not None
            and execution.wait_deadline_at <= now
        ):
            code, what = ErrorCode.WAIT_TIMEOUT, "wait"
            limit = execution.timeout.wait_timeout_ms if execution.timeout else None
        else:
            return False
        message = f"{what} timeout of {limit} ms passed; execution {execution.id} was cancelled"
        draft.cancel(
            "timeout",
            message,
            ErrorInfo(
                code=code.value,
                message=message,
                step_id=execution.current_step_id,
                details={"timeout_ms": limit},
            ),
        )
        return True

    # -- resume / cancel -----------------------------------------------------------------------

    def resume(
        self, execution_id: str, data: Any = None, *, expected_version: int | None = None
    ) -> Execution:
        """Resume a waiting execution, optionally with data, and commit it as `running` at its
        next step (call `run()` to continue in-process; the Celery runtime enqueues it).

        `data` is stored at the waiting step's `output_key`, or merged into the context when
        the step has none (then it must be an object). With `expected_version`, only the wait
        seen at that version is resumed: if the execution has changed since (resumed by someone
        else and now waiting somewhere else, say), nothing is written.

        Raises:
            ExecutionError: EXECUTION_NOT_FOUND; EXECUTION_NOT_WAITING if it is not waiting
                (or only waiting out a retry backoff); EXECUTION_TIMEOUT / WAIT_TIMEOUT if its
                deadline passed (it is cancelled); INVALID_ARGUMENT for bad data.
            VersionConflictError: the execution is not at `expected_version`.
        """
        json_data = to_json_value_or_error(data, "resume data") if data is not None else None
        for _ in range(_COMMAND_ATTEMPTS):
            execution = self._load_at(execution_id, expected_version)
            if (
                execution.status is not ExecutionStatus.WAITING
                or execution.wait_kind is WaitKind.RETRY
            ):
                raise self._not_waiting(execution)
            flow = self._flow_of(execution)
            step = flow.steps.get(execution.current_step_id or "")
            if step is None:
                raise ExecutionError(
                    f"execution {execution_id} waits at step {execution.current_step_id!r}, which "
                    f"is not in flow {flow.id!r} {flow.version}",
                    ErrorCode.STEP_NOT_FOUND,
                )
            if json_data is not None and not step.output_key and not isinstance(json_data, dict):
                raise ExecutionError(
                    f"resume data for step {step.id!r} must be an object (it has no output_key "
                    f"to store a {type(json_data).__name__} under)",
                    ErrorCode.INVALID_ARGUMENT,
                )
            draft = ExecutionDraft(execution, self.clock.now())
            if self._expire_deadlines(draft):
                try:
                    self._commit(draft)
                except VersionConflictError:
                    continue
                assert draft.execution.error is not None
                raise ExecutionError(
                    f"execution {execution_id} cannot be resumed: {draft.execution.error.message}",
                    draft.execution.error.code,
                    {"execution_id": execution_id},
                )
            try:
                draft.resume(flow, step, json_data)
            except ValueError as exc:  # output_key runs through a value that is not an object
                raise ExecutionError(
                    f"cannot store resume data of step {step.id!r}: {exc}",
                    ErrorCode.INVALID_ARGUMENT,
                    {"execution_id": execution_id, "output_key": step.output_key},
                ) from None
            try:
                self._commit(draft)
            except VersionConflictError:
                if expected_version is not None:
                    raise
                continue
            return self._load(execution_id)
        raise VersionConflictError(f"execution {execution_id} kept changing; resume not applied")

    def fail_running_step(
        self,
        execution_id: str,
        *,
        expected_version: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> Execution | None:
        """Record that the current step's handler call died without reporting (e.g. its
        worker process was killed at a hard time limit), as a failed call of that step: the
        retry policy and `on_failure` apply as usual.

        Returns the updated execution, or None if it already moved on from `expected_version`
        (nothing written).
        """
        execution = self._load(execution_id)
        if execution.version != expected_version or execution.status not in (
            ExecutionStatus.PENDING,
            ExecutionStatus.RUNNING,
        ):
            return None
        flow = self._flow_of(execution)
        step = flow.steps.get(execution.current_step_id or "")
        if step is None:
            return None
        draft = ExecutionDraft(execution, self.clock.now())
        draft.start()
        attempt = execution.retry_attempts + 1
        error = StepError(code, message, dict(details or {}))
        draft.execution.step_count += 1
        draft.record(
            EventType.STEP_COMPLETED,
            step_id=step.id,
            handler_type=step.type,
            outcome="failure",
            attempt=attempt,
            error=ErrorInfo(code=code, message=message, step_id=step.id, details=error.details),
        )
        if should_retry(step.retry, execution.retry_attempts, code):
            assert step.retry is not None
            delay = compute_backoff(step.retry, execution.retry_attempts + 1, self.rng)
            draft.schedule_retry(step, error, delay)
        else:
            draft.route_failure(flow, step, error, step.transitions.on_failure)
        try:
            self._commit(draft)
        except VersionConflictError:
            return None
        return self._load(execution_id)

    def fail_waiting(
        self,
        execution_id: str,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        expected_version: int | None = None,
    ) -> Execution:
        """Report that what a waiting step waits for has failed (e.g. the Celery task a
        `celery_task` step sent raised). The failure goes through the step's retry policy and
        `on_failure` exactly like a handler failure. With `expected_version`, only the wait
        seen at that version is failed.

        Raises:
            ExecutionError: EXECUTION_NOT_FOUND; EXECUTION_NOT_WAITING if it is not waiting.
            VersionConflictError: the execution is not at `expected_version`.
        """
        error = StepError(code, message, dict(details or {}))
        for _ in range(_COMMAND_ATTEMPTS):
            execution = self._load_at(execution_id, expected_version)
            if (
                execution.status is not ExecutionStatus.WAITING
                or execution.wait_kind is WaitKind.RETRY
            ):
                raise self._not_waiting(execution)
            flow = self._flow_of(execution)
            step = flow.steps.get(execution.current_step_id or "")
            if step is None:
                raise ExecutionError(
                    f"execution {execution_id} waits at unknown step {execution.current_step_id!r}",
                    ErrorCode.STEP_NOT_FOUND,
                )
            draft = ExecutionDraft(execution, self.clock.now())
            if not self._expire_deadlines(draft):
                draft.leave_wait("failure")
                if should_retry(step.retry, execution.retry_attempts, code):
                    assert step.retry is not None
                    delay = compute_backoff(step.retry, execution.retry_attempts + 1, self.rng)
                    draft.schedule_retry(step, error, delay)
                else:
                    draft.route_failure(flow, step, error, step.transitions.on_failure)
            try:
                self._commit(draft)
            except VersionConflictError:
                if expected_version is not None:
                    raise
                continue
            return self._load(execution_id)
        raise VersionConflictError(f"execution {execution_id} kept changing; failure not applied")

    def cancel(
        self, execution_id: str, *, source: str = "user", reason: str | None = None
    ) -> CancelResult:
        """Cancel a pending, running or waiting execution and, recursively, its children
        (with source "parent"). A terminal execution is left as it is (cancelled=False).

        Raises:
            ExecutionError: EXECUTION_NOT_FOUND for an unknown id.
        """
        for _ in range(_COMMAND_ATTEMPTS):
            execution = self._load(execution_id)
            if execution.is_terminal:
                return CancelResult(
                    cancelled=False,
                    previous_status=execution.status,
                    error=f"execution {execution_id} is already {execution.status.value}; only "
                    "pending, running or waiting executions can be cancelled",
                )
            draft = ExecutionDraft(execution, self.clock.now())
            draft.cancel(source, reason)
            try:
                self._commit(draft)
            except VersionConflictError:
                continue
            return CancelResult(
                cancelled=True,
                previous_status=execution.status,
                children_cancelled=draft.children_cancelled,
            )
        raise VersionConflictError(f"execution {execution_id} kept changing; cancel not applied")

    def _cancel_children(self, parent_id: str) -> list[str]:
        cancelled: list[str] = []
        for child in self.store.list_children(parent_id):
            if child.is_terminal:
                continue
            result = self.cancel(
                child.id, source="parent", reason=f"parent execution {parent_id} was cancelled"
            )
            if result.cancelled:
                cancelled += [child.id, *result.children_cancelled]
        return cancelled

    # -- sweeps (the Celery beat's tick is built on these) -------------------------------------

    def cancel_timed_out(self, now: datetime | None = None, limit: int = 100) -> list[str]:
        """Cancel every execution past its execution or wait deadline (source "timeout", error
        EXECUTION_TIMEOUT or WAIT_TIMEOUT), and their children. Returns the ids cancelled."""
        now = now or self.clock.now()
        cancelled: list[str] = []
        for execution in self.store.find_timed_out(now, limit):
            draft = ExecutionDraft(execution, now)
            if not self._expire_deadlines(draft):
                continue
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
            timed_out = self._expire_deadlines(draft)
            try:
                if not timed_out:
                    draft.wake(self._flow_of(execution))
                self._commit(draft)
            except VersionConflictError:
                continue
            except ExecutionError:
                log.exception("cannot wake execution %s", execution.id)
                continue
            if not timed_out:
                claimed.append(execution.id)
        return claimed

    # -- internals -----------------------------------------------------------------------------

    def _commit(
        self,
        draft: ExecutionDraft,
        *,
        step_id: str | None = None,
        kind: StepOutcomeKind | None = None,
    ) -> StepOutcome:
        execution = draft.finalise()
        execution.lease_expires_at = self._lease_for(execution, draft.now)
        events = draft.events
        saved = self.store.save_execution(
            execution,
            expected_version=draft.expected_version,
            events=events if self.record_history else [],
        )
        self._bus.emit(events)
        if saved.status is ExecutionStatus.CANCELLED:
            # Every way to cancel (user, timeout at any check) takes the children along.
            draft.children_cancelled = self._cancel_children(saved.id)
        outcome = self._outcome(saved, step_id=step_id, kind=kind)
        outcome.execution = saved
        return outcome

    def _keep_lease(self, draft: ExecutionDraft, step: Step) -> AbstractContextManager[None]:
        if self._lease_keeper is None:
            return nullcontext()
        allowed = _time_allowed(step)
        return self._lease_keeper.running(draft.execution.id, draft.expected_version, allowed)

    def _lease_for(self, execution: Execution, now: datetime) -> datetime | None:
        runnable = execution.status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
        if self.lease is None or not runnable:
            return None
        # A step allowed to run for timeout_ms must not be presumed stalled (and re-sent to
        # run alongside itself) before that time is up: its lease starts when it may end.
        flow = self.flows.find(execution.flow_id, execution.flow_version)
        step = flow.steps.get(execution.current_step_id or "") if flow is not None else None
        return now + self.lease + _time_allowed(step)

    @staticmethod
    def _outcome(
        execution: Execution, *, step_id: str | None = None, kind: StepOutcomeKind | None = None
    ) -> StepOutcome:
        return StepOutcome(
            execution_id=execution.id,
            flow_id=execution.flow_id,
            flow_version=execution.flow_version,
            done=execution.is_terminal,
            status=execution.status,
            step_id=step_id if step_id is not None else execution.current_step_id,
            outcome=kind,
            next_step_id=None if execution.is_terminal else execution.current_step_id,
            wake_at=execution.wake_at,
            error=execution.error,
            version=execution.version,
        )

    def _load_at(self, execution_id: str, expected_version: int | None) -> Execution:
        execution = self._load(execution_id)
        _check_version(execution, expected_version, "it changed since it was looked at")
        return execution

    def _load(self, execution_id: str) -> Execution:
        execution = self.store.get_execution(execution_id)
        if execution is None:
            raise ExecutionError(
                f"execution {execution_id!r} not found",
                ErrorCode.EXECUTION_NOT_FOUND,
                {"execution_id": execution_id},
            )
        return execution

    def _flow_of(self, execution: Execution) -> Flow:
        return self.flows.get(execution.flow_id, execution.flow_version)

    def _check_handlers(self, flow: Flow) -> None:
        missing: dict[str, list[str]] = {}
        for step in flow.steps.values():
            if not self.handlers.has(step.type):
                missing.setdefault(step.type, []).append(step.id)
        if missing:
            listing = "; ".join(f"{t!r} (steps {', '.join(s)})" for t, s in sorted(missing.items()))
            raise HandlerNotFoundError(
                f"flow {flow.id!r} {flow.version} uses step types with no registered handler: "
                f"{listing}; register them with HandlerRegistry.register()",
                details={"types": sorted(missing)},
            )

    @staticmethod
    def _not_waiting(execution: Execution) -> ExecutionError:
        if execution.wait_kind is WaitKind.RETRY:
            detail = (
                f"is in a retry backoff of step {execution.current_step_id!r} (next attempt at "
                f"{execution.wake_at.isoformat() if execution.wake_at else 'soon'}), not waiting "
                "for a signal"
            )
        else:
            detail = f"is {execution.status.value}, not waiting"
        return ExecutionError(
            f"execution {execution.id} {detail}; only waiting executions can be resumed",
            ErrorCode.EXECUTION_NOT_WAITING,
            {"execution_id": execution.id, "status": execution.status.value},
        )

    @staticmethod
    def _json_object(value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ExecutionError(
                f"{what} must be an object (dict), not {type(value).__name__}",
                ErrorCode.INVALID_ARGUMENT,
            )
        converted = to_json_value_or_error(value, what)
        assert isinstance(converted, dict)
        return converted

    @staticmethod
    def _timeout_config(timeout: TimeoutConfig | dict[str, Any] | None) -> TimeoutConfig | None:
        if timeout is None or isinstance(timeout, TimeoutConfig):
            return timeout
        try:
            return TimeoutConfig.model_validate(timeout)
        except ValidationError as exc:
            raise ExecutionError(f"invalid timeout: {exc}", ErrorCode.INVALID_ARGUMENT) from None


def to_json_value_or_error(value: Any, what: str) -> Any:
    try:
        return to_json_value(value)
    except TypeError as exc:
        raise ExecutionError(
            f"{what} cannot be stored as JSON: {exc}", ErrorCode.INVALID_ARGUMENT
        ) from None


def _time_allowed(step: Step | None) -> timedelta:
    """How long the step may run (its timeout_ms), which its lease covers on top."""
    return timedelta(milliseconds=step.timeout_ms or 0) if step is not None else timedelta(0)


def _check_version(execution: Execution, expected_version: int | None, why: str) -> None:
    if expected_version is not None and execution.version != expected_version:
        raise VersionConflictError(
            f"execution {execution.id} is at version {execution.version}, not "
            f"{expected_version}: {why}",
            details={"execution_id": execution.id, "expected_version": expected_version},
        )
