"""Concurrency guarantees of SqlStore with real threads and real (spawned) processes, on
PostgreSQL and on a SQLite file: one execution per idempotency key, one winner per
compare-and-set, no lost update, each due wake claimed once, and the engine consistent when a
cancel races a run."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import text

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    EventType,
    Execution,
    ExecutionStatus,
    FlowMonkeyError,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    HistoryEvent,
    ManualClock,
    Result,
    StepResult,
    VersionConflictError,
    handler,
)
from flowmonkey_celery.core.execution import WaitKind
from flowmonkey_celery.stores.sql import SqlStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SPAWN = multiprocessing.get_context("spawn")
BARRIER_TIMEOUT = 60


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database shared by every thread and process of one test."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    url = f"sqlite:///{request.getfixturevalue('tmp_path')}/flowmonkey.db"
    store = SqlStore(url)
    store.migrate()
    store.dispose()
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    store = SqlStore(db_url)
    yield store
    store.dispose()


def count(store: SqlStore, sql: str, **params: Any) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(text(sql), params).scalar_one())


def make_execution(**fields: Any) -> Execution:
    values: dict[str, Any] = {
        "id": "contested",
        "flow_id": "orders",
        "flow_version": "1.0.0",
        "current_step_id": "validate",
        "context": {"counter": 0},
        "created_at": T0,
        "updated_at": T0,
    }
    return Execution(**{**values, **fields})


def event(execution_id: str, step_id: str, type_: EventType = EventType.STEP_STARTED) -> Any:
    return HistoryEvent(execution_id=execution_id, type=type_, at=T0, step_id=step_id)


# -- racing threads in several spawned processes ------------------------------------------------

# work(store, barrier, worker_index, *args) -> result. Each worker calls barrier.wait() itself,
# at the moment it wants every worker to line up (e.g. after loading, before saving).
Work = Callable[..., Any]


def _run_threads(
    work: Work, store: SqlStore, args: tuple[Any, ...], barrier: Any, results: Any, indexes: range
) -> None:
    def one(index: int) -> None:
        try:
            results.put((index, "ok", work(store, barrier, index, *args)))
        except FlowMonkeyError as exc:  # pickles with class, code and message
            results.put((index, "error", exc))
        except BaseException as exc:
            results.put((index, "crash", f"{type(exc).__name__}: {exc}"))

    threads = [threading.Thread(target=one, args=(index,)) for index in indexes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=BARRIER_TIMEOUT * 2)


def _process_main(
    work: Work, url: str, args: tuple[Any, ...], barrier: Any, results: Any, indexes: range
) -> None:
    store = SqlStore(url)  # one store per process, shared by its threads, as in a worker
    try:
        _run_threads(work, store, args, barrier, results, indexes)
    finally:
        store.dispose()


def race(
    url: str,
    work: Work,
    *args: Any,
    processes: int,
    threads_per_process: int = 1,
    parent_threads: int = 0,
) -> list[tuple[str, Any]]:
    """Run `work` in `parent_threads` threads here and `threads_per_process` threads in each of
    `processes` spawned processes, all sharing one barrier; each worker's (kind, value) in
    worker order, kind being "ok", "error" (a FlowMonkeyError) or "crash"."""
    total = processes * threads_per_process + parent_threads
    barrier = SPAWN.Barrier(total, timeout=BARRIER_TIMEOUT)
    results = SPAWN.Queue()
    children = [
        SPAWN.Process(
            target=_process_main,
            args=(
                work,
                url,
                args,
                barrier,
                results,
                range(p * threads_per_process, (p + 1) * threads_per_process),
            ),
        )
        for p in range(processes)
    ]
    for child in children:
        child.start()
    parent_store = SqlStore(url)
    first = processes * threads_per_process
    local = threading.Thread(
        target=_run_threads,
        args=(work, parent_store, args, barrier, results, range(first, total)),
    )
    local.start()
    collected = {}
    try:
        for _ in range(total):
            index, kind, value = results.get(timeout=BARRIER_TIMEOUT * 2)
            collected[index] = (kind, value)
    finally:
        local.join(timeout=BARRIER_TIMEOUT)
        for child in children:
            child.join(timeout=30)
            if child.is_alive():  # a hung worker must not outlive the test
                child.terminate()
        parent_store.dispose()
    crashes = [value for kind, value in collected.values() if kind == "crash"]
    assert crashes == [], f"workers crashed: {crashes}"
    return [collected[index] for index in range(total)]


# -- (a) idempotent create ----------------------------------------------------------------------

ORDERS_FLOW = {
    "id": "orders",
    "initialStepId": "validate",
    "steps": {"validate": {"type": "noop", "transitions": {"onSuccess": None}}},
}


@handler("noop")
def noop(params: HandlerParams) -> StepResult:
    return Result.success()


def _create_with_key(store: SqlStore, barrier: Any, index: int, key: str) -> tuple[str, bool]:
    engine = Engine(store, HandlerRegistry([noop]), FlowRegistry([ORDERS_FLOW]))
    barrier.wait()
    created = engine.create("orders", {"caller": index}, idempotency_key=key)
    assert created.idempotency_hit is not created.created
    return created.execution.id, created.created


def test_concurrent_creates_in_threads_and_processes_with_one_key_make_one_execution(
    db_url: str, store: SqlStore
) -> None:
    outcomes = race(
        db_url, _create_with_key, "order-42", processes=4, threads_per_process=1, parent_threads=20
    )

    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    ids = {execution_id for _, (execution_id, _) in outcomes}
    assert len(ids) == 1, "every caller gets the same execution back"
    assert sum(created for _, (_, created) in outcomes) == 1
    assert count(store, "SELECT count(*) FROM fm_executions") == 1
    assert count(store, "SELECT count(*) FROM fm_idempotency_keys") == 1
    (execution_id,) = ids
    history = [e.type for e in store.list_events(execution_id)]
    assert history.count(EventType.EXECUTION_CREATED) == 1
    assert history.count(EventType.IDEMPOTENCY_HIT) == len(outcomes) - 1


@pytest.mark.parametrize("previous_holder", ["expired", "purged"])
def test_two_creates_retaking_a_freed_idempotency_key_make_one_execution(
    postgres_url: str, previous_holder: str
) -> None:
    # A and B create with a key whose previous execution's hold has expired (or was purged by
    # retention). Both find the key held by that execution; A takes it over and, before A
    # commits, B tries to take it too and waits on A's row lock. B must then get A's
    # execution: not the stale previous one, and not a second execution of its own.
    clock = ManualClock(T0)
    stores = [SqlStore(postgres_url) for _ in range(3)]
    setup, store_a, store_b = stores
    engines = [
        Engine(store, HandlerRegistry([noop]), FlowRegistry([ORDERS_FLOW]), clock=clock)
        for store in stores
    ]
    first = engines[0].create("orders", idempotency_key="k", idempotency_ttl=3600).execution
    clock.advance(7200)
    if previous_holder == "purged":
        with setup.engine.begin() as connection:
            connection.execute(text("DELETE FROM fm_executions WHERE id = :id"), {"id": first.id})

    b_found_the_old_holder, a_took_the_key, b_waits = (threading.Event() for _ in range(3))

    @sa_event.listens_for(store_b.engine, "after_cursor_execute")
    def b_pauses_after_finding_the_holder(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT fm_idempotency_keys.execution_id"):
            b_found_the_old_holder.set()
            assert a_took_the_key.wait(BARRIER_TIMEOUT), "A never took the key"

    @sa_event.listens_for(store_a.engine, "after_cursor_execute")
    def a_pauses_before_commit(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE fm_idempotency_keys"):
            a_took_the_key.set()
            assert b_waits.wait(BARRIER_TIMEOUT), "B never queued behind A's lock"

    results: dict[str, Any] = {}

    def create(name: str, engine: Engine) -> None:
        results[name] = engine.create("orders", {"caller": name}, idempotency_key="k")

    thread_b = threading.Thread(target=create, args=("b", engines[2]))
    thread_b.start()
    assert b_found_the_old_holder.wait(BARRIER_TIMEOUT)
    thread_a = threading.Thread(target=create, args=("a", engines[1]))
    thread_a.start()
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while count(setup, waiting) == 0:
        assert time.monotonic() < deadline, "B never waited for A's lock"
        time.sleep(0.01)  # polling another session's state: there is no clock to inject here
    b_waits.set()
    thread_a.join(BARRIER_TIMEOUT)
    thread_b.join(BARRIER_TIMEOUT)

    a, b = results["a"], results["b"]
    for store in stores:
        store.dispose()
    assert a.created and not b.created
    assert b.execution.id == a.execution.id != first.id
    holder = "SELECT execution_id FROM fm_idempotency_keys WHERE key = 'k'"
    with SqlStore(postgres_url).engine.connect() as connection:
        assert connection.execute(text(holder)).scalar_one() == a.execution.id
        live = "SELECT count(*) FROM fm_executions WHERE id <> :first"
        assert connection.execute(text(live), {"first": first.id}).scalar_one() == 1


# -- (b) compare-and-set ------------------------------------------------------------------------


def _load_then_save(store: SqlStore, barrier: Any, index: int, execution_id: str) -> int:
    loaded = store.get_execution(execution_id)
    assert loaded is not None
    barrier.wait()  # everyone has loaded the same version before anyone saves
    changed = loaded.model_copy(deep=True)
    changed.context["winner"] = index
    saved = store.save_execution(
        changed,
        expected_version=loaded.version,
        events=[event(execution_id, f"w{index}"), event(execution_id, f"w{index}")],
    )
    return saved.version


def test_one_save_per_version_wins_across_threads_and_processes(
    db_url: str, store: SqlStore
) -> None:
    store.create_execution(make_execution(version=3), now=T0, events=[event("contested", "before")])

    outcomes = race(
        db_url,
        _load_then_save,
        "contested",
        processes=2,
        threads_per_process=3,
        parent_threads=4,
    )

    winners = [i for i, (kind, _) in enumerate(outcomes) if kind == "ok"]
    assert len(winners) == 1
    assert outcomes[winners[0]] == ("ok", 4)
    losers = [value for kind, value in outcomes if kind == "error"]
    assert len(losers) == len(outcomes) - 1
    assert all(isinstance(e, VersionConflictError) for e in losers)
    assert all(e.code == ErrorCode.VERSION_CONFLICT for e in losers)
    stored = store.get_execution("contested")
    assert stored is not None
    assert (stored.version, stored.context["winner"]) == (4, winners[0])
    step_ids = [e.step_id for e in store.list_events("contested")]
    assert step_ids == ["before", f"w{winners[0]}", f"w{winners[0]}"]


def _bump_each_round(
    store: SqlStore, barrier: Any, index: int, execution_id: str, rounds: int
) -> list[int]:
    won = []
    for round_ in range(rounds):
        loaded = store.get_execution(execution_id)
        assert loaded is not None
        barrier.wait()  # all workers hold version v
        changed = loaded.model_copy(deep=True)
        changed.context["counter"] += 1
        try:
            store.save_execution(
                changed,
                expected_version=loaded.version,
                events=[event(execution_id, f"round{round_}")],
            )
            won.append(round_)
        except VersionConflictError:
            pass
        barrier.wait()  # the round is over: v + 1 is committed for everyone to load
    return won


def test_rounds_of_racing_bumps_end_at_version_n_with_exactly_n_winning_saves(
    db_url: str, store: SqlStore
) -> None:
    rounds = 15
    store.create_execution(make_execution(), now=T0)

    outcomes = race(
        db_url, _bump_each_round, "contested", rounds, processes=2, threads_per_process=2
    )

    won_rounds = sorted(r for kind, won in outcomes if kind == "ok" for r in won)
    assert [kind for kind, _ in outcomes] == ["ok"] * 4
    assert won_rounds == list(range(rounds)), "exactly one winner in every round"
    stored = store.get_execution("contested")
    assert stored is not None
    assert (stored.version, stored.context["counter"]) == (rounds, rounds)
    assert [e.step_id for e in store.list_events("contested")] == [
        f"round{r}" for r in range(rounds)
    ]


def _increment_until_done(
    store: SqlStore, barrier: Any, index: int, execution_id: str, increments: int
) -> int:
    barrier.wait()
    done = conflicts = 0
    while done < increments:
        loaded = store.get_execution(execution_id)
        assert loaded is not None
        changed = loaded.model_copy(deep=True)
        changed.context["counter"] += 1
        try:
            store.save_execution(
                changed,
                expected_version=loaded.version,
                events=[event(execution_id, f"w{index}")],
            )
            done += 1
        except VersionConflictError:
            conflicts += 1  # reload and try again, as the engine does
    return conflicts


def test_free_running_increments_with_reload_on_conflict_lose_no_update(
    db_url: str, store: SqlStore
) -> None:
    store.create_execution(make_execution(), now=T0)

    outcomes = race(
        db_url,
        _increment_until_done,
        "contested",
        10,
        processes=2,
        threads_per_process=2,
        parent_threads=2,
    )

    assert [kind for kind, _ in outcomes] == ["ok"] * 6
    stored = store.get_execution("contested")
    assert stored is not None
    assert (stored.context["counter"], stored.version) == (60, 60)
    assert count(store, "SELECT count(*) FROM fm_events") == 60


# -- (c) claiming due wakes ---------------------------------------------------------------------


def _claim_all(store: SqlStore, barrier: Any, index: int, now: datetime) -> list[str]:
    barrier.wait()
    claimed: list[str] = []
    for _ in range(100):  # 20 batches hold every due wake; a store that re-hands them stops here
        batch = store.claim_due_wakes(now, 10, now + timedelta(hours=1))
        if not batch:
            break
        claimed += [execution.id for execution in batch]
    return claimed


def test_two_processes_claiming_due_wakes_claim_each_of_200_exactly_once(
    db_url: str, store: SqlStore
) -> None:
    now = T0 + timedelta(hours=1)
    due = {f"due-{i:03d}" for i in range(200)}
    for i, execution_id in enumerate(sorted(due)):
        store.create_execution(
            make_execution(
                id=execution_id,
                status=ExecutionStatus.WAITING,
                wait_kind=WaitKind.TIMER,
                wake_at=T0 + timedelta(seconds=i),
            ),
            now=T0,
        )
    for execution_id, status, wake_at in [
        ("later", ExecutionStatus.WAITING, now + timedelta(seconds=1)),
        ("running", ExecutionStatus.RUNNING, T0),
    ]:
        store.create_execution(
            make_execution(id=execution_id, status=status, wake_at=wake_at), now=T0
        )

    outcomes = race(db_url, _claim_all, now, processes=2, threads_per_process=2)

    claimed = [ids for kind, ids in outcomes if kind == "ok"]
    assert len(claimed) == 4
    every = [execution_id for ids in claimed for execution_id in ids]
    assert len(every) == len(set(every)), "no execution was claimed twice"
    assert set(every) == due
    assert store.find_due_wakes(now, limit=500) == []
    # A claim moves nothing on (same version); a claimer that died leaves them due again later.
    assert {e.version for e in store.list_executions(limit=500)} == {0}
    due_again = store.find_due_wakes(now + timedelta(hours=1), limit=500)
    assert {e.id for e in due_again} == due | {"later"}


# -- (d) the engine on SqlStore -----------------------------------------------------------------

STEPS = ["s1", "s2", "s3", "s4", "s5"]
PIPELINE_FLOW = {
    "id": "pipeline",
    "initialStepId": "s1",
    "steps": {
        step: {
            "type": "gate" if step == "s3" else "append",
            "input": {"type": "key", "key": "trail"},
            "outputKey": "trail",
            "transitions": {"onSuccess": STEPS[i + 1] if i + 1 < len(STEPS) else None},
        }
        for i, step in enumerate(STEPS)
    },
}


@handler("append")
def append(params: HandlerParams) -> StepResult:
    return Result.success([*(params.input or []), params.step.id])


class Gate:
    """A step that can be held open: tells the test it has started, then waits for release."""

    type = "gate"

    def __init__(self, hold: bool) -> None:
        self.hold = hold
        self.entered = threading.Event()
        self.release = threading.Event()

    def execute(self, params: HandlerParams) -> StepResult:
        if self.hold:
            self.entered.set()
            assert self.release.wait(timeout=30), "the test never released the gate"
        return Result.success([*(params.input or []), params.step.id])


def pipeline_engine(store: SqlStore, gate: Gate | None = None) -> Engine:
    handlers = HandlerRegistry([append, gate or Gate(hold=False)])
    return Engine(store, handlers, FlowRegistry([PIPELINE_FLOW]), clock=ManualClock(T0))


def run_together(*jobs: Callable[[], Any]) -> list[Any]:
    """Run each job in its own thread, released at once; their results (or raised errors)."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def runner(index: int) -> None:
        barrier.wait()
        try:
            results[index] = jobs[index]()
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def assert_history_ends_at_its_terminal_event(engine: Engine, execution: Execution) -> None:
    history = engine.history(execution.id)
    terminal = {EventType.EXECUTION_COMPLETED, EventType.EXECUTION_CANCELLED}
    ends = [i for i, e in enumerate(history) if e.type in terminal]
    assert ends == [len(history) - 1], [e.type.value for e in history]
    expected_end = {
        ExecutionStatus.COMPLETED: EventType.EXECUTION_COMPLETED,
        ExecutionStatus.CANCELLED: EventType.EXECUTION_CANCELLED,
    }[execution.status]
    assert history[-1].type is expected_end
    ran = [e.step_id for e in history if e.type is EventType.STEP_COMPLETED]
    assert ran == STEPS[: len(ran)], "steps ran once each, in order"
    assert execution.context["trail"] == ran if ran else "trail" not in execution.context


def test_four_threads_running_different_executions_on_one_engine_all_complete(
    store: SqlStore,
) -> None:
    engine = pipeline_engine(store)
    ids = [engine.create("pipeline", {}).execution.id for _ in range(4)]

    finished = run_together(*[lambda i=i: engine.run(i) for i in ids])

    assert [e.status for e in finished] == [ExecutionStatus.COMPLETED] * 4
    for execution in finished:
        assert execution.context["trail"] == STEPS
        assert execution.step_count == 5
        assert_history_ends_at_its_terminal_event(engine, execution)


def test_cancel_committed_during_a_step_discards_that_steps_result(store: SqlStore) -> None:
    gate = Gate(hold=True)
    engine = pipeline_engine(store, gate)
    execution_id = engine.create("pipeline", {}).execution.id
    ran: list[Any] = []
    runner = threading.Thread(target=lambda: ran.append(engine.run(execution_id)))
    runner.start()

    assert gate.entered.wait(timeout=30)
    cancelled = engine.cancel(execution_id, reason="customer changed their mind")
    gate.release.set()
    runner.join(timeout=30)

    assert cancelled.cancelled and cancelled.previous_status is ExecutionStatus.RUNNING
    (final,) = ran
    assert final.status is ExecutionStatus.CANCELLED
    assert final.context["trail"] == ["s1", "s2"], "the gate's output was not saved"
    assert final == engine.get(execution_id)
    assert_history_ends_at_its_terminal_event(engine, final)


def test_cancel_racing_run_leaves_each_execution_cancelled_or_completed_never_both(
    store: SqlStore,
) -> None:
    engine = pipeline_engine(store)
    ids = [engine.create("pipeline", {}).execution.id for _ in range(6)]
    jobs: list[Callable[[], Any]] = []
    for execution_id in ids:
        jobs += [
            lambda i=execution_id: engine.run(i),
            lambda i=execution_id: engine.cancel(i, reason="race"),
        ]

    results = run_together(*jobs)

    for n, execution_id in enumerate(ids):
        run_result, cancel_result = results[2 * n], results[2 * n + 1]
        assert not isinstance(run_result, BaseException), run_result
        assert not isinstance(cancel_result, BaseException), cancel_result
        final = engine.get(execution_id)
        assert final is not None
        assert run_result == final, "run() returns the final stored state"
        if cancel_result.cancelled:
            assert final.status is ExecutionStatus.CANCELLED
        else:
            assert final.status is ExecutionStatus.COMPLETED
            assert "already completed" in (cancel_result.error or "")
        assert_history_ends_at_its_terminal_event(engine, final)
