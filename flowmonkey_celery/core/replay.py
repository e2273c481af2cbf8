"""Replay: start a new execution from a step of an old one, with the context it had there.

The history keeps the context before every step (`step.started` events, see core/snapshots.py),
so an execution that failed at step `charge` because of bad input can be run again from
`charge`, with the input corrected, without repeating what came before it. The original is
never changed; the new execution records where it came from in its metadata
(`replay_of`, `replay_from_step`), which is how the two are linked.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from flowmonkey_celery.core.commands import Commands
from flowmonkey_celery.core.events import EventType
from flowmonkey_celery.core.execution import (
    CreateResult,
    ErrorInfo,
    Execution,
    ExecutionStatus,
    StateModel,
)
from flowmonkey_celery.errors import ErrorCode, ExecutionError, FlowMonkeyError

REPLAY_OF = "replay_of"
REPLAY_FROM_STEP = "replay_from_step"
# A bulk replay keys each new execution by (original, step, patch): running the same bulk
# replay twice (a retried request, an operator pressing the button again) starts nothing more.
BULK_REPLAY_KEY_TTL = timedelta(days=30)
_PAGE = 200


class ReplayOutcome(StateModel):
    """One execution of a bulk replay: what was replayed from which step, and what came of it
    (the new execution's id, `created=False` when an earlier run of the same replay made it,
    or the error that stopped it)."""

    original_id: str
    from_step: str | None
    execution_id: str | None = None
    created: bool = False
    error: ErrorInfo | None = None


class BulkReplayResult(StateModel):
    """What `Engine.replay_failed` did: one outcome per failed execution it selected."""

    outcomes: list[ReplayOutcome] = Field(default_factory=list)

    @property
    def replayed(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.created)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, `null` removes a key, anything
    else replaces the value."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


class Replays(Commands):
    """replay / replay_failed."""

    def replay(
        self,
        execution_id: str,
        from_step: str,
        context_patch: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        idempotency_ttl: timedelta | float | int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> CreateResult:
        """Start a new execution of the same flow version at `from_step`, with the context
        the original had just before it last ran that step, merge-patched with
        `context_patch` (RFC 7386: `None` removes a key). The original is untouched; the new
        execution's metadata is the original's plus `replay_of` and `replay_from_step`, and it
        keeps the original's tenant and timeouts (not its parent: a replay reports to no join).

        Raises:
            ExecutionError: EXECUTION_NOT_FOUND; STEP_NOT_FOUND when the flow has no such step;
                INVALID_ARGUMENT when the original never ran it, its context there was too big
                to keep, or the patch is not a JSON object.
            FlowNotFoundError: FLOW_NOT_FOUND, the original's flow version is gone.
        """
        self._check_text(from_step, "from_step")
        self._check_text(idempotency_key, "idempotency_key")
        original = self._load(execution_id)
        flow = self.flows.get(original.flow_id, original.flow_version)
        self._check_handlers(flow)
        if from_step not in flow.steps:
            raise ExecutionError(
                f"flow {flow.id!r} {flow.version} has no step {from_step!r}; its steps: "
                + ", ".join(flow.steps),
                ErrorCode.STEP_NOT_FOUND,
                {"execution_id": execution_id, "step_id": from_step},
            )
        patch = self._json_object(context_patch or {}, "context_patch")
        context = merge_patch(self._context_before(original, from_step), patch)
        ttl = self._ttl(idempotency_ttl)
        result = self._insert_new(
            flow,
            context,
            start_step_id=from_step,
            tenant_id=original.tenant_id,
            idempotency_key=idempotency_key,
            ttl=ttl,
            parent_execution_id=None,
            timeout_config=original.timeout,
            metadata={
                **original.metadata,
                **self._json_object(metadata or {}, "metadata"),
                REPLAY_OF: original.id,
                REPLAY_FROM_STEP: from_step,
            },
            execution_id=None,
            created_data={REPLAY_OF: original.id, REPLAY_FROM_STEP: from_step},
        )
        if result.created:
            self._hand_off([result.execution])
        return result

    def replay_failed(
        self,
        *,
        flow_id: str | None = None,
        tenant_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        metadata: dict[str, str] | None = None,
        error_code: str | None = None,
        from_step: str | None = None,
        context_patch: dict[str, Any] | None = None,
        limit: int = 100,
        include_replays: bool = False,
    ) -> BulkReplayResult:
        """Replay up to `limit` failed executions matching the filters (those of
        `list_executions`, plus the failure's `error_code`), each from `from_step` or, by
        default, from the step it failed at, with `context_patch` applied to each.

        Each replay is keyed by (original, step, patch), so running the same bulk replay again
        returns the executions it started before (`created=False`) instead of new ones.
        Failed replays are not selected themselves (their originals are, and answer the replay
        made before), so a replay that fails again does not grow a chain on the next run;
        `include_replays=True` selects them too. A replay that cannot start (its step never
        ran, its flow version is gone) is reported in its outcome and the others go on.
        """
        if limit < 1:
            raise ExecutionError("limit must be at least 1", ErrorCode.INVALID_ARGUMENT)
        patch = self._json_object(context_patch or {}, "context_patch")
        outcomes: list[ReplayOutcome] = []
        after: str | None = None
        while len(outcomes) < limit:
            page = self.store.list_executions(
                status=ExecutionStatus.FAILED,
                flow_id=flow_id,
                tenant_id=tenant_id,
                created_after=created_after,
                created_before=created_before,
                metadata=metadata,
                limit=_PAGE,
                after=after,
            )
            for execution in page:
                if REPLAY_OF in execution.metadata and not include_replays:
                    continue  # its original is selected (and keyed) instead: no chains
                if error_code is not None and (
                    execution.error is None or execution.error.code != error_code
                ):
                    continue
                outcomes.append(self._replay_one(execution, from_step, patch))
                if len(outcomes) == limit:
                    break
            if len(page) < _PAGE:
                break
            after = page[-1].id
        return BulkReplayResult(outcomes=outcomes)

    def _replay_one(
        self, execution: Execution, from_step: str | None, patch: dict[str, Any]
    ) -> ReplayOutcome:
        step = from_step or (execution.error.step_id if execution.error else None)
        step = step or execution.current_step_id
        if step is None:
            return ReplayOutcome(
                original_id=execution.id,
                from_step=None,
                error=ErrorInfo(
                    code=ErrorCode.INVALID_ARGUMENT.value,
                    message=f"execution {execution.id} records no step it failed at; "
                    "name one with from_step",
                ),
            )
        fingerprint = hashlib.sha256(
            json.dumps([execution.id, step, patch], sort_keys=True).encode()
        ).hexdigest()[:32]
        try:
            result = self.replay(
                execution.id,
                step,
                patch,
                idempotency_key=f"replay:{fingerprint}",
                idempotency_ttl=BULK_REPLAY_KEY_TTL,
            )
        except FlowMonkeyError as exc:
            return ReplayOutcome(
                original_id=execution.id,
                from_step=step,
                error=ErrorInfo(code=exc.code.value, message=exc.message, details=exc.details),
            )
        return ReplayOutcome(
            original_id=execution.id,
            from_step=step,
            execution_id=result.execution.id,
            created=result.created,
        )

    def _context_before(self, execution: Execution, step_id: str) -> dict[str, Any]:
        """The context just before the execution last started `step_id`, from its history."""
        history = self.store.list_events(execution.id)
        started = [
            event
            for event in history
            if event.type is EventType.STEP_STARTED and event.step_id == step_id
        ]
        if not started and step_id == execution.current_step_id:
            # It stopped at this step before its handler ran (no handler deployed yet, input
            # that did not resolve, a pending execution): its context is the step's context.
            return dict(execution.context)
        if not started:
            ran = sorted(
                {
                    event.step_id
                    for event in history
                    if event.type is EventType.STEP_STARTED and event.step_id
                }
            )
            raise ExecutionError(
                f"execution {execution.id} never ran step {step_id!r}, so there is no context "
                "to replay it from; steps it ran: " + (", ".join(ran) or "none"),
                ErrorCode.INVALID_ARGUMENT,
                {"execution_id": execution.id, "step_id": step_id, "steps_run": ran},
            )
        data = started[-1].data
        if "context" in data and isinstance(data["context"], dict):
            context: dict[str, Any] = data["context"]
            return context
        size = data.get("context_omitted_bytes")
        why = (
            f"was {size} bytes, over the history's snapshot limit "
            f"({self.history_snapshot_bytes} bytes), so it was not kept"
            if size is not None
            else "was not recorded (history from before snapshots, or snapshots turned off)"
        )
        raise ExecutionError(
            f"the context of execution {execution.id} before step {step_id!r} {why}; "
            "replay from another step",
            ErrorCode.INVALID_ARGUMENT,
            {"execution_id": execution.id, "step_id": step_id},
        )
