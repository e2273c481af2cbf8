"""Commands: what callers ask of executions: create, read, resume, fail a wait, cancel."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from flowmonkey_celery.core.clock import as_timedelta
from flowmonkey_celery.core.draft import ExecutionDraft
from flowmonkey_celery.core.engine_base import (
    _COMMAND_ATTEMPTS,
    DEFAULT_IDEMPOTENCY_TTL,
    EngineBase,
    to_json_value_or_error,
)
from flowmonkey_celery.core.events import EventType, HistoryEvent
from flowmonkey_celery.core.execution import (
    CancelResult,
    CreateResult,
    ErrorInfo,
    Execution,
    ExecutionStatus,
    TimeoutConfig,
    WaitKind,
)
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.results import StepError
from flowmonkey_celery.errors import (
    ErrorCode,
    ExecutionError,
    VersionConflictError,
)


class Commands(EngineBase):
    """create / get / history / resume / fail_running_step / fail_waiting / cancel."""

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
        for what, text in (
            ("idempotency_key", idempotency_key),
            ("tenant_id", tenant_id),
            ("execution_id", execution_id),
        ):
            self._check_text(text, what)
        flow = self.flows.get(flow_id, flow_version)
        self._check_handlers(flow)
        json_context = self._json_object(context or {}, "context")
        timeout_config = self._timeout_config(timeout)
        ttl = self._ttl(idempotency_ttl)
        if (
            parent_execution_id is not None
            and self.store.get_execution(parent_execution_id) is None
        ):
            raise ExecutionError(
                f"parent execution {parent_execution_id} does not exist",
                details={"execution_id": parent_execution_id},
            )
        return self._insert_new(
            flow,
            json_context,
            start_step_id=flow.initial_step_id,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            ttl=ttl,
            parent_execution_id=parent_execution_id,
            timeout_config=timeout_config,
            metadata=self._json_object(metadata or {}, "metadata"),
            execution_id=execution_id,
        )

    @staticmethod
    def _ttl(idempotency_ttl: timedelta | float | int | None) -> timedelta:
        ttl = (
            as_timedelta(idempotency_ttl, "idempotency_ttl")
            if idempotency_ttl is not None
            else DEFAULT_IDEMPOTENCY_TTL
        )
        if ttl <= timedelta(0):
            raise ExecutionError("idempotency_ttl must be positive", ErrorCode.INVALID_ARGUMENT)
        return ttl

    def _insert_new(
        self,
        flow: Flow,
        json_context: dict[str, Any],
        *,
        start_step_id: str,
        tenant_id: str | None,
        idempotency_key: str | None,
        ttl: timedelta,
        parent_execution_id: str | None,
        timeout_config: TimeoutConfig | None,
        metadata: dict[str, Any],
        execution_id: str | None,
        created_data: dict[str, Any] | None = None,
    ) -> CreateResult:
        """Store a new pending execution at `start_step_id` (an idempotency key taken: the
        execution holding it)."""
        now = self.clock.now()
        execution = Execution(
            id=execution_id or str(uuid.uuid4()),
            flow_id=flow.id,
            flow_version=flow.version,
            status=ExecutionStatus.PENDING,
            current_step_id=start_step_id,
            context=json_context,
            tenant_id=tenant_id,
            metadata=metadata,
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
        self.hooks.creating(execution, None)
        created_event = HistoryEvent(
            execution_id=execution.id,
            type=EventType.EXECUTION_CREATED,
            at=now,
            step_id=start_step_id,
            data={"flow_id": flow.id, "flow_version": flow.version, **(created_data or {})},
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
            if execution.status is not ExecutionStatus.WAITING or execution.wait_kind in (
                WaitKind.RETRY,
                WaitKind.CHILDREN,
                WaitKind.JOB,
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
            expired = self._expire_deadlines(draft)
            if expired is not None:
                try:
                    self._commit(draft)
                except VersionConflictError:
                    continue
                raise ExecutionError(
                    f"execution {execution_id} cannot be resumed: {expired.message}",
                    expired.code,
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
        self._fail_step(draft, flow, step, error)
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
            if execution.status is not ExecutionStatus.WAITING or execution.wait_kind in (
                WaitKind.RETRY,
                WaitKind.CHILDREN,
                WaitKind.JOB,
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
            if self._expire_deadlines(draft) is None:
                draft.leave_wait("failure")
                self._fail_step(draft, flow, step, error)
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

    def _cancel_children(self, parent_id: str, since: datetime | None = None) -> list[str]:
        cancelled: list[str] = []
        for child in self.store.list_children(parent_id):
            if child.parent_close == "abandon":
                continue
            if not child.is_terminal:
                cancelled += self._cancel_one(
                    child.id, "parent", f"parent execution {parent_id} was cancelled"
                )
            elif since is not None and _cancelled_by_parent_since(child, since):
                # The tick's orphan sweep got here first, for this same cancel: still ours
                # to report, with what its cascade took along.
                cancelled += [child.id, *self._cancel_children(child.id, since)]
        return cancelled

    def _cancel_one(self, execution_id: str, source: str, reason: str) -> list[str]:
        try:
            result = self.cancel(execution_id, source=source, reason=reason)
        except ExecutionError as exc:  # purged meanwhile: nothing left to cancel
            if exc.code is not ErrorCode.EXECUTION_NOT_FOUND:
                raise
            return []
        return [execution_id, *result.children_cancelled] if result.cancelled else []


def _cancelled_by_parent_since(execution: Execution, since: datetime) -> bool:
    cancellation = execution.cancellation
    return (
        execution.status is ExecutionStatus.CANCELLED
        and cancellation is not None
        and cancellation.source == "parent"
        and cancellation.cancelled_at >= since
    )
