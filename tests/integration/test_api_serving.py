"""Serving the API: `flowmonkey api` as a real process, the app mounted in another FastAPI app,
and the seed's warnings for triggers nothing would fire."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flowmonkey_celery import FlowRegistry, HandlerRegistry, MemoryStore
from flowmonkey_celery.api import create_app
from flowmonkey_celery.runtime import Runtime

FLOW = {"id": "hello", "initialStepId": "w", "steps": {"w": {"type": "wait_for_signal"}}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_flowmonkey_api_serves_health_docs_and_refuses_calls_without_a_key(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMONKEY_")}
    env["FLOWMONKEY_HOME"] = str(tmp_path / "home")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flowmonkey_celery.cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # polling a process that starts up: nothing to inject a clock into
            try:
                health = requests.get(f"{base}/health", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "flowmonkey api did not start in 60 s"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        assert requests.get(f"{base}/docs", timeout=5).status_code == 200
        refused = requests.get(f"{base}/executions", timeout=5)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "UNAUTHORIZED"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_api_mounts_under_a_prefix_of_another_app() -> None:
    runtime = Runtime(MemoryStore(), HandlerRegistry(), FlowRegistry([FLOW]))
    parent = FastAPI()

    @parent.get("/own")
    def own() -> dict[str, bool]:
        return {"own": True}

    parent.mount("/flowmonkey", create_app(runtime, auth=False))
    client = TestClient(parent)

    assert client.get("/own").json() == {"own": True}
    assert client.get("/flowmonkey/health").json() == {"status": "ok"}
    started = client.post("/flowmonkey/executions", json={"flow_id": "hello"})
    assert started.status_code == 201
    trigger = {"id": "hook", "type": "http", "flow_id": "hello"}
    assert client.post("/flowmonkey/triggers", json=trigger).status_code == 201
    fired = client.post("/flowmonkey/webhooks/hook", json={"a": 1})
    assert fired.status_code == 202, fired.text


def test_registering_triggers_nothing_would_fire_logs_the_seed_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    runtime = Runtime(store, HandlerRegistry(), FlowRegistry([FLOW]))
    with caplog.at_level(logging.WARNING, logger="flowmonkey_celery.runtime"):
        runtime.register_trigger({"id": "order-webhook", "type": "http", "flowId": "hello"})
        runtime.register_trigger(
            {"id": "daily-report", "type": "schedule", "flowId": "hello", "schedule": "0 9 * * *"}
        )
    assert (
        "HTTP trigger 'order-webhook' registered but no HTTP adapter configured. Trigger will "
        "not be accessible." in caplog.text
    )
    assert (
        "Schedule trigger 'daily-report' registered but scheduler not enabled. Trigger will "
        "not fire." in caplog.text
    )

    caplog.clear()
    now = datetime.now(UTC)
    store.record_heartbeat("api", now)  # an API serves this deployment, a beat ticks
    store.record_heartbeat("tick", now)
    with caplog.at_level(logging.WARNING, logger="flowmonkey_celery.runtime"):
        runtime.register_trigger({"id": "order-webhook-2", "type": "http", "flowId": "hello"})
        runtime.register_trigger(
            {"id": "daily-2", "type": "schedule", "flowId": "hello", "schedule": "0 9 * * *"}
        )
    assert caplog.text == ""
