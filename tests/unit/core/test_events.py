"""Events: `emit` stores each event once, starts one execution per matching event trigger, and
resumes the `wait_for_event` steps waiting for it, including one whose event came first. Run
in-process on MemoryStore and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    ExecutionError,
    ExecutionStatus,
    FlowRegistry,
    FlowValidationError,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    Store,
    handler,
)
from flowmonkey_celery.core.inbox import Event, execution_id_for
from flowmonkey_celery.core.triggers import EventTrigger
from flowmonkey_celery.runtime import register_trigger
from flowmonkey_celery.stores.sql import SqlStore

START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@handler("mark")
def mark(params: HandlerParams) -> StepResult:
    return Result.success(True)


SHIP = {
    "id": "ship",
    "initialStepId": "pack",
    "steps": {"pack": {"type": "mark", "outputKey": "packed"}},
}


def payment_flow(**wait: Any) -> dict[str, Any]:
    """Waits for the payment of its order, then marks it paid."""
    return {
        "id": "checkout",
        "initialStepId": "await-payment",
        "steps": {
            "await-payment": {
                "type": "wait_for_event",
                "config": {"event": "payment.received", "match": {"order_id": "${order.id}"}},
                "outputKey": "payment",
                "transitions": {"onSuccess": "done", "onTimeout": "chase"},
                **wait,
            },
            "done": {"type": "mark", "outputKey": "paid"},
            "chase": {"type": "mark", "outputKey": "chased"},
        },
    }


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    sql = SqlStore(f"sqlite:///{tmp_path}/events.db")
    sql.migrate()
    yield sql
    sql.dispose()


def make(store: Store, *flows: dict[str, Any]) -> Engine:
    return Engine(
        store,
        HandlerRegistry([mark]),
        FlowRegistry(list(flows) or [SHIP, payment_flow()]),
        clock=ManualClock(START),
    )


def add_trigger(engine: Engine, **fields: Any) -> EventTrigger:
    trigger = EventTrigger.model_validate(
        {"id": "ship-paid", "flow_id": "ship", "event_type": "order.paid", **fields}
    )
    saved = register_trigger(engine.store, trigger, engine.clock.now())
    assert isinstance(saved, EventTrigger)
    return saved


def executions_of(engine: Engine, flow_id: str) -> list[Any]:
    return engine.store.list_executions(flow_id=flow_id)


# -- event triggers ------------------------------------------------------------------------------


def test_an_event_starts_one_execution_per_matching_trigger(store: Store) -> None:
    engine = make(store)
    add_trigger(engine, context_key="order")
    add_trigger(engine, id="ship-big", conditions=[{"path": "total", "op": "gt", "value": 100}])
    add_trigger(engine, id="ship-refund", event_type="order.refunded")

    result = engine.emit("order.paid", {"id": "A-1", "total": 250})

    assert result.created and len(result.started) == 2
    started = {e.id: e for e in executions_of(engine, "ship")}
    assert set(started) == set(result.started)
    by_key = started[execution_id_for(result.event.id, "ship-paid")]
    assert by_key.context["order"] == {"id": "A-1", "total": 250}
    assert by_key.context["trigger"]["event_id"] == result.event.id
    assert by_key.metadata == {"trigger_id": "ship-paid", "event_id": result.event.id}
    whole = started[execution_id_for(result.event.id, "ship-big")]
    assert whole.context["id"] == "A-1"  # no context_key: the payload is the context
    [fire] = store.list_trigger_fires("ship-paid")
    assert fire.status == "accepted" and fire.event_id == result.event.id


def test_an_event_whose_conditions_fail_or_whose_type_differs_starts_nothing(
    store: Store,
) -> None:
    engine = make(store)
    add_trigger(
        engine,
        conditions={
            "any": [
                {"path": "country", "op": "eq", "value": "DE"},
                {"path": "vip", "op": "eq", "value": True},
            ]
        },
    )
    add_trigger(engine, id="off", enabled=False)

    assert engine.emit("order.paid", {"country": "FR", "vip": False}).started == []
    assert engine.emit("order.shipped", {"country": "DE"}).started == []
    assert engine.emit("order.paid", {"country": "DE"}).started != []
    assert len(executions_of(engine, "ship")) == 1


def test_the_same_key_twice_stores_one_event_and_starts_one_execution(store: Store) -> None:
    engine = make(store)
    add_trigger(engine)

    first = engine.emit("order.paid", {"id": 1}, key="delivery-77")
    again = engine.emit("order.paid", {"id": 1}, key="delivery-77")

    assert first.created and not again.created
    assert again.event.id == first.event.id and again.started == []
    assert len(executions_of(engine, "ship")) == 1
    other_tenant = engine.emit("order.paid", {"id": 1}, key="delivery-77", tenant_id="acme")
    assert other_tenant.created  # keys are per tenant


def test_a_trigger_of_one_tenant_ignores_the_events_of_others(store: Store) -> None:
    engine = make(store)
    add_trigger(engine, tenant_id="acme")

    assert engine.emit("order.paid", {}, tenant_id="globex").started == []
    [started] = engine.emit("order.paid", {}, tenant_id="acme").started
    assert engine.get(started).tenant_id == "acme"


def test_an_event_whose_emitter_died_is_dispatched_by_the_sweep_once(store: Store) -> None:
    engine = make(store)
    add_trigger(engine)
    add_trigger(engine, id="ship-again")
    stranded = Event(id="e-1", type="order.paid", payload={"id": 9}, created_at=START)
    with store.transaction() as tx:
        tx.insert_event(stranded)
    # The emitter had started the first trigger's execution when it died.
    engine.create("ship", {}, execution_id=execution_id_for("e-1", "ship-paid"))

    assert engine.redispatch_events() == []  # too recent: its emitter may still be at it
    engine.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    assert engine.redispatch_events() == ["e-1"]
    assert engine.redispatch_events() == []

    assert len(executions_of(engine, "ship")) == 2  # one per trigger, none twice
    assert [f.status for f in store.list_trigger_fires("ship-paid")] == ["duplicate"]
    assert [f.status for f in store.list_trigger_fires("ship-again")] == ["accepted"]


def test_a_bad_event_is_refused_and_nothing_is_stored(store: Store) -> None:
    engine = make(store)
    add_trigger(engine)
    for call in (
        lambda: engine.emit("", {}),
        lambda: engine.emit("x" * 201, {}),
        lambda: engine.emit("order.paid", {"when": object()}),
        lambda: engine.emit("order.paid", {}, key=""),
        lambda: engine.emit("order.paid", {}, key="k" * 501),
        lambda: engine.emit("order.paid", {"note": "a\x00b"}),  # PostgreSQL holds no NUL
        lambda: engine.emit("order.paid", {"note": "\ud800"}),  # not valid Unicode
        lambda: engine.emit("order.paid", {}, key="k\x00"),
        lambda: engine.emit("order.paid", _nested(65)),
        lambda: engine.create("ship", {"deep": _nested(65)}),
        lambda: engine.create("ship", {}, idempotency_key="k\x00"),
    ):
        with pytest.raises(ExecutionError) as raised:
            call()
        assert raised.value.code is ErrorCode.INVALID_ARGUMENT
    with store.transaction() as tx:
        assert tx.list_events() == []
    assert executions_of(engine, "ship") == []


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"x": value}
    return value


def test_a_malformed_event_trigger_is_refused_naming_the_problem() -> None:
    with pytest.raises(ValueError, match=r"conditions\.0"):
        EventTrigger.model_validate(
            {
                "id": "t",
                "flow_id": "ship",
                "event_type": "x",
                "conditions": [{"path": "a", "op": "??"}],
            }
        )


# -- wait_for_event --------------------------------------------------------------------------------


def start_checkout(engine: Engine, order_id: str) -> str:
    execution_id = engine.create("checkout", {"order": {"id": order_id}}).execution.id
    engine.run(execution_id)
    return execution_id


def test_a_waiting_flow_continues_with_its_event_and_only_its_event(store: Store) -> None:
    engine = make(store)
    mine, other = start_checkout(engine, "A-1"), start_checkout(engine, "B-2")
    assert engine.get(mine).status is ExecutionStatus.WAITING
    assert engine.get(mine).wait_reason == "waiting for event payment.received"

    engine.clock.advance(5)  # type: ignore[attr-defined]
    result = engine.emit("payment.received", {"order_id": "A-1", "amount": 10})

    assert result.resumed == [mine]
    finished = engine.run(mine)
    assert finished.status is ExecutionStatus.COMPLETED and finished.context["paid"] is True
    assert finished.context["payment"]["payload"] == {"order_id": "A-1", "amount": 10}
    assert finished.context["payment"]["id"] == result.event.id
    assert engine.get(other).status is ExecutionStatus.WAITING
    # A second payment for A-1 has no wait left to end.
    assert engine.emit("payment.received", {"order_id": "A-1"}).resumed == []


def test_an_event_emitted_just_before_the_wait_still_matches(store: Store) -> None:
    engine = make(store)
    early = engine.emit("payment.received", {"order_id": 42})  # a number; the order id is text
    engine.clock.advance(30)  # type: ignore[attr-defined]

    execution_id = start_checkout(engine, "42")

    finished = engine.get(execution_id)
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["payment"]["id"] == early.event.id


def test_a_wait_whose_worker_died_before_searching_the_inbox_is_searched_by_the_sweep(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make(store)
    early = engine.emit("payment.received", {"order_id": "A-1"})
    engine.clock.advance(5)  # type: ignore[attr-defined]
    # The worker dies right after committing the wait, before it searches the inbox.
    monkeypatch.setattr(engine, "_check_inbox", lambda wait, hand_off: None)
    execution_id = start_checkout(engine, "A-1")
    monkeypatch.undo()
    assert engine.get(execution_id).status is ExecutionStatus.WAITING

    assert engine.recheck_event_waits() == []  # too recent: its worker may still be at it
    engine.clock.advance(31)  # type: ignore[attr-defined]
    assert engine.recheck_event_waits() == [execution_id]
    assert engine.recheck_event_waits() == []

    finished = engine.run(execution_id)
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["payment"]["id"] == early.event.id


def test_a_wait_searched_after_its_commit_is_not_searched_again_by_the_sweep(
    store: Store,
) -> None:
    engine = make(store)
    execution_id = start_checkout(engine, "A-1")  # searched: nothing there yet
    engine.clock.advance(60)  # type: ignore[attr-defined]
    with store.transaction() as tx:
        assert tx.find_unchecked_event_waits(engine.clock.now(), 100) == []
    assert engine.recheck_event_waits() == []

    assert engine.emit("payment.received", {"order_id": "A-1"}).resumed == [execution_id]


def test_an_event_older_than_the_look_back_does_not_match(store: Store) -> None:
    engine = make(
        store,
        SHIP,
        payment_flow(
            config={
                "event": "payment.received",
                "match": {"order_id": "${order.id}"},
                "look_back_ms": 10_000,
            }
        ),
    )
    engine.emit("payment.received", {"order_id": "A-1"})
    engine.clock.advance(11)  # type: ignore[attr-defined]

    execution_id = start_checkout(engine, "A-1")

    assert engine.get(execution_id).status is ExecutionStatus.WAITING


def test_a_wait_that_times_out_takes_on_timeout_and_no_later_event_resumes_it(
    store: Store,
) -> None:
    engine = make(store, SHIP, payment_flow(waitTimeoutMs=60_000))
    execution_id = start_checkout(engine, "A-1")
    engine.clock.advance(61)  # type: ignore[attr-defined]
    engine.wake_due()

    finished = engine.run(execution_id)
    assert finished.status is ExecutionStatus.COMPLETED and finished.context["chased"] is True
    assert engine.emit("payment.received", {"order_id": "A-1"}).resumed == []
    with store.transaction() as tx:
        assert tx.find_event_waits("payment.received") == []


def test_a_cancelled_wait_is_not_resumed_by_its_event(store: Store) -> None:
    engine = make(store)
    execution_id = start_checkout(engine, "A-1")
    engine.cancel(execution_id)

    assert engine.emit("payment.received", {"order_id": "A-1"}).resumed == []
    assert engine.get(execution_id).status is ExecutionStatus.CANCELLED


def test_an_empty_correlation_value_fails_the_step_instead_of_matching_everything(
    store: Store,
) -> None:
    engine = make(store)
    execution_id = engine.create("checkout", {"order": {}}).execution.id
    failed = engine.run(execution_id)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == "INPUT_ERROR"
    assert "would match any event" in failed.error.message


def test_a_wait_for_event_without_an_event_type_is_refused_at_registration() -> None:
    flow = payment_flow(config={"match": {"order_id": "${order.id}"}})
    engine = make(MemoryStore(), SHIP)
    with pytest.raises(FlowValidationError) as raised:
        engine.flows.register(flow)
    assert raised.value.issues == [
        ("steps.await-payment.config", "missing required key 'event' (step type 'wait_for_event')")
    ]


def test_one_event_ends_one_wait_of_a_loop_not_every_wait(store: Store) -> None:
    @handler("count")
    def count(params: HandlerParams) -> StepResult:
        seen = params.context.get("seen", 0) + 1
        return Result.success(seen, next_step="await" if seen < 3 else None)

    looping = {
        "id": "updates",
        "initialStepId": "await",
        "steps": {
            "await": {
                "type": "wait_for_event",
                "config": {"event": "order.updated", "match": {"order_id": "${order.id}"}},
                "outputKey": "update",
                "transitions": {"onSuccess": "count"},
            },
            "count": {"type": "count", "outputKey": "seen"},
        },
    }
    engine = Engine(
        store, HandlerRegistry([mark, count]), FlowRegistry([looping]), clock=ManualClock(START)
    )
    engine.emit("order.updated", {"order_id": "A-1", "n": 1})
    execution_id = engine.create("updates", {"order": {"id": "A-1"}}).execution.id

    waiting = engine.run(execution_id)  # the first update was in the inbox: one round

    assert waiting.status is ExecutionStatus.WAITING and waiting.context["seen"] == 1
    engine.clock.advance(1)  # type: ignore[attr-defined]
    engine.emit("order.updated", {"order_id": "A-1", "n": 2})
    assert engine.run(execution_id).context["seen"] == 2


def test_a_trigger_that_cannot_build_its_context_fails_alone(store: Store) -> None:
    engine = make(store)
    add_trigger(engine, id="broken", context_key="order.id", static_context={"order": "x"})
    add_trigger(engine, id="fine")

    result = engine.emit("order.paid", {"id": 1})

    assert [execution_id_for(result.event.id, "fine")] == result.started
    [failed] = store.list_trigger_fires("broken")
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "TRIGGER_MISCONFIGURED"
    with store.transaction() as tx:
        assert tx.get_event(result.event.id).dispatched_at is not None  # type: ignore[union-attr]
