"""Redis implementations of the coordination ports."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import redis

from flowmonkey_celery.core.clock import as_timedelta
from flowmonkey_celery.core.ports import WakeSignal

log = logging.getLogger("flowmonkey_celery.coordination")

# Compare the token before touching the key, atomically: a holder whose lock expired and was
# taken by someone else must never release or extend the new holder's lock.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


def _ttl_ms(ttl: timedelta | float) -> int:
    milliseconds = int(as_timedelta(ttl, "ttl") / timedelta(milliseconds=1))
    if milliseconds <= 0:
        raise ValueError("a lock ttl must be at least 1 ms")
    return milliseconds


class RedisLock:
    def __init__(self, manager: RedisLockManager, key: str, token: str) -> None:
        self._manager = manager
        self.key = key
        self.token = token

    def release(self) -> bool:
        return bool(self._manager._release(keys=[self._manager._key(self.key)], args=[self.token]))

    def extend(self, ttl: timedelta | float) -> bool:
        return bool(
            self._manager._extend(
                keys=[self._manager._key(self.key)], args=[self.token, _ttl_ms(ttl)]
            )
        )

    def __enter__(self) -> RedisLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class RedisLockManager:
    """Locks as `SET key token NX PX ttl`; release and extend by the holder only (Lua).

    Args:
        client: a `redis.Redis` client.
        prefix: namespace for the lock keys.
    """

    def __init__(self, client: redis.Redis, prefix: str = "flowmonkey") -> None:
        self.client = client
        self.prefix = prefix
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)

    @classmethod
    def from_url(cls, url: str, prefix: str = "flowmonkey") -> RedisLockManager:
        return cls(redis.Redis.from_url(url), prefix)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:lock:{key}"

    def acquire(self, key: str, ttl: timedelta | float) -> RedisLock | None:
        token = uuid.uuid4().hex
        if self.client.set(self._key(key), token, nx=True, px=_ttl_ms(ttl)):
            return RedisLock(self, key, token)
        return None


class RedisWakeSignaler:
    """Wake hints over Redis pub/sub (fire-and-forget, like the hints they are)."""

    def __init__(self, client: redis.Redis, prefix: str = "flowmonkey") -> None:
        self.client = client
        self.channel = f"{prefix}:wake"
        self._callbacks: list[Callable[[WakeSignal], None]] = []
        self._mutex = threading.Lock()
        self._pubsub: Any = None
        self._thread: Any = None

    @classmethod
    def from_url(cls, url: str, prefix: str = "flowmonkey") -> RedisWakeSignaler:
        return cls(redis.Redis.from_url(url), prefix)

    def signal(self, execution_id: str, wake_at: datetime | None = None) -> None:
        payload = {
            "execution_id": execution_id,
            "wake_at": wake_at.isoformat() if wake_at else None,
        }
        self.client.publish(self.channel, json.dumps(payload))

    def subscribe(self, callback: Callable[[WakeSignal], None]) -> Callable[[], None]:
        with self._mutex:
            self._callbacks.append(callback)
            if self._thread is None:
                self._start()

        def unsubscribe() -> None:
            with self._mutex:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)
                running = self._detach() if not self._callbacks else None
            self._stop(running)

        return unsubscribe

    def _start(self) -> None:
        # redis-py typed pubsub() only in 8.x: a call through a typed reference checks
        # cleanly against every version, where a `type: ignore` would be unused on some.
        open_pubsub: Callable[[], Any] = self.client.pubsub
        self._pubsub = open_pubsub()
        self._pubsub.subscribe(**{self.channel: self._deliver})
        # Read the server's confirmation before returning, so that a signal sent right after
        # subscribe() returns is not missed.
        for _ in range(50):
            message = self._pubsub.get_message(timeout=0.1)
            if message and message.get("type") == "subscribe":
                break
        else:
            raise ConnectionError(f"Redis did not confirm the subscription to {self.channel}")
        self._thread = self._pubsub.run_in_thread(sleep_time=0.5, daemon=True)

    def _detach(self) -> tuple[Any, Any] | None:
        """Take the listener thread and its connection out of service (under `_mutex`)."""
        running = (self._thread, self._pubsub)
        self._thread = self._pubsub = None
        return running if running != (None, None) else None

    @staticmethod
    def _stop(running: tuple[Any, Any] | None) -> None:
        # Called without `_mutex`: the listener may be inside `_deliver` waiting for it, and
        # redis-py's `stop()` joins the thread (with no timeout in recent releases).
        if running is None:
            return
        thread, pubsub = running
        if thread is not None:
            thread.stop()
            if thread is not threading.current_thread():  # closed by a subscriber callback
                thread.join(timeout=2)
        if pubsub is not None:
            pubsub.close()

    def _deliver(self, message: dict[str, Any]) -> None:
        try:
            payload = json.loads(message["data"])
            wake_at = payload.get("wake_at")
            signal = WakeSignal(
                payload["execution_id"], datetime.fromisoformat(wake_at) if wake_at else None
            )
        except (ValueError, KeyError, TypeError):
            log.warning(
                "ignoring malformed wake signal on %s: %r", self.channel, message.get("data")
            )
            return
        with self._mutex:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(signal)
            except Exception:
                log.exception("wake signal subscriber %r failed", callback)

    def close(self) -> None:
        with self._mutex:
            self._callbacks.clear()
            running = self._detach()
        self._stop(running)
