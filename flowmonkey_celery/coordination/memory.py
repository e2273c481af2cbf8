"""In-memory twins of the coordination ports, with an injected clock for lock expiry."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from flowmonkey_celery.core.clock import Clock, SystemClock, as_timedelta
from flowmonkey_celery.core.ports import WakeSignal

log = logging.getLogger("flowmonkey_celery.coordination")


class InMemoryLock:
    def __init__(self, manager: InMemoryLockManager, key: str, token: str) -> None:
        self._manager = manager
        self.key = key
        self.token = token

    def release(self) -> bool:
        return self._manager._release(self.key, self.token)

    def extend(self, ttl: timedelta | float) -> bool:
        return self._manager._extend(self.key, self.token, as_timedelta(ttl, "ttl"))

    def __enter__(self) -> InMemoryLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class InMemoryLockManager:
    """Locks in a dict; expiry follows the injected clock."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._held: dict[str, tuple[str, datetime]] = {}
        self._mutex = threading.Lock()

    def acquire(self, key: str, ttl: timedelta | float) -> InMemoryLock | None:
        expires = self.clock.now() + _positive(ttl)
        with self._mutex:
            if self._live(key) is not None:
                return None
            token = uuid.uuid4().hex
            self._held[key] = (token, expires)
            return InMemoryLock(self, key, token)

    def _live(self, key: str) -> str | None:
        held = self._held.get(key)
        if held is None or held[1] <= self.clock.now():
            self._held.pop(key, None)
            return None
        return held[0]

    def _release(self, key: str, token: str) -> bool:
        with self._mutex:
            if self._live(key) != token:
                return False
            del self._held[key]
            return True

    def _extend(self, key: str, token: str, ttl: timedelta) -> bool:
        with self._mutex:
            if self._live(key) != token:
                return False
            self._held[key] = (token, self.clock.now() + _positive(ttl))
            return True


def _positive(ttl: timedelta | float) -> timedelta:
    delta = as_timedelta(ttl, "ttl")
    if delta <= timedelta(0):
        raise ValueError("a lock ttl must be positive")
    return delta


class InMemoryWakeSignaler:
    """Delivers signals synchronously to this process's subscribers."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[WakeSignal], None]] = []
        self._mutex = threading.Lock()

    def signal(self, execution_id: str, wake_at: datetime | None = None) -> None:
        with self._mutex:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(WakeSignal(execution_id, wake_at))
            except Exception:  # like Redis: one broken subscriber never blocks the others
                log.exception("wake signal subscriber %r failed", callback)

    def subscribe(self, callback: Callable[[WakeSignal], None]) -> Callable[[], None]:
        with self._mutex:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._mutex:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return unsubscribe

    def close(self) -> None:
        with self._mutex:
            self._callbacks.clear()
