"""`StoreTransaction` on one SQLAlchemy connection inside an open transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from flowmonkey_celery.core.children import Branch, BranchStatus, Join
from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.inbox import Event, EventWait
from flowmonkey_celery.core.jobs import Job, JobStatus
from flowmonkey_celery.core.tokens import ResumeToken
from flowmonkey_celery.errors import ErrorCode, ExecutionError, VersionConflictError
from flowmonkey_celery.stores.sql import inbox, jobs, joins, tokens
from flowmonkey_celery.stores.sql.rows import event_row, execution_from_row, execution_row
from flowmonkey_celery.stores.sql.schema import events, executions


class SqlTransaction:
    """Reads and writes on `conn`; the SqlStore commits or rolls back around it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock_rows = conn.dialect.name == "postgresql"

    # -- executions -------------------------------------------------------------------------

    def get_execution(self, execution_id: str, *, lock: bool = False) -> Execution | None:
        query = select(executions).where(executions.c.id == execution_id)
        if lock and self._lock_rows:
            query = query.with_for_update()
        row = self.conn.execute(query).mappings().first()
        return execution_from_row(row) if row else None

    def insert_execution(self, execution: Execution, events: Sequence[HistoryEvent] = ()) -> None:
        try:
            # A savepoint: a taken id must not abort the caller's whole transaction.
            with self.conn.begin_nested():
                self.conn.execute(insert(executions), execution_row(execution))
        except IntegrityError:
            raise ExecutionError(
                f"execution {execution.id} already exists",
                ErrorCode.EXECUTION_EXISTS,
                {"execution_id": execution.id},
            ) from None
        self._insert_events(events)

    def save_execution(
        self, execution: Execution, *, expected_version: int, events: Sequence[HistoryEvent] = ()
    ) -> Execution:
        stored = execution.model_copy(update={"version": expected_version + 1})
        row = execution_row(stored)
        del row["id"]
        statement = (
            update(executions)
            .where(executions.c.id == execution.id, executions.c.version == expected_version)
            .values(row)
        )
        if self.conn.execute(statement).rowcount != 1:
            current = self.conn.execute(
                select(executions.c.version).where(executions.c.id == execution.id)
            ).scalar()
            found = "missing" if current is None else f"at version {current}"
            raise VersionConflictError(
                f"execution {execution.id} is {found}, expected version {expected_version}; "
                "it changed since it was loaded",
                details={"execution_id": execution.id, "expected_version": expected_version},
            )
        self._insert_events(events)
        return stored

    def _insert_events(self, batch: Sequence[HistoryEvent]) -> None:
        if batch:
            self.conn.execute(insert(events), [event_row(e) for e in batch])

    # -- resume tokens ------------------------------------------------------------------------

    def insert_resume_token(self, token: ResumeToken) -> None:
        tokens.insert_token(self.conn, token)

    def get_resume_token(self, token_hash: str, *, lock: bool = False) -> ResumeToken | None:
        return tokens.get_token(self.conn, token_hash, lock=lock)

    def use_resume_token(self, token_hash: str, now: datetime) -> bool:
        return tokens.use_token(self.conn, token_hash, now)

    def revoke_resume_tokens(
        self,
        execution_id: str,
        now: datetime,
        reason: str,
        *,
        token_hashes: list[str] | None = None,
    ) -> int:
        return tokens.revoke_tokens(self.conn, execution_id, now, reason, token_hashes)

    # -- joins --------------------------------------------------------------------------------

    def insert_join(self, join: Join, branches: Sequence[Branch]) -> None:
        joins.insert_join(self.conn, join, branches)

    def get_join(self, join_id: str, *, lock: bool = False) -> Join | None:
        return joins.get_join(self.conn, join_id, lock=lock)

    def update_join(self, join: Join) -> None:
        joins.update_join(self.conn, join)

    def open_joins(self, parent_execution_id: str) -> list[Join]:
        return joins.joins_of(self.conn, parent_execution_id, open_only=True)

    def list_branches(
        self, join_id: str, *, status: BranchStatus | None = None, limit: int | None = None
    ) -> list[Branch]:
        return joins.list_branches(self.conn, join_id, status=status, limit=limit)

    def start_branch(self, join_id: str, index: int, execution_id: str) -> bool:
        return joins.move_branch(
            self.conn,
            join_id,
            index,
            BranchStatus.PENDING,
            status=BranchStatus.RUNNING.value,
            execution_id=execution_id,
        )

    def finish_branch(
        self,
        join_id: str,
        index: int,
        status: BranchStatus,
        output: object,
        error: dict[str, object] | None,
        now: datetime,
    ) -> bool:
        return joins.move_branch(
            self.conn,
            join_id,
            index,
            BranchStatus.RUNNING,
            status=status.value,
            output=output,
            error=error,
            finished_at=now,
        )

    def skip_pending_branches(self, join_id: str, now: datetime) -> int:
        return joins.skip_pending(self.conn, join_id, now)

    # -- jobs ---------------------------------------------------------------------------------

    def insert_job(self, job: Job) -> None:
        jobs.insert_job(self.conn, job)

    def get_job(self, job_id: str, *, lock: bool = False) -> Job | None:
        return jobs.get_job(self.conn, job_id, lock=lock)

    def finish_job(
        self,
        job_id: str,
        runner_id: str,
        status: JobStatus,
        result: object,
        error: dict[str, object] | None,
        now: datetime,
    ) -> bool:
        return jobs.finish_job(self.conn, job_id, runner_id, status, result, error, now)

    def cancel_jobs(self, execution_id: str, now: datetime) -> int:
        return jobs.cancel_jobs(self.conn, execution_id, now)

    # -- events and the waits for them (SQL in inbox.py) --------------------------------------

    def insert_event(self, event: Event) -> bool:
        return inbox.insert_event(self.conn, event)

    def get_event(self, event_id: str) -> Event | None:
        return inbox.get_event(self.conn, event_id)

    def get_event_by_key(self, key: str, tenant_id: str | None) -> Event | None:
        return inbox.get_event_by_key(self.conn, key, tenant_id)

    def list_events(
        self,
        *,
        event_type: str | None = None,
        tenant_id: str | None = None,
        since: datetime | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Event]:
        return inbox.list_events(
            self.conn,
            event_type=event_type,
            tenant_id=tenant_id,
            since=since,
            after=after,
            limit=limit,
        )

    def mark_event_dispatched(self, event_id: str, now: datetime) -> bool:
        return inbox.mark_dispatched(self.conn, event_id, now)

    def find_undispatched_events(self, created_before: datetime, limit: int) -> list[Event]:
        return inbox.undispatched(self.conn, created_before, limit)

    def insert_event_wait(self, wait: EventWait) -> None:
        inbox.insert_wait(self.conn, wait)

    def find_event_waits(
        self,
        event_type: str,
        *,
        limit: int = 1000,
        after: tuple[datetime, str, int] | None = None,
    ) -> list[EventWait]:
        return inbox.find_waits(self.conn, event_type, limit, after)

    def take_event_wait(self, execution_id: str, sequence: int) -> EventWait | None:
        return inbox.take_wait(self.conn, execution_id, sequence)

    def delete_event_waits(self, execution_id: str) -> int:
        return inbox.delete_waits(self.conn, execution_id)

    def mark_event_wait_checked(self, execution_id: str, sequence: int, at: datetime) -> bool:
        return inbox.mark_wait_checked(self.conn, execution_id, sequence, at)

    def find_unchecked_event_waits(self, created_before: datetime, limit: int) -> list[EventWait]:
        return inbox.unchecked_waits(self.conn, created_before, limit)
