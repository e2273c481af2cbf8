"""Injected time. Logic never reads the wall clock directly, so tests and `simulate_time`
never sleep."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Anything with `now()` returning a timezone-aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def ensure_aware(moment: datetime, what: str = "datetime") -> datetime:
    """Return `moment` in UTC; refuse naive datetimes, whose zone would be a guess.

    Raises:
        ValueError: `moment` has no tzinfo.
    """
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise ValueError(
            f"{what} must be timezone-aware (got naive {moment.isoformat()}); "
            "use datetime.now(UTC) or attach a tzinfo"
        )
    return moment.astimezone(UTC)


def as_timedelta(value: timedelta | float | int, what: str = "duration") -> timedelta:
    """Accept a timedelta or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a timedelta or a number of seconds, not {value!r}")
    return timedelta(seconds=value)


class ManualClock:
    """A clock that moves only when told to. Thread-safe.

    Args:
        start: the initial instant (timezone-aware); defaults to the current time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = ensure_aware(start, "start") if start is not None else datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, by: timedelta | float | int) -> datetime:
        """Move forward by a timedelta or a number of seconds; returns the new time."""
        delta = as_timedelta(by, "advance()")
        if delta < timedelta(0):
            raise ValueError("ManualClock cannot move backwards; use set() to jump explicitly")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> datetime:
        """Jump to an exact instant (timezone-aware)."""
        with self._lock:
            self._now = ensure_aware(moment, "set()")
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"


class OffsetClock:
    """Another clock shifted by a fixed offset: lets a drill or an end-to-end test run worker
    and beat processes "an hour later" without waiting an hour."""

    def __init__(self, offset: timedelta | float | int, base: Clock | None = None) -> None:
        self.offset = as_timedelta(offset, "offset")
        self.base = base or SystemClock()

    def now(self) -> datetime:
        return self.base.now() + self.offset
