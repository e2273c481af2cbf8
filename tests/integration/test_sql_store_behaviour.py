"""SqlStore behaviour a user meets on real PostgreSQL and SQLite, beyond the Store contract:
state that survives a restart, retention, stored flow definitions, driver errors translated
into retryable errors that never leak a password, and the engine end to end, across restarts."""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    EventType,
    Execution,
    ExecutionError,
    ExecutionStatus,
    Flow,
    FlowMonkeyError,
    FlowRegistry,
    FlowValidationError,
    HandlerParams,
    HandlerRegistry,
    HistoryEvent,
    ManualClock,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.core.execution import Cancellation, ErrorInfo, TimeoutConfig, WaitKind
from flowmonkey_celery.errors import StoreUnavailableError, VersionConflictError
from flowmonkey_celery.examples import orders
from flowmonkey_celery.runtime import build_store
from flowmonkey_celery.settings import Settings
from flowmonkey_celery.stores.sql import SqlStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))
NEW_YORK_WINTER = timezone(timedelta(hours=-5))


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database."""
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
        "id": "ex-1",
        "flow_id": "orders",
        "flow_version": "1.0.0",
        "current_step_id": "validate",
        "context": {"order": {"id": "A-1"}},
        "created_at": T0,
        "updated_at": T0,
    }
    return Execution(**{**values, **fields})


# -- state survives a restart ------------------------------------------------------------------


def _read_in_new_process(url: str, execution_id: str) -> tuple[str | None, list[str]]:
    store = SqlStore(url)
    try:
        loaded = store.get_execution(execution_id)
        events = store.list_events(execution_id)
        return (
            loaded.model_dump_json() if loaded else None,
            [e.model_dump_json() for e in events],
        )
    finally:
        store.dispose()


def test_every_execution_field_survives_a_process_restart(db_url: str) -> None:
    moment = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=IST)  # not UTC, with microseconds
    original = Execution(
        id="ex-restart",
        flow_id="orders",
        flow_version="2.1.0-rc.1",
        status=ExecutionStatus.CANCELLED,
        current_step_id="charge-payment",
        context={
            "order": {"id": "A-1", "items": [{"sku": "mug", "qty": 2, "price": 12.5}]},
            "big": 2**60,
            "float_one": 1.0,
            "tenth": 0.1,
            "flags": [True, False, None],
            "unicode": "Grüße, 東京 🐒",
            "empty": {},
        },
        wake_at=moment,
        wait_reason="waiting for the card network",
        error=ErrorInfo(
            code="WAIT_TIMEOUT",
            message="wait timeout of 5000 ms passed",
            step_id="charge-payment",
            details={"timeout_ms": 5000, "nested": {"list": [1, "two", None]}},
        ),
        step_count=7,
        tenant_id="tenant-1",
        metadata={"source": "api", "tags": ["a", "b"]},
        parent_execution_id=None,
        idempotency_key="order-A-1",
        idempotency_expires_at=moment + timedelta(days=1),
        cancellation=Cancellation(
            source="timeout", reason=None, cancelled_at=datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
        ),
        timeout=TimeoutConfig(execution_timeout_ms=60_000, wait_timeout_ms=5_000),
        retry_attempts=2,
        created_at=moment - timedelta(hours=1),
        updated_at=moment.astimezone(NEW_YORK_WINTER),
        version=4,
        wait_kind=WaitKind.SIGNAL,
        wait_started_at=moment - timedelta(minutes=5),
        wait_deadline_at=moment + timedelta(seconds=5),
        deadline_at=moment + timedelta(minutes=1),
        started_at=moment - timedelta(minutes=59),
        finished_at=moment + timedelta(microseconds=1),
        lease_expires_at=moment + timedelta(seconds=30),
        join_id="j-1",
        branch_index=0,
        parent_close="cancel",
    )
    assert original.model_fields_set == set(Execution.model_fields), "every field is set"
    history = [
        HistoryEvent(
            execution_id=original.id,
            type=EventType.STEP_COMPLETED,
            at=moment,
            step_id="charge-payment",
            handler_type="charge-card",
            outcome="failure",
            attempt=3,
            started_at=moment - timedelta(milliseconds=250),
            finished_at=moment,
            duration_ms=250.125,
            error=ErrorInfo(code="CARD_DECLINED", message="declined", details={"status": 402}),
            data={"note": "ünïcode", "n": [1, 2.5]},
        )
    ]
    writer = SqlStore(db_url)
    writer.create_execution(original, now=T0, events=history)
    writer.dispose()

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        loaded_json, events_json = pool.submit(_read_in_new_process, db_url, original.id).result()
    reader = SqlStore(db_url)
    in_process = reader.get_execution(original.id)
    reader.dispose()

    assert loaded_json is not None
    loaded = Execution.model_validate_json(loaded_json)
    assert loaded == original
    assert in_process == original
    assert type(loaded.context["float_one"]) is float and loaded.context["big"] == 2**60
    assert loaded.updated_at == moment and loaded.updated_at.utcoffset() == timedelta(0)
    assert loaded.finished_at is not None and loaded.finished_at.microsecond == 123457
    assert [HistoryEvent.model_validate_json(e) for e in events_json] == history


def test_a_naive_datetime_is_refused_and_nothing_is_stored(store: SqlStore) -> None:
    naive = datetime(2026, 1, 5, 9, 0)

    with pytest.raises((FlowMonkeyError, ValueError)) as raised:
        store.create_execution(make_execution(wake_at=naive), now=T0)

    assert "naive" in str(raised.value)
    assert store.get_execution("ex-1") is None
    assert count(store, "SELECT count(*) FROM fm_executions") == 0


def test_a_naive_instant_in_a_query_is_refused(store: SqlStore) -> None:
    store.create_execution(
        make_execution(status=ExecutionStatus.WAITING, wake_at=T0, wait_kind=WaitKind.TIMER),
        now=T0,
    )

    # A naive "now" would silently be read in the server's (PostgreSQL) or no (SQLite) zone.
    with pytest.raises((FlowMonkeyError, ValueError)) as raised:
        store.find_due_wakes(datetime(2026, 1, 5, 12, 0))

    assert "naive" in str(raised.value)


# -- retention ---------------------------------------------------------------------------------

TERMINAL = [ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED]


def _with_history(store: SqlStore, execution: Execution) -> None:
    events = [
        HistoryEvent(execution_id=execution.id, type=EventType.EXECUTION_CREATED, at=T0),
        HistoryEvent(execution_id=execution.id, type=EventType.EXECUTION_STARTED, at=T0),
    ]
    store.create_execution(execution, now=T0, events=events)


def test_retention_deletes_old_finished_executions_in_batches_with_events_and_keys(
    store: SqlStore,
) -> None:
    cutoff = T0 + timedelta(days=30)
    old = [
        make_execution(
            id=f"old-{i:02d}",
            status=TERMINAL[i % 3],
            finished_at=T0 + timedelta(hours=i),
            idempotency_key=f"key-{i}",
            idempotency_expires_at=T0 + timedelta(days=365),
        )
        for i in range(23)
    ]
    kept = [
        make_execution(id="running", status=ExecutionStatus.RUNNING),
        make_execution(id="waiting", status=ExecutionStatus.WAITING, wait_kind=WaitKind.SIGNAL),
        make_execution(id="at-cutoff", status=ExecutionStatus.COMPLETED, finished_at=cutoff),
        make_execution(
            id="newer",
            status=ExecutionStatus.FAILED,
            finished_at=cutoff + timedelta(seconds=1),
            idempotency_key="key-newer",
            idempotency_expires_at=T0 + timedelta(days=365),
        ),
    ]
    for execution in old + kept:
        _with_history(store, execution)

    deleted = store.delete_finished_before(cutoff, batch_size=5)

    assert deleted == 23
    assert all(store.get_execution(e.id) is None for e in old)
    assert {e.id for e in store.list_executions()} == {e.id for e in kept}
    assert all(len(store.list_events(e.id)) == 2 for e in kept)
    assert count(store, "SELECT count(*) FROM fm_events") == 2 * len(kept)
    assert count(store, "SELECT count(*) FROM fm_idempotency_keys") == 1  # key-newer only
    assert store.delete_finished_before(cutoff, batch_size=5) == 0


@handler("noop")
def noop(params: HandlerParams) -> StepResult:
    return Result.success({"done": True})


ONE_STEP = {
    "id": "orders",
    "initialStepId": "validate",
    "steps": {"validate": {"type": "noop", "outputKey": "result"}},
}


def test_after_retention_the_old_idempotency_key_creates_a_new_execution(store: SqlStore) -> None:
    clock = ManualClock(T0)
    engine = Engine(store, HandlerRegistry([noop]), FlowRegistry([ONE_STEP]), clock=clock)
    first = engine.create("orders", {}, idempotency_key="order-7", idempotency_ttl=86_400)
    assert engine.run(first.execution.id).status is ExecutionStatus.COMPLETED
    clock.advance(timedelta(hours=1))  # well within the key's 24 h

    assert store.delete_finished_before(clock.now()) == 1
    again = engine.create("orders", {}, idempotency_key="order-7")

    assert again.created and not again.idempotency_hit
    assert again.execution.id != first.execution.id
    assert engine.get(first.execution.id) is None
    with pytest.raises(ExecutionError) as raised:
        engine.history(first.execution.id)
    assert raised.value.code == ErrorCode.EXECUTION_NOT_FOUND
    assert [e.type for e in engine.history(again.execution.id)] == [EventType.EXECUTION_CREATED]
    third = engine.create("orders", {}, idempotency_key="order-7")
    assert third.idempotency_hit and third.execution.id == again.execution.id


# -- flow definitions --------------------------------------------------------------------------

APPROVAL = {
    "id": "approval",
    "version": "1.0.0",
    "initialStepId": "ask",
    "steps": {
        "ask": {
            "type": "wait-for-approval",
            "input": {"type": "static", "value": {"note": "approve?"}},
            "outputKey": "approval",
            "transitions": {"onSuccess": "done", "onResume": None},  # explicit: resume completes
        },
        "ask-again": {
            "type": "wait-for-approval",
            "input": {"type": "template", "template": {"note": "again ${approval.by}"}},
            "transitions": {"onSuccess": "done"},  # absent onResume: resume goes on to done
            "retry": {"maxAttempts": 2, "backoffMs": 10, "retryOn": ["NETWORK"]},
            "timeoutMs": 500,
        },
        "done": {"type": "send-email", "input": {"type": "keys", "keys": ["order"]}},
    },
}


def test_saving_a_flow_definition_is_true_once_then_false_for_the_same_flow(
    store: SqlStore,
) -> None:
    flow = Flow.from_dict(APPROVAL)
    snake_case = Flow.from_dict(flow.model_dump(mode="json", exclude_unset=True))
    assert "initial_step_id" in flow.model_dump(mode="json", exclude_unset=True)

    assert store.save_flow_definition(flow, now=T0) is True
    assert store.save_flow_definition(flow, now=T0 + timedelta(hours=1)) is False
    assert store.save_flow_definition(snake_case, now=T0) is False
    assert count(store, "SELECT count(*) FROM fm_flow_definitions") == 1


def test_a_changed_definition_under_a_stored_version_is_refused(store: SqlStore) -> None:
    store.save_flow_definition(Flow.from_dict(APPROVAL), now=T0)
    changed = {**APPROVAL, "initialStepId": "ask-again"}

    with pytest.raises(FlowValidationError) as raised:
        store.save_flow_definition(Flow.from_dict(changed), now=T0)

    assert raised.value.code == ErrorCode.INVALID_FLOW
    assert "approval" in str(raised.value) and "1.0.0" in str(raised.value)
    assert "new version" in str(raised.value)
    assert [f.to_dict() for f in store.list_flow_definitions()] == [
        Flow.from_dict(APPROVAL).to_dict()
    ]
    assert store.save_flow_definition(Flow.from_dict({**changed, "version": "1.1.0"}), now=T0)


def test_listed_flow_definitions_equal_the_saved_flows_after_a_restart(db_url: str) -> None:
    flows = [
        Flow.from_dict(APPROVAL),
        Flow.from_dict({**APPROVAL, "version": "2.0.0", "name": "Approval v2"}),
        orders.order_flow(),
        Flow.from_dict(README_ORDER_FLOW),
    ]
    writer = SqlStore(db_url)
    for n, flow in enumerate(flows):
        writer.save_flow_definition(flow, now=T0 + timedelta(minutes=n))
    writer.dispose()

    reader = SqlStore(db_url)
    listed = reader.list_flow_definitions()
    reader.dispose()

    assert sorted(listed, key=lambda f: (f.id, f.version)) == sorted(
        flows, key=lambda f: (f.id, f.version)
    )
    by_key = {(f.id, f.version): f for f in listed}
    for flow in flows:
        assert by_key[(flow.id, flow.version)].to_dict() == flow.to_dict()
    approval = by_key[("approval", "1.0.0")]
    assert approval.steps["ask"].transitions.resume_target() is None  # explicit onResume: null
    assert approval.steps["ask-again"].transitions.resume_target() == "done"  # absent
    assert "onResume" in approval.to_dict()["steps"]["ask"]["transitions"]
    assert "onResume" not in approval.to_dict()["steps"]["ask-again"]["transitions"]


# -- driver errors, translated -----------------------------------------------------------------

SECRET = "hunter2-not-a-real-password"
CLOSED_PORT_URL = f"postgresql+psycopg2://postgres:{SECRET}@127.0.0.1:1/orders_db"

OPERATIONS: dict[str, Callable[[SqlStore], Any]] = {
    "get_execution": lambda s: s.get_execution("ex-1"),
    "create_execution": lambda s: s.create_execution(make_execution(), now=T0),
    "save_execution": lambda s: s.save_execution(make_execution(), expected_version=0),
    "claim_due_wakes": lambda s: s.claim_due_wakes(T0, 10, T0 + timedelta(minutes=1)),
    "delete_finished_before": lambda s: s.delete_finished_before(T0),
    "list_flow_definitions": lambda s: s.list_flow_definitions(),
    "migrate": lambda s: s.migrate(),
    "check_schema": lambda s: s.check_schema(),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_an_unreachable_database_raises_a_retryable_error_without_the_password(
    operation: str,
) -> None:
    store = SqlStore(CLOSED_PORT_URL)
    try:
        with pytest.raises(StoreUnavailableError) as raised:
            OPERATIONS[operation](store)
    finally:
        store.dispose()

    error = raised.value
    message = str(error)
    assert error.code == ErrorCode.STORE_UNAVAILABLE
    assert error.retryable is True
    assert "postgresql+psycopg2://postgres:***@127.0.0.1:1/orders_db" in message
    assert "retried" in message
    # Nowhere a user or a log could see it: message, details, repr, the chained traceback.
    shown = [message, repr(error), repr(error.details), "".join(traceback.format_exception(error))]
    assert not [text for text in shown if SECRET in text]


def test_the_store_shows_its_url_without_the_password() -> None:
    store = SqlStore(CLOSED_PORT_URL)

    assert SECRET not in store.database and SECRET not in repr(store)
    assert store.database == "postgresql+psycopg2://postgres:***@127.0.0.1:1/orders_db"


def test_a_sqlite_file_that_cannot_be_opened_raises_store_unavailable(tmp_path: Any) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/no-such-dir/flowmonkey.db")

    with pytest.raises(StoreUnavailableError) as raised:
        store.get_execution("ex-1")

    assert "no-such-dir/flowmonkey.db" in str(raised.value)
    assert "retried" in str(raised.value)


def _terminate_backends(url: str, pid: int | None = None) -> int:
    """Kill this database's connections (or one of them), as a failover or an admin would."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            which = "pid = :pid" if pid is not None else "pid <> pg_backend_pid()"
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE datname = :db AND {which}"
                    ),
                    {"db": make_url(url).database, "pid": pid},
                ).all()
            )
    finally:
        admin.dispose()


def test_a_read_on_a_connection_killed_moments_ago_is_retried_on_a_fresh_one(
    postgres_url: str,
) -> None:
    # The pool checks only connections that sat idle for a while (a ping on every checkout
    # would cost a round trip per transaction); a read that finds its connection dead is
    # simply run again on a new one.
    store = SqlStore(postgres_url)
    store.create_execution(make_execution(), now=T0)
    assert _terminate_backends(postgres_url) >= 1

    loaded = store.get_execution("ex-1")
    listed = store.list_events("ex-1")
    store.dispose()

    assert loaded == make_execution()
    assert listed == []


def test_an_idle_connection_killed_meanwhile_is_replaced_before_a_write_uses_it(
    postgres_url: str,
) -> None:
    # ping_after_idle_seconds=0: every checkout counts as idle, so the liveness check runs.
    store = SqlStore(postgres_url, ping_after_idle_seconds=0)
    store.create_execution(make_execution(), now=T0)
    assert _terminate_backends(postgres_url) >= 1

    saved = store.save_execution(make_execution(step_count=1), expected_version=0)
    store.dispose()

    assert saved.version == 1


def test_a_write_on_a_connection_killed_moments_ago_raises_store_unavailable_then_recovers(
    postgres_url: str,
) -> None:
    # A write is never retried by the store: had it reached the database, a second attempt
    # could apply it twice. The error says it can be retried; the step task does so.
    store = SqlStore(postgres_url)
    store.create_execution(make_execution(), now=T0)
    assert _terminate_backends(postgres_url) >= 1

    with pytest.raises(StoreUnavailableError) as raised:
        store.save_execution(make_execution(step_count=1), expected_version=0)
    saved = store.save_execution(make_execution(step_count=1), expected_version=0)
    store.dispose()

    assert make_url(postgres_url).database in str(raised.value)
    assert "retried" in str(raised.value)
    assert saved.version == 1


def test_a_connection_killed_inside_a_save_commits_nothing_and_the_save_can_be_retried(
    postgres_url: str,
) -> None:
    store = SqlStore(postgres_url)
    store.create_execution(make_execution(), now=T0)
    killed: list[int] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def kill_before_the_update(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # PostgreSQL saves in one statement, `EXECUTE fm_save_1 (...)`, once its PREPARE has
        # gone through: the connection dies with the save on its way.
        if statement.startswith("EXECUTE fm_save") and not killed:
            killed.append(_terminate_backends(postgres_url, cursor.connection.get_backend_pid()))

    running = make_execution(status=ExecutionStatus.RUNNING, context={"charged": True})
    step_event = HistoryEvent(execution_id="ex-1", type=EventType.EXECUTION_STARTED, at=T0)
    with pytest.raises(StoreUnavailableError):
        store.save_execution(running, expected_version=0, events=[step_event])

    assert killed == [1]
    assert store.get_execution("ex-1") == make_execution(), "nothing was committed"
    assert store.list_events("ex-1") == []
    saved = store.save_execution(running, expected_version=0, events=[step_event])
    assert saved.version == 1
    assert store.list_events("ex-1") == [step_event]
    store.dispose()


# -- the engine end to end ---------------------------------------------------------------------

README_ORDER_FLOW = {
    "id": "process-order",
    "version": "1.0.0",
    "initialStepId": "validate",
    "steps": {
        "validate": {
            "id": "validate",
            "type": "validate-order",
            "config": {},
            "input": {"type": "key", "key": "order"},
            "outputKey": "validated",
            "transitions": {"onSuccess": "charge-payment", "onFailure": "notify-invalid"},
        },
        "charge-payment": {
            "id": "charge-payment",
            "type": "http",
            "config": {},
            "input": {
                "type": "template",
                "template": {
                    "url": "https://api.stripe.com/v1/charges",
                    "method": "POST",
                    "body": {"amount": "${validated.total}"},
                },
            },
            "outputKey": "payment",
            "transitions": {"onSuccess": "send-confirmation"},
        },
        "send-confirmation": {
            "id": "send-confirmation",
            "type": "email",
            "config": {},
            "input": {"type": "full"},
            "transitions": {"onSuccess": None},
        },
        "notify-invalid": {
            "id": "notify-invalid",
            "type": "log",
            "config": {},
            "input": {"type": "static", "value": {"error": "Invalid order"}},
            "transitions": {"onSuccess": None},
        },
    },
}


class OrderHandlers:
    """The README order flow's handlers, recording every call (across engines)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def registry(self) -> HandlerRegistry:
        calls = self.calls

        @handler("validate-order")
        def validate(params: HandlerParams) -> StepResult:
            calls.append(("validate", params.input))
            if params.input.get("total", 0) <= 0:
                return Result.failure("INVALID_ORDER", "total must be positive")
            return Result.success({"total": params.input["total"]})

        @handler("http")
        def http(params: HandlerParams) -> StepResult:
            calls.append(("http", params.input))
            return Result.success({"status": "success", "charged": params.input["body"]})

        @handler("email")
        def email(params: HandlerParams) -> StepResult:
            calls.append(("email", sorted(params.input)))
            return Result.success({"sent": True})

        @handler("log")
        def log(params: HandlerParams) -> StepResult:
            calls.append(("log", params.input))
            return Result.success()

        return HandlerRegistry([validate, http, email, log])


def order_engine(store: SqlStore, recorder: OrderHandlers, clock: ManualClock) -> Engine:
    return Engine(store, recorder.registry(), FlowRegistry([README_ORDER_FLOW]), clock=clock)


def test_readme_order_flow_charges_valid_orders_and_routes_invalid_ones(store: SqlStore) -> None:
    recorder = OrderHandlers()
    engine = order_engine(store, recorder, ManualClock(T0))

    good = engine.run(
        engine.create("process-order", {"order": {"id": "1", "total": 100}}).execution.id
    )
    bad = engine.run(
        engine.create("process-order", {"order": {"id": "2", "total": -5}}).execution.id
    )

    assert good.status is ExecutionStatus.COMPLETED
    assert good.context["payment"] == {"status": "success", "charged": {"amount": 100}}
    charge = {"url": "https://api.stripe.com/v1/charges", "method": "POST", "body": {"amount": 100}}
    assert ("http", charge) in recorder.calls
    assert bad.status is ExecutionStatus.COMPLETED
    assert bad.context["_error"]["code"] == "INVALID_ORDER"
    assert "payment" not in bad.context
    assert [e.step_id for e in engine.history(bad.id) if e.type is EventType.STEP_COMPLETED] == [
        "validate",
        "notify-invalid",
    ]


def test_readme_order_flow_finishes_after_a_restart_between_steps(db_url: str) -> None:
    recorder = OrderHandlers()
    store = SqlStore(db_url)
    engine = order_engine(store, recorder, ManualClock(T0))
    execution_id = engine.create("process-order", {"order": {"id": "1", "total": 100}}).execution.id
    assert engine.step(execution_id).next_step_id == "charge-payment"
    del engine
    store.dispose()  # the worker dies between two steps

    store = SqlStore(db_url)
    engine = order_engine(store, recorder, ManualClock(T0 + timedelta(minutes=5)))
    finished = engine.run(execution_id)
    history = engine.history(execution_id)
    store.dispose()

    assert finished.status is ExecutionStatus.COMPLETED
    assert [name for name, _ in recorder.calls] == ["validate", "http", "email"]
    assert [e.step_id for e in history if e.type is EventType.STEP_COMPLETED] == [
        "validate",
        "charge-payment",
        "send-confirmation",
    ]
    assert [e.type for e in history].count(EventType.EXECUTION_STARTED) == 1
    assert history[-1].type is EventType.EXECUTION_COMPLETED


def restarted(db_url: str, clock: ManualClock) -> tuple[SqlStore, Engine]:
    """A new worker: a fresh store, and the flows it finds in the database."""
    store = SqlStore(db_url)
    store.check_schema()
    flows = FlowRegistry(store.list_flow_definitions())
    return store, Engine(store, HandlerRegistry(orders.HANDLERS), flows, clock=clock)


def test_approval_flow_survives_restarts_while_waiting_for_a_person_a_retry_and_a_timer(
    db_url: str,
) -> None:
    order = {
        "id": "A-7",
        "items": [{"price": 600, "qty": 2}],
        "card": "flaky",  # fails once: a durable retry backoff follows
        "country": "DE",
        "customer": {"email": "ada@example.com"},
    }
    store = SqlStore(db_url)
    store.save_flow_definition(orders.order_flow(), now=T0)
    store.dispose()

    # Worker 1: the order is large, so it waits for a manager.
    store, engine = restarted(db_url, ManualClock(T0))
    execution_id = engine.create(
        "order-fulfilment", {"order": order}, idempotency_key="order-A-7"
    ).execution.id
    waiting = engine.run(execution_id)
    assert (waiting.status, waiting.wait_kind) == (ExecutionStatus.WAITING, WaitKind.SIGNAL)
    assert waiting.wait_reason == "Approve order A-7 for 1200 EUR"
    store.dispose()

    # Worker 2, an hour later: the manager approves; the card fails once and backs off.
    store, engine = restarted(db_url, ManualClock(T0 + timedelta(hours=1)))
    again = engine.create("order-fulfilment", {"order": order}, idempotency_key="order-A-7")
    assert again.execution.id == execution_id and not again.created
    engine.resume(execution_id, {"decision": "approved", "by": "manager@example.com"})
    backing_off = engine.run(execution_id)
    assert (backing_off.status, backing_off.wait_kind) == (ExecutionStatus.WAITING, WaitKind.RETRY)
    assert backing_off.current_step_id == "charge-payment"
    store.dispose()

    # Worker 3: the backoff is due; the charge succeeds; a 20 h pickup timer starts.
    clock = ManualClock(T0 + timedelta(hours=1, seconds=3))
    store, engine = restarted(db_url, clock)
    assert engine.wake_due() == [execution_id]
    timer = engine.run(execution_id)
    assert (timer.status, timer.wait_kind) == (ExecutionStatus.WAITING, WaitKind.TIMER)
    assert engine.wake_due(clock.now() + timedelta(hours=19)) == []
    store.dispose()

    # Worker 4: the timer is due; the customer is notified.
    store, engine = restarted(db_url, ManualClock(T0 + timedelta(hours=22)))
    assert engine.wake_due() == [execution_id]
    done = engine.run(execution_id)
    history = engine.history(execution_id)
    store.dispose()

    assert done.status is ExecutionStatus.COMPLETED
    assert done.context["approval"] == {"decision": "approved", "by": "manager@example.com"}
    assert done.context["payment"]["amount"] == 1200
    assert done.context["notification"] == {
        "sent_to": "ada@example.com",
        "subject": f"Order A-7 is on its way (payment {done.context['payment']['charge_id']})",
    }
    charges = [
        (e.attempt, e.outcome)
        for e in history
        if e.type is EventType.STEP_COMPLETED and e.step_id == "charge-payment"
    ]
    assert charges == [(1, "failure"), (2, "success")]
    resumed = [e.data["trigger"] for e in history if e.type is EventType.EXECUTION_RESUMED]
    assert resumed == ["signal", "retry", "timer"]
    assert [e.type for e in history].count(EventType.IDEMPOTENCY_HIT) == 1
    assert history[-1].type is EventType.EXECUTION_COMPLETED


# -- round trips on PostgreSQL -----------------------------------------------------------------


def _statements(store: SqlStore) -> list[str]:
    sent: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    return sent


def _step_events(step_id: str) -> list[HistoryEvent]:
    return [
        HistoryEvent(execution_id="ex-1", type=EventType.STEP_STARTED, at=T0, step_id=step_id),
        HistoryEvent(execution_id="ex-1", type=EventType.STEP_COMPLETED, at=T0, step_id=step_id),
        HistoryEvent(execution_id="ex-1", type=EventType.TRANSITION, at=T0, data={"to": "x"}),
    ]


def test_on_postgres_a_save_with_its_events_is_one_statement_and_a_load_one_more(
    postgres_url: str,
) -> None:
    # Each statement is a round trip to the database, and a step makes these two: the save
    # runs in autocommit as one prepared statement (no BEGIN/COMMIT), the load likewise.
    store = SqlStore(postgres_url)
    store.create_execution(make_execution(), now=T0)
    first, second = _step_events("validate"), _step_events("charge")
    sent = _statements(store)
    store.save_execution(make_execution(step_count=1), expected_version=0, events=first)
    assert [s.split()[0] for s in sent] == ["PREPARE", "EXECUTE"], "prepared on first use"
    sent.clear()

    store.save_execution(make_execution(step_count=2), expected_version=1, events=second)
    loaded = store.get_execution("ex-1")
    listed = store.list_events("ex-1")
    store.dispose()

    assert len(sent) == 3  # save, load, list
    assert loaded is not None and loaded.version == 2 and loaded.step_count == 2
    assert listed == first + second, "every event stored, in order"


def test_on_postgres_a_save_whose_prepared_statement_was_discarded_prepares_it_again(
    postgres_url: str,
) -> None:
    # A connection pooler may run DISCARD ALL between two uses of a server connection.
    store = SqlStore(postgres_url, pool_size=1)
    store.create_execution(make_execution(), now=T0)
    store.save_execution(make_execution(step_count=1), expected_version=0, events=[])
    with store.engine.connect() as connection:
        connection.exec_driver_sql("DEALLOCATE ALL")
        connection.commit()

    saved = store.save_execution(make_execution(step_count=2), expected_version=1, events=[])
    loaded = store.get_execution("ex-1")
    store.dispose()

    assert saved.version == 2
    assert loaded is not None and loaded.step_count == 2


def _as_behind_a_transaction_mode_pooler(store: SqlStore, symptom: str) -> None:
    """Make the server behave as if each statement ran in another server session, as behind
    PgBouncer in transaction mode: a prepared statement is gone by the time it is executed
    ("lost"), or its name is already taken by another client's ("taken")."""

    @event.listens_for(store.engine, "before_cursor_execute")
    def other_session(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if symptom == "lost" and statement.startswith("EXECUTE fm_save"):
            cursor.execute("DEALLOCATE ALL")
        if symptom == "taken" and statement.startswith("PREPARE fm_save"):
            cursor.execute(statement)


@pytest.mark.parametrize("symptom", ["lost", "taken"])
def test_on_postgres_behind_a_transaction_mode_pooler_saves_switch_to_transactions(
    postgres_url: str, symptom: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqlStore(postgres_url)
    store.create_execution(make_execution(), now=T0)
    _as_behind_a_transaction_mode_pooler(store, symptom)
    sent = _statements(store)

    written_a, written_b = _step_events("a"), _step_events("b")
    with caplog.at_level("WARNING", logger="flowmonkey_celery.stores.sql"):
        first = store.save_execution(
            make_execution(step_count=1), expected_version=0, events=written_a
        )
    after_switch = len(sent)
    second = store.save_execution(
        make_execution(step_count=2), expected_version=1, events=written_b
    )
    loaded = store.get_execution("ex-1")
    listed = store.list_events("ex-1")
    store.dispose()

    assert (first.version, second.version) == (1, 2)
    assert loaded is not None and loaded.step_count == 2 and loaded.version == 2
    assert listed == written_a + written_b, "each save written exactly once"
    assert (
        "transaction-mode pooler" in caplog.text and "FLOWMONKEY_PREPARED_STATEMENTS" in caplog.text
    )
    assert not any(s.startswith(("PREPARE", "EXECUTE")) for s in sent[after_switch:])


def test_flowmonkey_prepared_statements_0_makes_the_runtimes_store_save_in_transactions(
    postgres_url: str,
) -> None:
    settings = Settings(database_url=postgres_url, prepared_statements=False)
    store = build_store(settings)  # postgres_url is migrated
    store.create_execution(make_execution(), now=T0)
    sent = _statements(store)
    store.save_execution(make_execution(step_count=1), expected_version=0, events=[])
    store.dispose()

    assert not any(s.startswith(("PREPARE", "EXECUTE")) for s in sent)


def test_on_postgres_without_prepared_statements_saves_are_transactions_that_behave_the_same(
    postgres_url: str,
) -> None:
    store = SqlStore(postgres_url, prepared_statements=False)
    store.create_execution(make_execution(), now=T0)
    sent = _statements(store)
    written = _step_events("a")
    store.save_execution(make_execution(step_count=1), expected_version=0, events=written)
    with pytest.raises(VersionConflictError):
        store.save_execution(make_execution(step_count=9), expected_version=0)
    loaded = store.get_execution("ex-1")
    listed = store.list_events("ex-1")
    store.dispose()

    assert not any(s.startswith(("PREPARE", "EXECUTE")) for s in sent)
    assert loaded is not None and loaded.step_count == 1 and loaded.version == 1
    assert listed == written


def test_on_postgres_a_stale_one_statement_save_writes_neither_row_nor_events(
    postgres_url: str,
) -> None:
    store = SqlStore(postgres_url)
    store.create_execution(make_execution(), now=T0)
    store.save_execution(make_execution(step_count=1), expected_version=0)
    late = HistoryEvent(execution_id="ex-1", type=EventType.STEP_COMPLETED, at=T0)

    with pytest.raises(VersionConflictError, match="at version 1, expected version 0"):
        store.save_execution(make_execution(step_count=7), expected_version=0, events=[late])

    loaded = store.get_execution("ex-1")
    assert loaded is not None and loaded.step_count == 1 and loaded.version == 1
    assert store.list_events("ex-1") == []
    store.dispose()
