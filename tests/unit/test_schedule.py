"""Cron schedule triggers: which slot is due (time zones, daylight saving, registration time)
and firing it exactly once through the engine."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    Execution,
    ExecutionStatus,
    Flow,
    FlowMonkeyError,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.triggers import (
    ScheduleTrigger,
    TriggerFire,
    fire_due_schedules,
    latest_slot,
    validate_cron,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def local(zone: ZoneInfo, *parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=zone, fold=fold).astimezone(UTC)  # type: ignore[misc]


def trigger(schedule: str, **fields: Any) -> ScheduleTrigger:
    return ScheduleTrigger(id=fields.pop("id", "t"), flow_id="report", schedule=schedule, **fields)


def slots_between(
    t: ScheduleTrigger, start: datetime, end: datetime, step: timedelta
) -> list[datetime]:
    """Every distinct slot a beat ticking every `step` from `start` to `end` would see."""
    seen: list[datetime] = []
    now = start
    while now <= end:
        slot = latest_slot(t, now)
        if slot is not None and slot >= start and (not seen or seen[-1] != slot):
            seen.append(slot)
        now += step
    return seen


# -- latest_slot: plain schedules -------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        ("* * * * *", utc(2026, 1, 5, 9, 5, 30), utc(2026, 1, 5, 9, 5)),
        ("* * * * *", utc(2026, 1, 5, 9, 5), utc(2026, 1, 5, 9, 5)),  # a slot at `now` is due
        ("*/15 * * * *", utc(2026, 1, 5, 9, 44, 59), utc(2026, 1, 5, 9, 30)),
        ("0 9 * * *", utc(2026, 1, 5, 8, 59, 59), utc(2026, 1, 4, 9)),
        ("0 9 * * 1-5", utc(2026, 1, 11, 12), utc(2026, 1, 9, 9)),  # Sunday: Friday's slot
        ("@hourly", utc(2026, 1, 5, 9, 59), utc(2026, 1, 5, 9)),
    ],
)
def test_latest_slot_is_the_most_recent_slot_at_or_before_now(
    schedule: str, now: datetime, expected: datetime
) -> None:
    assert latest_slot(trigger(schedule), now) == expected


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        ("* * * * * *", utc(2026, 1, 5, 9, 0, 7, 250000), utc(2026, 1, 5, 9, 0, 7)),
        ("* * * * * *", utc(2026, 1, 5, 9, 0, 8), utc(2026, 1, 5, 9, 0, 8)),
        ("* * * * * */10", utc(2026, 1, 5, 9, 0, 27), utc(2026, 1, 5, 9, 0, 20)),
        ("30 9 * * * 15", utc(2026, 1, 5, 9, 31), utc(2026, 1, 5, 9, 30, 15)),
    ],
)
def test_a_sixth_field_schedules_seconds(schedule: str, now: datetime, expected: datetime) -> None:
    assert latest_slot(trigger(schedule), now) == expected


def test_every_second_schedule_has_a_slot_each_second() -> None:
    t = trigger("* * * * * *")

    seen = slots_between(t, T0, T0 + timedelta(seconds=10), timedelta(milliseconds=250))

    assert seen == [T0 + timedelta(seconds=n) for n in range(11)]


def test_slots_are_utc_instants() -> None:
    slot = latest_slot(trigger("0 9 * * *", timezone="Europe/Berlin"), utc(2026, 1, 5, 12))

    assert slot == utc(2026, 1, 5, 8)
    assert slot is not None and slot.utcoffset() == timedelta(0)


def test_slots_before_the_trigger_was_created_never_count() -> None:
    t = trigger("* * * * *", created_at=utc(2026, 1, 5, 9, 0, 30))

    assert latest_slot(t, utc(2026, 1, 5, 9, 0, 30)) is None
    assert latest_slot(t, utc(2026, 1, 5, 9, 0, 59)) is None
    assert latest_slot(t, utc(2026, 1, 5, 9, 1)) == utc(2026, 1, 5, 9, 1)


def test_a_trigger_created_exactly_on_a_slot_fires_that_slot() -> None:
    t = trigger("0 9 * * *", created_at=T0)

    assert latest_slot(t, T0 + timedelta(seconds=5)) == T0


def test_a_daily_trigger_created_after_todays_slot_waits_for_tomorrow() -> None:
    t = trigger("0 9 * * *", created_at=utc(2026, 1, 5, 10))

    assert latest_slot(t, utc(2026, 1, 5, 23)) is None
    assert latest_slot(t, utc(2026, 1, 6, 9)) == utc(2026, 1, 6, 9)


def test_an_expression_that_never_matches_has_no_slot() -> None:
    assert latest_slot(trigger("0 0 30 2 *"), T0) is None


def test_latest_slot_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        latest_slot(trigger("* * * * *"), datetime(2026, 1, 5, 9))


# -- latest_slot: time zones and daylight saving ------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "before", "after"),
    [
        # New York springs forward on 8 March 2026 and falls back on 1 November.
        (NEW_YORK, (2026, 3, 7), (2026, 3, 9)),
        (NEW_YORK, (2026, 10, 31), (2026, 11, 2)),
        # Berlin springs forward on 29 March 2026 and falls back on 25 October.
        (BERLIN, (2026, 3, 28), (2026, 3, 30)),
        (BERLIN, (2026, 10, 24), (2026, 10, 26)),
    ],
    ids=["new-york-spring", "new-york-fall", "berlin-spring", "berlin-fall"],
)
def test_nine_am_stays_nine_am_local_across_the_change(
    zone: ZoneInfo, before: tuple[int, int, int], after: tuple[int, int, int]
) -> None:
    t = trigger("0 9 * * *", timezone=zone.key)
    start = local(zone, *before, 0, 0)
    end = local(zone, *after, 23, 59)

    seen = slots_between(t, start, end, timedelta(minutes=30))

    assert len(seen) == 3  # the day before, the day of the change, the day after
    assert [s.astimezone(zone).hour for s in seen] == [9, 9, 9]
    assert [s.astimezone(zone).minute for s in seen] == [0, 0, 0]
    # ...which is a different UTC hour on either side of the change.
    assert seen[0].hour != seen[2].hour


@pytest.mark.parametrize(
    ("zone", "day", "fires_at"),
    [
        (NEW_YORK, (2026, 3, 8), utc(2026, 3, 8, 7)),  # 03:00 EDT, the moment 02:00 became 03:00
        (BERLIN, (2026, 3, 29), utc(2026, 3, 29, 1)),  # 03:00 CEST
    ],
    ids=["new-york", "berlin"],
)
def test_a_slot_skipped_by_spring_forward_fires_once_at_the_jump(
    zone: ZoneInfo, day: tuple[int, int, int], fires_at: datetime
) -> None:
    t = trigger("30 2 * * *", timezone=zone.key)
    start = local(zone, *day, 0, 0)

    seen = slots_between(t, start, start + timedelta(hours=23), timedelta(minutes=1))

    assert seen == [fires_at]
    assert fires_at.astimezone(zone).strftime("%H:%M") == "03:00"
    # and on the next day it is back at 02:30
    next_day = latest_slot(t, start + timedelta(days=1, hours=23))
    assert next_day is not None and next_day.astimezone(zone).strftime("%H:%M") == "02:30"


def test_a_fixed_time_in_the_repeated_hour_fires_once_on_fall_back() -> None:
    t = trigger("30 1 * * *", timezone="America/New_York")
    first_pass = local(NEW_YORK, 2026, 11, 1, 1, 30)  # 05:30 UTC, EDT
    second_pass = local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1)  # 06:30 UTC, EST

    seen = slots_between(t, utc(2026, 11, 1, 0), utc(2026, 11, 1, 12), timedelta(minutes=1))

    assert seen == [first_pass]
    assert latest_slot(t, second_pass + timedelta(minutes=5)) == first_pass


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        (NEW_YORK, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 7, 30)),
        (BERLIN, utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 30)),
    ],
    ids=["new-york", "berlin"],
)
def test_a_per_minute_schedule_keeps_firing_through_the_repeated_hour(
    zone: ZoneInfo, start: datetime, end: datetime
) -> None:
    t = trigger("* * * * *", timezone=zone.key)

    seen = slots_between(t, start, end, timedelta(seconds=20))

    assert seen == [start + timedelta(minutes=n) for n in range(181)]


def test_an_hourly_schedule_fires_each_real_hour_on_fall_back() -> None:
    t = trigger("0 * * * *", timezone="America/New_York")

    seen = slots_between(t, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 8), timedelta(minutes=1))

    assert seen == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 7),
        utc(2026, 11, 1, 8),
    ]
    assert [s.astimezone(NEW_YORK).hour for s in seen] == [1, 1, 2, 3]


def test_in_the_second_pass_the_first_pass_slot_still_counts() -> None:
    t = trigger("45 1 * * *", timezone="America/New_York")
    second_pass_0135 = local(NEW_YORK, 2026, 11, 1, 1, 35, fold=1)

    assert latest_slot(t, second_pass_0135) == local(NEW_YORK, 2026, 11, 1, 1, 45)  # EDT


@pytest.mark.parametrize("schedule", ["45 1 * * *", "*/20 * * * *", "30 2 * * *", "0 * * * *"])
@pytest.mark.parametrize(
    ("zone", "night"),
    [
        (NEW_YORK, utc(2026, 3, 8, 4)),
        (NEW_YORK, utc(2026, 11, 1, 3)),
        (BERLIN, utc(2026, 3, 28, 23)),
        (BERLIN, utc(2026, 10, 24, 22)),
    ],
)
def test_the_latest_slot_never_moves_backwards_through_a_dst_night(
    schedule: str, zone: ZoneInfo, night: datetime
) -> None:
    t = trigger(schedule, timezone=zone.key)
    previous = latest_slot(t, night)

    for minute in range(1, 6 * 60):
        now = night + timedelta(minutes=minute)
        slot = latest_slot(t, now)
        assert slot is not None and previous is not None
        assert previous <= slot <= now, f"at {now}: {previous} then {slot}"
        previous = slot


def test_a_per_minute_schedule_skips_no_real_minute_on_spring_forward() -> None:
    t = trigger("* * * * *", timezone="America/New_York")
    start = utc(2026, 3, 8, 6, 30)

    seen = slots_between(t, start, start + timedelta(hours=1), timedelta(seconds=20))

    assert seen == [start + timedelta(minutes=n) for n in range(61)]


# -- validate_cron ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr", ["0 9 * * *", "*/5 * * * *", "0 9 * * 1-5", "* * * * * *", "0 0 1 1 *", "@daily"]
)
def test_valid_cron_expressions_pass(expr: str) -> None:
    validate_cron(expr)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("61 * * * *", "out of range"),
        ("* * *", "columns"),
        ("every day at nine", "columns"),
        ("0 0 30 2 *", "never fires"),
        ("", "needs a cron expression"),
    ],
)
def test_invalid_cron_expressions_are_refused_with_a_reason(expr: str, reason: str) -> None:
    with pytest.raises(FlowMonkeyError) as caught:
        validate_cron(expr)

    assert caught.value.code == ErrorCode.INVALID_ARGUMENT
    assert reason in caught.value.message
    if expr:
        assert repr(expr) in caught.value.message


def test_latest_slot_of_an_invalid_expression_raises_invalid_argument() -> None:
    with pytest.raises(FlowMonkeyError) as caught:
        latest_slot(trigger("61 * * * *"), T0)

    assert caught.value.code == ErrorCode.INVALID_ARGUMENT


# -- fire_due_schedules -------------------------------------------------------------------------


class Beat:
    """An engine on a MemoryStore with flow `report` (one step) and a dispatch recorder."""

    def __init__(self) -> None:
        self.clock = ManualClock(T0)
        self.store = MemoryStore()
        flows = FlowRegistry()
        flows.register(
            Flow.from_dict(
                {
                    "id": "report",
                    "initialStepId": "build",
                    "steps": {"build": {"type": "build", "outputKey": "report"}},
                }
            )
        )

        @handler("build")
        def build(params: HandlerParams) -> StepResult:
            return Result.success({"built_for": params.context["trigger"]["scheduled_for"]})

        self.engine = Engine(self.store, HandlerRegistry([build]), flows, clock=self.clock)
        self.dispatched: list[Execution] = []

    def add(self, schedule: str, **fields: Any) -> ScheduleTrigger:
        return self.store.save_trigger(trigger(schedule, **fields), self.clock.now())

    def tick(self, now: datetime) -> list[TriggerFire]:
        self.clock.set(now)
        return fire_due_schedules(self.engine, self.store, now, dispatch=self.dispatched.append)

    def executions(self) -> list[Execution]:
        return self.store.list_executions(limit=1000)


@pytest.fixture
def beat() -> Iterator[Beat]:
    yield Beat()


def test_a_due_slot_fires_one_execution(beat: Beat) -> None:
    beat.add("* * * * *", static_context={"reportType": "minutely"})

    fires = beat.tick(T0 + timedelta(minutes=1, seconds=3))

    (execution,) = beat.executions()
    assert fires == [
        TriggerFire(
            trigger_id="t",
            scheduled_for=T0 + timedelta(minutes=1),
            execution_id=execution.id,
            fired_at=T0 + timedelta(minutes=1, seconds=3),
        )
    ]
    assert execution.flow_id == "report"
    assert execution.status is ExecutionStatus.PENDING
    assert beat.store.last_fire("t") == fires[0]


def test_the_same_slot_never_fires_twice(beat: Beat) -> None:
    beat.add("* * * * *")
    now = T0 + timedelta(minutes=1, seconds=3)
    beat.tick(now)

    assert beat.tick(now) == []
    assert beat.tick(now + timedelta(seconds=30)) == []
    assert len(beat.executions()) == 1
    assert len(beat.dispatched) == 1


def test_each_fire_is_in_the_triggers_history_and_stats_once(beat: Beat) -> None:
    beat.add("* * * * *")
    for seconds in (63, 63, 90, 125):  # slots 09:01 (three ticks) and 09:02
        beat.tick(T0 + timedelta(seconds=seconds))

    history = beat.store.list_trigger_fires("t", limit=10)
    executions = {e.id for e in beat.executions()}
    assert len(history) == 2
    assert {record.status for record in history} == {"accepted"}
    assert {record.execution_id for record in history} == executions
    stats = beat.store.trigger_stats("t")
    assert (stats.fires, stats.accepted) == (2, 2)


def test_each_new_slot_fires_once(beat: Beat) -> None:
    beat.add("* * * * *")

    fired = [len(beat.tick(T0 + timedelta(seconds=s))) for s in range(0, 181, 15)]

    assert sum(fired) == 4  # 09:00 (created then), 09:01, 09:02, 09:03
    slots = sorted(e.context["trigger"]["scheduled_for"] for e in beat.executions())
    assert slots == [(T0 + timedelta(minutes=m)).isoformat() for m in range(4)]


def test_after_downtime_only_the_latest_missed_slot_fires(beat: Beat) -> None:
    beat.add("* * * * *")
    beat.tick(T0)

    fires = beat.tick(T0 + timedelta(minutes=10, seconds=42))

    assert [f.scheduled_for for f in fires] == [T0 + timedelta(minutes=10)]
    assert len(beat.executions()) == 2  # 09:00 and 09:10, no burst for 09:01..09:09


def test_a_disabled_trigger_never_fires(beat: Beat) -> None:
    beat.add("* * * * *", enabled=False)

    fired = [beat.tick(T0 + timedelta(minutes=m)) for m in range(5)]

    assert fired == [[]] * 5
    assert beat.executions() == []
    assert beat.store.last_fire("t") is None


def test_a_trigger_fires_nothing_before_its_first_slot(beat: Beat) -> None:
    beat.clock.set(T0 + timedelta(seconds=30))
    beat.add("* * * * *")

    assert beat.tick(T0 + timedelta(seconds=59)) == []
    assert len(beat.tick(T0 + timedelta(minutes=1))) == 1


def test_ticks_after_a_fire_leave_the_execution_untouched(beat: Beat) -> None:
    beat.add("0 9 * * *")
    (fire,) = beat.tick(T0)
    assert fire.execution_id is not None
    history = beat.engine.history(fire.execution_id)

    for seconds in range(10, 600, 10):
        beat.tick(T0 + timedelta(seconds=seconds))

    assert beat.engine.history(fire.execution_id) == history  # no idempotency.hit per tick


def test_the_execution_gets_static_context_and_trigger_details(beat: Beat) -> None:
    beat.add("0 9 * * *", static_context={"reportType": "daily", "trigger": "overridden"})
    now = T0 + timedelta(seconds=2)

    beat.tick(now)

    (execution,) = beat.executions()
    assert execution.context == {
        "reportType": "daily",
        "trigger": {"id": "t", "scheduled_for": T0.isoformat(), "fired_at": now.isoformat()},
    }
    assert execution.metadata == {"trigger_id": "t"}
    assert execution.idempotency_key == f"trigger:t:{T0.isoformat()}"
    assert execution.idempotency_expires_at == now + timedelta(days=7)


def test_the_fired_execution_runs_to_completion(beat: Beat) -> None:
    beat.add("0 9 * * *")
    (fire,) = beat.tick(T0)
    assert fire.execution_id is not None

    done = beat.engine.run(fire.execution_id)

    assert done.status is ExecutionStatus.COMPLETED
    assert done.context["report"] == {"built_for": T0.isoformat()}


def test_dispatch_receives_each_new_execution(beat: Beat) -> None:
    beat.add("* * * * *")

    beat.tick(T0)
    beat.tick(T0 + timedelta(minutes=1))

    assert [e.id for e in beat.dispatched] == [e.id for e in beat.executions()]
    assert all(e.status is ExecutionStatus.PENDING for e in beat.dispatched)


def test_dispatch_is_skipped_when_another_beat_already_created_the_execution(beat: Beat) -> None:
    beat.add("0 9 * * *")
    other = beat.engine.create(
        "report", {}, idempotency_key=f"trigger:t:{T0.isoformat()}", idempotency_ttl=3600
    )

    fires = beat.tick(T0 + timedelta(seconds=1))

    assert beat.dispatched == []
    assert [f.execution_id for f in fires] == [other.execution.id]
    assert len(beat.executions()) == 1


def test_a_slot_already_recorded_elsewhere_is_not_reported_again(beat: Beat) -> None:
    beat.add("0 9 * * *")
    beat.tick(T0)
    # A second beat with its own view of the schedule state, same store: nothing to do.
    second = fire_due_schedules(beat.engine, beat.store, T0 + timedelta(seconds=1))

    assert second == []
    assert len(beat.executions()) == 1


def test_a_beat_that_died_before_recording_the_fire_is_recovered_without_a_duplicate(
    beat: Beat,
) -> None:
    beat.add("0 9 * * *")
    # The dead beat created the execution (same key) but never recorded the fire.
    created = beat.engine.create(
        "report", {}, idempotency_key=f"trigger:t:{T0.isoformat()}", idempotency_ttl=3600
    )

    (fire,) = beat.tick(T0 + timedelta(minutes=1))

    assert fire.execution_id == created.execution.id
    assert fire.scheduled_for == T0
    assert len(beat.executions()) == 1


def test_several_triggers_fire_independently(beat: Beat) -> None:
    beat.add("* * * * *", id="minutely")
    beat.add("*/5 * * * *", id="five")
    beat.add("0 10 * * *", id="ten-o-clock")

    fires = beat.tick(T0 + timedelta(minutes=5))

    assert sorted((f.trigger_id, f.scheduled_for) for f in fires) == [
        ("five", T0 + timedelta(minutes=5)),
        ("minutely", T0 + timedelta(minutes=5)),
    ]


def test_a_broken_trigger_does_not_stop_the_others(
    beat: Beat, caplog: pytest.LogCaptureFixture
) -> None:
    beat.store.save_trigger(
        ScheduleTrigger(id="a-missing-flow", flow_id="nope", schedule="* * * * *"), T0
    )
    beat.add("61 * * * *", id="b-bad-cron")
    beat.add("* * * * *", id="c-good")

    with caplog.at_level(logging.ERROR):
        fires = beat.tick(T0 + timedelta(minutes=1))

    assert [f.trigger_id for f in fires] == ["c-good"]
    assert "a-missing-flow" in caplog.text and "FLOW_NOT_FOUND" in caplog.text
    assert "b-bad-cron" in caplog.text and "INVALID_ARGUMENT" in caplog.text


def test_a_daily_new_york_trigger_fires_at_nine_local_every_day_across_dst(beat: Beat) -> None:
    beat.clock.set(utc(2026, 3, 6))
    beat.add("0 9 * * *", timezone="America/New_York")

    now = utc(2026, 3, 6)
    while now <= utc(2026, 3, 10, 23):
        beat.tick(now)
        now += timedelta(minutes=20)

    fired = sorted(
        datetime.fromisoformat(e.context["trigger"]["scheduled_for"]) for e in beat.executions()
    )
    assert [f.astimezone(NEW_YORK).strftime("%d %H:%M") for f in fired] == [
        "06 09:00",
        "07 09:00",
        "08 09:00",
        "09 09:00",
        "10 09:00",
    ]
    assert [f.hour for f in fired] == [14, 14, 13, 13, 13]


def test_fire_due_schedules_refuses_a_naive_now(beat: Beat) -> None:
    beat.add("* * * * *")

    with pytest.raises(ValueError, match="timezone-aware"):
        fire_due_schedules(beat.engine, beat.store, datetime(2026, 1, 5, 9, 1))
