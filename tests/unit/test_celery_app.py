"""FlowMonkeyCelery's decisions, on a real Celery app whose broker is kombu's in-memory
transport: messages are really sent and read back, no server needed (the end-to-end suite runs
real workers on Redis and RabbitMQ)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery, signals

from flowmonkey_celery import (
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.celery.app import make_app
from flowmonkey_celery.coordination.memory import InMemoryLockManager
from flowmonkey_celery.coordination.redis import RedisLockManager
from flowmonkey_celery.errors import StoreUnavailableError
from flowmonkey_celery.runtime import Runtime, RuntimeOptions
from flowmonkey_celery.settings import Settings

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@handler("noop")
def noop(params: HandlerParams) -> StepResult:
    return Result.success({"step": params.step.id})


@handler("pause")
def pause(params: HandlerParams) -> StepResult:
    return Result.wait(delay=params.config.get("seconds", 5))


def chain(count: int, **extra: Any) -> dict[str, Any]:
    steps = {
        f"s{i}": {
            "type": "noop",
            "transitions": {"onSuccess": f"s{i + 1}" if i < count else None},
            **extra.get(f"s{i}", {}),
        }
        for i in range(1, count + 1)
    }
    return {"id": "chain", "initialStepId": "s1", "steps": steps}


@pytest.fixture
def make_fm() -> Iterator[Any]:
    apps: list[Celery] = []

    def build(
        flow: dict[str, Any],
        store: MemoryStore | None = None,
        handlers: tuple[Any, ...] = (),
        **options: Any,
    ) -> FlowMonkeyCelery:
        app = Celery(f"test-{len(apps)}", broker="memory://")
        app.conf.task_default_queue = "flowmonkey"
        apps.append(app)
        runtime = Runtime(
            store or MemoryStore(),
            HandlerRegistry([noop, pause, *handlers]),
            FlowRegistry([flow]),
            options=RuntimeOptions(**options),
            clock=ManualClock(START),
        )
        fm = FlowMonkeyCelery(app, runtime)
        sent(fm)  # kombu's memory transport is one per process: drop what earlier tests left
        return fm

    yield build
    for app in apps:
        app.close()


def sent(fm: FlowMonkeyCelery, queue: str = "flowmonkey") -> list[Any]:
    """Messages waiting on a queue, consumed: (args, headers) of each."""
    messages = []
    with fm.app.connection_for_write() as connection:
        simple = connection.SimpleQueue(queue)
        while True:
            try:
                message = simple.get(block=False)
            except simple.Empty:
                break
            messages.append((tuple(message.payload[0]), message.headers))
            message.ack()
        simple.close()
    return messages


def test_tasks_are_registered_with_the_durability_options(make_fm: Any) -> None:
    fm = make_fm(chain(1))
    step = fm.app.tasks["flowmonkey.step"]
    assert step.acks_late and step.reject_on_worker_lost and step.ignore_result
    assert "flowmonkey.tick" in fm.app.tasks


def test_the_tick_joins_an_existing_beat_schedule(make_fm: Any) -> None:
    app = Celery("existing", broker="memory://")
    app.conf.beat_schedule = {"nightly-report": {"task": "reports.nightly", "schedule": 86400}}
    runtime = Runtime(MemoryStore(), HandlerRegistry([noop]), FlowRegistry([chain(1)]))
    FlowMonkeyCelery(app, runtime)
    assert set(app.conf.beat_schedule) == {"nightly-report", "flowmonkey-tick"}
    assert app.conf.beat_schedule["flowmonkey-tick"]["schedule"] == timedelta(seconds=1)
    app.close()


def test_ticks_have_a_queue_of_their_own(make_fm: Any) -> None:
    fm = make_fm(chain(1))
    assert fm.app.conf.beat_schedule["flowmonkey-tick"]["options"]["queue"] == "flowmonkey.tick"
    fm.tick_task.delay()  # sent by hand, it takes the same route
    assert len(sent(fm, "flowmonkey.tick")) == 1
    assert sent(fm, "flowmonkey") == []

    # An app's own routes stay as they were.
    app = Celery("existing-routes", broker="memory://")
    app.conf.task_routes = {"reports.*": {"queue": "reports"}}
    runtime = Runtime(MemoryStore(), HandlerRegistry([noop]), FlowRegistry([chain(1)]))
    FlowMonkeyCelery(app, runtime)
    assert app.amqp.router.route({}, "reports.nightly")["queue"].name == "reports"
    assert app.amqp.router.route({}, "flowmonkey.tick")["queue"].name == "flowmonkey.tick"
    app.close()

    named = make_fm(chain(1), queue="orders", tick_queue="orders-timers")
    assert named.app.conf.beat_schedule["flowmonkey-tick"]["options"]["queue"] == "orders-timers"
    assert make_fm(chain(1), queue="orders").options.tick_queue_name == "orders.tick"


def start_worker_setup(fm: FlowMonkeyCelery, queues: list[str] | None) -> set[str]:
    """What Celery does when `celery worker [-Q queues]` starts (before consuming): select
    the queues, then send celeryd_after_setup. Returns the queues the worker will consume."""
    worker = fm.app.WorkController(queues=queues, pool_cls="solo", hostname="w@test")
    signals.celeryd_after_setup.send(sender="w@test", instance=worker, conf=fm.app.conf)
    return set(fm.app.amqp.queues.consume_from)


@pytest.mark.parametrize(
    ("queues", "consumed"),
    [
        (None, {"flowmonkey", "flowmonkey.tick"}),  # `celery worker`: the default queue
        (["celery", "flowmonkey"], {"celery", "flowmonkey", "flowmonkey.tick"}),
        (["payments"], {"payments"}),  # a dedicated worker for routed steps: no ticks
    ],
)
def test_a_worker_consuming_the_step_queue_consumes_the_tick_queue_too(
    make_fm: Any, queues: list[str] | None, consumed: set[str]
) -> None:
    fm = make_fm(chain(1))
    assert start_worker_setup(fm, queues) == consumed
    assert fm.consumed_queues == consumed


def test_a_plain_worker_of_the_entry_points_app_consumes_the_step_and_tick_queues_only(
    tmp_path: Any,
) -> None:
    app = make_app(Settings(broker_url="memory://", queue="orders", home=tmp_path))
    runtime = Runtime(MemoryStore(), HandlerRegistry([noop]), FlowRegistry([chain(1)]))
    fm = FlowMonkeyCelery(app, runtime)
    assert start_worker_setup(fm, None) == {"orders", "orders.tick"}
    app.close()


def test_another_apps_worker_in_the_same_process_is_left_alone(make_fm: Any) -> None:
    ours, theirs = make_fm(chain(1)), make_fm(chain(1), queue="other")
    start_worker_setup(theirs, ["other"])
    assert ours.consumed_queues == set()
    assert set(theirs.app.amqp.queues.consume_from) == {"other", "other.tick"}


def test_start_commits_then_enqueues_one_message_for_version_zero(make_fm: Any) -> None:
    fm = make_fm(chain(2))
    created = fm.start("chain", {"n": 1})
    assert fm.get(created.execution.id).status is ExecutionStatus.PENDING  # type: ignore[union-attr]
    assert [args for args, _ in sent(fm)] == [(created.execution.id, 0)]


def test_an_idempotency_hit_enqueues_nothing(make_fm: Any) -> None:
    fm = make_fm(chain(2))
    fm.start("chain", {}, idempotency_key="k")
    sent(fm)
    again = fm.start("chain", {}, idempotency_key="k")
    assert not again.created
    assert sent(fm) == []


def test_inline_continuation_runs_every_ready_step_without_the_broker(make_fm: Any) -> None:
    fm = make_fm(chain(5))
    execution_id = fm.start("chain").execution.id
    sent(fm)
    assert fm.run_steps(execution_id, 0, "flowmonkey") == "completed"
    assert fm.get(execution_id).step_count == 5  # type: ignore[union-attr]
    assert sent(fm) == []


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def get_execution(self, execution_id: str) -> Any:
        self.loads += 1
        return super().get_execution(execution_id)


def test_inline_continuation_loads_the_execution_once_per_message(make_fm: Any) -> None:
    # Each step after the first starts from the execution this worker has just committed.
    store = CountingStore()
    fm = make_fm(chain(5), store=store)
    execution_id = fm.start("chain").execution.id
    sent(fm)
    loads = store.loads
    assert fm.run_steps(execution_id, 0, "flowmonkey") == "completed"
    assert store.loads == loads + 1


def test_a_cancel_between_two_inline_steps_stops_the_continuation(make_fm: Any) -> None:
    fm = make_fm(chain(4))
    execution_id = fm.start("chain").execution.id

    def cancel_after_s2(event: Any) -> None:
        if event.data.get("from") == "s2":
            fm.cancel(execution_id, reason="customer called")

    fm.runtime.engine.on("transition", cancel_after_s2)
    assert fm.run_steps(execution_id, 0, "flowmonkey") == "stale"

    execution = fm.get(execution_id)
    assert execution is not None and execution.status is ExecutionStatus.CANCELLED
    assert execution.step_count == 2, "s3's result was refused, s4 never ran"
    completed = [
        e.step_id for e in fm.runtime.engine.history(execution_id) if e.type == "step.completed"
    ]
    assert completed == ["s1", "s2"]


def test_with_inline_continuation_off_each_step_is_its_own_message(make_fm: Any) -> None:
    fm = make_fm(chain(3), inline_steps=0)
    execution_id = fm.start("chain").execution.id
    sent(fm)
    version = 0
    for _ in range(3):
        fm.run_steps(execution_id, version, "flowmonkey")
        messages = sent(fm)
        if not messages:
            break
        ((_, version),) = [args for args, _ in messages]
    final = fm.get(execution_id)
    assert final is not None and final.status is ExecutionStatus.COMPLETED
    assert final.step_count == 3


def test_inline_continuation_stops_at_its_step_bound(make_fm: Any) -> None:
    fm = make_fm(chain(5), inline_steps=2)
    execution_id = fm.start("chain").execution.id
    sent(fm)
    assert fm.run_steps(execution_id, 0, "flowmonkey") == "dispatched"
    assert fm.get(execution_id).step_count == 2  # type: ignore[union-attr]
    assert len(sent(fm)) == 1


def test_a_duplicate_message_is_dropped_without_running_anything(make_fm: Any) -> None:
    fm = make_fm(chain(2), inline_steps=0)
    execution_id = fm.start("chain").execution.id
    fm.run_steps(execution_id, 0, "flowmonkey")
    assert fm.run_steps(execution_id, 0, "flowmonkey") == "stale"
    assert fm.get(execution_id).step_count == 1  # type: ignore[union-attr]


def test_a_message_for_an_unknown_execution_is_dropped(make_fm: Any) -> None:
    fm = make_fm(chain(1))
    assert fm.run_steps("no-such-execution", 0, "flowmonkey") == "unknown"


def test_a_step_with_timeout_ms_gets_its_own_message_with_time_limits(make_fm: Any) -> None:
    fm = make_fm(chain(2, s2={"timeoutMs": 1500}))
    execution_id = fm.start("chain").execution.id
    sent(fm)
    assert fm.run_steps(execution_id, 0, "flowmonkey") == "dispatched"
    ((args, headers),) = sent(fm)
    assert args == (execution_id, 1)
    assert headers["timelimit"] == [11.5, 1.5]  # hard = soft + grace, soft = timeout_ms


def test_a_step_routed_to_a_queue_this_worker_does_not_consume_goes_through_the_broker(
    make_fm: Any,
) -> None:
    fm = make_fm(chain(2, s2={"queue": "payments"}))
    execution_id = fm.start("chain").execution.id
    sent(fm)
    assert fm.run_steps(execution_id, 0, "flowmonkey") == "dispatched"
    assert [args for args, _ in sent(fm, "payments")] == [(execution_id, 1)]
    fm.consumed_queues = {"flowmonkey", "payments"}
    second = fm.start("chain").execution.id
    sent(fm)
    assert fm.run_steps(second, 0, "flowmonkey") == "completed"


def test_a_short_wait_also_gets_a_countdown_message(make_fm: Any) -> None:
    flow = {
        "id": "chain",
        "initialStepId": "w",
        "steps": {"w": {"type": "pause", "config": {"seconds": 5}}},
    }
    fm = make_fm(flow)
    execution_id = fm.start("chain").execution.id
    sent(fm)
    assert fm.run_steps(execution_id, 0, "flowmonkey") == "waiting"
    ((args, headers),) = sent(fm)
    assert args == (execution_id, 1)
    assert headers["eta"] is not None


def flaky_once(during_attempt_2: Any = None) -> Any:
    """A `flaky` handler: attempt 1 fails, attempt 2 calls `during_attempt_2()` and succeeds."""

    @handler("flaky")
    def flaky(params: HandlerParams) -> StepResult:
        if params.attempt == 1:
            return Result.failure("BOOM", "the first attempt fails")
        if during_attempt_2 is not None:
            during_attempt_2()
        return Result.success()

    return flaky


def retrying(**step: Any) -> dict[str, Any]:
    retry = {"maxAttempts": 2, "backoffMs": 1000}
    return {
        "id": "chain",
        "initialStepId": "a",
        "steps": {"a": {"type": "flaky", "retry": retry, **step}},
    }


def test_a_countdown_wake_is_committed_before_the_handler_so_a_tick_meanwhile_has_none_to_wake(
    make_fm: Any,
) -> None:
    ticks: list[dict[str, int]] = []
    holder: list[FlowMonkeyCelery] = []

    def the_beats_next_tick() -> None:  # in another process, while attempt 2 runs
        holder[0].runtime.clock.advance(1)
        ticks.append(holder[0].tick())

    fm = make_fm(retrying(), handlers=(flaky_once(the_beats_next_tick),))
    holder.append(fm)
    execution_id = fm.start("chain").execution.id
    sent(fm)
    assert fm.run_steps(execution_id, 0, "flowmonkey") == "waiting"  # attempt 1 failed
    ((countdown, _),) = sent(fm)
    fm.runtime.clock.advance(1)  # the retry is due: the countdown message arrives

    assert fm.run_steps(*countdown, "flowmonkey") == "completed"
    # The wake was committed before attempt 2 started: the tick found nothing due and sent
    # nothing, where it used to wake the same attempt again and start it alongside.
    swept = ("timed_out", "woken", "stalled", "fired", "orphans_cancelled", "events")
    assert ticks == [dict.fromkeys((*swept, "event_waits"), 0)]
    assert sent(fm) == []
    history = fm.runtime.engine.history(execution_id)
    assert [(e.attempt, e.outcome) for e in history if e.type == "step.completed"] == [
        (1, "failure"),
        (2, "success"),
    ]


def test_a_countdown_goes_to_the_waiting_steps_queue_and_only_wakes_it(make_fm: Any) -> None:
    fm = make_fm(
        retrying(queue="payments", timeoutMs=5000), handlers=(flaky_once(),), queue="flowmonkey"
    )
    execution_id = fm.start("chain").execution.id
    sent(fm, "payments")
    assert fm.run_steps(execution_id, 0, "payments", time_limited=True) == "waiting"
    ((countdown, headers),) = sent(fm, "payments")
    assert headers["eta"] is not None
    assert headers["timelimit"] == [None, None]  # it runs no handler: it commits the wake
    assert sent(fm) == []

    fm.runtime.clock.advance(1)
    assert fm.run_steps(*countdown, "payments") == "dispatched"
    # The attempt itself gets a message of its own, with the step's time limits.
    ((attempt, headers),) = sent(fm, "payments")
    assert attempt == (execution_id, countdown[1] + 1)
    assert headers["timelimit"] == [15.0, 5.0]


def test_a_time_limited_message_runs_its_own_step_only(make_fm: Any) -> None:
    fm = make_fm(chain(2, s1={"timeoutMs": 1000}))
    execution_id = fm.start("chain").execution.id
    sent(fm)
    # Celery's limits cover the whole message: s2 must not run under s1's.
    assert fm.run_steps(execution_id, 0, "flowmonkey", time_limited=True) == "dispatched"
    ((args, headers),) = sent(fm)
    assert args == (execution_id, 1)
    assert headers["timelimit"] == [None, None]


def test_a_step_with_timeout_ms_is_not_presumed_stalled_before_that_time_is_up(
    make_fm: Any,
) -> None:
    fm = make_fm(chain(2, s2={"timeoutMs": 600_000}), lease=timedelta(minutes=5))
    execution_id = fm.start("chain").execution.id
    fm.runtime.engine.step(execution_id)  # s1 done: s2, allowed 10 minutes, is next
    execution = fm.get(execution_id)
    assert execution is not None and execution.lease_expires_at is not None
    assert execution.lease_expires_at - START == timedelta(minutes=15)  # 10 allowed + 5


class CommitsThenLosesTheConnection(MemoryStore):
    """A store whose next save reaches the database, then reports it unavailable: a
    connection lost after the server committed."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_save = False

    def save_execution(self, execution: Any, **kwargs: Any) -> Any:
        saved = super().save_execution(execution, **kwargs)
        if self.fail_next_save:
            self.fail_next_save = False
            raise StoreUnavailableError("save execution failed: connection lost")
        return saved


def test_a_step_retried_after_its_save_committed_sends_the_next_step_on(make_fm: Any) -> None:
    store = CommitsThenLosesTheConnection()
    fm = make_fm(chain(3), store=store, inline_steps=0)
    execution_id = fm.start("chain").execution.id
    sent(fm)
    store.fail_next_save = True

    # Celery retries the message (autoretry_for StoreUnavailableError); run eagerly here.
    fm.step_task.apply(args=(execution_id, 0), throw=False)

    # The retry found step s1 taken (by its own first attempt) and sent s2's message, which
    # that attempt never could: without it the execution would sit until its lease ran out.
    ((args, _),) = sent(fm)
    assert args == (execution_id, 1)
    execution = fm.get(execution_id)
    assert execution is not None and execution.current_step_id == "s2"


def test_a_long_wait_relies_on_the_database_alone(make_fm: Any) -> None:
    flow = {
        "id": "chain",
        "initialStepId": "w",
        "steps": {"w": {"type": "pause", "config": {"seconds": 3600}}},
    }
    fm = make_fm(flow)
    execution_id = fm.start("chain").execution.id
    sent(fm)
    fm.run_steps(execution_id, 0, "flowmonkey")
    assert sent(fm) == []


def test_the_tick_wakes_due_executions_and_sends_their_next_step(make_fm: Any) -> None:
    flow = {
        "id": "chain",
        "initialStepId": "w",
        "steps": {
            "w": {"type": "pause", "config": {"seconds": 3600}, "transitions": {"onSuccess": "n"}},
            "n": {"type": "noop"},
        },
    }
    fm = make_fm(flow)
    execution_id = fm.start("chain").execution.id
    sent(fm)
    fm.run_steps(execution_id, 0, "flowmonkey")
    assert fm.tick()["woken"] == 0
    fm.runtime.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    assert fm.tick()["woken"] == 1
    ((args, _),) = sent(fm)
    woken = fm.get(execution_id)
    assert woken is not None and woken.current_step_id == "n"
    assert args == (execution_id, woken.version)


def test_the_tick_forgets_workers_not_seen_for_a_week_checking_once_an_hour(
    make_fm: Any,
) -> None:
    fm = make_fm(chain(1))
    store, clock = fm.runtime.store, fm.runtime.clock
    store.record_heartbeat("worker:gone@pod-1", clock.now() - timedelta(days=7, seconds=1))
    store.record_heartbeat("worker:idle@pod-2", clock.now() - timedelta(days=6))
    store.record_heartbeat("api", clock.now() - timedelta(days=30))  # not a worker: kept

    fm.tick()
    assert set(store.list_heartbeats()) == {"worker:idle@pod-2", "api", "tick"}

    clock.advance(timedelta(minutes=30))
    store.record_heartbeat("worker:gone@pod-3", clock.now() - timedelta(days=8))
    fm.tick()  # checked half an hour ago: not again yet
    assert set(store.list_heartbeats("worker:")) == {"worker:idle@pod-2", "worker:gone@pod-3"}
    clock.advance(timedelta(minutes=30))
    fm.tick()
    assert set(store.list_heartbeats("worker:")) == {"worker:idle@pod-2"}
    clock.advance(timedelta(days=1))
    fm.tick()
    assert set(store.list_heartbeats("worker:")) == set()


def test_the_tick_searches_the_inbox_for_a_wait_whose_worker_died_before_it_could(
    make_fm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = {
        "id": "checkout",
        "initialStepId": "await",
        "steps": {
            "await": {
                "type": "wait_for_event",
                "config": {"event": "paid", "match": {"order": "${order}"}},
                "transitions": {"onSuccess": "done"},
            },
            "done": {"type": "noop"},
        },
    }
    fm = make_fm(flow)
    fm.runtime.engine.emit("paid", {"order": "A-1"})
    engine = fm.runtime.engine
    monkeypatch.setattr(engine, "_check_inbox", lambda wait, hand_off: None)  # died here
    execution_id = fm.start("checkout", {"order": "A-1"}).execution.id
    assert fm.run_steps(execution_id, 0, "flowmonkey") == "waiting"
    monkeypatch.undo()
    sent(fm)

    fm.runtime.clock.advance(timedelta(minutes=1))
    assert fm.tick()["event_waits"] == 1

    ((args, _),) = sent(fm)  # its next step, sent
    assert fm.run_steps(*args, "flowmonkey") == "completed"


def test_with_a_lock_manager_only_the_first_tick_of_a_period_sweeps(make_fm: Any) -> None:
    flow = {
        "id": "chain",
        "initialStepId": "w",
        "steps": {
            "w": {"type": "pause", "config": {"seconds": 3600}, "transitions": {"onSuccess": "s"}},
            "s": {"type": "noop"},
        },
    }
    fm = make_fm(flow)  # tick every 1 s
    clock = fm.runtime.clock
    fm.runtime.locks = InMemoryLockManager(clock)  # FLOWMONKEY_REDIS_URL gives a Redis one
    first = fm.start("chain").execution.id
    fm.run_steps(first, 0, "flowmonkey")
    clock.advance(0.5)
    second = fm.start("chain").execution.id
    fm.run_steps(second, 0, "flowmonkey")
    sent(fm)  # their start messages
    clock.advance(3599.5)

    assert fm.tick()["woken"] == 1  # the first tick of this period: `first` is due
    clock.advance(0.5)  # `second` is due too, but a second beat's tick in the same period...
    assert fm.tick()["woken"] == 0  # ...leaves it to the next period
    clock.advance(0.5)
    assert fm.tick()["woken"] == 1
    assert [args for args, _ in sent(fm)] == [(first, 2), (second, 2)]


def test_a_tick_sweeps_anyway_when_redis_is_unreachable(make_fm: Any) -> None:
    fm = make_fm(chain(1))
    fm.runtime.locks = RedisLockManager.from_url("redis://127.0.0.1:1/0")  # nothing listens
    execution_id = fm.start("chain").execution.id
    sent(fm)
    fm.runtime.clock.advance(timedelta(minutes=6))  # past its lease: presumed stalled
    assert fm.tick()["stalled"] == 1
    ((args, _),) = sent(fm)
    assert args == (execution_id, 0)


def test_the_tick_resends_executions_whose_lease_expired(make_fm: Any) -> None:
    fm = make_fm(chain(2), lease=timedelta(seconds=30))
    created = fm.runtime.engine.create("chain").execution  # committed, message never sent
    assert fm.tick()["stalled"] == 0
    fm.runtime.clock.advance(31)  # type: ignore[attr-defined]
    assert fm.tick()["stalled"] == 1
    assert [args for args, _ in sent(fm)] == [(created.id, 0)]
    assert fm.tick()["stalled"] == 0  # claimed: not re-sent until the new lease expires


def test_re_sends_of_a_stalled_execution_back_off_so_a_backlog_is_not_flooded(
    make_fm: Any,
) -> None:
    # Its message sits in a backlog (or was lost): the tick re-sends it after one lease, then
    # ever further apart, never more than ten leases apart.
    fm = make_fm(chain(2), lease=timedelta(seconds=30))
    clock = fm.runtime.clock
    created = fm.runtime.engine.create("chain").execution  # committed, message never sent
    resent_at: list[float] = []
    for _ in range(2 * 3600):  # an hour of ticks, half a second apart
        clock.advance(0.5)
        if fm.tick()["stalled"]:
            resent_at.append((clock.now() - START).total_seconds())
    assert resent_at[:5] == [30.0, 60.0, 120.0, 240.0, 480.0]
    gaps = [later - earlier for earlier, later in itertools.pairwise(resent_at)]
    assert max(gaps) == 300.0  # ten leases
    assert len(resent_at) == 15  # not 120, one per lease
    assert [args for args, _ in sent(fm)] == [(created.id, 0)] * len(resent_at)


def test_a_dead_workers_step_is_re_sent_after_one_lease_however_long_it_ran(
    make_fm: Any,
) -> None:
    # A step that heartbeated for an hour, then lost its worker: re-sent one lease after its
    # last heartbeat, not later.
    fm = make_fm(chain(2), lease=timedelta(seconds=30))
    clock = fm.runtime.clock
    execution = fm.runtime.engine.create("chain").execution
    store = fm.runtime.store
    for _ in range(360):  # the heartbeat, every 10 s for an hour
        clock.advance(10)
        assert store.extend_lease(
            execution.id, expected_version=0, until=clock.now() + timedelta(seconds=30)
        )
        assert fm.tick()["stalled"] == 0
    clock.advance(30)  # the worker died right after its last heartbeat
    assert fm.tick()["stalled"] == 1


def test_resume_commits_then_enqueues_the_next_step(make_fm: Any) -> None:
    flow = {
        "id": "chain",
        "initialStepId": "w",
        "steps": {
            "w": {"type": "pause", "config": {"seconds": 3600}, "transitions": {"onSuccess": "n"}},
            "n": {"type": "noop"},
        },
    }
    fm = make_fm(flow)
    execution_id = fm.start("chain").execution.id
    fm.run_steps(execution_id, 0, "flowmonkey")
    sent(fm)
    resumed = fm.resume(execution_id, {"ok": True})
    assert [args for args, _ in sent(fm)] == [(execution_id, resumed.version)]


def test_the_tick_fires_a_due_schedule_once_and_sends_its_first_step(make_fm: Any) -> None:
    fm = make_fm(chain(1))
    fm.runtime.clock.advance(30)  # type: ignore[attr-defined]
    fm.register_trigger(
        {
            "id": "every-minute",
            "type": "schedule",
            "flowId": "chain",
            "schedule": "* * * * *",
            "staticContext": {"report": "daily"},
        }
    )
    assert fm.tick()["fired"] == 0  # registered at 08:00:30: the 08:00 slot is not owed
    fm.runtime.clock.advance(31)  # type: ignore[attr-defined]
    assert fm.tick()["fired"] == 1
    assert fm.tick()["fired"] == 0  # the same slot never fires twice
    ((args, _),) = sent(fm)
    execution = fm.get(args[0])
    assert execution is not None
    assert execution.context["report"] == "daily"
    assert execution.context["trigger"]["id"] == "every-minute"


def test_registering_a_trigger_for_an_unknown_flow_or_with_a_bad_cron_is_refused(
    make_fm: Any,
) -> None:
    from flowmonkey_celery import FlowMonkeyError

    fm = make_fm(chain(1))
    with pytest.raises(FlowMonkeyError) as unknown:
        fm.register_trigger(
            {"id": "t", "type": "schedule", "flowId": "nope", "schedule": "* * * * *"}
        )
    assert unknown.value.code == "FLOW_NOT_FOUND"
    with pytest.raises(FlowMonkeyError) as bad:
        fm.register_trigger(
            {"id": "t", "type": "schedule", "flowId": "chain", "schedule": "61 * * * *"}
        )
    assert bad.value.code == "INVALID_ARGUMENT"
    assert fm.runtime.store.list_triggers() == []


# -- the engine's own commands enqueue what they make runnable ------------------------------


def test_engine_resume_enqueues_the_next_step_once(make_fm: Any) -> None:
    flow = {
        "id": "chain",
        "initialStepId": "w",
        "steps": {
            "w": {"type": "pause", "config": {"seconds": 3600}, "transitions": {"onSuccess": "n"}},
            "n": {"type": "noop"},
        },
    }
    fm = make_fm(flow)
    execution_id = fm.start("chain").execution.id
    fm.run_steps(execution_id, 0, "flowmonkey")
    sent(fm)
    resumed = fm.runtime.engine.resume(execution_id, {"ok": True})
    assert [args for args, _ in sent(fm)] == [(execution_id, resumed.version)]


def test_a_resume_token_used_on_the_engine_enqueues_the_next_step(make_fm: Any) -> None:
    flow = {
        "id": "approval",
        "initialStepId": "approve",
        "steps": {
            "approve": {
                "type": "wait_for_signal",
                "outputKey": "decision",
                "transitions": {"onSuccess": "n"},
            },
            "n": {"type": "noop"},
        },
    }
    fm = make_fm(flow)
    issued: list[Any] = []
    fm.runtime.engine.on_resume_token(issued.append)
    execution_id = fm.start("approval").execution.id
    fm.run_steps(execution_id, 0, "flowmonkey")
    sent(fm)
    resumed = fm.runtime.engine.resume_with_token(issued[-1].token, {"by": "ana"})
    assert [args for args, _ in sent(fm)] == [(execution_id, resumed.version)]


def test_cancelling_a_tolerated_branch_enqueues_the_parent_it_resumes(make_fm: Any) -> None:
    flow = {
        "id": "fan",
        "initialStepId": "fan",
        "steps": {
            "fan": {
                "type": "parallel",
                "config": {"foreach": "items", "start": "w", "tolerated_failures": 1},
                "outputKey": "results",
                "transitions": {"onSuccess": "n"},
            },
            "w": {"type": "pause", "config": {"seconds": 3600}},
            "n": {"type": "noop"},
        },
    }
    fm = make_fm(flow)
    engine, store = fm.runtime.engine, fm.runtime.store
    parent_id = fm.start("fan", {"items": [1]}).execution.id
    sent(fm)
    fm.run_steps(parent_id, 0, "flowmonkey")
    (((child_id, child_version), _),) = sent(fm)
    fm.run_steps(child_id, child_version, "flowmonkey")
    assert store.get_execution(child_id).status is ExecutionStatus.WAITING
    sent(fm)

    engine.cancel(child_id)

    parent = store.get_execution(parent_id)
    assert parent.status is ExecutionStatus.RUNNING and parent.current_step_id == "n"
    assert [args for args, _ in sent(fm)] == [(parent_id, parent.version)]


def test_a_failed_celery_task_callback_with_a_short_retry_enqueues_its_wake(
    make_fm: Any,
) -> None:
    flow = {
        "id": "chain",
        "initialStepId": "w",
        "steps": {
            "w": {
                "type": "pause",
                "config": {"seconds": 3600},
                "retry": {"maxAttempts": 2, "backoffMs": 1000},
            },
        },
    }
    fm = make_fm(flow)
    execution_id = fm.start("chain").execution.id
    fm.run_steps(execution_id, 0, "flowmonkey")
    sent(fm)
    waiting = fm.runtime.engine.fail_waiting(execution_id, "TASK_FAILED", "the task raised")
    assert waiting.status is ExecutionStatus.WAITING and waiting.wake_at is not None
    ((args, _),) = sent(fm)
    assert args == (execution_id, waiting.version)


def test_an_engine_without_a_celery_runtime_hands_off_to_nobody() -> None:
    flow = {
        "id": "chain",
        "initialStepId": "w",
        "steps": {
            "w": {"type": "pause", "config": {"seconds": 3600}, "transitions": {"onSuccess": "n"}},
            "n": {"type": "noop"},
        },
    }
    runtime = Runtime(MemoryStore(), HandlerRegistry([noop, pause]), FlowRegistry([flow]))
    engine = runtime.engine
    handed: list[list[str]] = []
    unsubscribe = engine.on_hand_off(lambda executions: handed.append([e.id for e in executions]))
    execution_id = engine.create("chain").execution.id
    engine.run(execution_id)  # stepping reports in its outcome, not to the subscribers
    assert handed == []
    engine.resume(execution_id)
    assert handed == [[execution_id]]
    unsubscribe()
    engine.cancel(execution_id)
    assert handed == [[execution_id]]
