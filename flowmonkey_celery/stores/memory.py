"""MemoryStore: the in-process twin of the durable stores, for tests and single-process use."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from flowmonkey_celery.core.api_keys import ApiKey
from flowmonkey_celery.core.children import Branch, Join
from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import Execution, ExecutionStatus, WaitKind
from flowmonkey_celery.core.inbox import Event, EventWait
from flowmonkey_celery.core.jobs import Job, JobStatus
from flowmonkey_celery.core.ports import AnyTrigger
from flowmonkey_celery.core.stats import WaitingStats, waiting_stats_of
from flowmonkey_celery.core.tokens import ResumeToken
from flowmonkey_celery.core.triggers import TriggerFire, TriggerFireRecord, TriggerStats
from flowmonkey_celery.errors import ErrorCode, ExecutionError, StoreError, VersionConflictError
from flowmonkey_celery.stores.memory_transaction import MemoryTransaction

IdempotencyScope = tuple[str | None, str, str]


class MemoryStore:
    """Executions and history in dictionaries, behind one lock.

    Implements the `Store` and `TriggerStore` protocols with the same guarantees as the SQL
    stores: deep copies in and out, compare-and-set saves on `version`, atomic idempotent
    create, and one recorded fire per `(trigger_id, scheduled_for)`.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._executions: dict[str, Execution] = {}
        self._events: dict[str, list[HistoryEvent]] = {}
        self._idempotency: dict[IdempotencyScope, tuple[str, datetime | None]] = {}
        self._triggers: dict[str, AnyTrigger] = {}
        self._fires: dict[tuple[str, datetime], TriggerFire] = {}
        self._tokens: dict[str, ResumeToken] = {}
        self._joins: dict[str, Join] = {}
        self._jobs: dict[str, Job] = {}
        self._branches: dict[str, list[Branch]] = {}  # by join id, in index order
        self._inbox: dict[str, Event] = {}
        self._event_keys: dict[tuple[str | None, str | None], str] = {}
        self._event_waits: dict[tuple[str, int], EventWait] = {}
        self._trigger_history: list[TriggerFireRecord] = []
        self._api_keys: dict[str, ApiKey] = {}
        self._flow_owners: dict[str, str] = {}
        self._heartbeats: dict[str, datetime] = {}

    @contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        """A unit of work under the store's lock; undone if the block raises."""
        with self._lock:
            transaction = MemoryTransaction(self)
            try:
                yield transaction
            except BaseException:
                transaction.rollback()
                raise

    def get_join(self, join_id: str) -> Join | None:
        with self._lock:
            found = self._joins.get(join_id)
            return found.model_copy(deep=True) if found else None

    def list_joins(self, parent_execution_id: str) -> list[Join]:
        with self._lock:
            found = [
                j for j in self._joins.values() if j.parent_execution_id == parent_execution_id
            ]
            return [j.model_copy(deep=True) for j in sorted(found, key=lambda j: j.created_at)]

    def list_branches(self, join_id: str) -> list[Branch]:
        with self._lock:
            return [b.model_copy(deep=True) for b in self._branches.get(join_id, [])]

    def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            found = self._jobs.get(job_id)
            return found.model_copy(deep=True) if found else None

    def list_jobs(self, execution_id: str) -> list[Job]:
        with self._lock:
            found = [j for j in self._jobs.values() if j.execution_id == execution_id]
            found.sort(key=lambda j: j.created_at)
            return [j.model_copy(deep=True) for j in found]

    def claim_job(
        self, job_id: str, runner_id: str, now: datetime, lease_until: datetime
    ) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            expired = job is not None and (job.lease_expires_at or now) < now
            if job is None or not (
                job.status is JobStatus.PENDING or (job.status is JobStatus.RUNNING and expired)
            ):
                return None
            claimed = job.model_copy(
                update={
                    "status": JobStatus.RUNNING,
                    "runner_id": runner_id,
                    "claims": job.claims + 1,
                    "lease_expires_at": lease_until,
                    "heartbeat_at": now,
                    "started_at": job.started_at or now,  # the first claim's (see SqlStore)
                    "updated_at": now,
                }
            )
            self._jobs[job_id] = claimed
            return claimed.model_copy(deep=True)

    def touch_job(
        self,
        job_id: str,
        runner_id: str,
        now: datetime,
        lease_until: datetime,
        fields: dict[str, object] | None = None,
    ) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status is not JobStatus.RUNNING or job.runner_id != runner_id:
                return False
            renewed = {"lease_expires_at": lease_until, "heartbeat_at": now, "updated_at": now}
            self._jobs[job_id] = job.model_copy(update={**renewed, **(fields or {})}, deep=True)
            return True

    def find_jobs_to_reap(
        self, now: datetime, *, started_before: datetime | None = None, limit: int = 100
    ) -> list[Job]:
        with self._lock:
            found = []
            for job in self._jobs.values():
                if job.status.is_finished:
                    continue
                expired = job.lease_expires_at is not None and job.lease_expires_at < now
                overdue = (
                    started_before is not None
                    and job.status is JobStatus.RUNNING
                    and job.started_at is not None
                    and job.started_at < started_before
                )
                if expired or overdue:
                    found.append(job.model_copy(deep=True))
            return found[:limit]

    def defer_job(self, job_id: str, now: datetime, until: datetime) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if (
                job is None
                or job.status.is_finished
                or not (job.lease_expires_at is not None and job.lease_expires_at < now)
            ):
                return False
            released = {"status": JobStatus.PENDING, "runner_id": None, "updated_at": now}
            self._jobs[job_id] = job.model_copy(update={**released, "lease_expires_at": until})
            return True

    def find_children_to_cancel(self, limit: int = 100) -> list[Execution]:
        with self._lock:
            found: list[Execution] = []
            for child in self._executions.values():
                if child.is_terminal or len(found) >= limit:
                    continue
                parent = self._executions.get(child.parent_execution_id or "")
                join = self._joins.get(child.join_id or "")
                orphaned = (
                    parent is not None
                    and parent.status is ExecutionStatus.CANCELLED
                    and child.parent_close == "cancel"
                )
                if orphaned or (join is not None and join.cancel_running):
                    found.append(child.model_copy(deep=True))
            return found

    def create_execution(
        self, execution: Execution, *, now: datetime, events: Sequence[HistoryEvent] = ()
    ) -> tuple[Execution, bool]:
        with self._lock:
            if execution.id in self._executions:
                raise ExecutionError(
                    f"execution {execution.id} already exists",
                    ErrorCode.EXECUTION_EXISTS,
                    {"execution_id": execution.id},
                )
            scope = _scope(execution)
            if scope is not None:
                existing = self._idempotency.get(scope)
                if existing is not None:
                    existing_id, expires_at = existing
                    live = expires_at is None or expires_at > now
                    if live and existing_id in self._executions:
                        return self._executions[existing_id].model_copy(deep=True), False
                self._idempotency[scope] = (execution.id, execution.idempotency_expires_at)
            self._executions[execution.id] = execution.model_copy(deep=True)
            self._events[execution.id] = [e.model_copy(deep=True) for e in events]
            return execution.model_copy(deep=True), True

    def get_execution(self, execution_id: str) -> Execution | None:
        with self._lock:
            found = self._executions.get(execution_id)
            return found.model_copy(deep=True) if found else None

    def save_execution(
        self, execution: Execution, *, expected_version: int, events: Sequence[HistoryEvent] = ()
    ) -> Execution:
        with self._lock:
            current = self._executions.get(execution.id)
            if current is None or current.version != expected_version:
                found = "missing" if current is None else f"at version {current.version}"
                raise VersionConflictError(
                    f"execution {execution.id} is {found}, expected version {expected_version}; "
                    "it changed since it was loaded",
                    details={"execution_id": execution.id, "expected_version": expected_version},
                )
            stored = execution.model_copy(deep=True, update={"version": expected_version + 1})
            self._executions[execution.id] = stored
            self._events.setdefault(execution.id, []).extend(
                e.model_copy(deep=True) for e in events
            )
            return stored.model_copy(deep=True)

    def append_events(self, events: Sequence[HistoryEvent]) -> None:
        with self._lock:
            for event in events:
                self._events.setdefault(event.execution_id, []).append(event.model_copy(deep=True))

    def list_events(self, execution_id: str) -> list[HistoryEvent]:
        with self._lock:
            return [e.model_copy(deep=True) for e in self._events.get(execution_id, [])]

    def list_children(
        self, parent_execution_id: str, *, limit: int | None = None, after: str | None = None
    ) -> list[Execution]:
        with self._lock:
            children = sorted(
                (
                    e
                    for e in self._executions.values()
                    if e.parent_execution_id == parent_execution_id
                ),
                key=lambda e: (e.created_at, e.id),
            )
            if after is not None:
                anchor = self._executions.get(after)
                if anchor is None or anchor.parent_execution_id != parent_execution_id:
                    return []
                children = [
                    c for c in children if (c.created_at, c.id) > (anchor.created_at, anchor.id)
                ]
            return [c.model_copy(deep=True) for c in children[:limit]]

    def find_due_wakes(self, now: datetime, limit: int = 100) -> list[Execution]:
        with self._lock:
            due = [
                e
                for e in self._executions.values()
                if e.status is ExecutionStatus.WAITING
                and e.wake_at is not None
                and e.wake_at <= now
            ]
            due.sort(key=lambda e: (e.wake_at or now, e.id))
            return [e.model_copy(deep=True) for e in due[:limit]]

    def find_timed_out(self, now: datetime, limit: int = 100) -> list[Execution]:
        with self._lock:
            expired = [
                e
                for e in self._executions.values()
                if not e.is_terminal
                and (
                    (e.deadline_at is not None and e.deadline_at <= now)
                    or (
                        e.status is ExecutionStatus.WAITING
                        and e.wait_deadline_at is not None
                        and e.wait_deadline_at <= now
                    )
                )
            ]
            expired.sort(key=lambda e: (e.created_at, e.id))
            return [e.model_copy(deep=True) for e in expired[:limit]]

    def claim_due_wakes(self, now: datetime, limit: int, claim_until: datetime) -> list[Execution]:
        with self._lock:
            claimed = self.find_due_wakes(now, limit)
            for execution in claimed:
                self._executions[execution.id].wake_at = claim_until
            return claimed

    def claim_stalled(self, now: datetime, limit: int, lease_until: datetime) -> list[Execution]:
        with self._lock:
            stalled = [
                e
                for e in self._executions.values()
                if e.status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
                and e.lease_expires_at is not None
                and e.lease_expires_at <= now
            ]
            stalled.sort(key=lambda e: (e.lease_expires_at or now, e.id))
            claimed = [e.model_copy(deep=True) for e in stalled[:limit]]
            for execution in claimed:
                self._executions[execution.id].lease_expires_at = lease_until
            return claimed

    def extend_lease(self, execution_id: str, *, expected_version: int, until: datetime) -> bool:
        with self._lock:
            execution = self._executions.get(execution_id)
            if (
                execution is None
                or execution.version != expected_version
                or execution.status not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
            ):
                return False
            execution.lease_expires_at = until
            return True

    def delete_finished_before(self, cutoff: datetime, *, batch_size: int = 500) -> int:
        with self._lock:
            doomed = {
                e.id
                for e in self._executions.values()
                if e.is_terminal and e.finished_at is not None and e.finished_at < cutoff
            }
            for execution_id in doomed:
                del self._executions[execution_id]
                self._events.pop(execution_id, None)
            self._tokens = {h: t for h, t in self._tokens.items() if t.execution_id not in doomed}
            self._jobs = {i: j for i, j in self._jobs.items() if j.execution_id not in doomed}
            self._event_waits = {
                slot: w for slot, w in self._event_waits.items() if slot[0] not in doomed
            }
            for join_id in [j.id for j in self._joins.values() if j.parent_execution_id in doomed]:
                del self._joins[join_id]
                self._branches.pop(join_id, None)
            self._idempotency = {
                scope: held for scope, held in self._idempotency.items() if held[0] not in doomed
            }
            self._delete_dispatched_events_before(cutoff)
            self._delete_trigger_history_before(cutoff)
            return len(doomed)

    def _delete_trigger_history_before(self, cutoff: datetime) -> None:
        """Trigger history entries from before `cutoff`, and cron slots fired for before it
        except each trigger's latest (where its schedule goes on from)."""
        self._trigger_history = [r for r in self._trigger_history if r.at >= cutoff]
        latest: dict[str, datetime] = {}
        for trigger_id, scheduled_for in self._fires:
            latest[trigger_id] = max(scheduled_for, latest.get(trigger_id, scheduled_for))
        self._fires = {
            (trigger_id, scheduled_for): fire
            for (trigger_id, scheduled_for), fire in self._fires.items()
            if scheduled_for >= cutoff or scheduled_for == latest[trigger_id]
        }

    def _delete_dispatched_events_before(self, cutoff: datetime) -> None:
        """Emitted events created before `cutoff` whose dispatch finished (their keys free)."""
        purged = {
            event_id
            for event_id, event in self._inbox.items()
            if event.dispatched_at is not None and event.created_at < cutoff
        }
        for event_id in purged:
            del self._inbox[event_id]
        for scope in [s for s, event_id in self._event_keys.items() if event_id in purged]:
            del self._event_keys[scope]

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
        wanted = ExecutionStatus(status) if status is not None else None
        matches = _filter(
            flow_id=flow_id,
            tenant_id=tenant_id,
            created_after=created_after,
            created_before=created_before,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        with self._lock:
            rows = sorted(
                self._executions.values(),
                key=lambda e: (e.created_at, e.id),
                reverse=newest_first,
            )
            if after is not None:
                anchor = self._executions.get(after)
                if anchor is None:
                    raise ExecutionError(
                        f"paging cursor {after!r} names no execution",
                        ErrorCode.INVALID_ARGUMENT,
                    )
                cursor = (anchor.created_at, anchor.id)
                rows = [
                    e
                    for e in rows
                    if (
                        (e.created_at, e.id) < cursor
                        if newest_first
                        else (e.created_at, e.id) > cursor
                    )
                ]
            kinds = None if wait_kinds is None else {WaitKind(kind) for kind in wait_kinds}
            found = [
                e
                for e in rows
                if (wanted is None or e.status is wanted)
                and (kinds is None or e.wait_kind in kinds)
                and matches(e)
            ]
            return [e.model_copy(deep=True) for e in found[:limit]]

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
        matches = _filter(
            flow_id=flow_id,
            tenant_id=tenant_id,
            created_after=created_after,
            created_before=created_before,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        counts = dict.fromkeys((s.value for s in ExecutionStatus), 0)
        with self._lock:
            for execution in self._executions.values():
                if matches(execution):
                    counts[execution.status.value] += 1
        return counts

    def waiting_stats(self, now: datetime) -> WaitingStats:
        with self._lock:
            return waiting_stats_of(self._executions.values(), now)

    # -- API keys, flow owners, heartbeats ------------------------------------------------------

    def save_api_key(self, key: ApiKey) -> None:
        with self._lock:
            if any(k.name == key.name for k in self._api_keys.values()):
                raise ExecutionError(
                    f"an API key named {key.name!r} exists already", ErrorCode.INVALID_ARGUMENT
                )
            self._api_keys[key.id] = key.model_copy(deep=True)

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        with self._lock:
            found = next((k for k in self._api_keys.values() if k.key_hash == key_hash), None)
            return found.model_copy(deep=True) if found else None

    def list_api_keys(self) -> list[ApiKey]:
        with self._lock:
            return [k.model_copy(deep=True) for k in sorted(self._api_keys.values(), key=_name)]

    def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        with self._lock:
            key = self._api_keys.get(key_id)
            if key is None or key.revoked_at is not None:
                return False
            self._api_keys[key_id] = key.model_copy(update={"revoked_at": now})
            return True

    def claim_flow(self, flow_id: str, tenant_id: str) -> str:
        with self._lock:
            return self._flow_owners.setdefault(flow_id, tenant_id)

    def flow_owners(self) -> dict[str, str]:
        with self._lock:
            return dict(self._flow_owners)

    def record_heartbeat(self, name: str, at: datetime) -> None:
        with self._lock:
            self._heartbeats[name] = ensure_aware(at, "heartbeat")

    def last_heartbeat(self, name: str) -> datetime | None:
        with self._lock:
            return self._heartbeats.get(name)

    def list_heartbeats(self, prefix: str = "") -> dict[str, datetime]:
        with self._lock:
            return {
                name: at for name, at in sorted(self._heartbeats.items()) if name.startswith(prefix)
            }

    def delete_heartbeats(self, prefix: str, *, before: datetime) -> int:
        before = ensure_aware(before, "cutoff")
        with self._lock:
            gone = [n for n, at in self._heartbeats.items() if n.startswith(prefix) and at < before]
            for name in gone:
                del self._heartbeats[name]
            return len(gone)

    # -- triggers ---------------------------------------------------------------------------

    def save_trigger(self, trigger: AnyTrigger, now: datetime) -> AnyTrigger:
        now = ensure_aware(now, "now")
        with self._lock:
            existing = self._triggers.get(trigger.id)
            created_at = existing.created_at if existing else trigger.created_at or now
            stored = trigger.model_copy(
                deep=True, update={"created_at": created_at, "updated_at": now}
            )
            self._triggers[trigger.id] = stored
            return stored.model_copy(deep=True)

    def create_trigger(self, trigger: AnyTrigger, now: datetime) -> bool:
        with self._lock:
            if trigger.id in self._triggers:
                return False
            self.save_trigger(trigger, now)
            return True

    def get_trigger(self, trigger_id: str) -> AnyTrigger | None:
        with self._lock:
            found = self._triggers.get(trigger_id)
            return found.model_copy(deep=True) if found else None

    def list_triggers(
        self, enabled_only: bool = False, trigger_type: str | None = None
    ) -> list[AnyTrigger]:
        with self._lock:
            return [
                self._triggers[key].model_copy(deep=True)
                for key in sorted(self._triggers)
                if (self._triggers[key].enabled or not enabled_only)
                and (trigger_type is None or self._triggers[key].type == trigger_type)
            ]

    def delete_trigger(self, trigger_id: str) -> bool:
        with self._lock:
            self._fires = {
                slot: fire for slot, fire in self._fires.items() if slot[0] != trigger_id
            }
            self._trigger_history = [r for r in self._trigger_history if r.trigger_id != trigger_id]
            return self._triggers.pop(trigger_id, None) is not None

    def record_trigger_fire(self, record: TriggerFireRecord) -> None:
        with self._lock:
            if any(r.id == record.id for r in self._trigger_history):
                # What SqlStore raises for the primary key of fm_trigger_history.
                raise StoreError(
                    f"record trigger history conflicts with data already stored: an entry "
                    f"with id {record.id!r} exists",
                    details={"operation": "record trigger history", "id": record.id},
                )
            self._trigger_history.append(record.model_copy(deep=True))

    def list_trigger_fires(
        self, trigger_id: str, *, limit: int = 50, before: datetime | None = None
    ) -> list[TriggerFireRecord]:
        with self._lock:
            mine = [
                r
                for r in self._trigger_history
                if r.trigger_id == trigger_id and (before is None or r.at < before)
            ]
            mine.sort(key=lambda r: (r.at, r.id), reverse=True)
            return [r.model_copy(deep=True) for r in mine[:limit]]

    def trigger_stats(self, trigger_id: str) -> TriggerStats:
        with self._lock:
            mine = [r for r in self._trigger_history if r.trigger_id == trigger_id]
        latencies = [r.latency_ms for r in mine if r.latency_ms is not None]
        counts = Counter(r.status for r in mine)
        return TriggerStats(
            trigger_id=trigger_id,
            fires=len(mine),
            accepted=counts["accepted"],
            duplicate=counts["duplicate"],
            rejected=counts["rejected"],
            failed=counts["failed"],
            last_fired_at=max((r.at for r in mine), default=None),
            mean_latency_ms=sum(latencies) / len(latencies) if latencies else None,
        )

    def record_fire(self, fire: TriggerFire) -> bool:
        with self._lock:
            slot = (fire.trigger_id, fire.scheduled_for)
            if slot in self._fires:
                return False
            self._fires[slot] = fire.model_copy(deep=True)
            return True

    def last_fire(self, trigger_id: str) -> TriggerFire | None:
        with self._lock:
            fires = [fire for slot, fire in self._fires.items() if slot[0] == trigger_id]
            latest = max(fires, key=lambda fire: fire.scheduled_for, default=None)
            return latest.model_copy(deep=True) if latest else None

    def clear(self) -> None:
        """Forget everything (handy between tests)."""
        with self._lock:
            self._executions.clear()
            self._events.clear()
            self._idempotency.clear()
            self._triggers.clear()
            self._fires.clear()
            self._tokens.clear()
            self._joins.clear()
            self._jobs.clear()
            self._branches.clear()
            self._inbox.clear()
            self._event_keys.clear()
            self._event_waits.clear()
            self._trigger_history.clear()
            self._api_keys.clear()
            self._flow_owners.clear()
            self._heartbeats.clear()


def _name(key: ApiKey) -> str:
    return key.name


def _filter(
    *,
    flow_id: str | None,
    tenant_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    metadata: dict[str, str] | None,
    idempotency_key: str | None,
) -> Callable[[Execution], bool]:
    """The listing filters but status, as one predicate (the same for lists and counts)."""
    wanted_metadata = dict(metadata or {})

    def matches(e: Execution) -> bool:
        return (
            (flow_id is None or e.flow_id == flow_id)
            and (tenant_id is None or e.tenant_id == tenant_id)
            and (created_after is None or e.created_at >= created_after)
            and (created_before is None or e.created_at < created_before)
            and (idempotency_key is None or e.idempotency_key == idempotency_key)
            and all(
                key in e.metadata and _as_text(e.metadata[key]) == value
                for key, value in wanted_metadata.items()
            )
        )

    return matches


def _as_text(value: object) -> str:
    """A metadata value as the filter compares it: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _scope(execution: Execution) -> IdempotencyScope | None:
    if execution.idempotency_key is None:
        return None
    return (execution.tenant_id, execution.flow_id, execution.idempotency_key)
