"""The MemoryStore's transactions: writes applied at once under the store's lock, each with
its undo, so a block that raises leaves the store as it found it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from flowmonkey_celery.core.children import Branch, BranchStatus, Join
from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.inbox import Event, EventWait
from flowmonkey_celery.core.jobs import Job, JobStatus
from flowmonkey_celery.core.tokens import ResumeToken
from flowmonkey_celery.errors import ErrorCode, ExecutionError

if TYPE_CHECKING:  # the store creates its transactions; this module never builds a store
    from flowmonkey_celery.stores.memory import MemoryStore


class MemoryTransaction:
    """`StoreTransaction` over a MemoryStore whose lock the caller holds."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._undo: list[Callable[[], None]] = []

    def rollback(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    # -- executions -------------------------------------------------------------------------

    def get_execution(self, execution_id: str, *, lock: bool = False) -> Execution | None:
        return self._store.get_execution(execution_id)

    def insert_execution(self, execution: Execution, events: Sequence[HistoryEvent] = ()) -> None:
        executions = self._store._executions
        if execution.id in executions:
            raise ExecutionError(
                f"execution {execution.id} already exists",
                ErrorCode.EXECUTION_EXISTS,
                {"execution_id": execution.id},
            )
        executions[execution.id] = execution.model_copy(deep=True)
        self._store._events[execution.id] = [e.model_copy(deep=True) for e in events]

        def undo() -> None:
            executions.pop(execution.id, None)
            self._store._events.pop(execution.id, None)

        self._undo.append(undo)

    def save_execution(
        self, execution: Execution, *, expected_version: int, events: Sequence[HistoryEvent] = ()
    ) -> Execution:
        previous = self._store._executions.get(execution.id)
        history = self._store._events.setdefault(execution.id, [])
        length = len(history)
        saved = self._store.save_execution(
            execution, expected_version=expected_version, events=events
        )

        def undo() -> None:
            if previous is not None:
                self._store._executions[execution.id] = previous
            del history[length:]

        self._undo.append(undo)
        return saved

    # -- resume tokens ------------------------------------------------------------------------

    def insert_resume_token(self, token: ResumeToken) -> None:
        tokens = self._store._tokens
        if token.token_hash in tokens:
            raise ExecutionError("resume token collision", ErrorCode.STORE_CONFLICT)
        tokens[token.token_hash] = token.model_copy(deep=True)

        def undo() -> None:
            tokens.pop(token.token_hash, None)

        self._undo.append(undo)

    def get_resume_token(self, token_hash: str, *, lock: bool = False) -> ResumeToken | None:
        found = self._store._tokens.get(token_hash)
        return found.model_copy(deep=True) if found else None

    def use_resume_token(self, token_hash: str, now: datetime) -> bool:
        found = self._store._tokens.get(token_hash)
        if found is None or found.used_at is not None or found.revoked_at is not None:
            return False
        self._replace(found, found.model_copy(update={"used_at": now}))
        return True

    def revoke_resume_tokens(
        self,
        execution_id: str,
        now: datetime,
        reason: str,
        *,
        token_hashes: list[str] | None = None,
    ) -> int:
        live = [
            t
            for t in self._store._tokens.values()
            if t.execution_id == execution_id
            and t.used_at is None
            and t.revoked_at is None
            and (token_hashes is None or t.token_hash in token_hashes)
        ]
        for token in live:
            self._replace(
                token, token.model_copy(update={"revoked_at": now, "revoked_reason": reason})
            )
        return len(live)

    # -- joins ------------------------------------------------------------------------------

    def insert_join(self, join: Join, branches: Sequence[Branch]) -> None:
        joins, all_branches = self._store._joins, self._store._branches
        if join.id in joins:
            raise ExecutionError(f"join {join.id} already exists", ErrorCode.STORE_CONFLICT)
        joins[join.id] = join.model_copy(deep=True)
        all_branches[join.id] = [b.model_copy(deep=True) for b in branches]

        def undo() -> None:
            joins.pop(join.id, None)
            all_branches.pop(join.id, None)

        self._undo.append(undo)

    def get_join(self, join_id: str, *, lock: bool = False) -> Join | None:
        found = self._store._joins.get(join_id)
        return found.model_copy(deep=True) if found else None

    def update_join(self, join: Join) -> None:
        joins = self._store._joins
        previous = joins[join.id]
        joins[join.id] = join.model_copy(deep=True)
        self._undo.append(lambda: joins.__setitem__(join.id, previous))

    def open_joins(self, parent_execution_id: str) -> list[Join]:
        return [
            j.model_copy(deep=True)
            for j in self._store._joins.values()
            if j.parent_execution_id == parent_execution_id and j.resolved_at is None
        ]

    def list_branches(
        self, join_id: str, *, status: BranchStatus | None = None, limit: int | None = None
    ) -> list[Branch]:
        found = [
            b.model_copy(deep=True)
            for b in self._store._branches.get(join_id, [])
            if status is None or b.status is status
        ]
        return found[:limit] if limit is not None else found

    def start_branch(self, join_id: str, index: int, execution_id: str) -> bool:
        branch = self._branch(join_id, index)
        if branch is None or branch.status is not BranchStatus.PENDING:
            return False
        self._set_branch(
            branch,
            branch.model_copy(
                update={"status": BranchStatus.RUNNING, "execution_id": execution_id}
            ),
        )
        return True

    def finish_branch(
        self,
        join_id: str,
        index: int,
        status: BranchStatus,
        output: object,
        error: dict[str, object] | None,
        now: datetime,
    ) -> bool:
        branch = self._branch(join_id, index)
        if branch is None or branch.status is not BranchStatus.RUNNING:
            return False
        finished = branch.model_copy(
            update={"status": status, "output": output, "error": error, "finished_at": now}
        )
        self._set_branch(branch, finished)
        return True

    def skip_pending_branches(self, join_id: str, now: datetime) -> int:
        pending = [
            b for b in self._store._branches.get(join_id, []) if b.status is BranchStatus.PENDING
        ]
        for branch in pending:
            skipped = branch.model_copy(update={"status": BranchStatus.SKIPPED, "finished_at": now})
            self._set_branch(branch, skipped)
        return len(pending)

    # -- jobs -------------------------------------------------------------------------------

    def insert_job(self, job: Job) -> None:
        stored = self._store._jobs
        if job.id in stored:
            raise ExecutionError(f"job {job.id} already exists", ErrorCode.STORE_CONFLICT)
        stored[job.id] = job.model_copy(deep=True)

        def undo() -> None:
            stored.pop(job.id, None)

        self._undo.append(undo)

    def get_job(self, job_id: str, *, lock: bool = False) -> Job | None:
        return self._store.get_job(job_id)

    def finish_job(
        self,
        job_id: str,
        runner_id: str,
        status: JobStatus,
        result: object,
        error: dict[str, object] | None,
        now: datetime,
    ) -> bool:
        job = self._store._jobs.get(job_id)
        if job is None or job.status is not JobStatus.RUNNING or job.runner_id != runner_id:
            return False
        finished = {"status": status, "result": result, "error": error, "updated_at": now}
        self._set_job(job, job.model_copy(update={**finished, "lease_expires_at": None}))
        return True

    def cancel_jobs(self, execution_id: str, now: datetime) -> int:
        live = [
            j
            for j in self._store._jobs.values()
            if j.execution_id == execution_id and not j.status.is_finished
        ]
        for job in live:
            cancelled = {"status": JobStatus.CANCELLED, "runner_id": None, "updated_at": now}
            self._set_job(job, job.model_copy(update={**cancelled, "lease_expires_at": None}))
        return len(live)

    # -- events and the waits for them ------------------------------------------------------

    def insert_event(self, event: Event) -> bool:
        store = self._store
        scope = (event.tenant_id, event.key)
        if event.key is not None and scope in store._event_keys:
            return False
        if event.id in store._inbox:
            return False
        store._inbox[event.id] = event.model_copy(deep=True)
        if event.key is not None:
            store._event_keys[scope] = event.id

        def undo() -> None:
            store._inbox.pop(event.id, None)
            if event.key is not None and store._event_keys.get(scope) == event.id:
                del store._event_keys[scope]

        self._undo.append(undo)
        return True

    def get_event(self, event_id: str) -> Event | None:
        found = self._store._inbox.get(event_id)
        return found.model_copy(deep=True) if found else None

    def get_event_by_key(self, key: str, tenant_id: str | None) -> Event | None:
        event_id = self._store._event_keys.get((tenant_id, key))
        return self.get_event(event_id) if event_id is not None else None

    def list_events(
        self,
        *,
        event_type: str | None = None,
        tenant_id: str | None = None,
        since: datetime | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Event]:
        events = sorted(self._store._inbox.values(), key=lambda e: (e.created_at, e.id))
        if after is not None:
            last = self._store._inbox.get(after)
            if last is None:
                return []
            events = [e for e in events if (e.created_at, e.id) > (last.created_at, last.id)]
        chosen = [
            e
            for e in events
            if (event_type is None or e.type == event_type)
            and (tenant_id is None or e.tenant_id == tenant_id)
            and (since is None or e.created_at >= since)
        ]
        return [e.model_copy(deep=True) for e in chosen[:limit]]

    def mark_event_dispatched(self, event_id: str, now: datetime) -> bool:
        now = ensure_aware(now, "dispatched_at")
        inbox = self._store._inbox
        event = inbox.get(event_id)
        if event is None or event.dispatched_at is not None:
            return False
        inbox[event_id] = event.model_copy(update={"dispatched_at": now})
        self._undo.append(lambda: inbox.__setitem__(event_id, event))
        return True

    def find_undispatched_events(self, created_before: datetime, limit: int) -> list[Event]:
        waiting = sorted(
            (
                e
                for e in self._store._inbox.values()
                if e.dispatched_at is None and e.created_at < created_before
            ),
            key=lambda e: (e.created_at, e.id),
        )
        return [e.model_copy(deep=True) for e in waiting[:limit]]

    def insert_event_wait(self, wait: EventWait) -> None:
        waits = self._store._event_waits
        slot = (wait.execution_id, wait.sequence)
        previous = waits.get(slot)
        waits[slot] = wait.model_copy(deep=True)

        def undo() -> None:
            if previous is None:
                waits.pop(slot, None)
            else:
                waits[slot] = previous

        self._undo.append(undo)

    def find_event_waits(
        self,
        event_type: str,
        *,
        limit: int = 1000,
        after: tuple[datetime, str, int] | None = None,
    ) -> list[EventWait]:
        found = sorted(
            (
                w
                for w in self._store._event_waits.values()
                if w.event_type == event_type
                and (after is None or (w.created_at, w.execution_id, w.sequence) > after)
            ),
            key=lambda w: (w.created_at, w.execution_id, w.sequence),
        )
        return [w.model_copy(deep=True) for w in found[:limit]]

    def take_event_wait(self, execution_id: str, sequence: int) -> EventWait | None:
        waits = self._store._event_waits
        slot = (execution_id, sequence)
        taken = waits.pop(slot, None)
        if taken is not None:
            self._undo.append(lambda: waits.__setitem__(slot, taken))
        return taken.model_copy(deep=True) if taken else None

    def delete_event_waits(self, execution_id: str) -> int:
        waits = self._store._event_waits
        gone = {slot: w for slot, w in waits.items() if slot[0] == execution_id}
        for slot in gone:
            del waits[slot]
        self._undo.append(lambda: waits.update(gone))
        return len(gone)

    def mark_event_wait_checked(self, execution_id: str, sequence: int, at: datetime) -> bool:
        at = ensure_aware(at, "inbox_checked_at")
        waits = self._store._event_waits
        slot = (execution_id, sequence)
        wait = waits.get(slot)
        if wait is None:
            return False
        waits[slot] = wait.model_copy(update={"inbox_checked_at": at})
        self._undo.append(lambda: waits.__setitem__(slot, wait))
        return True

    def find_unchecked_event_waits(self, created_before: datetime, limit: int) -> list[EventWait]:
        created_before = ensure_aware(created_before, "created_before")
        found = sorted(
            (
                w
                for w in self._store._event_waits.values()
                if w.inbox_checked_at is None and w.created_at < created_before
            ),
            key=lambda w: (w.created_at, w.execution_id, w.sequence),
        )
        return [w.model_copy(deep=True) for w in found[:limit]]

    def _set_job(self, old: Job, new: Job) -> None:
        stored = self._store._jobs
        stored[old.id] = new
        self._undo.append(lambda: stored.__setitem__(old.id, old))

    def _branch(self, join_id: str, index: int) -> Branch | None:
        branches = self._store._branches.get(join_id, [])
        return branches[index] if 0 <= index < len(branches) else None

    def _set_branch(self, old: Branch, new: Branch) -> None:
        branches = self._store._branches[old.join_id]
        branches[old.index] = new
        self._undo.append(lambda: branches.__setitem__(old.index, old))

    def _replace(self, old: ResumeToken, new: ResumeToken) -> None:
        tokens = self._store._tokens
        tokens[old.token_hash] = new
        self._undo.append(lambda: tokens.__setitem__(old.token_hash, old))
