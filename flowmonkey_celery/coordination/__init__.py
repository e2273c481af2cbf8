"""Coordination between processes (locks, wake signals): Redis in production, in-memory twins
for tests and single-process use. Redis is never the source of truth."""

from flowmonkey_celery.coordination.memory import InMemoryLockManager, InMemoryWakeSignaler

__all__ = ["InMemoryLockManager", "InMemoryWakeSignaler"]
