"""Metrics and JSON logs of a real prefork worker (two pool processes): its /metrics port sums
what every pool process counted, and a step's log lines name their execution, step and attempt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import FlowMonkeyCluster, free_port

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("broker", ["redis"])]
RUNS = 6
FLOW = {
    "id": "e2e-metered",
    "version": "1.0.0",
    "initial_step_id": "charge",
    "steps": {
        "charge": {
            "type": "e2e-logged-charge",
            "input": {"type": "full"},
            "retry": {"max_attempts": 1, "backoff_ms": 20},
            "transitions": {"on_success": "ship"},
        },
        "ship": {"type": "e2e-noop"},
    },
}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except requests.ConnectionError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def json_lines(log: str) -> list[dict[str, Any]]:
    # Celery prints its banner; every logged line is one JSON object.
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_a_prefork_workers_metrics_add_up_its_pool_and_its_logs_name_each_attempt(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    flows = tmp_path / "metered-flows"
    flows.mkdir()
    (flows / "metered.json").write_text(json.dumps(FLOW))
    cluster.set_env(
        FLOWMONKEY_FLOWS=str(flows),
        FLOWMONKEY_HANDLERS="tests.e2e.handlers,tests.e2e.metrics_handlers",
    )
    metrics_dir, port = tmp_path / "metrics", free_port()
    stale = metrics_dir / "counter_999999999.db"  # left by a process long gone
    metrics_dir.mkdir()
    stale.write_bytes(b"")
    worker = cluster.start_worker(
        concurrency=2,
        FLOWMONKEY_METRICS_DIR=str(metrics_dir),
        FLOWMONKEY_METRICS_PORT=str(port),
        FLOWMONKEY_LOG_FORMAT="json",
    )
    assert not stale.exists()
    cluster.start_beat()  # its ticks run on the worker (the tick queue): timed there

    ids = [
        cluster.client.start("e2e-metered", {"order": n}, tenant_id="acme").execution.id
        for n in range(RUNS)
    ]
    cluster.wait_finished(ids, timeout=60)

    flow = {"flow": "e2e-metered"}

    def counted_all() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        found = scrape(port)
        done = value(found, "flowmonkey_executions_completed_total", **flow) == RUNS
        return found if done else {}

    found = cluster.wait_for(
        counted_all,
        timeout=15,
        what=f"the worker's /metrics on port {port} to count {RUNS} completed executions",
    )
    assert value(found, "flowmonkey_executions_started_total", **flow) == RUNS
    assert value(found, "flowmonkey_tick_duration_seconds_count") > 0
    charge = {**flow, "step_type": "e2e-logged-charge"}
    assert value(found, "flowmonkey_step_retries_total", **charge) == RUNS
    assert value(found, "flowmonkey_handler_errors_total", code="GATEWAY_DOWN", **charge) == RUNS
    assert value(found, "flowmonkey_step_duration_seconds_count", **charge) == 2 * RUNS
    noop = {**flow, "step_type": "e2e-noop", "outcome": "success"}
    assert value(found, "flowmonkey_steps_total", **noop) == RUNS

    lines = json_lines(worker.log())
    charging = [line for line in lines if line.get("logger") == "tests.e2e.metrics_handlers"]
    assert sorted((c["execution_id"], c["attempt"]) for c in charging) == sorted(
        (i, attempt) for i in ids for attempt in (1, 2)
    )
    assert {(c["step_id"], c["tenant_id"], c["level"]) for c in charging} == {
        ("charge", "acme", "INFO")
    }
    # Both pool processes ran steps, and the counts above are their sum.
    assert len({c["process"] for c in charging}) == 2
    assert any(" ready." in line["message"] for line in lines)  # Celery's own lines are JSON
