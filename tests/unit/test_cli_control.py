"""`flowmonkey start`, `resume` and `cancel` on the embedded default: the execution is committed
to the SQLite store, and what it made runnable is enqueued on the embedded (SQLite) broker,
where a `flowmonkey worker` would pick it up. No servers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from typer.testing import CliRunner, Result

from flowmonkey_celery.celery.embedded import embedded_broker_url
from flowmonkey_celery.cli import app
from flowmonkey_celery.examples.orders import FLOWS_DIR
from flowmonkey_celery.stores.sql import SqlStore


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("FLOWMONKEY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FLOWMONKEY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWMONKEY_HANDLERS", "flowmonkey_celery.examples.orders")
    monkeypatch.setenv("FLOWMONKEY_FLOWS", str(FLOWS_DIR))
    return tmp_path / "home"


def flowmonkey(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def large_order(order_id: str) -> str:
    return json.dumps(
        {
            "order": {
                "id": order_id,
                "country": "NL",
                "card": "visa",
                "customer": {"email": "ben@example.com"},
                "items": [{"sku": "sofa", "price": 1500}],
            }
        }
    )


def stored(home: Path, execution_id: str) -> Any:
    store = SqlStore(f"sqlite:///{home / 'flowmonkey.db'}")
    try:
        return store.get_execution(execution_id)
    finally:
        store.dispose()


def queued_steps(home: Path) -> list[tuple[str, int]]:
    """The step messages waiting in the embedded broker's `flowmonkey` queue (taken off it)."""
    found = []
    with Connection(embedded_broker_url(home)) as connection:
        queue = connection.SimpleQueue("flowmonkey")
        try:
            while True:
                try:
                    message = queue.get(timeout=0.5)
                except queue.Empty:
                    return found
                assert message.headers["task"] == "flowmonkey.step"
                args, _kwargs, _embed = message.payload
                found.append((args[0], args[1]))
                message.ack()
        finally:
            queue.close()


def waiting_execution(home: Path, order_id: str) -> str:
    """A large order, run here until its manager-approval wait."""
    result = flowmonkey("run", "order-fulfilment", "--context", large_order(order_id), "--json")
    assert result.exit_code == 3, result.output
    return str(json.loads(result.stdout)["execution"]["id"])


def test_start_commits_the_execution_enqueues_its_first_step_and_prints_only_its_id(
    home: Path,
) -> None:
    result = flowmonkey("start", "order-fulfilment", "--context", large_order("A-1"))

    assert result.exit_code == 0, result.output
    execution_id = result.stdout.strip()
    assert result.stdout == f"{execution_id}\n"
    assert "enqueued on fmsqla+sqlite:///" in result.stderr
    execution = stored(home, execution_id)
    assert execution.status == "pending"
    assert execution.context["order"]["id"] == "A-1"
    assert queued_steps(home) == [(execution_id, execution.version)]


def test_start_with_a_used_idempotency_key_prints_the_first_execution(home: Path) -> None:
    first = flowmonkey("start", "order-fulfilment", "--idempotency-key", "order-A-2")
    again = flowmonkey("start", "order-fulfilment", "--idempotency-key", "order-A-2", "--json")

    assert first.exit_code == 0 and again.exit_code == 0, again.output
    body = json.loads(again.stdout)
    assert body["execution_id"] == first.stdout.strip()
    assert body["created"] is False
    assert body["idempotency_hit"] is True
    assert body["enqueued"] is False
    assert [execution_id for execution_id, _ in queued_steps(home)] == [body["execution_id"]]


def test_start_an_unknown_flow_is_refused(home: Path) -> None:
    result = flowmonkey("start", "nope", "--json")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("FLOW_NOT_FOUND: ")


def test_resume_commits_the_resume_and_enqueues_the_next_step(home: Path) -> None:
    execution_id = waiting_execution(home, "A-3")

    result = flowmonkey("resume", execution_id, "--data", '{"decision": "approved"}')

    assert result.exit_code == 0, result.output
    assert f"resumed {execution_id}: running at step check-approval" in result.stdout
    execution = stored(home, execution_id)
    assert execution.status == "running"
    assert execution.context["approval"] == {"decision": "approved"}
    assert queued_steps(home) == [(execution_id, execution.version)]


def test_resume_of_an_execution_that_is_not_waiting_is_refused(home: Path) -> None:
    execution_id = flowmonkey("start", "order-fulfilment").stdout.strip()

    result = flowmonkey("resume", execution_id, "--data", "{}")

    assert result.exit_code == 1
    assert result.stderr.startswith("EXECUTION_NOT_WAITING: ")
    assert stored(home, execution_id).status == "pending"


def test_resume_needs_an_id_or_a_token(home: Path) -> None:
    assert flowmonkey("resume").exit_code == 2
    assert flowmonkey("resume", "some-id", "--token", "fmrt_x").exit_code == 2
    assert flowmonkey("resume", "some-id", "--outcome", "approved").exit_code == 2


def test_cancel_a_waiting_execution_then_again(home: Path) -> None:
    execution_id = waiting_execution(home, "A-4")

    cancelled = flowmonkey("cancel", execution_id, "--reason", "customer asked")

    assert cancelled.exit_code == 0, cancelled.output
    assert f"cancelled {execution_id} (it was waiting)" in cancelled.stdout
    execution = stored(home, execution_id)
    assert execution.status == "cancelled"
    assert execution.cancellation.reason == "customer asked"

    again = flowmonkey("cancel", execution_id, "--json")
    assert again.exit_code == 1
    assert again.stdout == ""
    assert again.stderr.startswith("INVALID_TRANSITION: ")
    assert "already cancelled" in again.stderr


def test_cancel_json(home: Path) -> None:
    execution_id = waiting_execution(home, "A-5")

    result = flowmonkey("cancel", execution_id, "--json")

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["execution_id"] == execution_id
    assert body["cancelled"] is True
    assert body["previous_status"] == "waiting"


def test_an_unknown_execution_is_execution_not_found(home: Path) -> None:
    for command in (["cancel", "nope"], ["resume", "nope"], ["resume", "nope", "--in-process"]):
        result = flowmonkey(*command, "--json")
        assert result.exit_code == 1, command
        assert result.stdout == ""
        assert result.stderr == "EXECUTION_NOT_FOUND: execution 'nope' not found\n"
