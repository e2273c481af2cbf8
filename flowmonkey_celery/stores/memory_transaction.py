"""The MemoryStore's transactions: writes applied at once under the store's lock, each with
its undo, so a block that raises leaves the store as it found it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import Execution
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

    def revoke_resume_tokens(self, execution_id: str, now: datetime, reason: str) -> int:
        live = [
            t
            for t in self._store._tokens.values()
            if t.execution_id == execution_id and t.used_at is None and t.revoked_at is None
        ]
        for token in live:
            self._replace(
                token, token.model_copy(update={"revoked_at": now, "revoked_reason": reason})
            )
        return len(live)

    def _replace(self, old: ResumeToken, new: ResumeToken) -> None:
        tokens = self._store._tokens
        tokens[old.token_hash] = new
        self._undo.append(lambda: tokens.__setitem__(old.token_hash, old))
