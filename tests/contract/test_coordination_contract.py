"""One contract for the coordination ports, run on the in-memory twins and on real Redis."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmonkey_celery.coordination.memory import InMemoryLockManager, InMemoryWakeSignaler
from flowmonkey_celery.core.clock import ManualClock
from flowmonkey_celery.core.ports import LockManager, WakeSignal, WakeSignaler


@pytest.fixture(params=["memory", "redis"])
def locks(request: pytest.FixtureRequest) -> LockManager:
    if request.param == "memory":
        return InMemoryLockManager()
    from flowmonkey_celery.coordination.redis import RedisLockManager

    client = request.getfixturevalue("redis_client")
    return RedisLockManager(client, prefix=request.getfixturevalue("redis_prefix"))


@pytest.fixture(params=["memory", "redis"])
def signaler(request: pytest.FixtureRequest) -> Iterator[WakeSignaler]:
    if request.param == "memory":
        instance: WakeSignaler = InMemoryWakeSignaler()
    else:
        from flowmonkey_celery.coordination.redis import RedisWakeSignaler

        client = request.getfixturevalue("redis_client")
        instance = RedisWakeSignaler(client, prefix=request.getfixturevalue("redis_prefix"))
    yield instance
    instance.close()


def test_a_lock_excludes_other_holders_until_released(locks: LockManager) -> None:
    first = locks.acquire("execution:1", ttl=30)
    assert first is not None
    assert locks.acquire("execution:1", ttl=30) is None
    assert first.release() is True
    second = locks.acquire("execution:1", ttl=30)
    assert second is not None and second.token != first.token


def test_locks_on_different_keys_are_independent(locks: LockManager) -> None:
    assert locks.acquire("execution:a", ttl=30) is not None
    assert locks.acquire("execution:b", ttl=30) is not None


def test_only_the_holder_can_release(locks: LockManager) -> None:
    held = locks.acquire("execution:2", ttl=30)
    assert held is not None
    impostor = type(held)(locks, held.key, "not-the-token")  # type: ignore[call-arg]
    assert impostor.release() is False
    assert locks.acquire("execution:2", ttl=30) is None  # still held by the real holder
    assert held.release() is True


def test_only_the_holder_can_extend(locks: LockManager) -> None:
    held = locks.acquire("execution:3", ttl=30)
    assert held is not None
    impostor = type(held)(locks, held.key, "not-the-token")  # type: ignore[call-arg]
    assert impostor.extend(60) is False
    assert held.extend(timedelta(seconds=60)) is True


def test_release_twice_reports_the_lock_is_gone(locks: LockManager) -> None:
    held = locks.acquire("execution:4", ttl=30)
    assert held is not None
    assert held.release() is True
    assert held.release() is False
    assert held.extend(30) is False


def test_lock_as_context_manager_releases_on_exit(locks: LockManager) -> None:
    held = locks.acquire("execution:5", ttl=30)
    assert held is not None
    with held:
        assert locks.acquire("execution:5", ttl=30) is None
    assert locks.acquire("execution:5", ttl=30) is not None


def test_non_positive_ttl_is_refused(locks: LockManager) -> None:
    with pytest.raises(ValueError, match="ttl"):
        locks.acquire("execution:6", ttl=0)


def test_exactly_one_of_many_threads_gets_the_lock(locks: LockManager) -> None:
    barrier = threading.Barrier(12)
    winners: list[Any] = []

    def contend() -> None:
        barrier.wait()
        lock = locks.acquire("execution:race", ttl=30)
        if lock is not None:
            winners.append(lock)

    threads = [threading.Thread(target=contend) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_in_memory_lock_expires_with_the_injected_clock() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    locks = InMemoryLockManager(clock)
    stale = locks.acquire("execution:7", ttl=10)
    assert stale is not None
    clock.advance(11)
    fresh = locks.acquire("execution:7", ttl=10)
    assert fresh is not None
    # The expired holder must not release or extend the new holder's lock.
    assert stale.release() is False
    assert stale.extend(10) is False
    assert locks.acquire("execution:7", ttl=10) is None


def test_redis_lock_carries_its_ttl_in_redis(redis_client: Any, redis_prefix: str) -> None:
    from flowmonkey_celery.coordination.redis import RedisLockManager

    locks = RedisLockManager(redis_client, prefix=redis_prefix)
    held = locks.acquire("execution:8", ttl=timedelta(seconds=20))
    assert held is not None
    remaining_ms = redis_client.pttl(f"{redis_prefix}:lock:execution:8")
    assert 0 < remaining_ms <= 20_000
    assert held.extend(120)
    assert 20_000 < redis_client.pttl(f"{redis_prefix}:lock:execution:8") <= 120_000


def _collector() -> tuple[list[WakeSignal], threading.Event, Any]:
    received: list[WakeSignal] = []
    arrived = threading.Event()

    def on_signal(signal: WakeSignal) -> None:
        received.append(signal)
        arrived.set()

    return received, arrived, on_signal


def test_subscribers_receive_wake_signals(signaler: WakeSignaler) -> None:
    received, arrived, on_signal = _collector()
    signaler.subscribe(on_signal)
    wake_at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    signaler.signal("exec-1", wake_at)
    assert arrived.wait(timeout=5)
    assert received == [WakeSignal("exec-1", wake_at)]


def test_unsubscribed_callbacks_receive_nothing(signaler: WakeSignaler) -> None:
    received, _, on_signal = _collector()
    kept, kept_arrived, keep = _collector()
    unsubscribe = signaler.subscribe(on_signal)
    signaler.subscribe(keep)
    unsubscribe()
    signaler.signal("exec-2")
    assert kept_arrived.wait(timeout=5)
    assert kept == [WakeSignal("exec-2", None)]
    assert received == []


def test_a_failing_subscriber_does_not_stop_others(signaler: WakeSignaler) -> None:
    def broken(_: WakeSignal) -> None:
        raise RuntimeError("subscriber bug")

    received, arrived, on_signal = _collector()
    signaler.subscribe(broken)
    signaler.subscribe(on_signal)
    signaler.signal("exec-3")
    assert arrived.wait(timeout=5)
    assert received == [WakeSignal("exec-3", None)]


def test_redis_close_returns_while_signals_are_being_delivered(
    redis_client: Any, redis_prefix: str
) -> None:
    # close() used to hold the subscriber lock while redis-py's stop() joined the listener
    # thread, which could be waiting for that very lock to deliver a signal: a deadlock,
    # hit by a close() that lands mid-delivery. Flood deliveries and close, twenty times.
    from flowmonkey_celery.coordination.redis import RedisWakeSignaler

    for round_number in range(20):
        signaler = RedisWakeSignaler(redis_client, prefix=f"{redis_prefix}:{round_number}")
        delivered = threading.Event()
        signaler.subscribe(lambda _, arrived=delivered: arrived.set())
        for n in range(200):
            signaler.signal(f"exec-{n}")
        assert delivered.wait(timeout=5)
        closer = threading.Thread(target=signaler.close, daemon=True)
        closer.start()
        closer.join(timeout=10)
        assert not closer.is_alive(), f"close() deadlocked with the listener (round {round_number})"


def test_redis_a_subscriber_may_close_the_signaler_from_its_callback(
    redis_client: Any, redis_prefix: str
) -> None:
    from flowmonkey_celery.coordination.redis import RedisWakeSignaler

    signaler = RedisWakeSignaler(redis_client, prefix=redis_prefix)
    closed = threading.Event()

    def close_on_signal(_: WakeSignal) -> None:
        signaler.close()
        closed.set()

    signaler.subscribe(close_on_signal)
    signaler.signal("bye")
    assert closed.wait(timeout=5), "close() inside a callback raised or hung"
