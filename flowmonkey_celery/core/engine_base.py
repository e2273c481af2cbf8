"""What every part of the engine shares: its collaborators, and how a draft is committed.

The engine is split by responsibility: `stepping` (step, run), `commands` (create, resume,
cancel...), `sweeps` (wake_due, cancel_timed_out). Each is a class over `EngineBase`; the
`Engine` in `engine.py` combines them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from flowmonkey_celery.core import tokens
from flowmonkey_celery.core.children import Join
from flowmonkey_celery.core.clock import Clock, SystemClock
from flowmonkey_celery.core.draft import ExecutionDraft
from flowmonkey_celery.core.events import EventBus, EventCallback, HistoryEvent
from flowmonkey_celery.core.execution import (
    ErrorInfo,
    Execution,
    ExecutionStatus,
    StepOutcome,
    StepOutcomeKind,
    TimeoutConfig,
    WaitKind,
)
from flowmonkey_celery.core.flow import Flow, Step
from flowmonkey_celery.core.hooks import EngineHooks
from flowmonkey_celery.core.inbox import EventWait
from flowmonkey_celery.core.json_values import json_problem, to_json_value
from flowmonkey_celery.core.lease import LeaseKeeper
from flowmonkey_celery.core.ports import Store, StoreTransaction
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry, check_step_configs
from flowmonkey_celery.core.results import UNSET, StepError, StepResult
from flowmonkey_celery.core.retry import retry_delay
from flowmonkey_celery.core.snapshots import DEFAULT_SNAPSHOT_BYTES
from flowmonkey_celery.core.tokens import IssuedResumeToken
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


class EngineBase:
    """The state and internals the engine's parts share (see `Engine` for the options)."""

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
        max_step_duration: timedelta | None = None,
        history_snapshot_bytes: int = DEFAULT_SNAPSHOT_BYTES,
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
        # How long a background job (a stateful handler) may run before the reaper fails it
        # with HANDLER_TIMEOUT, heartbeats or not: a hung handler cannot hold its step forever.
        self.max_step_duration = max_step_duration
        # The history keeps the context before each step and each step's output up to this
        # size (JSON bytes; 0: never): what the dashboard shows and `replay` starts from.
        self.history_snapshot_bytes = history_snapshot_bytes
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
        # Annotate new executions, wrap handler calls (tracing): `engine.hooks`.
        self.hooks = EngineHooks()
        # Flows registered from now on have their step configs checked against these
        # handlers' schemas; flows registered before are checked at their first create.
        if flows.handlers is None:
            flows.handlers = handlers
        self._configs_checked: set[tuple[str, str]] = set()
        self._token_subscribers: list[Callable[[IssuedResumeToken], None]] = []
        self._hand_off_subscribers: list[Callable[[list[Execution]], None]] = []

    # -- events --------------------------------------------------------------------------------

    def on(self, event_type: str, callback: EventCallback) -> Callable[[], None]:
        """Call `callback(event)` for each committed event of `event_type` ("*" for all).

        Returns the function that unsubscribes. A subscriber that raises is logged and
        never affects the execution.
        """
        return self._bus.on(event_type, callback)

    def _expire_deadlines(self, draft: ExecutionDraft) -> ErrorInfo | None:
        """Let time take over if a deadline has passed, and say what happened (None: no
        deadline passed, go ahead). An execution or wait deadline cancels the execution; the
        step's own `wait_timeout_ms` takes the step's timeout path (`on_timeout`, else its retry
        policy and `on_failure`)."""
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
            return self._time_out_step_wait(draft)
        message = f"{what} timeout of {limit} ms passed; execution {execution.id} was cancelled"
        error = ErrorInfo(
            code=code.value,
            message=message,
            step_id=execution.current_step_id,
            details={"timeout_ms": limit},
        )
        draft.cancel("timeout", message, error)
        return error

    def _time_out_step_wait(self, draft: ExecutionDraft) -> ErrorInfo | None:
        execution = draft.execution
        if not _may_have_timed_out(execution, draft.now):
            return None
        flow = self._flow_of(execution)
        step = flow.steps.get(execution.current_step_id or "")
        if step is None or step.wait_timeout_ms is None or execution.wait_started_at is None:
            return None
        if draft.now < execution.wait_started_at + timedelta(milliseconds=step.wait_timeout_ms):
            return None
        details: dict[str, Any] = {
            "wait_timeout_ms": step.wait_timeout_ms,
            "wait_reason": execution.wait_reason,
        }
        if execution.wait_kind is WaitKind.CHILDREN:
            details.update(self._join_so_far(execution, step))
        error = StepError(
            ErrorCode.WAIT_TIMEOUT.value,
            f"step {step.id!r} waited {step.wait_timeout_ms} ms (its wait_timeout_ms) without "
            f"being resumed ({execution.wait_reason or 'waiting for a signal'})",
            details,
        )
        if not draft.time_out_wait(flow, step, error):
            self._fail_step(draft, flow, step, error)
        return ErrorInfo(
            code=error.code, message=error.message, step_id=step.id, details=error.details
        )

    def _apply_result(
        self, draft: ExecutionDraft, flow: Flow, step: Step, result: StepResult, output: Any
    ) -> StepOutcomeKind:
        """Move the draft on as a handler's result says: to the next step, into a wait, or
        down the failure path (a retry or on_failure); what kind of outcome that was."""
        if result.outcome == "success":
            target = (
                result.next_step if result.overrides_transition else step.transitions.on_success
            )
            draft.succeed(flow, step, output, target)
            return "success"
        if result.outcome == "wait" and result.wait_for_event is not None:
            timeout = draft.execution.timeout
            wait_timeout = timeout.wait_timeout_ms if timeout else None
            draft.wait_for_event(step, result.wait_for_event, result.wait_reason, wait_timeout)
            return "wait"
        if result.outcome == "wait":
            wake_at = result.wake_at
            if wake_at is None and result.delay is not None:
                wake_at = draft.now + result.delay
            timeout = draft.execution.timeout
            draft.wait(
                step, wake_at, result.wait_reason, timeout.wait_timeout_ms if timeout else None
            )
            return "wait"
        assert result.error is not None
        chosen = result.next_step if result.overrides_transition else UNSET
        return "retry" if self._fail_step(draft, flow, step, result.error, chosen) else "failure"

    def _join_so_far(self, execution: Execution, step: Step) -> dict[str, Any]:
        """What the branches of a timed-out join got done: its counters and one entry per
        branch (completed ones with their output), kept in the step's WAIT_TIMEOUT details."""
        with self.store.transaction() as tx:
            joins = [
                j
                for j in tx.open_joins(execution.id)
                if j.step_id == step.id and j.sequence == execution.step_count
            ]
            if not joins:
                return {}
            join = joins[0]
            branches = tx.list_branches(join.id)
        return {
            "succeeded": join.succeeded,
            "failed": join.failed,
            "total": join.total,
            "results": [b.result_entry() for b in branches],
        }

    # -- internals -----------------------------------------------------------------------------

    def _commit(
        self,
        draft: ExecutionDraft,
        *,
        step_id: str | None = None,
        kind: StepOutcomeKind | None = None,
        hand_off: bool = True,
    ) -> StepOutcome:
        """Save a draft (in one transaction with what it does to other rows). `hand_off`:
        tell the `on_hand_off` subscribers what the commit left to move on; the stepping paths
        pass False, their caller gets it in the outcome and moves it on itself."""
        execution = draft.finalise()
        execution.lease_expires_at = self._lease_for(execution, draft.now)
        effects = CommitEffects()
        if not _touches_other_rows(draft, execution):
            saved = self.store.save_execution(
                execution,
                expected_version=draft.expected_version,
                events=draft.events if self.record_history else [],
            )
        else:
            with self.store.transaction() as tx:
                saved = self._save_in(tx, draft, effects)
        return self._after_commit(
            draft, saved, effects, step_id=step_id, kind=kind, hand_off=hand_off
        )

    def _save_in(
        self, tx: StoreTransaction, draft: ExecutionDraft, effects: CommitEffects
    ) -> Execution:
        """Save a finalised draft and everything it does to other rows, inside `tx`."""
        execution = draft.execution
        left = self._lock_joins_left(tx, draft)
        saved = tx.save_execution(
            execution,
            expected_version=draft.expected_version,
            events=draft.events if self.record_history else [],
        )
        if draft.revoke_tokens_reason is not None:
            tx.revoke_resume_tokens(saved.id, draft.now, draft.revoke_tokens_reason)
        self._write_children(tx, draft, saved, left, effects)
        if draft.job is not None:
            tx.insert_job(draft.job)
            effects.jobs.append(draft.job.id)
        if draft.initial_wait_kind is WaitKind.JOB and saved.wait_kind is not WaitKind.JOB:
            tx.cancel_jobs(saved.id, draft.now)  # left some other way: a cancel, a timeout
        if draft.initial_wait_kind is WaitKind.EVENT:
            tx.delete_event_waits(saved.id)  # left the wait (resumed, cancelled, timed out)
        if draft.event_wait is not None:
            tx.insert_event_wait(draft.event_wait)
        return saved

    def _after_commit(
        self,
        draft: ExecutionDraft,
        saved: Execution,
        effects: CommitEffects,
        *,
        step_id: str | None = None,
        kind: StepOutcomeKind | None = None,
        hand_off: bool = True,
    ) -> StepOutcome:
        """Publish the committed events, carry the cancellations on and (with `hand_off`)
        hand what the commit made runnable to the subscribers; the outcome."""
        self._bus.emit(draft.events)
        self._bus.emit(effects.events)
        try:
            if saved.status is ExecutionStatus.CANCELLED:
                # Every way to cancel (user, timeout at any check) takes the children along.
                draft.children_cancelled = self._cancel_children(saved.id, since=draft.now)
            for unwanted in effects.unwanted:  # cancel_rest; the tick's sweep if this is lost
                self._cancel_one(unwanted, "join", f"the join of parent {saved.id} was decided")
        except Exception:  # committed already: the tick's orphan sweep finishes the cascade
            log.exception("cancelling the children of %s failed; the tick will", saved.id)
        if draft.event_wait is not None and saved.status is ExecutionStatus.WAITING:
            # An event already in the inbox ends the wait just committed.
            resumed = self._check_inbox(draft.event_wait, hand_off=hand_off)
            if resumed is not None:
                saved, hand_off = resumed, False  # its own commit handed it off
        outcome = self._outcome(saved, step_id=step_id, kind=kind)
        outcome.execution = saved
        outcome.runnable = [e.id for e in effects.runnable]
        outcome.runnable_executions = effects.runnable
        outcome.jobs = effects.jobs
        if hand_off:
            self._hand_off([saved, *effects.runnable])
        return outcome

    def _fail_step(
        self,
        draft: ExecutionDraft,
        flow: Flow,
        step: Step,
        error: StepError,
        target: str | None = UNSET,
    ) -> bool:
        """A failed step: retried if its policy allows (True), else routed to `target`
        (default: its on_failure)."""
        delay = retry_delay(step.retry, draft.execution.retry_attempts, error, self.rng)
        if delay is not None:
            draft.schedule_retry(step, error, delay)
            return True
        draft.route_failure(
            flow, step, error, step.transitions.on_failure if target is UNSET else target
        )
        return False

    def _issue_token(
        self,
        execution_id: str,
        step_id: str,
        sequence: int,
        expires_in: timedelta | None,
        outcomes: list[str] | None,
        *,
        now: datetime | None = None,
        issued_hashes: list[str] | None = None,
    ) -> str:
        """Store a new token's hash (committed at once, so that whoever gets the token may use
        it as soon as the wait commits) and return the raw token. The hash is appended to
        `issued_hashes`: the attempt revokes them if its commit loses."""
        if expires_in is not None and expires_in <= timedelta(0):
            raise ValueError("a resume token's expires_in must be positive")
        now = now or self.clock.now()
        issued = tokens.issue(
            execution_id,
            step_id,
            sequence,
            now,
            expires_at=now + expires_in if expires_in is not None else None,
            outcomes=outcomes,
        )
        with self.store.transaction() as tx:
            tx.insert_resume_token(issued.record)
        if issued_hashes is not None:
            issued_hashes.append(issued.record.token_hash)
        for callback in list(self._token_subscribers):
            try:
                callback(IssuedResumeToken(issued.token, issued.record))
            except Exception:
                log.exception("resume token subscriber %r failed", callback)
        return issued.token

    def _revoke_lost_tokens(self, execution_id: str, token_hashes: list[str]) -> None:
        """Revoke the tokens a handler call issued for a wait its attempt did not commit (a
        duplicate attempt of the same step won): they must not end the winner's wait."""
        try:
            with self.store.transaction() as tx:
                tx.revoke_resume_tokens(
                    execution_id,
                    self.clock.now(),
                    "issued by a duplicate attempt of the step that did not commit",
                    token_hashes=token_hashes,
                )
        except Exception:
            log.exception("cannot revoke the lost attempt's tokens of %s", execution_id)

    def on_resume_token(self, callback: Callable[[IssuedResumeToken], None]) -> Callable[[], None]:
        """Call `callback` with every resume token this engine issues (the raw token, which is
        stored nowhere, with its execution, step, expiry and outcomes): send it to whoever
        should resume the wait. Returns the function that unsubscribes."""
        self._token_subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._token_subscribers:
                self._token_subscribers.remove(callback)

        return unsubscribe

    def on_hand_off(self, callback: Callable[[list[Execution]], None]) -> Callable[[], None]:
        """Call `callback`, after each commit of a command or sweep (resume, resume_with_token,
        fail_waiting, cancel, wake_due, the reapers), with the executions it left to move on:
        pending or running ones (a resumed execution, a parent its last child resumed, children
        a join started) and ones waiting out a timed wake (a retry backoff). The Celery runtime
        subscribes to send their messages at once. `step` and `run_job` report the same in
        their outcome instead. Returns the function that unsubscribes."""
        self._hand_off_subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._hand_off_subscribers:
                self._hand_off_subscribers.remove(callback)

        return unsubscribe

    def _hand_off(self, executions: list[Execution]) -> None:
        by_id = {
            execution.id: execution
            for execution in executions
            if execution.status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
            or (execution.status is ExecutionStatus.WAITING and execution.wake_at is not None)
        }
        moving = list(by_id.values())
        if not moving:
            return
        for callback in list(self._hand_off_subscribers):
            try:
                callback(moving)
            except Exception:  # committed already: the tick's sweeps move them on regardless
                log.exception("hand-off of %s failed", [e.id for e in moving])

    def _check_inbox(self, wait: EventWait, *, hand_off: bool) -> Execution | None:
        """End a wait_for_event just committed with a stored event (`EventCommands` does it)."""
        raise NotImplementedError

    def _cancel_children(self, parent_id: str, since: datetime | None = None) -> list[str]:
        """Cancel the live children of a cancelled execution; their ids, with those the
        orphan sweep cancelled for it `since` its cancel (`Commands` does it)."""
        raise NotImplementedError

    def _cancel_one(self, execution_id: str, source: str, reason: str) -> list[str]:
        """Cancel one live execution if it still is; its id and its children's (`Commands`)."""
        raise NotImplementedError

    def _lock_joins_left(self, tx: StoreTransaction, draft: ExecutionDraft) -> list[Join]:
        """Lock the joins a parent leaves unfinished (`Joins` does it)."""
        raise NotImplementedError

    def _write_children(
        self,
        tx: StoreTransaction,
        draft: ExecutionDraft,
        saved: Execution,
        left: list[Join],
        effects: CommitEffects,
    ) -> None:
        """Write what the change does to children and joins (`Joins` does it)."""
        raise NotImplementedError

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
        if flow.key not in self._configs_checked:
            check_step_configs(flow, self.handlers)
            self._configs_checked.add(flow.key)

    @staticmethod
    def _not_waiting(execution: Execution) -> ExecutionError:
        if execution.wait_kind is WaitKind.RETRY:
            detail = (
                f"is in a retry backoff of step {execution.current_step_id!r} (next attempt at "
                f"{execution.wake_at.isoformat() if execution.wake_at else 'soon'}), not waiting "
                "for a signal"
            )
        elif execution.wait_kind is WaitKind.JOB:
            detail = (
                f"waits at step {execution.current_step_id!r} for its background job (a "
                "stateful handler; its result continues it), not for a signal"
            )
        elif execution.wait_kind is WaitKind.CHILDREN:
            detail = (
                f"waits at step {execution.current_step_id!r} for its child executions (the "
                "last of them to decide the join resumes it), not for a signal"
            )
        else:
            detail = f"is {execution.status.value}, not waiting"
        return ExecutionError(
            f"execution {execution.id} {detail}; only waiting executions can be resumed",
            ErrorCode.EXECUTION_NOT_WAITING,
            {"execution_id": execution.id, "status": execution.status.value},
        )

    @staticmethod
    def _check_text(text: str | None, what: str) -> None:
        """Refuse an id or key no store can keep as text (a NUL, an unpaired surrogate)."""
        if text is None:
            return
        if not isinstance(text, str):
            raise ExecutionError(
                f"{what} must be text, not {type(text).__name__}", ErrorCode.INVALID_ARGUMENT
            )
        problem = json_problem(text)
        if problem is not None:
            raise ExecutionError(f"{what} cannot be stored: {problem}", ErrorCode.INVALID_ARGUMENT)

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
    """A caller's value (a context, resume data, an event payload) as plain JSON.

    Raises:
        ExecutionError: INVALID_ARGUMENT if it has no JSON form or cannot be stored as is.
    """
    try:
        converted = to_json_value(value)
    except (TypeError, RecursionError) as exc:
        raise ExecutionError(
            f"{what} cannot be stored as JSON: {exc}", ErrorCode.INVALID_ARGUMENT
        ) from None
    problem = json_problem(converted)
    if problem is not None:
        raise ExecutionError(f"{what} cannot be stored: {problem}", ErrorCode.INVALID_ARGUMENT)
    return converted


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


@dataclass
class CommitEffects:
    """What a commit did to executions other than its own, for after it."""

    events: list[HistoryEvent] = field(default_factory=list)
    runnable: list[Execution] = field(default_factory=list)  # started children, resumed parents
    unwanted: list[str] = field(default_factory=list)  # children to cancel (cancel_rest)
    jobs: list[str] = field(default_factory=list)  # jobs to hand to a runner


def _touches_other_rows(draft: ExecutionDraft, execution: Execution) -> bool:
    """Whether the commit writes more than the execution's row and events (then it is one
    transaction): tokens to revoke, children to start, a join to report to or to leave."""
    return (
        draft.revoke_tokens_reason is not None
        or draft.children is not None
        or (execution.join_id is not None and execution.is_terminal)
        or draft.job is not None
        or draft.event_wait is not None
        or draft.initial_wait_kind in (WaitKind.CHILDREN, WaitKind.JOB, WaitKind.EVENT)
    )


def _may_have_timed_out(execution: Execution, now: datetime) -> bool:
    """Cheap test before loading the flow: a step wait deadline is always the wake time."""
    return (
        execution.status is ExecutionStatus.WAITING
        and execution.wait_kind is not WaitKind.RETRY
        and execution.wake_at is not None
        and execution.wake_at <= now
    )
