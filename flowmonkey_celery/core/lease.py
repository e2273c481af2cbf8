"""The lease heartbeat: while a handler runs, its execution's lease keeps moving forward.

A pending or running execution whose lease expires is presumed stalled (its worker died, its
message was lost) and re-sent. Without a heartbeat, a step that simply runs longer than the
lease would be re-sent and run a second time alongside itself. One daemon thread per process
serves every handler running in it: registering a running step is a dict insert, so a step
that finishes quickly costs nothing more.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from flowmonkey_celery.core.clock import Clock
from flowmonkey_celery.core.ports import Store

log = logging.getLogger("flowmonkey_celery.lease")

# Re-sends of one stalled version back off up to this many leases apart (5 minutes at the
# default 30 s lease): see `resend_lease`.
RESEND_BACKOFF_LEASES = 10


def resend_lease(committed_at: datetime, now: datetime, lease: timedelta) -> timedelta:
    """How long an execution re-sent as stalled at `now` is left before it may be re-sent
    again: one lease at first, then as long as it has gone without progress since its version
    was committed at `committed_at`, at most RESEND_BACKOFF_LEASES leases.

    A message that is merely queued behind a deep backlog looks stalled too. Re-sent at a fixed
    lease, each such execution would add a duplicate to the backlog every lease (harmless,
    dropped as stale, but work); spaced this way they come after 1, 2, 4, 8... leases, so a
    backlog of any depth adds a handful, while a dead worker's step is still re-sent after one.
    """
    return max(lease, min(now - committed_at, lease * RESEND_BACKOFF_LEASES))


@dataclass
class _Running:
    execution_id: str
    version: int
    allowed: timedelta  # the step's timeout_ms, which its lease also covers
    last_beat: float  # time.monotonic() of the registration or the last extension


class LeaseKeeper:
    """Extends the lease of every step running in this process every third of a lease."""

    def __init__(self, store: Store, clock: Clock, lease: timedelta) -> None:
        self.store = store
        self.clock = clock
        self.lease = lease
        self.period = lease.total_seconds() / 3
        self._running: dict[int, _Running] = {}
        self._tokens = itertools.count()
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0  # threads do not survive a fork: a pool process starts its own

    @contextmanager
    def running(self, execution_id: str, version: int, allowed: timedelta) -> Iterator[None]:
        """Keep the lease of `execution_id` (at `version`) alive for the duration of the block."""
        token = next(self._tokens)
        with self._mutex:
            self._running[token] = _Running(execution_id, version, allowed, time.monotonic())
            self._ensure_thread()
        try:
            yield
        finally:
            with self._mutex:
                self._running.pop(token, None)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._beat, name="flowmonkey-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while True:
            time.sleep(self.period / 2)
            now = time.monotonic()
            with self._mutex:
                due = [(t, r) for t, r in self._running.items() if now - r.last_beat >= self.period]
            for token, running in due:
                self._extend(token, running)

    def _extend(self, token: int, running: _Running) -> None:
        until = self.clock.now() + self.lease + running.allowed
        try:
            alive = self.store.extend_lease(
                running.execution_id, expected_version=running.version, until=until
            )
        except Exception:  # the store is down for now: try again next period
            log.warning("could not extend the lease of %s", running.execution_id, exc_info=True)
            return
        with self._mutex:
            if not alive:  # it moved on (cancelled, say): the step's own save will say so
                self._running.pop(token, None)
            elif token in self._running:
                running.last_beat = time.monotonic()
