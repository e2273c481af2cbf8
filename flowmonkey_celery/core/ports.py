"""Ports: the interfaces the engine needs from the outside world.

`Store` is the single source of truth for executions and their history. Every implementation
(MemoryStore, SqlStore on SQLite/PostgreSQL) passes one contract suite,
`tests/contract/test_store_contract.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import Execution, ExecutionStatus


@runtime_checkable
class Store(Protocol):
    """Persistence for executions and their history.

    Stores return copies: mutating a returned Execution never changes stored state; only
    `save_execution` does.
    """

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
        """An execution's events, oldest first (insertion order breaks ties)."""
        ...

    def list_children(self, parent_execution_id: str) -> list[Execution]:
        """Executions whose `parent_execution_id` is the given id, oldest first."""
        ...

    def find_due_wakes(self, now: datetime, limit: int = 100) -> list[Execution]:
        """Waiting executions with `wake_at <= now`, earliest first. Read only: the caller
        claims each with a compare-and-set save, so concurrent callers claim each once."""
        ...

    def find_timed_out(self, now: datetime, limit: int = 100) -> list[Execution]:
        """Non-terminal executions with `deadline_at <= now`, or waiting ones with
        `wait_deadline_at <= now`. Read only, like `find_due_wakes`."""
        ...

    def list_executions(
        self,
        *,
        status: ExecutionStatus | str | None = None,
        flow_id: str | None = None,
        tenant_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[Execution]:
        """Executions filtered by status / flow / tenant, ordered by (created_at, id).

        `after` is the id of the last execution of the previous page (keyset paging).
        """
        ...
