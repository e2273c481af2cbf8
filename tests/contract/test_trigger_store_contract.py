"""The TriggerStore contract: triggers and their fires, on every backend (memory, SQLite,
PostgreSQL) through the `store` fixture of tests/contract/conftest.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from flowmonkey_celery.core.ports import TriggerStore
from flowmonkey_celery.core.triggers import (
    EventTrigger,
    HttpTrigger,
    ScheduleTrigger,
    TriggerAuth,
    TriggerFire,
    TriggerFireRecord,
    TriggerStats,
)
from flowmonkey_celery.errors import ErrorCode, StoreError

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


def make_http_trigger(trigger_id: str = "shop-orders", **fields: Any) -> HttpTrigger:
    """Every field away from its default, so that a lost one shows."""
    values: dict[str, Any] = {
        "id": trigger_id,
        "name": "Shop orders",
        "flow_id": "process-order",
        "enabled": True,
        "tenant_id": "acme",
        "input_schema": {
            "type": "object",
            "required": ["order"],
            "properties": {"order": {"type": "object", "properties": {"total": {"minimum": 0}}}},
        },
        "auth": TriggerAuth(
            type="hmac",
            secret="a-secret-of-sixteen-chars",
            scheme="github",
            header="X-Shop-Signature",
            tolerance_seconds=60,
        ),
        "max_body_bytes": 4096,
        "idempotency_key_path": "order.id",
        "context_mapping": {"order": "order", "raw": ""},
        "static_context": {"channel": "web", "weights": [0.25, 1]},
    }
    return HttpTrigger(**{**values, **fields})


def make_event_trigger(trigger_id: str = "on-paid", **fields: Any) -> EventTrigger:
    values: dict[str, Any] = {
        "id": trigger_id,
        "name": "Ship paid orders",
        "flow_id": "ship-order",
        "tenant_id": "acme",
        "event_type": "order.paid",
        "conditions": [
            {"path": "order.total", "op": "gte", "value": 10.5},
            {"any": [{"path": "order.country", "op": "in", "value": ["DE", "FR"]}]},
        ],
        "context_key": "event",
        "static_context": {"priority": "high"},
    }
    return EventTrigger(**{**values, **fields})


def record(trigger_id: str = "shop-orders", seconds: float = 0, **fields: Any) -> TriggerFireRecord:
    values: dict[str, Any] = {
        "id": f"{trigger_id}-{seconds}",
        "trigger_id": trigger_id,
        "at": at(seconds),
        "status": "accepted",
        "latency_ms": 10.0,
        "execution_id": f"exec-{seconds}",
    }
    return TriggerFireRecord(**{**values, **fields})


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


# -- every trigger type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [
        make_http_trigger(),
        make_http_trigger(auth=TriggerAuth(type="bearer", secret_env="SHOP_TOKEN"), name=None),
        make_http_trigger(
            auth=TriggerAuth(), input_schema=None, tenant_id=None, context_mapping=None
        ),
        make_event_trigger(),
        make_event_trigger(conditions={"not": {"path": "test", "op": "eq", "value": True}}),
        make_event_trigger(conditions=None, context_key=None, tenant_id=None, enabled=False),
    ],
    ids=["http-hmac", "http-bearer-env", "http-open", "event", "event-one-condition", "event-bare"],
)
def test_http_and_event_triggers_round_trip_exactly(
    store: TriggerStore, trigger: HttpTrigger | EventTrigger
) -> None:
    saved = store.save_trigger(trigger, at(5))

    assert saved == trigger.model_copy(update={"created_at": at(5), "updated_at": at(5)})
    loaded = store.get_trigger(trigger.id)
    assert loaded == saved
    assert type(loaded) is type(trigger)
    assert store.list_triggers() == [saved]
    assert store.list_triggers(trigger_type=trigger.type) == [saved]


def test_every_type_is_listed_by_id_and_filtered_by_type(store: TriggerStore) -> None:
    store.save_trigger(make_trigger("c-schedule"), T0)
    store.save_trigger(make_http_trigger("a-http"), T0)
    store.save_trigger(make_event_trigger("b-event"), T0)
    store.save_trigger(make_http_trigger("d-http-off", enabled=False), T0)
    store.save_trigger(make_event_trigger("e-event-off", enabled=False), T0)

    def ids(**filters: Any) -> list[str]:
        return [t.id for t in store.list_triggers(**filters)]

    assert ids() == ["a-http", "b-event", "c-schedule", "d-http-off", "e-event-off"]
    assert ids(enabled_only=True) == ["a-http", "b-event", "c-schedule"]
    assert ids(trigger_type="http") == ["a-http", "d-http-off"]
    assert ids(trigger_type="event") == ["b-event", "e-event-off"]
    assert ids(trigger_type="schedule") == ["c-schedule"]
    assert ids(trigger_type="http", enabled_only=True) == ["a-http"]
    assert ids(trigger_type="event", enabled_only=True) == ["b-event"]
    assert ids(trigger_type="nope") == []
    assert [type(t) for t in store.list_triggers()] == [
        HttpTrigger,
        EventTrigger,
        ScheduleTrigger,
        HttpTrigger,
        EventTrigger,
    ]


def test_saving_an_http_trigger_again_replaces_its_settings(store: TriggerStore) -> None:
    store.save_trigger(make_http_trigger(), at(0))
    changed = make_http_trigger(
        auth=TriggerAuth(type="bearer", secret="another-secret-16-chars"),
        input_schema=None,
        idempotency_key_path=None,
        context_mapping=None,
        context_key="body",
        max_body_bytes=1,
    )

    saved = store.save_trigger(changed, at(60))

    assert saved == changed.model_copy(update={"created_at": at(0), "updated_at": at(60)})
    assert store.get_trigger("shop-orders") == saved


def test_an_id_saved_again_as_another_type_is_that_type(store: TriggerStore) -> None:
    store.save_trigger(make_trigger("one"), at(0))

    saved = store.save_trigger(make_event_trigger("one"), at(10))

    assert store.get_trigger("one") == saved
    assert isinstance(saved, EventTrigger) and saved.created_at == at(0)
    assert store.list_triggers(trigger_type="schedule") == []
    assert store.list_triggers(trigger_type="event") == [saved]


# -- history of HTTP and event triggers ---------------------------------------------------------


def test_a_history_entry_reads_back_with_every_field(store: TriggerStore) -> None:
    entry = record(
        status="failed",
        latency_ms=12.75,
        execution_id=None,
        event_id="event-1",
        error={"code": "FLOW_NOT_FOUND", "details": {"flow_id": "gone", "tries": [1, 2.5]}},
        at=datetime(2026, 1, 5, 10, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1))),
    )

    store.record_trigger_fire(entry)

    (loaded,) = store.list_trigger_fires("shop-orders")
    assert loaded == entry
    assert loaded.at == T0.replace(microsecond=250000)
    assert loaded.at.utcoffset() == timedelta(0)


def test_a_history_entry_with_a_taken_id_is_refused_and_the_first_kept(
    store: TriggerStore,
) -> None:
    first = record(seconds=0, status="accepted")
    store.record_trigger_fire(first)

    with pytest.raises(StoreError) as raised:
        store.record_trigger_fire(first.model_copy(update={"at": at(5), "status": "failed"}))

    assert raised.value.code == ErrorCode.STORE_CONFLICT
    assert store.list_trigger_fires("shop-orders") == [first]
    assert store.trigger_stats("shop-orders").fires == 1


def test_history_is_newest_first_with_a_limit_and_pages_before_an_instant(
    store: TriggerStore,
) -> None:
    for seconds in (30, 0, 20, 10, 40):
        store.record_trigger_fire(record(seconds=seconds))
    store.record_trigger_fire(record("other", seconds=35))

    def seconds(**options: Any) -> list[float]:
        return [
            (r.at - T0).total_seconds() for r in store.list_trigger_fires("shop-orders", **options)
        ]

    assert seconds() == [40, 30, 20, 10, 0]
    assert seconds(limit=2) == [40, 30]
    assert seconds(limit=2, before=at(30)) == [20, 10]  # strictly before
    assert seconds(before=at(10)) == [0]
    assert seconds(before=at(0)) == []
    assert seconds(before=at(25).astimezone(timezone(timedelta(hours=3)))) == [20, 10, 0]
    assert store.list_trigger_fires("never-fired") == []


def test_entries_at_the_same_instant_come_newest_id_first(store: TriggerStore) -> None:
    for entry_id in ("b", "c", "a"):
        store.record_trigger_fire(record(id=entry_id, seconds=5))

    assert [r.id for r in store.list_trigger_fires("shop-orders")] == ["c", "b", "a"]


def test_stats_count_each_status_and_average_the_known_latencies(store: TriggerStore) -> None:
    entries = [
        record(seconds=0, latency_ms=10.0),
        record(seconds=10, latency_ms=20.0, status="duplicate"),
        record(seconds=50, latency_ms=None, status="rejected"),
        record(seconds=20, latency_ms=30.0, status="rejected"),
        record(seconds=30, latency_ms=40.0, status="accepted"),
        record(seconds=40, latency_ms=5.0, status="failed"),
    ]
    for entry in entries:
        store.record_trigger_fire(entry)
    store.record_trigger_fire(record("other", seconds=99, latency_ms=1000.0))

    stats = store.trigger_stats("shop-orders")

    assert stats == TriggerStats(
        trigger_id="shop-orders",
        fires=6,
        accepted=2,
        duplicate=1,
        rejected=2,
        failed=1,
        last_fired_at=at(50),
        mean_latency_ms=21.0,
    )
    assert stats.last_fired_at is not None and stats.last_fired_at.utcoffset() == timedelta(0)


def test_a_trigger_without_history_has_empty_stats(store: TriggerStore) -> None:
    store.record_trigger_fire(record("other"))

    assert store.trigger_stats("shop-orders") == TriggerStats(trigger_id="shop-orders")


def test_stats_without_any_latency_have_no_mean(store: TriggerStore) -> None:
    store.record_trigger_fire(record(latency_ms=None, status="rejected"))

    stats = store.trigger_stats("shop-orders")

    assert stats.fires == 1 and stats.rejected == 1
    assert stats.mean_latency_ms is None and stats.last_fired_at == T0


def test_delete_removes_the_triggers_history(store: TriggerStore) -> None:
    store.save_trigger(make_http_trigger(), T0)
    store.save_trigger(make_event_trigger(), T0)
    store.record_trigger_fire(record(seconds=0))
    store.record_trigger_fire(record(seconds=1))
    store.record_trigger_fire(record("on-paid", seconds=2))

    assert store.delete_trigger("shop-orders") is True

    assert store.list_trigger_fires("shop-orders") == []
    assert store.trigger_stats("shop-orders") == TriggerStats(trigger_id="shop-orders")
    assert store.list_trigger_fires("on-paid") == [record("on-paid", seconds=2)]


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


def test_create_trigger_refuses_a_taken_id_and_of_racing_creators_one_wins(store: Any) -> None:
    assert store.create_trigger(make_trigger("once"), T0) is True
    assert store.create_trigger(make_trigger("once", enabled=False), at(1)) is False
    loaded = store.get_trigger("once")
    assert loaded is not None and loaded.enabled is True  # the first, untouched

    barrier = threading.Barrier(8, timeout=30)
    results: list[bool] = []

    def create(n: int) -> None:
        barrier.wait()
        results.append(store.create_trigger(make_trigger("raced", name=f"creator {n}"), T0))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


# -- retention ------------------------------------------------------------------------------------


def test_retention_deletes_trigger_history_and_superseded_cron_slots_before_the_cutoff(
    store: Any,
) -> None:
    for seconds in (10, 20, 30, 40):
        store.record_trigger_fire(record("shop-orders", seconds))
    store.record_trigger_fire(record("other-hook", 5, status="rejected"))
    for slot in (0, 60, 120):
        store.record_fire(fire("daily-report", slot))
    store.record_fire(fire("weekly", 0))  # its only slot, long ago: where it goes on from

    assert store.delete_finished_before(at(30), batch_size=1) == 0  # no execution finished

    assert [r.at for r in store.list_trigger_fires("shop-orders")] == [at(40), at(30)]
    assert store.list_trigger_fires("other-hook") == []
    assert store.trigger_stats("shop-orders").fires == 2
    assert store.last_fire("daily-report") == fire("daily-report", 120)
    assert store.last_fire("weekly") == fire("weekly", 0)

    store.delete_finished_before(at(1000))
    assert store.list_trigger_fires("shop-orders") == []
    assert store.last_fire("daily-report") == fire("daily-report", 120)  # the latest is kept
    assert store.last_fire("weekly") == fire("weekly", 0)
    assert not store.record_fire(fire("daily-report", 120))  # still taken: fired once
    # The superseded slots are gone (the schedule only goes on from its latest, never back).
    assert store.record_fire(fire("daily-report", 60))
