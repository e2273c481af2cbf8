"""The TriggerStore contract: triggers and their fires, on every backend (memory, SQLite,
PostgreSQL) through the `store` fixture of tests/contract/conftest.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from flowmonkey_celery.core.ports import TriggerStore
from flowmonkey_celery.core.triggers import ScheduleTrigger, TriggerFire

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
R = TypeVar("R")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_trigger(trigger_id: str = "daily-report", **fields: Any) -> ScheduleTrigger:
    values: dict[str, Any] = {
        "id": trigger_id,
        "name": "Daily Report",
        "flow_id": "generate-report",
        "schedule": "0 9 * * *",
        "timezone": "America/New_York",
        "static_context": {"reportType": "daily", "recipients": ["a@example.com"], "n": 1.5},
    }
    return ScheduleTrigger(**{**values, **fields})


def fire(trigger_id: str = "daily-report", slot: float = 0, **fields: Any) -> TriggerFire:
    values: dict[str, Any] = {
        "trigger_id": trigger_id,
        "scheduled_for": at(slot),
        "execution_id": f"exec-{trigger_id}-{slot}",
        "fired_at": at(slot + 2),
    }
    return TriggerFire(**{**values, **fields})


def race(threads: int, work: Callable[[int], R]) -> list[R | BaseException]:
    """Run `work(i)` in `threads` threads released together; each result or raised error."""
    barrier = threading.Barrier(threads)
    results: list[R | BaseException] = [RuntimeError("did not run")] * threads

    def runner(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except BaseException as exc:
            results[index] = exc

    workers = [threading.Thread(target=runner, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return results


# -- triggers -----------------------------------------------------------------------------------


def test_saved_trigger_reads_back_with_every_field(store: TriggerStore) -> None:
    trigger = make_trigger(enabled=False)

    saved = store.save_trigger(trigger, at(5))

    assert saved == trigger.model_copy(update={"created_at": at(5), "updated_at": at(5)})
    assert store.get_trigger("daily-report") == saved


def test_stored_timestamps_are_aware_utc(store: TriggerStore) -> None:
    saved = store.save_trigger(
        make_trigger(), datetime(2026, 1, 5, 10, tzinfo=timezone(timedelta(hours=1)))
    )
    loaded = store.get_trigger("daily-report")

    for trigger in (saved, loaded):
        assert trigger is not None
        assert trigger.created_at == T0 and trigger.updated_at == T0
        assert trigger.created_at.utcoffset() == timedelta(0)
        assert trigger.updated_at.utcoffset() == timedelta(0)


def test_a_new_trigger_keeps_a_given_created_at(store: TriggerStore) -> None:
    saved = store.save_trigger(make_trigger(created_at=at(-3600)), at(5))

    assert saved.created_at == at(-3600)
    assert saved.updated_at == at(5)
    stored = store.get_trigger("daily-report")
    assert stored is not None and stored.created_at == at(-3600)


def test_saving_again_updates_the_trigger_but_keeps_created_at(store: TriggerStore) -> None:
    store.save_trigger(make_trigger(), at(0))
    changed = make_trigger(
        name="Hourly Report",
        schedule="0 * * * *",
        timezone="Europe/Berlin",
        enabled=False,
        flow_id="other-report",
        static_context={"reportType": "hourly"},
        created_at=at(999),  # an update cannot move the registration time
    )

    saved = store.save_trigger(changed, at(60))

    assert saved.created_at == at(0)
    assert saved.updated_at == at(60)
    assert store.get_trigger("daily-report") == saved
    assert saved.schedule == "0 * * * *" and saved.timezone == "Europe/Berlin"
    assert saved.static_context == {"reportType": "hourly"}
    assert saved.flow_id == "other-report" and saved.enabled is False
    assert saved.name == "Hourly Report"


def test_unknown_trigger_is_none(store: TriggerStore) -> None:
    assert store.get_trigger("nope") is None


def test_triggers_are_listed_by_id_and_filtered_by_enabled(store: TriggerStore) -> None:
    store.save_trigger(make_trigger("c-weekly", enabled=False), T0)
    store.save_trigger(make_trigger("a-daily"), T0)
    store.save_trigger(make_trigger("b-hourly"), T0)

    assert [t.id for t in store.list_triggers()] == ["a-daily", "b-hourly", "c-weekly"]
    assert [t.id for t in store.list_triggers(enabled_only=True)] == ["a-daily", "b-hourly"]
    assert store.list_triggers()[0] == store.get_trigger("a-daily")


def test_an_empty_store_lists_no_triggers(store: TriggerStore) -> None:
    assert store.list_triggers() == []
    assert store.list_triggers(enabled_only=True) == []


def test_disabling_a_trigger_removes_it_from_the_enabled_list(store: TriggerStore) -> None:
    store.save_trigger(make_trigger(), T0)

    store.save_trigger(make_trigger(enabled=False), at(1))

    assert store.list_triggers(enabled_only=True) == []
    assert [t.enabled for t in store.list_triggers()] == [False]


def test_delete_removes_the_trigger_and_its_fires(store: TriggerStore) -> None:
    store.save_trigger(make_trigger(), T0)
    store.save_trigger(make_trigger("other"), T0)
    store.record_fire(fire())
    store.record_fire(fire("other"))

    assert store.delete_trigger("daily-report") is True

    assert store.get_trigger("daily-report") is None
    assert store.last_fire("daily-report") is None
    assert [t.id for t in store.list_triggers()] == ["other"]
    assert store.last_fire("other") == fire("other")


def test_deleting_an_unknown_trigger_returns_false(store: TriggerStore) -> None:
    assert store.delete_trigger("nope") is False


def test_returned_triggers_are_copies(store: TriggerStore) -> None:
    saved = store.save_trigger(make_trigger(), T0)
    saved.static_context["reportType"] = "tampered"
    loaded = store.get_trigger("daily-report")
    assert loaded is not None
    loaded.static_context["recipients"].append("b@example.com")

    again = store.get_trigger("daily-report")

    assert again is not None
    assert again.static_context == {
        "reportType": "daily",
        "recipients": ["a@example.com"],
        "n": 1.5,
    }


def test_concurrent_saves_of_one_new_trigger_leave_one_trigger(store: TriggerStore) -> None:
    results = race(8, lambda i: store.save_trigger(make_trigger(name=f"writer {i}"), at(i)))

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    (stored,) = store.list_triggers()
    assert stored.name in {f"writer {i}" for i in range(8)}
    assert stored.created_at in {at(i) for i in range(8)}


# -- fires --------------------------------------------------------------------------------------


def test_a_slot_is_recorded_once(store: TriggerStore) -> None:
    assert store.record_fire(fire()) is True
    assert store.record_fire(fire(execution_id="someone-else", fired_at=at(9))) is False

    assert store.last_fire("daily-report") == fire()


def test_the_same_instant_in_another_zone_is_the_same_slot(store: TriggerStore) -> None:
    store.record_fire(fire())
    same_instant = T0.astimezone(timezone(timedelta(hours=-5)))

    assert store.record_fire(fire(scheduled_for=same_instant)) is False


def test_other_slots_and_other_triggers_record_independently(store: TriggerStore) -> None:
    assert store.record_fire(fire("a", 0)) is True
    assert store.record_fire(fire("a", 60)) is True
    assert store.record_fire(fire("b", 0)) is True
    assert store.record_fire(fire("a", 0.5)) is True  # sub-second slots are distinct


def test_last_fire_is_the_latest_slot_whatever_the_recording_order(store: TriggerStore) -> None:
    store.record_fire(fire(slot=120))
    store.record_fire(fire(slot=0))
    store.record_fire(fire(slot=60))

    last = store.last_fire("daily-report")

    assert last == fire(slot=120)
    assert last is not None and last.scheduled_for.utcoffset() == timedelta(0)
    assert last.fired_at.utcoffset() == timedelta(0)


def test_a_fire_without_an_execution_reads_back(store: TriggerStore) -> None:
    store.record_fire(fire(execution_id=None))

    assert store.last_fire("daily-report") == fire(execution_id=None)


def test_a_trigger_that_never_fired_has_no_last_fire(store: TriggerStore) -> None:
    store.save_trigger(make_trigger(), T0)
    store.record_fire(fire("other"))

    assert store.last_fire("daily-report") is None


def test_concurrent_records_of_one_slot_have_exactly_one_winner(store: TriggerStore) -> None:
    results = race(8, lambda i: store.record_fire(fire(execution_id=f"exec-{i}")))

    assert sorted(results, key=str) == [False] * 7 + [True]
    winner = results.index(True)
    assert store.last_fire("daily-report") == fire(execution_id=f"exec-{winner}")
