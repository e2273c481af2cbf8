"""SqlStore: executions and history on PostgreSQL (production) or SQLite (embedded default)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    bindparam,
    delete,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from flowmonkey_celery.core.api_keys import ApiKey
from flowmonkey_celery.core.children import Branch, Join
from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import (
    TERMINAL_STATUSES,
    Execution,
    ExecutionStatus,
    WaitKind,
)
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.jobs import Job
from flowmonkey_celery.core.ports import AnyTrigger
from flowmonkey_celery.core.stats import WaitingStats
from flowmonkey_celery.core.triggers import TriggerFire, TriggerFireRecord, TriggerStats
from flowmonkey_celery.errors import (
    ErrorCode,
    ExecutionError,
    StoreError,
    StoreUnavailableError,
    VersionConflictError,
)
from flowmonkey_celery.stores.sql import (
    counting,
    flow_definitions,
    listing,
    migrations,
    one_trip,
    operators,
)
from flowmonkey_celery.stores.sql import jobs as sql_jobs
from flowmonkey_celery.stores.sql import joins as sql_joins
from flowmonkey_celery.stores.sql import triggers as trigger_rows
from flowmonkey_celery.stores.sql import waiting as sql_waiting
from flowmonkey_celery.stores.sql.connection import WRITE, describe, make_engine
from flowmonkey_celery.stores.sql.errors import lost_connection, translated_errors
from flowmonkey_celery.stores.sql.rows import (
    event_from_row,
    event_row,
    execution_from_row,
    execution_row,
)
from flowmonkey_celery.stores.sql.schema import (
    event_waits,
    events,
    executions,
    idempotency_keys,
    inbox_events,
    jobs,
    join_branches,
    joins,
    resume_tokens,
)
from flowmonkey_celery.stores.sql.transaction import SqlTransaction

log = logging.getLogger("flowmonkey_celery.stores.sql")

# Built once: executing a prepared statement with parameters skips rebuilding and re-keying a
# 28-value statement on every call (measured: ~0.4 ms per save on PostgreSQL, and on SQLite
# that time is spent holding the write lock).
_INSERT_EXECUTION = insert(executions)
_INSERT_EVENTS = insert(events)
_GET_EXECUTION = select(executions).where(executions.c.id == bindparam("execution_id"))
_SAVE_EXECUTION = update(executions).where(
    executions.c.id == bindparam("match_id"),
    executions.c.version == bindparam("match_version"),
)
_INSERT_KEY = {
    "postgresql": postgresql.insert(idempotency_keys).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(idempotency_keys).on_conflict_do_nothing(),
}

T = TypeVar("T")

_LIVE = [s.value for s in ExecutionStatus if s not in TERMINAL_STATUSES]
_TERMINAL = [s.value for s in TERMINAL_STATUSES]
_WAITING = ExecutionStatus.WAITING.value


class SqlStore:
    """The `Store`, `TriggerStore` and `OperatorStore` protocols on SQLAlchemy 2 (PostgreSQL
    via psycopg2, or SQLite).

    Args:
        url: a database URL (`postgresql+psycopg2://user@host/db`, `sqlite:///flowmonkey.db`)
            or an existing SQLAlchemy `Engine`.
        prepared_statements: on PostgreSQL, save each step as one server-side prepared
            statement (one round trip). Pass False behind a pooler in transaction or statement
            mode (PgBouncer keeps only protocol-level prepared statements, not SQL `PREPARE`);
            if you do not, the first save that finds its statement gone twice switches this
            store to transactions, with a warning.
        **engine_options: passed to `create_engine` when a URL is given (plus
            `ping_after_idle_seconds`, see `connection.make_engine`).

    Call `migrate()` once per deploy (or let the embedded default do it) before use.
    """

    def __init__(
        self, url: str | URL | Engine, *, prepared_statements: bool = True, **engine_options: Any
    ) -> None:
        self.engine: Engine = url if isinstance(url, Engine) else make_engine(url, **engine_options)
        self.database = describe(self.engine.url)
        self._dialect = self.engine.dialect.name
        # In-memory SQLite is one connection shared by every thread: transactions must take
        # turns in this process (a file database queues them with BEGIN IMMEDIATE instead).
        shared = self._dialect == "sqlite" and self.engine.url.database in (None, "", ":memory:")
        self._turns: AbstractContextManager[Any] = threading.RLock() if shared else nullcontext()
        # A read that is one statement needs no transaction around it: on PostgreSQL, running
        # it in autocommit saves the BEGIN and COMMIT round trips.
        self._autocommit_reads = self._dialect == "postgresql"
        # PostgreSQL saves as one prepared statement (see one_trip.py). Turned off (by the
        # caller, or by itself on the first sign of a transaction-mode pooler), saves take a
        # transaction of four round trips.
        self._one_trip = (
            one_trip.OneTripSaves(self.engine.dialect)
            if self._dialect == "postgresql" and prepared_statements
            else None
        )

    def __repr__(self) -> str:
        return f"SqlStore({self.database!r})"

    # -- schema ---------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Apply pending Alembic migrations. Idempotent; safe when processes race."""
        with self._turns, translated_errors(self.database, "migrate schema"):
            migrations.upgrade(self.engine)

    def check_schema(self) -> None:
        """Raise SchemaOutdatedError (naming the command to run) unless fully migrated."""
        with translated_errors(self.database, "check schema"):
            migrations.check_current(self.engine)

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    @contextmanager
    def _transaction(self, operation: str, *, write: bool = True) -> Iterator[Connection]:
        with (
            self._turns,
            translated_errors(self.database, operation),
            self.engine.connect() as connection,
        ):
            if write and self._dialect == "sqlite":
                connection.execution_options(**WRITE)
            with connection.begin():
                yield connection

    @contextmanager
    def transaction(self) -> Iterator[SqlTransaction]:
        """A unit of work (see `StoreTransaction`): one database transaction, committed when
        the block ends, rolled back if it raises."""
        with self._transaction("transaction") as conn:
            yield SqlTransaction(conn)

    @contextmanager
    def _single_statement(self, operation: str, *, write: bool = False) -> Iterator[Connection]:
        """For one statement, which is atomic on its own: no transaction on PostgreSQL (on
        SQLite, a transaction, taking the write lock up front if `write`)."""
        if not self._autocommit_reads:
            with self._transaction(operation, write=write) as conn:
                yield conn
            return
        with translated_errors(self.database, operation), self.engine.connect() as conn:
            # Flipped on the driver connection rather than through SQLAlchemy's isolation
            # level, whose reset on check-in costs a round trip of its own. Inside the `try`:
            # an exception raised by a signal handler (Celery's soft time limit) right after
            # the flip must not send the connection back to the pool in autocommit.
            driver = conn.connection.dbapi_connection
            assert driver is not None
            try:
                driver.autocommit = True
                yield conn
            finally:
                if not driver.closed:
                    driver.autocommit = False

    # -- executions -----------------------------------------------------------------------------

    def create_execution(
        self, execution: Execution, *, now: datetime, events: Sequence[HistoryEvent] = ()
    ) -> tuple[Execution, bool]:
        with self._transaction("create execution") as conn:
            if execution.idempotency_key is not None:
                existing = self._claim_idempotency_key(conn, execution, now)
                if existing is not None:
                    return existing, False
            try:
                conn.execute(_INSERT_EXECUTION, execution_row(execution))
            except IntegrityError:  # the primary key: the surrounding transaction rolls back
                raise ExecutionError(
                    f"execution {execution.id} already exists",
                    ErrorCode.EXECUTION_EXISTS,
                    {"execution_id": execution.id},
                ) from None
            self._insert_events(conn, events)
        return execution.model_copy(), True

    def _claim_idempotency_key(
        self, conn: Connection, execution: Execution, now: datetime
    ) -> Execution | None:
        """Take the key for `execution`, or return the live execution that holds it.

        The primary key on (tenant, flow, key) decides races: a concurrent insert blocks until
        the first commits, then finds the row and returns its execution.
        """
        assert execution.idempotency_key is not None and execution.idempotency_expires_at
        key = {
            "tenant_key": execution.tenant_id or "",
            "flow_id": execution.flow_id,
            "key": execution.idempotency_key,
        }
        values = {
            **key,
            "execution_id": execution.id,
            "expires_at": execution.idempotency_expires_at,
        }
        if conn.execute(_INSERT_KEY[self._dialect], values).rowcount == 1:
            return None
        matches = [idempotency_keys.c[name] == value for name, value in key.items()]
        find_holder = select(idempotency_keys.c.execution_id).where(*matches)
        holder = conn.execute(find_holder).scalar_one()
        existing = self._get(conn, holder)
        # Take the key over only from the holder seen, if its hold has expired (or it was
        # purged by retention). A concurrent create that took it first has changed the holder
        # by the time our UPDATE gets the row: then it matches nothing.
        free = [*matches, idempotency_keys.c.execution_id == holder]
        if existing is not None:
            free.append(idempotency_keys.c.expires_at <= now)
        taken = conn.execute(
            update(idempotency_keys)
            .where(*free)
            .values(execution_id=execution.id, expires_at=execution.idempotency_expires_at)
        ).rowcount
        if taken == 1:
            return None
        current = conn.execute(find_holder).scalar_one()
        if current == holder:
            return existing  # its hold is live: an idempotency hit
        winner = self._get(conn, current)  # another create took the key meanwhile: theirs
        return winner if winner is not None else existing

    def _insert_ignore(self, table: Any, values: dict[str, Any]) -> Any:
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        return dialect.insert(table).values(values).on_conflict_do_nothing()

    def get_execution(self, execution_id: str) -> Execution | None:
        return self._read("load execution", lambda conn: self._get(conn, execution_id))

    def _read(self, operation: str, read: Callable[[Connection], T]) -> T:
        """Run a one-statement read; if the pooled connection turns out to be dead (the
        database restarted, or closed it), run it once more on a fresh one. Only reads are
        retried like this: a write that lost its connection may or may not have committed."""
        try:
            with self._single_statement(operation) as conn:
                return read(conn)
        except StoreUnavailableError as exc:
            if not lost_connection(exc):
                raise
        with self._single_statement(operation) as conn:
            return read(conn)

    @staticmethod
    def _get(conn: Connection, execution_id: str) -> Execution | None:
        row = conn.execute(_GET_EXECUTION, {"execution_id": execution_id}).mappings().first()
        return execution_from_row(row) if row else None

    def save_execution(
        self, execution: Execution, *, expected_version: int, events: Sequence[HistoryEvent] = ()
    ) -> Execution:
        stored = execution.model_copy(update={"version": expected_version + 1})
        row = execution_row(stored)
        del row["id"]
        row.update(match_id=execution.id, match_version=expected_version)
        one_trip_saves = self._one_trip
        if one_trip_saves is not None:
            try:
                with self._single_statement("save execution") as conn:
                    prepared_row = {
                        k: v for k, v in row.items() if k not in ("match_id", "match_version")
                    }
                    event_rows = [event_row(e) for e in events]
                    if not one_trip_saves.save(
                        conn, prepared_row, execution.id, expected_version, event_rows
                    ):
                        raise self._conflict(conn, execution.id, expected_version)
                return stored
            except one_trip.PreparedStatementsLost as exc:
                # Nothing of the save ran: make it (and every later one) a transaction.
                self._one_trip = None
                log.warning(
                    "%s: prepared statements do not survive between statements here (%s); a "
                    "transaction-mode pooler such as PgBouncer? Saving with transactions from "
                    "now on: pass SqlStore(..., prepared_statements=False) or set "
                    "FLOWMONKEY_PREPARED_STATEMENTS=0 to skip this check",
                    self.database,
                    exc,
                )
        with self._transaction("save execution") as conn:
            if conn.execute(_SAVE_EXECUTION, row).rowcount != 1:
                raise self._conflict(conn, execution.id, expected_version)
            self._insert_events(conn, events)
        return stored

    @staticmethod
    def _conflict(
        conn: Connection, execution_id: str, expected_version: int
    ) -> VersionConflictError:
        current = conn.execute(
            select(executions.c.version).where(executions.c.id == execution_id)
        ).scalar()
        found = "missing" if current is None else f"at version {current}"
        return VersionConflictError(
            f"execution {execution_id} is {found}, expected version {expected_version}; "
            "it changed since it was loaded",
            details={"execution_id": execution_id, "expected_version": expected_version},
        )

    # -- history --------------------------------------------------------------------------------

    def append_events(self, events: Sequence[HistoryEvent]) -> None:
        with self._transaction("append events") as conn:
            self._insert_events(conn, events)

    @staticmethod
    def _insert_events(conn: Connection, batch: Sequence[HistoryEvent]) -> None:
        if batch:
            conn.execute(_INSERT_EVENTS, [event_row(e) for e in batch])

    def list_events(self, execution_id: str) -> list[HistoryEvent]:
        query = select(events).where(events.c.execution_id == execution_id).order_by(events.c.seq)
        return self._read(
            "list events",
            lambda conn: [event_from_row(row) for row in conn.execute(query).mappings()],
        )

    # -- queries --------------------------------------------------------------------------------

    def get_join(self, join_id: str) -> Join | None:
        return self._read("get join", lambda conn: sql_joins.get_join(conn, join_id, lock=False))

    def list_joins(self, parent_execution_id: str) -> list[Join]:
        return self._read(
            "list joins",
            lambda conn: sql_joins.joins_of(conn, parent_execution_id, open_only=False),
        )

    def list_branches(self, join_id: str) -> list[Branch]:
        return self._read("list branches", lambda conn: sql_joins.list_branches(conn, join_id))

    def get_job(self, job_id: str) -> Job | None:
        return self._read("get job", lambda conn: sql_jobs.get_job(conn, job_id))

    def list_jobs(self, execution_id: str) -> list[Job]:
        return self._read("list jobs", lambda conn: sql_jobs.list_jobs(conn, execution_id))

    def claim_job(
        self, job_id: str, runner_id: str, now: datetime, lease_until: datetime
    ) -> Job | None:
        with self._transaction("claim job") as conn:
            if not sql_jobs.claim_job(conn, job_id, runner_id, now, lease_until):
                return None
            return sql_jobs.get_job(conn, job_id)

    def touch_job(
        self,
        job_id: str,
        runner_id: str,
        now: datetime,
        lease_until: datetime,
        fields: dict[str, object] | None = None,
    ) -> bool:
        with self._single_statement("renew job", write=True) as conn:
            return sql_jobs.touch_job(conn, job_id, runner_id, now, lease_until, dict(fields or {}))

    def find_jobs_to_reap(
        self, now: datetime, *, started_before: datetime | None = None, limit: int = 100
    ) -> list[Job]:
        return self._read(
            "find jobs to reap",
            lambda conn: sql_jobs.jobs_to_reap(conn, now, started_before, limit),
        )

    def defer_job(self, job_id: str, now: datetime, until: datetime) -> bool:
        with self._single_statement("defer job", write=True) as conn:
            return sql_jobs.defer_job(conn, job_id, now, until)

    def find_children_to_cancel(self, limit: int = 100) -> list[Execution]:
        return self._fetch(sql_joins.children_to_cancel(limit), "find children to cancel")

    def list_children(
        self, parent_execution_id: str, *, limit: int | None = None, after: str | None = None
    ) -> list[Execution]:
        c = executions.c
        query = (
            select(executions)
            .where(c.parent_execution_id == parent_execution_id)
            .order_by(c.created_at, c.id)
            .limit(limit)
        )
        if after is not None:
            # The cursor read in the same statement; one of another parent matches nothing.
            cursor = executions.alias("child_cursor")
            anchor = select(cursor.c.created_at).where(
                cursor.c.id == after, cursor.c.parent_execution_id == parent_execution_id
            )
            query = query.where(
                tuple_(c.created_at, c.id) > tuple_(anchor.scalar_subquery(), after)
            )
        return self._fetch(query, "list children")

    def find_due_wakes(self, now: datetime, limit: int = 100) -> list[Execution]:
        return self._fetch(self._due_wakes(now, limit), "find due wakes")

    def find_timed_out(self, now: datetime, limit: int = 100) -> list[Execution]:
        query = (
            select(executions)
            .where(
                executions.c.status.in_(_LIVE),
                or_(
                    executions.c.deadline_at <= now,
                    (executions.c.status == _WAITING) & (executions.c.wait_deadline_at <= now),
                ),
            )
            .order_by(executions.c.created_at, executions.c.id)
            .limit(limit)
        )
        return self._fetch(query, "find timed-out executions")

    def claim_due_wakes(self, now: datetime, limit: int, claim_until: datetime) -> list[Execution]:
        """Due waiting executions, each returned to one caller only: their `wake_at` moves to
        `claim_until` so other sweepers pass them over (PostgreSQL: FOR UPDATE SKIP LOCKED).
        Returned as they were before the claim. A claimer that dies leaves them due again at
        `claim_until`."""
        return self._claim(self._due_wakes(now, limit), {"wake_at": claim_until}, "claim due wakes")

    def claim_stalled(self, now: datetime, limit: int, lease_until: datetime) -> list[Execution]:
        """Pending or running executions whose lease expired, each returned to one caller only
        (their lease moves to `lease_until`); returned as they were before the claim."""
        query = (
            select(executions)
            .where(
                executions.c.status.in_(
                    [ExecutionStatus.PENDING.value, ExecutionStatus.RUNNING.value]
                ),
                executions.c.lease_expires_at <= now,
            )
            .order_by(executions.c.lease_expires_at)
            .limit(limit)
        )
        return self._claim(query, {"lease_expires_at": lease_until}, "claim stalled executions")

    def extend_lease(self, execution_id: str, *, expected_version: int, until: datetime) -> bool:
        statement = (
            update(executions)
            .where(
                executions.c.id == execution_id,
                executions.c.version == expected_version,
                executions.c.status.in_(
                    [ExecutionStatus.PENDING.value, ExecutionStatus.RUNNING.value]
                ),
            )
            .values(lease_expires_at=until)
        )
        with self._single_statement("extend lease", write=True) as conn:
            return bool(conn.execute(statement).rowcount == 1)

    def list_executions(
        self,
        *,
        status: ExecutionStatus | str | None = None,
        flow_id: str | None = None,
        tenant_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        newest_first: bool = False,
        wait_kinds: Sequence[WaitKind | str] | None = None,
    ) -> list[Execution]:
        """One statement (see listing.py); the cursor is checked only when the page is empty,
        the one case a cursor naming no execution cannot be told from the end of the list."""
        query = listing.list_query(
            self._dialect,
            status=status,
            flow_id=flow_id,
            tenant_id=tenant_id,
            limit=limit,
            after=after,
            created_after=created_after,
            created_before=created_before,
            metadata=metadata,
            idempotency_key=idempotency_key,
            newest_first=newest_first,
            wait_kinds=wait_kinds,
        )
        page = self._fetch(query, "list executions")
        if not page and after is not None:
            known = select(executions.c.id).where(executions.c.id == after)
            if self._read("list executions", lambda conn: conn.execute(known).first()) is None:
                raise ExecutionError(
                    f"paging cursor {after!r} names no execution", ErrorCode.INVALID_ARGUMENT
                )
        return page

    def count_executions(
        self,
        *,
        flow_id: str | None = None,
        tenant_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, int]:
        """One statement (see counting.py): the kept counts on PostgreSQL when only flow and
        tenant filter, else `GROUP BY status` over the matching executions. A count that
        summed many pending changes folds them in afterwards."""
        counts, changes = counting.count(
            self._dialect,
            lambda query: self._read("count executions", lambda conn: conn.execute(query).all()),
            flow_id=flow_id,
            tenant_id=tenant_id,
            created_after=created_after,
            created_before=created_before,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        if changes > counting.FOLD_AFTER:
            self._fold_quietly()
        return counts

    def fold_execution_counts(self, *, max_batches: int = 20) -> int:
        """PostgreSQL: fold the changes the count triggers appended into the kept counts (in
        batches of `counting.FOLD_BATCH`, each its own transaction) so that counts stay a
        short read; how many were folded (0 on SQLite, or while another process folds).
        `count_executions` calls it when it finds many; a periodic task may call it too."""
        if self._dialect != "postgresql":
            return 0
        total = 0
        for _ in range(max_batches):
            with self._transaction("fold execution counts") as conn:
                folded = counting.fold(conn)
            total += folded or 0
            if not folded or folded < counting.FOLD_BATCH:
                break
        return total

    def _fold_quietly(self) -> None:
        """A count has its answer already: a fold that fails is logged, not raised."""
        try:
            self.fold_execution_counts()
        except StoreError:
            log.warning("folding execution counts failed", exc_info=True)

    def waiting_stats(self, now: datetime) -> WaitingStats:
        """One statement of four index-backed subqueries (see waiting.py)."""
        query = sql_waiting.waiting_stats_query(now)
        row = self._read("waiting stats", lambda conn: conn.execute(query).one())
        count, since, due, due_at = row
        return WaitingStats(
            waiting_count=count or 0,
            oldest_waiting_since=since,
            due_count=due or 0,
            oldest_due_at=due_at,
        )

    # -- retention ------------------------------------------------------------------------------

    def delete_finished_before(self, cutoff: datetime, *, batch_size: int = 500) -> int:
        """Delete completed, failed and cancelled executions that finished before `cutoff`,
        with their events, idempotency keys, resume tokens, jobs, joins and event waits,
        `batch_size` at a time (each batch its own short transaction); then the emitted events
        created before `cutoff` whose dispatch finished, the trigger history from before it and
        the cron slots fired for before it (each trigger's latest kept), in batches too.
        Returns how many executions were deleted."""
        deleted = self._delete_executions_before(cutoff, batch_size)
        self._delete_dispatched_events_before(cutoff, batch_size)
        self._delete_trigger_history_before(cutoff, batch_size)
        return deleted

    def _delete_executions_before(self, cutoff: datetime, batch_size: int) -> int:
        deleted = 0
        while True:
            with self._transaction("delete finished executions") as conn:
                ids = list(
                    conn.execute(
                        select(executions.c.id)
                        .where(
                            executions.c.status.in_(_TERMINAL), executions.c.finished_at < cutoff
                        )
                        .order_by(executions.c.finished_at)
                        .limit(batch_size)
                    ).scalars()
                )
                if not ids:
                    return deleted
                for table in (events, idempotency_keys, resume_tokens, jobs, event_waits):
                    conn.execute(delete(table).where(table.c.execution_id.in_(ids)))
                their_joins = select(joins.c.id).where(joins.c.parent_execution_id.in_(ids))
                conn.execute(delete(join_branches).where(join_branches.c.join_id.in_(their_joins)))
                conn.execute(delete(joins).where(joins.c.parent_execution_id.in_(ids)))
                conn.execute(delete(executions).where(executions.c.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < batch_size:
                return deleted

    def _delete_dispatched_events_before(self, cutoff: datetime, batch_size: int) -> None:
        c = inbox_events.c
        while True:
            batch = (
                select(c.id)
                .where(c.dispatched_at.is_not(None), c.created_at < cutoff)
                .order_by(c.created_at, c.id)
                .limit(batch_size)
                .scalar_subquery()
            )
            with self._single_statement("delete dispatched events", write=True) as conn:
                removed = conn.execute(delete(inbox_events).where(c.id.in_(batch))).rowcount
            if removed < batch_size:
                return

    def _delete_trigger_history_before(self, cutoff: datetime, batch_size: int) -> None:
        for statement in trigger_rows.history_before(cutoff, batch_size):
            while True:
                with self._single_statement("delete trigger history", write=True) as conn:
                    removed = conn.execute(statement).rowcount
                if removed < batch_size:
                    break

    # -- API keys, flow owners, heartbeats (SQL in stores/sql/operators.py) ---------------------

    def save_api_key(self, key: ApiKey) -> None:
        with self._single_statement("save API key", write=True) as conn:
            operators.save_api_key(conn, key)

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._read(
            "load API key", lambda conn: operators.get_api_key_by_hash(conn, key_hash)
        )

    def list_api_keys(self) -> list[ApiKey]:
        return self._read("list API keys", operators.list_api_keys)

    def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        with self._single_statement("revoke API key", write=True) as conn:
            return operators.revoke_api_key(conn, key_id, now)

    def claim_flow(self, flow_id: str, tenant_id: str) -> str:
        with self._transaction("claim flow") as conn:
            return operators.claim_flow(conn, flow_id, tenant_id)

    def flow_owners(self) -> dict[str, str]:
        return self._read("list flow owners", operators.list_flow_owners)

    def record_heartbeat(self, name: str, at: datetime) -> None:
        with self._single_statement("record heartbeat", write=True) as conn:
            operators.record_heartbeat(conn, name, at)

    def last_heartbeat(self, name: str) -> datetime | None:
        return self._read("load heartbeat", lambda conn: operators.last_heartbeat(conn, name))

    def list_heartbeats(self, prefix: str = "") -> dict[str, datetime]:
        return self._read("list heartbeats", lambda conn: operators.list_heartbeats(conn, prefix))

    def delete_heartbeats(self, prefix: str, *, before: datetime) -> int:
        with self._single_statement("delete heartbeats", write=True) as conn:
            return operators.delete_heartbeats(conn, prefix, before)

    # -- flow definitions -----------------------------------------------------------------------

    def save_flow_definition(self, flow: Flow, *, now: datetime) -> bool:
        """Store a flow version so workers can load it. Returns False if already stored.

        Raises:
            FlowValidationError: this id and version are stored with a different definition.
        """
        with self._transaction("save flow definition") as conn:
            return flow_definitions.save(conn, flow, now, self._insert_ignore)

    def list_flow_definitions(self) -> list[Flow]:
        """Every stored flow version, validated again on the way out."""
        with self._transaction("list flow definitions", write=False) as conn:
            return flow_definitions.load_all(conn)

    # -- triggers (SQL in stores/sql/triggers.py) -----------------------------------------------

    def save_trigger(self, trigger: AnyTrigger, now: datetime) -> AnyTrigger:
        with self._transaction("save trigger") as conn:
            return trigger_rows.save(conn, self._dialect, trigger, now)

    def create_trigger(self, trigger: AnyTrigger, now: datetime) -> bool:
        with self._transaction("create trigger") as conn:
            return trigger_rows.create(conn, self._dialect, trigger, now)

    def get_trigger(self, trigger_id: str) -> AnyTrigger | None:
        with self._transaction("load trigger", write=False) as conn:
            return trigger_rows.get(conn, trigger_id)

    def list_triggers(
        self, enabled_only: bool = False, trigger_type: str | None = None
    ) -> list[AnyTrigger]:
        with self._transaction("list triggers", write=False) as conn:
            return trigger_rows.list_all(conn, enabled_only, trigger_type)

    def delete_trigger(self, trigger_id: str) -> bool:
        with self._transaction("delete trigger") as conn:
            return trigger_rows.remove(conn, trigger_id)

    def record_fire(self, fire: TriggerFire) -> bool:
        with self._transaction("record trigger fire") as conn:
            return trigger_rows.record_fire(conn, self._dialect, fire)

    def last_fire(self, trigger_id: str) -> TriggerFire | None:
        with self._transaction("load last trigger fire", write=False) as conn:
            return trigger_rows.last_fire(conn, trigger_id)

    def record_trigger_fire(self, record: TriggerFireRecord) -> None:
        with self._single_statement("record trigger history", write=True) as conn:
            trigger_rows.record_history(conn, record)

    def list_trigger_fires(
        self, trigger_id: str, *, limit: int = 50, before: datetime | None = None
    ) -> list[TriggerFireRecord]:
        return self._read(
            "list trigger history",
            lambda conn: trigger_rows.list_history(conn, trigger_id, limit, before),
        )

    def trigger_stats(self, trigger_id: str) -> TriggerStats:
        return self._read("trigger stats", lambda conn: trigger_rows.stats(conn, trigger_id))

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _due_wakes(now: datetime, limit: int) -> Select[Any]:
        return (
            select(executions)
            .where(executions.c.status == _WAITING, executions.c.wake_at <= now)
            .order_by(executions.c.wake_at, executions.c.id)
            .limit(limit)
        )

    def _fetch(self, query: Select[Any], operation: str) -> list[Execution]:
        return self._read(
            operation,
            lambda conn: [execution_from_row(row) for row in conn.execute(query).mappings()],
        )

    def _claim(self, query: Select[Any], values: dict[str, Any], operation: str) -> list[Execution]:
        if self._dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        with self._transaction(operation) as conn:
            claimed = [execution_from_row(row) for row in conn.execute(query).mappings()]
            if claimed:
                conn.execute(
                    update(executions)
                    .where(executions.c.id.in_([e.id for e in claimed]))
                    .values(values)
                )
            return claimed
