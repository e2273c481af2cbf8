"""Cron schedule triggers: which slot is due, and firing it exactly once.

Beat's tick calls `fire_due_schedules(engine, store, now)`. Each enabled schedule trigger fires
at most its most recent slot (after downtime: the latest missed slot, once, never a burst).
Two beats firing the same slot make one execution: the create carries the idempotency key
`trigger:<id>:<slot>` and the store records the fire under a unique
`(trigger_id, scheduled_for)`.

Slots are wall-clock times in the trigger's time zone, each stored as a UTC instant:

* a wall time skipped by a daylight-saving jump (02:30 on a spring-forward night) fires once,
  at the jump (03:00 local), like cron does;
* a wall time that happens twice (01:30 on a fall-back night) fires once, at its first
  occurrence, unless the minute or hour field starts with `*`: then the expression is about
  the passing of time, and it keeps firing through the repeated hour (cron's rule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.ports import TriggerStore
from flowmonkey_celery.core.triggers import (
    SCHEDULE,
    ScheduleTrigger,
    TriggerFire,
    TriggerFireRecord,
)
from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError, StoreError

log = logging.getLogger(__name__)

FIRE_IDEMPOTENCY_TTL = timedelta(days=7)
_TICK = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)
_EPOCH = datetime(2000, 1, 1)  # parsing needs a start time; never the wall clock
# A backwards scan past this many slots means the expression never matches near `now`.
_MAX_SCAN = 100_000


def validate_cron(expr: str) -> None:
    """Check a cron expression: 5 fields, or 6 with seconds last, that matches some date.

    Raises:
        FlowMonkeyError: INVALID_ARGUMENT with croniter's reason.
    """
    _parse(expr)
    try:
        croniter(expr, _EPOCH).get_next(datetime)
    except CroniterBadDateError:
        raise FlowMonkeyError(
            f"cron expression {expr!r} never fires: no date matches it (e.g. 30 February)",
            ErrorCode.INVALID_ARGUMENT,
            {"schedule": expr, "reason": "no matching date"},
        ) from None


def _parse(expr: str) -> list[str]:
    """The expression's fields (aliases such as @hourly expanded)."""
    if not isinstance(expr, str) or not expr.strip():
        raise FlowMonkeyError(
            "a schedule needs a cron expression such as '0 9 * * *'",
            ErrorCode.INVALID_ARGUMENT,
            {"schedule": expr},
        )
    try:
        fields = croniter(expr, _EPOCH).expressions
    except CroniterError as exc:
        raise FlowMonkeyError(
            f"invalid cron expression {expr!r}: {exc}",
            ErrorCode.INVALID_ARGUMENT,
            {"schedule": expr, "reason": str(exc)},
        ) from None
    return [str(field) for field in fields]


def latest_slot(trigger: ScheduleTrigger, now: datetime) -> datetime | None:
    """The most recent slot of the trigger's schedule at or before `now`, as a UTC instant.

    Computed on wall-clock time in `trigger.timezone` (see the module notes for daylight-
    saving days). Slots before `trigger.created_at` never count: a trigger registered at
    09:00:30 with `* * * * *` first fires the 09:01 slot.

    Returns:
        The slot, or None if there is none yet (or the expression never matches).

    Raises:
        FlowMonkeyError: INVALID_ARGUMENT for an invalid cron expression.
    """
    fields = _parse(trigger.schedule)
    now = ensure_aware(now, "now")
    tz = trigger.zoneinfo
    every_pass = fields[0].startswith("*") or fields[1].startswith("*")
    local_now = now.astimezone(tz)
    start = local_now.replace(tzinfo=None)
    if local_now.fold == 1 and _is_ambiguous(start, tz):
        # In the repeated hour's second pass: its first pass (later wall times) already happened.
        start += _offset(start, tz, 0) - _offset(start, tz, 1)

    walls = croniter(trigger.schedule, start + _TICK)  # get_prev is exclusive: include `start`
    best: datetime | None = None
    try:
        for _ in range(_MAX_SCAN):
            wall = walls.get_prev(datetime)
            instants = _instants(wall, tz, every_pass)
            due = [instant for instant in instants if instant <= now]
            if due and (best is None or max(due) > best):
                best = max(due)
            # Slot instants never decrease as wall time increases, so once this wall's
            # latest instant is no later than the best found, earlier walls cannot beat it.
            if best is not None and max(instants) <= best:
                break
    except CroniterBadDateError:  # no earlier match at all (e.g. "0 0 30 2 *")
        pass
    if best is None or (trigger.created_at is not None and best < trigger.created_at):
        return None
    return best


def _offset(wall: datetime, tz: ZoneInfo, fold: int) -> timedelta:
    offset = wall.replace(tzinfo=tz, fold=fold).utcoffset()
    assert offset is not None
    return offset


def _is_ambiguous(wall: datetime, tz: ZoneInfo) -> bool:
    return _offset(wall, tz, 0) > _offset(wall, tz, 1)


def _instants(wall: datetime, tz: ZoneInfo, every_pass: bool) -> list[datetime]:
    """The UTC instants at which a naive local wall time fires."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first < second:  # the wall time happens twice (fold 0 is the earlier pass)
        return [first, second] if every_pass else [first]
    # Skipped by a jump forward: fold 1 reads it with the new offset (an instant before the
    # jump), fold 0 with the old one (after it). Fire at the jump itself.
    return [_transition(tz, before=second, after=first)]


def _transition(tz: ZoneInfo, *, before: datetime, after: datetime) -> datetime:
    """The first instant in (before, after] with the offset `after` has (time zone
    transitions fall on whole seconds)."""
    target = after.astimezone(tz).utcoffset()
    while after - before > _SECOND:
        middle = before + (after - before) / 2
        middle = middle.replace(microsecond=0)
        if middle <= before:
            break
        if middle.astimezone(tz).utcoffset() == target:
            after = middle
        else:
            before = middle
    return after


def fire_due_schedules(
    engine: Engine,
    triggers_store: TriggerStore,
    now: datetime,
    *,
    dispatch: Callable[[Execution], Any] | None = None,
    around_fire: Callable[[ScheduleTrigger, datetime], AbstractContextManager[Any]] | None = None,
) -> list[TriggerFire]:
    """Start an execution for every enabled schedule trigger whose latest slot has not fired.

    For each such trigger: `engine.create(flow_id, {**static_context, "trigger": {id,
    scheduled_for, fired_at}}, idempotency_key="trigger:<id>:<slot iso>", metadata=
    {"trigger_id": id})`, then `triggers_store.record_fire(...)`, then `dispatch(execution)`
    if the execution is new (another process may have created it first). Safe to call from
    several processes at once: each slot gets one execution and one recorded fire.
    `around_fire(trigger, slot)`, if given, is entered around each fire (tracing makes it a
    span, so that the execution started is in the fire's trace).

    A trigger that cannot fire (an unknown flow, an invalid cron expression) is logged and
    skipped, so it never blocks the others; store errors propagate.

    Returns:
        The fires this call recorded (across concurrent callers, each slot is in exactly one
        caller's list).
    """
    now = ensure_aware(now, "now")
    recorded: list[TriggerFire] = []
    for trigger in triggers_store.list_triggers(enabled_only=True, trigger_type=SCHEDULE):
        if not isinstance(trigger, ScheduleTrigger) or not trigger.enabled:
            continue
        try:
            fire = _fire_if_due(engine, triggers_store, trigger, now, dispatch, around_fire)
        except StoreError:
            raise
        except FlowMonkeyError as exc:
            log.error("schedule trigger %r could not fire: %s", trigger.id, exc)
            continue
        if fire is not None:
            recorded.append(fire)
    return recorded


def _fire_if_due(
    engine: Engine,
    triggers_store: TriggerStore,
    trigger: ScheduleTrigger,
    now: datetime,
    dispatch: Callable[[Execution], Any] | None,
    around_fire: Callable[[ScheduleTrigger, datetime], AbstractContextManager[Any]] | None = None,
) -> TriggerFire | None:
    slot = latest_slot(trigger, now)
    if slot is None:
        return None
    last = triggers_store.last_fire(trigger.id)
    if last is not None and last.scheduled_for >= slot:
        return None
    with around_fire(trigger, slot) if around_fire is not None else nullcontext():
        return _fire(engine, triggers_store, trigger, slot, now, dispatch)


def _fire(
    engine: Engine,
    triggers_store: TriggerStore,
    trigger: ScheduleTrigger,
    slot: datetime,
    now: datetime,
    dispatch: Callable[[Execution], Any] | None,
) -> TriggerFire | None:
    # Create first, record second: a process that dies in between leaves the slot unrecorded,
    # and the next tick's create finds the execution by its idempotency key.
    context = {
        **trigger.static_context,
        "trigger": {
            "id": trigger.id,
            "scheduled_for": slot.isoformat(),
            "fired_at": now.isoformat(),
        },
    }
    result = engine.create(
        trigger.flow_id,
        context,
        idempotency_key=f"trigger:{trigger.id}:{slot.isoformat()}",
        idempotency_ttl=FIRE_IDEMPOTENCY_TTL,
        metadata={"trigger_id": trigger.id},
    )
    fire = TriggerFire(
        trigger_id=trigger.id,
        scheduled_for=slot,
        execution_id=result.execution.id,
        fired_at=now,
    )
    is_recorded = triggers_store.record_fire(fire)
    if is_recorded:
        # The slot's one fire (another beat that raced for it records nothing), in the same
        # history the dashboard and `triggers show` read for webhooks and events.
        triggers_store.record_trigger_fire(
            TriggerFireRecord.new(
                trigger.id,
                now,
                "accepted" if result.created else "duplicate",
                execution_id=result.execution.id,
            )
        )
    if result.created and dispatch is not None:
        dispatch(result.execution)
    return fire if is_recorded else None
