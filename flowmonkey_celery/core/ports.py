"""Ports: the interfaces the engine needs from the outside world.

`Store` is the single source of truth for executions and their history. Every implementation
(MemoryStore, SqlStore on SQLite/PostgreSQL) passes one contract suite,
`tests/contract/test_store_contract.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from flowmonkey_celery.core.api_keys import ApiKey
from flowmonkey_celery.core.children import Branch, BranchStatus, Join
from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import Execution, ExecutionStatus, WaitKind
from flowmonkey_celery.core.inbox import Event, EventWait
from flowmonkey_celery.core.jobs import Job, JobStatus
from flowmonkey_celery.core.stats import WaitingStats
from flowmonkey_celery.core.tokens import ResumeToken
from flowmonkey_celery.core.triggers import (
    EventTrigger,
    HttpTrigger,
    ScheduleTrigger,
    TriggerFire,
    TriggerFireRecord,
    TriggerStats,
)

AnyTrigger = ScheduleTrigger | HttpTrigger | EventTrigger


@runtime_checkable
class StoreTransaction(Protocol):
    """Reads and writes that commit together or not at all (what `Store.transaction()`
    yields). The engine uses it when one change spans several rows: a token used and its
    execution resumed, a cancellation and the revocation of its tokens.

    `lock=True` reads hold the row until the end of the transaction (PostgreSQL: FOR UPDATE;
    SQLite and MemoryStore serialise whole write transactions anyway).
    """

    def get_execution(self, execution_id: str, *, lock: bool = False) -> Execution | None: ...

    def insert_execution(self, execution: Execution, events: Sequence[HistoryEvent] = ()) -> None:
        """Insert a new execution (no idempotency handling). Raises ExecutionError
        EXECUTION_EXISTS if the id is taken."""
        ...

    def save_execution(
        self, execution: Execution, *, expected_version: int, events: Sequence[HistoryEvent] = ()
    ) -> Execution:
        """Compare-and-set, as `Store.save_execution`."""
        ...

    def insert_resume_token(self, token: ResumeToken) -> None: ...

    def get_resume_token(self, token_hash: str, *, lock: bool = False) -> ResumeToken | None: ...

    def use_resume_token(self, token_hash: str, now: datetime) -> bool:
        """Mark the token used if it is still unused and unrevoked; False (nothing written)
        otherwise. The single-use guarantee: of concurrent users, one gets True."""
        ...

    def revoke_resume_tokens(
        self,
        execution_id: str,
        now: datetime,
        reason: str,
        *,
        token_hashes: list[str] | None = None,
    ) -> int:
        """Revoke the execution's unused tokens (only those of `token_hashes` if given); how
        many were revoked."""
        ...

    # -- joins (a parent waiting for its children) ----------------------------------------------

    def insert_join(self, join: Join, branches: Sequence[Branch]) -> None: ...

    def get_join(self, join_id: str, *, lock: bool = False) -> Join | None:
        """`lock=True`: the row stays locked to the end of the transaction (the join's counters
        are read, changed and written under it)."""
        ...

    def update_join(self, join: Join) -> None:
        """Write the join's counters and resolution (the caller holds its lock)."""
        ...

    def open_joins(self, parent_execution_id: str) -> list[Join]:
        """The parent's joins not decided yet."""
        ...

    def list_branches(
        self, join_id: str, *, status: BranchStatus | None = None, limit: int | None = None
    ) -> list[Branch]:
        """The join's branches in index order (only those in `status`, if given)."""
        ...

    def start_branch(self, join_id: str, index: int, execution_id: str) -> bool:
        """pending -> running with its execution; False (nothing written) if not pending."""
        ...

    def finish_branch(
        self,
        join_id: str,
        index: int,
        status: BranchStatus,
        output: object,
        error: dict[str, object] | None,
        now: datetime,
    ) -> bool:
        """running -> finished; False (nothing written) if it was not running: a branch
        reports once, whatever redelivers its child's last step."""
        ...

    def skip_pending_branches(self, join_id: str, now: datetime) -> int:
        """Mark the join's pending branches skipped (the join was decided without them)."""
        ...

    # -- jobs (stateful handlers) ---------------------------------------------------------------

    def insert_job(self, job: Job) -> None: ...

    def get_job(self, job_id: str, *, lock: bool = False) -> Job | None: ...

    def finish_job(
        self,
        job_id: str,
        runner_id: str,
        status: JobStatus,
        result: object,
        error: dict[str, object] | None,
        now: datetime,
    ) -> bool:
        """running (claimed by `runner_id`) -> finished; False (nothing written) if that
        instance no longer holds the job: a superseded instance cannot write its result."""
        ...

    def cancel_jobs(self, execution_id: str, now: datetime) -> int:
        """Cancel the execution's unfinished jobs (their runners' writes stop counting)."""
        ...

    # -- events and the waits for them ----------------------------------------------------------

    def insert_event(self, event: Event) -> bool:
        """Store a new event. False (nothing written) if one with the same `key` and tenant is
        stored already: a unique index decides, so of two processes emitting one key, one
        stores it."""
        ...

    def get_event(self, event_id: str) -> Event | None: ...

    def get_event_by_key(self, key: str, tenant_id: str | None) -> Event | None: ...

    def list_events(
        self,
        *,
        event_type: str | None = None,
        tenant_id: str | None = None,
        since: datetime | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """Events oldest first, ordered by (created_at, id), optionally only of one type or
        tenant or created at/after `since`; `after` is the id of the last event of the previous
        page (keyset paging)."""
        ...

    def mark_event_dispatched(self, event_id: str, now: datetime) -> bool:
        """Record that the event's triggers and waits were handled; False if it already was."""
        ...

    def find_undispatched_events(self, created_before: datetime, limit: int) -> list[Event]:
        """Events created before `created_before` whose dispatch never finished, oldest first."""
        ...

    def insert_event_wait(self, wait: EventWait) -> None: ...

    def find_event_waits(
        self,
        event_type: str,
        *,
        limit: int = 1000,
        after: tuple[datetime, str, int] | None = None,
    ) -> list[EventWait]:
        """The waits for events of `event_type`, ordered by (created_at, execution_id,
        sequence); `after` is that key of the last wait of the previous page."""
        ...

    def take_event_wait(self, execution_id: str, sequence: int) -> EventWait | None:
        """Delete and return the execution's wait of that `sequence`; None if it is gone. Of
        concurrent takers exactly one gets it: that one resumes the execution."""
        ...

    def delete_event_waits(self, execution_id: str) -> int:
        """Drop the execution's waits (it was cancelled, it timed out); how many there were."""
        ...

    def mark_event_wait_checked(self, execution_id: str, sequence: int, at: datetime) -> bool:
        """Record that the inbox was searched for this wait at `at`; False if it is gone."""
        ...

    def find_unchecked_event_waits(self, created_before: datetime, limit: int) -> list[EventWait]:
        """Waits created before `created_before` whose inbox was never searched (the process
        that committed them died first), oldest first."""
        ...


@runtime_checkable
class Store(Protocol):
    """Persistence for executions and their history.

    Stores return copies: mutating a returned Execution never changes stored state; only
    `save_execution` (or a committed `transaction()`) does.
    """

    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        """A unit of work: everything done through the yielded `StoreTransaction` commits
        when the block ends, or nothing does if it raises."""
        ...

    def get_join(self, join_id: str) -> Join | None: ...

    def list_joins(self, parent_execution_id: str) -> list[Join]:
        """The parent's joins, oldest first."""
        ...

    def list_branches(self, join_id: str) -> list[Branch]:
        """The join's branches in index order."""
        ...

    def get_job(self, job_id: str) -> Job | None: ...

    def list_jobs(self, execution_id: str) -> list[Job]:
        """The execution's jobs, oldest first."""
        ...

    def claim_job(
        self, job_id: str, runner_id: str, now: datetime, lease_until: datetime
    ) -> Job | None:
        """Claim a pending job, or a running one whose lease expired, for `runner_id` (claims
        + 1); the claimed job, or None (nothing written) if it is not claimable."""
        ...

    def touch_job(
        self,
        job_id: str,
        runner_id: str,
        now: datetime,
        lease_until: datetime,
        fields: dict[str, object] | None = None,
    ) -> bool:
        """Renew the lease of a job `runner_id` holds, writing `fields` (progress,
        checkpoint) with it; False (nothing written) if it no longer holds it."""
        ...

    def find_jobs_to_reap(
        self, now: datetime, *, started_before: datetime | None = None, limit: int = 100
    ) -> list[Job]:
        """Unfinished jobs whose lease expired (their runner died, or their message was lost),
        and running jobs started before `started_before` (over the maximum step duration)."""
        ...

    def defer_job(self, job_id: str, now: datetime, until: datetime) -> bool:
        """Release a job whose lease expired back to pending, its lease moved to `until` (it
        is being re-sent; its lost runner, if any, is let go); False if someone renewed or
        claimed it meanwhile."""
        ...

    def find_children_to_cancel(self, limit: int = 100) -> list[Execution]:
        """Live children that should be cancelled and may not be yet (their canceller
        crashed): those of a cancelled parent with parent_close "cancel", and those of a join
        decided with `cancel_running`."""
        ...

    def create_execution(
        self, execution: Execution, *, now: datetime, events: Sequence[HistoryEvent] = ()
    ) -> tuple[Execution, bool]:
        """Insert a new execution and its first events, atomically.

        If `execution.idempotency_key` is set and a live key (expiry after `now`) exists for
        the same (tenant_id, flow_id, key), nothing is written and `(existing, False)` is
        returned. Concurrent calls with one key create exactly one execution: the guarantee
        is a uniqueness constraint, not a read-then-write. An expired key is taken over by
        the new execution.

        Returns:
            `(stored, True)` when inserted (stored.version == execution.version), else
            `(existing, False)`.

        Raises:
            ExecutionError: EXECUTION_EXISTS if an execution with this id already exists.
        """
        ...

    def get_execution(self, execution_id: str) -> Execution | None:
        """The execution, or None if unknown."""
        ...

    def save_execution(
        self, execution: Execution, *, expected_version: int, events: Sequence[HistoryEvent] = ()
    ) -> Execution:
        """Compare-and-set: store `execution` only if the stored version is `expected_version`.

        The row and `events` are written in one transaction, with the version set to
        `expected_version + 1`. Returns the stored copy.

        Raises:
            VersionConflictError: the stored version differs (or the execution is gone);
                nothing was written.
        """
        ...

    def append_events(self, events: Sequence[HistoryEvent]) -> None:
        """Add events to history (atomic for the batch)."""
        ...

    def list_events(self, execution_id: str) -> list[HistoryEvent]:
        """An execution's events in the order they were recorded (oldest first)."""
        ...

    def list_children(
        self, parent_execution_id: str, *, limit: int | None = None, after: str | None = None
    ) -> list[Execution]:
        """Executions whose `parent_execution_id` is the given id, oldest first: at most
        `limit` of them, those after the child `after` (keyset paging; a page of a
        100,000-branch fan-out reads only its rows). An `after` that is no child of this
        parent gives an empty page."""
        ...

    def find_due_wakes(self, now: datetime, limit: int = 100) -> list[Execution]:
        """Waiting executions with `wake_at <= now`, earliest first. Read only: the caller
        claims each with a compare-and-set save, so concurrent callers claim each once."""
        ...

    def find_timed_out(self, now: datetime, limit: int = 100) -> list[Execution]:
        """Non-terminal executions with `deadline_at <= now`, or waiting ones with
        `wait_deadline_at <= now`. Read only, like `find_due_wakes`."""
        ...

    def claim_due_wakes(self, now: datetime, limit: int, claim_until: datetime) -> list[Execution]:
        """Like `find_due_wakes`, but each execution is handed to one caller only: its
        `wake_at` moves to `claim_until` (version unchanged), so concurrent sweepers pass it
        over (PostgreSQL: FOR UPDATE SKIP LOCKED). Returned as it was before the claim. If the
        claimer dies, the execution is due again at `claim_until`."""
        ...

    def claim_stalled(self, now: datetime, limit: int, lease_until: datetime) -> list[Execution]:
        """Pending or running executions whose `lease_expires_at <= now`, each handed to one
        caller only (the lease moves to `lease_until`, version unchanged); returned as they
        were before the claim."""
        ...

    def extend_lease(self, execution_id: str, *, expected_version: int, until: datetime) -> bool:
        """Move a pending or running execution's `lease_expires_at` to `until` if it is still
        at `expected_version` (its version does not change): the heartbeat of a step that is
        still running. False, and nothing written, if it has moved on."""
        ...

    def delete_finished_before(self, cutoff: datetime, *, batch_size: int = 500) -> int:
        """Delete terminal executions with `finished_at < cutoff`, and their history, in
        batches of `batch_size` (each batch atomic). Returns how many were deleted."""
        ...

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
        """Executions filtered by status / flow / tenant, created at or after `created_after`
        and before `created_before`, with each `metadata` key's value equal to the given text
        (a number or boolean compares by its JSON text), created with `idempotency_key`,
        ordered by (created_at, id), or by (created_at, id) descending with `newest_first`.
        `wait_kinds` keeps the executions waiting in one of those kinds (the inbox's signal
        and event waits).

        `after` is the id of the last execution of the previous page (keyset paging, in
        either order). Raises ExecutionError INVALID_ARGUMENT if it names no execution.
        """
        ...

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
        """How many executions `list_executions` would find with the same filters, per
        status: every ExecutionStatus value is a key (0 when none). Exact, as of one snapshot."""
        ...

    def waiting_stats(self, now: datetime) -> WaitingStats:
        """How many executions wait, since when the oldest has waited, and how many of them
        are due (`wake_at <= now`) with the earliest such `wake_at`: what `/metrics` and the
        dashboard's fleet page show. Read only; cheap enough to call on every scrape."""
        ...


@runtime_checkable
class OperatorStore(Protocol):
    """What the REST API keeps besides executions and triggers: API keys (hashed), which
    tenant owns a flow registered through the API, and heartbeats (the last tick).
    Implemented by MemoryStore and SqlStore."""

    def save_api_key(self, key: ApiKey) -> None:
        """Insert a new key. Raises ExecutionError INVALID_ARGUMENT if its name is taken."""
        ...

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    def list_api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, ordered by name."""
        ...

    def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        """Revoke the key; False if it is unknown or revoked already."""
        ...

    def claim_flow(self, flow_id: str, tenant_id: str) -> str:
        """Make `tenant_id` the owner of `flow_id` unless someone owns it already; the owner
        (a unique key decides between two tenants registering one id at once)."""
        ...

    def flow_owners(self) -> dict[str, str]:
        """flow id -> owning tenant, for the flows registered by a tenant's key (the others
        are shared: deployed from files or by an admin)."""
        ...

    def record_heartbeat(self, name: str, at: datetime) -> None:
        """Remember that `name` (e.g. "tick") ran at `at` (an upsert)."""
        ...

    def last_heartbeat(self, name: str) -> datetime | None: ...

    def list_heartbeats(self, prefix: str = "") -> dict[str, datetime]:
        """Every heartbeat whose name starts with `prefix` (e.g. "worker:"), name -> its last
        time, ordered by name. The prefix is matched literally (`%` and `_` are no wildcards)."""
        ...

    def delete_heartbeats(self, prefix: str, *, before: datetime) -> int:
        """Forget the heartbeats whose name starts with `prefix` (literally) last recorded
        before `before` (workers long gone); how many."""
        ...


@runtime_checkable
class TriggerStore(Protocol):
    """Persistence for triggers and the slots they fired.

    `record_fire` is the guarantee behind "one fire per cron slot": `(trigger_id,
    scheduled_for)` is unique, so of several beat processes firing one slot exactly one
    records it. Implemented by MemoryStore and SqlStore; contract suite
    `tests/contract/test_trigger_store_contract.py`.
    """

    def save_trigger(self, trigger: AnyTrigger, now: datetime) -> AnyTrigger:
        """Insert or replace the trigger with this id (an upsert).

        A new trigger's `created_at` is `trigger.created_at`, or `now` if unset; an update
        keeps the stored `created_at` whatever the argument says. `updated_at` becomes `now`.

        Returns:
            The trigger as stored, with both timestamps set.
        """
        ...

    def create_trigger(self, trigger: AnyTrigger, now: datetime) -> bool:
        """Insert a new trigger; False (nothing written) if its id is taken: of two processes
        creating one id, one succeeds (a unique key decides, never a read-then-write)."""
        ...

    def get_trigger(self, trigger_id: str) -> AnyTrigger | None:
        """The trigger, or None if unknown."""
        ...

    def list_triggers(
        self, enabled_only: bool = False, trigger_type: str | None = None
    ) -> list[AnyTrigger]:
        """Every trigger (only the enabled ones with `enabled_only`, only those of
        `trigger_type` if given), ordered by id."""
        ...

    def delete_trigger(self, trigger_id: str) -> bool:
        """Delete the trigger and its recorded fires. Returns False if it did not exist."""
        ...

    def record_fire(self, fire: TriggerFire) -> bool:
        """Record that the trigger fired the slot `fire.scheduled_for`.

        Returns False, writing nothing, if that `(trigger_id, scheduled_for)` is already
        recorded (by this or any other process): a uniqueness constraint decides, not a
        read-then-write.
        """
        ...

    def last_fire(self, trigger_id: str) -> TriggerFire | None:
        """The recorded fire with the latest `scheduled_for`, or None if it never fired."""
        ...

    def record_trigger_fire(self, record: TriggerFireRecord) -> None:
        """Add one entry to the trigger's history (a webhook delivery, a matched event)."""
        ...

    def list_trigger_fires(
        self, trigger_id: str, *, limit: int = 50, before: datetime | None = None
    ) -> list[TriggerFireRecord]:
        """The trigger's history, newest first (only entries before `before`, if given)."""
        ...

    def trigger_stats(self, trigger_id: str) -> TriggerStats:
        """Counts by status, the last fire and the mean latency of the trigger's history."""
        ...


# -- coordination (Redis in production; never the source of truth) -----------------------------


@runtime_checkable
class Lock(Protocol):
    """A held lock. Only its holder (matching token) can release or extend it."""

    key: str
    token: str

    def release(self) -> bool:
        """Release if still held by this holder; False if it expired or was taken over."""
        ...

    def extend(self, ttl: timedelta | float) -> bool:
        """Reset the time to live to `ttl` (seconds or timedelta) if still held; else False."""
        ...

    def __enter__(self) -> Lock: ...

    def __exit__(self, *exc_info: object) -> None: ...


@runtime_checkable
class LockManager(Protocol):
    """Short-lived mutual exclusion across processes. An optimisation only: correctness always
    rests on the store's compare-and-set, so a lost lock costs work, never data."""

    def acquire(self, key: str, ttl: timedelta | float) -> Lock | None:
        """Take `key` for `ttl` (seconds or timedelta) if free; None if someone holds it."""
        ...


@dataclass(frozen=True)
class WakeSignal:
    """ "Execution X may be ready (at `wake_at`)": a hint to look at the store sooner."""

    execution_id: str
    wake_at: datetime | None = None


@runtime_checkable
class WakeSignaler(Protocol):
    """Broadcasts wake hints between processes. Signals may be lost; the database sweep is
    the guarantee, signals only cut latency."""

    def signal(self, execution_id: str, wake_at: datetime | None = None) -> None: ...

    def subscribe(self, callback: Callable[[WakeSignal], None]) -> Callable[[], None]:
        """Call `callback` for every signal from now on; returns the unsubscribe function."""
        ...

    def close(self) -> None: ...
