"""Starting child executions, and the join that resumes their parent exactly once.

Lock order, the same on every path so that PostgreSQL never deadlocks: a child's row, then its
join, then the parent's row (then the parent's own join, and so on up). A parent leaving a wait
for children some other way (a cancel, its step's wait timeout) locks its open joins before its
own row.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from flowmonkey_celery.core.children import (
    Branch,
    BranchStatus,
    ChildSpec,
    Join,
    StartChildren,
)
from flowmonkey_celery.core.draft import ChildrenPlan, ExecutionDraft
from flowmonkey_celery.core.engine_base import CommitEffects, EngineBase
from flowmonkey_celery.core.events import EventType, HistoryEvent
from flowmonkey_celery.core.execution import Execution, ExecutionStatus, WaitKind
from flowmonkey_celery.core.flow import Flow, InputSelector, Step
from flowmonkey_celery.core.ports import StoreTransaction
from flowmonkey_celery.core.results import StepError
from flowmonkey_celery.core.selectors import resolve_input
from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError, FlowNotFoundError

log = logging.getLogger("flowmonkey_celery.joins")
_SELECTOR: TypeAdapter[Any] = TypeAdapter(InputSelector)


class Joins(EngineBase):
    """Children: planned with the parent's wait, settled with each child's last commit."""

    # -- starting children ---------------------------------------------------------------------

    def _plan_children(
        self, parent: Execution, flow: Flow, step: Step, request: StartChildren, now: datetime
    ) -> ChildrenPlan:
        """The join, its branches and the children to start now.

        Raises:
            FlowMonkeyError: a child's flow or start step is unknown, or its output selector
                is invalid (the step fails with that error; nothing is started).
        """
        for index, spec in enumerate(request.children):
            self._check_child(flow, spec, index)
        # Pinned now: a branch started later (max_concurrency) runs the version checked here,
        # not whatever is latest by then.
        children = [
            spec.model_copy(update={"flow_version": self._child_flow(flow, spec).version})
            for spec in request.children
        ]
        request = StartChildren(
            children=children,
            kind=request.kind,
            policy=request.policy,
            max_concurrency=request.max_concurrency,
            detached=request.detached,
            parent_close=request.parent_close,
            output=request.output,
        )
        if request.output is not None:
            try:
                _SELECTOR.validate_python(request.output)
            except ValidationError as exc:
                raise FlowMonkeyError(
                    f"step {step.id!r} has an invalid output selector for its children: "
                    f"{exc.errors()[0]['msg']}",
                    ErrorCode.INVALID_ARGUMENT,
                ) from None
        if request.detached:
            detached = [
                self._child_execution(parent, flow, spec, now, None, None, request.parent_close)
                for spec in request.children
            ]
            return ChildrenPlan(join=None, branches=[], executions=detached)
        join = Join(
            id=uuid.uuid4().hex,
            parent_execution_id=parent.id,
            step_id=step.id,
            sequence=parent.step_count,
            kind=request.kind,
            policy=request.policy,
            total=len(request.children),
            max_concurrency=request.max_concurrency,
            parent_close=request.parent_close,
            output=request.output,
            created_at=now,
        )
        branches = [
            Branch(join_id=join.id, index=i, spec=spec) for i, spec in enumerate(request.children)
        ]
        plan = ChildrenPlan(join=join, branches=branches)
        first = len(branches) if join.max_concurrency is None else join.max_concurrency
        for branch in branches[:first]:
            made = self._child_execution(
                parent, flow, branch.spec, now, join.id, branch.index, join.parent_close
            )
            branch.status = BranchStatus.RUNNING
            branch.execution_id = made[0].id
            plan.executions.append(made)
        join.started = len(plan.executions)
        return plan

    def _check_child(self, parent_flow: Flow, spec: ChildSpec, index: int) -> None:
        flow = self._child_flow(parent_flow, spec)
        self._check_handlers(flow)
        start = spec.start_step_id or flow.initial_step_id
        if start not in flow.steps:
            raise FlowMonkeyError(
                f"child {index} starts at step {start!r}, which is not in flow {flow.id!r} "
                f"{flow.version}",
                ErrorCode.STEP_NOT_FOUND,
                {"index": index, "step_id": start},
            )

    def _child_flow(self, parent_flow: Flow, spec: ChildSpec) -> Flow:
        if spec.start_step_id is not None and spec.flow_id == parent_flow.id:
            return parent_flow  # a branch of the parent's own flow: the same version
        found = self.flows.find(spec.flow_id, spec.flow_version)
        if found is None:
            # Not the registry's message, which lists every flow id: the step's error is the
            # execution's, and its reader (a tenant, through the API) must not learn others'.
            version = f" version {spec.flow_version}" if spec.flow_version else ""
            raise FlowNotFoundError(
                f"sub-flow {spec.flow_id!r}{version} is not registered",
                details={"flow_id": spec.flow_id, "version": spec.flow_version},
            )
        return found

    def _child_execution(
        self,
        parent: Execution,
        parent_flow: Flow,
        spec: ChildSpec,
        now: datetime,
        join_id: str | None,
        index: int | None,
        parent_close: str,
    ) -> tuple[Execution, list[HistoryEvent]]:
        flow = self._child_flow(parent_flow, spec)
        start = spec.start_step_id or flow.initial_step_id
        child = Execution(
            id=str(uuid.uuid4()),
            flow_id=flow.id,
            flow_version=flow.version,
            status=ExecutionStatus.PENDING,
            current_step_id=start,
            context=dict(spec.context),
            tenant_id=parent.tenant_id,
            parent_execution_id=parent.id,
            join_id=join_id,
            branch_index=index,
            parent_close=parent_close,
            created_at=now,
            updated_at=now,
        )
        child.lease_expires_at = self._lease_for(child, now)
        self.hooks.creating(child, parent)
        created = HistoryEvent(
            execution_id=child.id,
            type=EventType.EXECUTION_CREATED,
            at=now,
            step_id=start,
            data={
                "flow_id": flow.id,
                "flow_version": flow.version,
                "parent_execution_id": parent.id,
                "branch_index": index,
            },
        )
        return child, [created]

    # -- inside the commit's transaction --------------------------------------------------------

    def _lock_joins_left(self, tx: StoreTransaction, draft: ExecutionDraft) -> list[Join]:
        """The open joins of a parent leaving its wait for children by some other way than
        its join (a cancel, a timeout), locked before the parent's row is written."""
        execution = draft.execution
        still_waiting = (
            execution.status is ExecutionStatus.WAITING and execution.wait_kind is WaitKind.CHILDREN
        )
        if draft.initial_wait_kind is not WaitKind.CHILDREN or still_waiting:
            return []
        locked = [tx.get_join(j.id, lock=True) for j in tx.open_joins(execution.id)]
        return [j for j in locked if j is not None and j.resolved_at is None]

    def _write_children(
        self,
        tx: StoreTransaction,
        draft: ExecutionDraft,
        saved: Execution,
        left: list[Join],
        effects: CommitEffects,
    ) -> None:
        now = draft.now
        for join in left:
            join.resolved_at, join.outcome = now, "abandoned"
            join.cancel_running = join.parent_close == "cancel"
            tx.skip_pending_branches(join.id, now)
            tx.update_join(join)
            if join.cancel_running and not saved.is_terminal:  # a terminal one cascades anyway
                running = tx.list_branches(join.id, status=BranchStatus.RUNNING)
                effects.unwanted += [b.execution_id for b in running if b.execution_id]
        plan = draft.children
        if plan is not None:
            if plan.join is not None:
                tx.insert_join(plan.join, plan.branches)
            for child, events in plan.executions:
                tx.insert_execution(child, events if self.record_history else [])
                effects.events += events
                effects.runnable.append(child)
        if saved.is_terminal and saved.join_id is not None:
            self._settle_branch(tx, saved, now, effects)

    def _settle_branch(
        self, tx: StoreTransaction, child: Execution, now: datetime, effects: CommitEffects
    ) -> None:
        """Record a finished child in its join; the commit that decides the join resumes the
        parent (and starts the next pending branches while it is undecided)."""
        assert child.join_id is not None and child.branch_index is not None
        join = tx.get_join(child.join_id, lock=True)
        if join is None:
            return  # purged with its parent
        status, output, error = self._branch_result(tx, join, child)
        if not tx.finish_branch(join.id, child.branch_index, status, output, error, now):
            return  # already recorded
        if status is BranchStatus.COMPLETED:
            join.succeeded += 1
        else:
            join.failed += 1
        if join.resolved_at is None:
            decided = join.policy.decide(join.total, join.succeeded, join.failed)
            if decided is not None:
                join.resolved_at, join.outcome = now, decided
                join.cancel_running = join.policy.cancel_rest
                tx.skip_pending_branches(join.id, now)
                if join.policy.cancel_rest:
                    running = tx.list_branches(join.id, status=BranchStatus.RUNNING)
                    effects.unwanted += [b.execution_id for b in running if b.execution_id]
                tx.update_join(join)
                self._resume_parent(tx, join, now, effects)
                return
            self._start_pending(tx, join, now, effects)
        tx.update_join(join)

    def _branch_result(
        self, tx: StoreTransaction, join: Join, child: Execution
    ) -> tuple[BranchStatus, Any, dict[str, Any] | None]:
        if child.status is ExecutionStatus.COMPLETED:
            selector = join.output
            if selector is None:
                return BranchStatus.COMPLETED, child.context, None
            try:
                chosen = resolve_input(_SELECTOR.validate_python(selector), child.context)
            except Exception as exc:
                error = {"code": ErrorCode.INPUT_ERROR.value, "message": str(exc)}
                return BranchStatus.FAILED, None, error
            return BranchStatus.COMPLETED, chosen, None
        if child.status is ExecutionStatus.FAILED and child.error is not None:
            return BranchStatus.FAILED, None, child.error.model_dump(mode="json")
        reason = child.cancellation.reason if child.cancellation else None
        return (
            BranchStatus.CANCELLED,
            None,
            {"code": "CANCELLED", "message": reason or f"execution {child.id} was cancelled"},
        )

    def _start_pending(
        self, tx: StoreTransaction, join: Join, now: datetime, effects: CommitEffects
    ) -> None:
        if join.max_concurrency is None or join.running >= join.max_concurrency:
            return
        parent = tx.get_execution(join.parent_execution_id)
        if parent is None or parent.is_terminal:
            return
        flow = self._flow_of(parent)
        free = join.max_concurrency - join.running
        for branch in tx.list_branches(join.id, status=BranchStatus.PENDING, limit=free):
            child, events = self._child_execution(
                parent, flow, branch.spec, now, join.id, branch.index, join.parent_close
            )
            tx.insert_execution(child, events if self.record_history else [])
            tx.start_branch(join.id, branch.index, child.id)
            join.started += 1
            effects.events += events
            effects.runnable.append(child)

    def _resume_parent(
        self, tx: StoreTransaction, join: Join, now: datetime, effects: CommitEffects
    ) -> None:
        parent = tx.get_execution(join.parent_execution_id, lock=True)
        if (
            parent is None
            or parent.status is not ExecutionStatus.WAITING
            or parent.wait_kind is not WaitKind.CHILDREN
            or parent.current_step_id != join.step_id
            or parent.step_count != join.sequence
        ):
            return  # it no longer waits for this join
        flow = self._flow_of(parent)
        step = flow.steps[join.step_id]
        branches = tx.list_branches(join.id)
        draft = ExecutionDraft(parent, now)
        draft.leave_wait("children")
        if join.outcome == "success":
            output: Any = (
                branches[0].output
                if join.kind == "subflow"
                else [b.result_entry() for b in branches]
            )
            draft.succeed(flow, step, output, step.transitions.on_success)
        else:
            self._fail_step(draft, flow, step, _join_failure(join, step, branches))
        resumed = draft.finalise()
        resumed.lease_expires_at = self._lease_for(resumed, now)
        saved = tx.save_execution(
            resumed,
            expected_version=draft.expected_version,
            events=draft.events if self.record_history else [],
        )
        effects.events += draft.events
        if saved.status is ExecutionStatus.RUNNING:
            effects.runnable.append(saved)
        if saved.is_terminal and saved.join_id is not None:
            self._settle_branch(tx, saved, now, effects)

    # -- sweeps ---------------------------------------------------------------------------------

    def cancel_orphaned_children(self, limit: int = 100) -> list[str]:
        """Cancel live children a crashed canceller left behind: those of a cancelled parent
        (parent_close "cancel") and those of a join decided with cancel_rest. The beat calls it
        every tick; ids cancelled (with their own children)."""
        cancelled: list[str] = []
        for child in self.store.find_children_to_cancel(limit):
            try:
                cancelled += self._cancel_one(
                    child.id, "parent", f"parent execution {child.parent_execution_id} let it go"
                )
            except Exception:  # one bad child must not stop the sweep (next tick retries it)
                log.exception("cannot cancel orphaned child %s", child.id)
        return cancelled


def _join_failure(join: Join, step: Step, branches: list[Branch]) -> StepError:
    if join.kind == "subflow":
        branch = branches[0]
        error = branch.error or {}
        return StepError(
            ErrorCode.CHILD_FAILED.value,
            f"sub-flow {branch.spec.flow_id!r} (execution {branch.execution_id}) of step "
            f"{step.id!r} {branch.status.value}: [{error.get('code')}] {error.get('message')}",
            {"child_execution_id": branch.execution_id, "child_error": error},
        )
    policy = join.policy
    rule = {
        "all": f"all, tolerating {policy.failures_tolerated(join.total)} failure(s)",
        "any": "any",
        "min_success": f"min_success {policy.min_success}",
    }[policy.mode]
    return StepError(
        ErrorCode.CHILD_FAILED.value,
        f"parallel step {step.id!r}: {join.failed} of {join.total} branches failed, "
        f"{join.succeeded} succeeded (join policy {rule})",
        {
            "failed": join.failed,
            "succeeded": join.succeeded,
            "total": join.total,
            "results": [b.result_entry() for b in branches],
        },
    )


def child_failure(exc: FlowMonkeyError) -> StepError:
    """A step whose children cannot be started fails with the reason, not retried."""
    return StepError(exc.code.value, exc.message, dict(exc.details), retryable=False)
