"""The Prometheus metrics an operator reads, counted from a real engine's events on the
MemoryStore (each test on a registry of its own), the tick, trigger fires, the store gauges and
the multiprocess directory's housekeeping."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flowmonkey_celery import (
    Engine,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.core.triggers import EventTrigger, ScheduleTrigger
from flowmonkey_celery.observability.metrics import (
    MAX_LABEL_VALUES,
    OTHER,
    FlowMonkeyMetrics,
    clear_stale_files,
    exposition_registry,
    observe_engine,
    render,
)
from flowmonkey_celery.triggers import fire_due_schedules
from flowmonkey_celery.triggers.manual import fire_now

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@handler("charge")
def charge(params: HandlerParams) -> StepResult:
    if params.input.get("declined"):
        return Result.failure("CARD_DECLINED", "the card was declined")
    if params.input.get("flaky") and params.attempt == 1:
        return Result.failure("GATEWAY_DOWN", "try again")
    return Result.success({"charged": True})


@handler("approve")
def approve(params: HandlerParams) -> StepResult:
    return Result.wait_for_signal("a person approves")


@handler("code_of_the_day")
def code_of_the_day(params: HandlerParams) -> StepResult:
    return Result.failure(f"CODE_{params.input['n']}", "every run invents a code")


FLOWS = [
    {
        "id": "orders",
        "initialStepId": "charge",
        "steps": {
            "charge": {
                "type": "charge",
                "input": {"type": "full"},
                "retry": {"maxAttempts": 1, "backoffMs": 1000, "retryOn": ["GATEWAY_DOWN"]},
                "transitions": {"onSuccess": "ship"},
            },
            "ship": {"type": "charge", "input": {"type": "static", "value": {}}},
        },
    },
    {"id": "approvals", "initialStepId": "ask", "steps": {"ask": {"type": "approve"}}},
    {
        "id": "chaos",
        "initialStepId": "go",
        "steps": {"go": {"type": "code_of_the_day", "input": {"type": "full"}}},
    },
]


_handlers: list[HandlerRegistry] = []  # built once: the built-in handlers take a while


class Counted:
    """An engine whose events are counted on a registry of its own."""

    def __init__(self) -> None:
        if not _handlers:
            _handlers.append(HandlerRegistry([charge, approve, code_of_the_day]))
        self.registry = CollectorRegistry()
        self.metrics = FlowMonkeyMetrics(self.registry)
        self.clock = ManualClock(START)
        self.store = MemoryStore()
        self.engine = Engine(
            self.store,
            _handlers[0],
            FlowRegistry(FLOWS),
            clock=self.clock,
        )
        observe_engine(self.engine, self.metrics)

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def run(self, flow_id: str, context: dict[str, Any] | None = None) -> str:
        created = self.engine.create(flow_id, context or {})
        self.engine.run(created.execution.id, simulate_time=True)
        return created.execution.id

    def label_values(self) -> set[str]:
        return {
            value
            for family in self.registry.collect()
            for sample in family.samples
            for value in sample.labels.values()
        }


@pytest.fixture
def counted() -> Counted:
    return Counted()


def test_executions_are_counted_by_flow_as_they_start_and_end(counted: Counted) -> None:
    counted.run("orders")
    counted.run("orders")
    counted.run("orders", {"declined": True})
    waiting = counted.run("approvals")

    for name, expected in [
        ("flowmonkey_executions_created_total", 3),
        ("flowmonkey_executions_started_total", 3),
        ("flowmonkey_executions_completed_total", 2),
        ("flowmonkey_executions_failed_total", 1),
    ]:
        assert counted.value(name, flow="orders") == expected, name
    assert counted.value("flowmonkey_executions_created_total", flow="approvals") == 1
    assert counted.value("flowmonkey_executions_completed_total", flow="approvals") == 0

    # A cancel is a command outside any step: the flow is looked up in the store.
    counted.engine.cancel(waiting, source="user", reason="changed my mind")
    assert counted.value("flowmonkey_executions_cancelled_total", flow="approvals", source="user")


def test_steps_are_timed_and_counted_by_flow_and_step_type(counted: Counted) -> None:
    counted.run("orders")
    counted.run("orders", {"declined": True})

    step = {"flow": "orders", "step_type": "charge"}
    # charge + ship of the first run, charge of the declined one.
    assert counted.value("flowmonkey_step_duration_seconds_count", **step) == 3
    assert counted.value("flowmonkey_steps_total", outcome="success", **step) == 2
    assert counted.value("flowmonkey_steps_total", outcome="failure", **step) == 1
    assert counted.value("flowmonkey_step_duration_seconds_bucket", le="+Inf", **step) == 3
    waits = {"flow": "approvals", "step_type": "approve", "outcome": "wait"}
    counted.run("approvals")
    assert counted.value("flowmonkey_steps_total", **waits) == 1


def test_retries_and_handler_errors_are_counted_by_code(counted: Counted) -> None:
    counted.run("orders", {"flaky": True})  # fails once with GATEWAY_DOWN, retried, succeeds
    counted.run("orders", {"declined": True})

    step = {"flow": "orders", "step_type": "charge"}
    assert counted.value("flowmonkey_step_retries_total", **step) == 1
    assert counted.value("flowmonkey_handler_errors_total", code="GATEWAY_DOWN", **step) == 1
    assert counted.value("flowmonkey_handler_errors_total", code="CARD_DECLINED", **step) == 1
    assert counted.value("flowmonkey_executions_completed_total", flow="orders") == 1


def test_labels_name_flows_steps_and_codes_never_executions(counted: Counted) -> None:
    ids = {counted.run("orders"), counted.run("orders", {"flaky": True}), counted.run("approvals")}

    values = counted.label_values()

    assert {"orders", "approvals", "charge", "GATEWAY_DOWN"} <= values
    assert not values & ids


def test_a_label_takes_a_bounded_number_of_values(counted: Counted) -> None:
    for n in range(MAX_LABEL_VALUES + 25):
        counted.run("chaos", {"n": n})

    codes = {
        sample.labels["code"]
        for family in counted.registry.collect()
        if family.name == "flowmonkey_handler_errors"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert len(codes) == MAX_LABEL_VALUES + 1
    assert (
        counted.value(
            "flowmonkey_handler_errors_total", flow="chaos", step_type="code_of_the_day", code=OTHER
        )
        == 25
    )


def test_trigger_fires_are_counted_by_trigger_type_and_status(counted: Counted) -> None:
    counted.store.save_trigger(
        ScheduleTrigger(id="nightly", flow_id="orders", schedule="0 * * * *"), START
    )
    counted.clock.set(START + timedelta(hours=1, minutes=5))
    now = counted.clock.now()

    assert len(fire_due_schedules(counted.engine, counted.store, now)) == 1
    assert fire_due_schedules(counted.engine, counted.store, now) == []  # fired already
    trigger = counted.store.get_trigger("nightly")
    assert trigger is not None
    fire_now(counted.engine, counted.store, trigger)  # an operator's test fire

    assert (
        counted.value("flowmonkey_trigger_fires_total", trigger_type="schedule", status="accepted")
        == 2
    )  # the slot, and the manual fire of the same schedule trigger

    counted.store.save_trigger(
        EventTrigger(id="on-paid", flow_id="orders", event_type="order.paid"), START
    )
    counted.engine.emit("order.paid", {"order": 1})
    assert counted.value("flowmonkey_trigger_fires_total", trigger_type="event", status="accepted")


def test_observing_an_engine_twice_counts_each_event_once(counted: Counted) -> None:
    observe_engine(counted.engine, counted.metrics)
    observe_engine(counted.engine)

    counted.run("orders")

    assert counted.value("flowmonkey_executions_completed_total", flow="orders") == 1


def test_the_tick_is_timed_and_what_it_swept_counted(counted: Counted) -> None:
    with counted.metrics.timed_tick() as swept:
        swept.update({"woken": 3, "stalled": 1, "fired": 0})

    assert counted.value("flowmonkey_tick_duration_seconds_count") == 1
    assert counted.value("flowmonkey_tick_swept_total", kind="woken") == 3
    assert counted.value("flowmonkey_tick_swept_total", kind="stalled") == 1


def test_a_celery_tick_task_is_timed_on_the_process_metrics() -> None:
    from celery import Celery
    from prometheus_client import REGISTRY

    from flowmonkey_celery.celery import FlowMonkeyCelery
    from flowmonkey_celery.runtime import Runtime

    app = Celery("metrics-tick", broker="memory://")
    runtime = Runtime(MemoryStore(), HandlerRegistry(), FlowRegistry(), clock=ManualClock(START))
    fm = FlowMonkeyCelery(app, runtime)
    before = REGISTRY.get_sample_value("flowmonkey_tick_duration_seconds_count") or 0.0

    fm.tick_task.apply()

    assert REGISTRY.get_sample_value("flowmonkey_tick_duration_seconds_count") == before + 1
    app.close()


# -- the store gauges -----------------------------------------------------------------------------


def families(body: bytes) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def gauge(body: bytes, name: str) -> float:
    (sample,) = families(body)[name].samples
    return float(sample.value)


def test_the_store_gauges_show_waits_and_the_lag_of_due_ones(counted: Counted) -> None:
    counted.run("approvals")  # waits for a person from START
    flaky = counted.engine.create("orders", {"flaky": True}).execution.id
    counted.engine.step(flaky)  # fails, retry due one second later
    counted.clock.advance(timedelta(seconds=61))

    body, content_type = render(exposition_registry(counted.store, counted.clock))

    assert content_type.startswith("text/plain")
    assert gauge(body, "flowmonkey_store_up") == 1
    assert gauge(body, "flowmonkey_waiting_executions") == 2
    assert gauge(body, "flowmonkey_oldest_waiting_seconds") == 61
    assert gauge(body, "flowmonkey_due_executions") == 1
    assert gauge(body, "flowmonkey_due_lag_seconds") == 60


def test_a_store_that_does_not_answer_reports_store_up_0(counted: Counted) -> None:
    class Down(MemoryStore):
        def waiting_stats(self, now: datetime) -> Any:
            raise ConnectionError("the database is down")

    body, _ = render(exposition_registry(Down(), counted.clock))

    assert gauge(body, "flowmonkey_store_up") == 0
    assert "flowmonkey_waiting_executions" not in families(body)


def test_openmetrics_is_answered_when_asked_for(counted: Counted) -> None:
    body, content_type = render(
        exposition_registry(counted.store, counted.clock), "application/openmetrics-text"
    )

    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


# -- the multiprocess directory -------------------------------------------------------------------


@pytest.fixture
def dead_pid() -> Iterator[int]:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    yield int(finished.stdout)


def test_a_workers_start_clears_the_files_of_processes_that_are_gone(
    tmp_path: Path, dead_pid: int
) -> None:
    mine = [tmp_path / f"counter_{os.getpid()}.db", tmp_path / f"histogram_{os.getppid()}.db"]
    stale = [tmp_path / f"counter_{dead_pid}.db", tmp_path / f"gauge_livesum_{dead_pid}.db"]
    for path in [*mine, *stale]:
        path.write_bytes(b"")

    assert clear_stale_files(tmp_path) == 2

    assert sorted(tmp_path.iterdir()) == sorted(mine)


def test_the_metrics_dir_takes_effect_even_after_prometheus_client_was_imported(
    tmp_path: Path,
) -> None:
    script = f"""
import prometheus_client  # imported first, with no PROMETHEUS_MULTIPROC_DIR
from pathlib import Path
from flowmonkey_celery.observability.metrics import default_metrics, use_metrics_dir
use_metrics_dir(Path({str(tmp_path)!r}))
default_metrics().trigger_fired("http", "accepted")
"""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)

    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert (
        registry.get_sample_value(
            "flowmonkey_trigger_fires_total", {"trigger_type": "http", "status": "accepted"}
        )
        == 1
    )
