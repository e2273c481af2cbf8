"""`flowmonkey executions list` and `show` on the embedded default (SQLite under
FLOWMONKEY_HOME)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flowmonkey_celery.cli import app
from flowmonkey_celery.examples.orders import FLOWS_DIR
from flowmonkey_celery.runtime import Runtime
from flowmonkey_celery.settings import Settings


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


def create_executions(home: Path) -> list[str]:
    """Five pending executions: three of tenant a, two of tenant b (oldest first)."""
    runtime = Runtime.from_settings(Settings.from_env())
    try:
        return [
            runtime.engine.create("order-fulfilment", {"n": n}, tenant_id=tenant).execution.id
            for n, tenant in enumerate("aabab")
        ]
    finally:
        runtime.store.dispose()


def listed(*args: str) -> dict[str, object]:
    result = flowmonkey("executions", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    body: dict[str, object] = json.loads(result.stdout)
    return body


def ids(body: dict[str, object]) -> list[str]:
    executions = body["executions"]
    assert isinstance(executions, list)
    return [execution["id"] for execution in executions]


def test_list_pages_through_every_execution_with_after(home: Path) -> None:
    created = create_executions(home)

    first = listed("--limit", "2")
    second = listed("--limit", "2", "--after", str(first["next_after"]))
    last = listed("--limit", "2", "--after", str(second["next_after"]))

    assert ids(first) + ids(second) + ids(last) == created
    assert first["next_after"] == created[1]
    assert last["next_after"] is None


def test_list_filters_by_tenant_status_and_flow(home: Path) -> None:
    created = create_executions(home)

    assert ids(listed("--tenant", "b")) == [created[2], created[4]]
    assert ids(listed("--status", "pending", "--flow", "order-fulfilment")) == created
    assert ids(listed("--status", "COMPLETED")) == []
    assert ids(listed("--flow", "other")) == []


def test_list_table_shows_full_ids_and_how_to_get_the_next_page(home: Path) -> None:
    created = create_executions(home)

    result = flowmonkey("executions", "list", "--limit", "3")

    assert result.exit_code == 0, result.output
    for execution_id in created[:3]:
        assert execution_id in result.stdout
    assert created[3] not in result.stdout
    assert f"More: flowmonkey executions list --after {created[2]}" in result.stdout


def test_list_with_an_unknown_cursor_is_invalid_input(home: Path) -> None:
    create_executions(home)

    result = flowmonkey("executions", "list", "--after", "nope")

    assert result.exit_code == 1
    assert result.stderr.startswith("INVALID_ARGUMENT: paging cursor 'nope' names no execution")


def test_list_with_a_status_that_does_not_exist_is_a_usage_error(home: Path) -> None:
    assert flowmonkey("executions", "list", "--status", "lost").exit_code == 2
    assert flowmonkey("executions", "list", "--limit", "0").exit_code == 2


def _flaky_order_run() -> str:
    context = {
        "order": {
            "id": "A-1",
            "country": "NL",
            "card": "flaky",
            "customer": {"email": "ana@example.com"},
            "items": [{"sku": "mug", "price": 12}],
            "pickup_wait": {"seconds": 0},
        }
    }
    result = flowmonkey("run", "order-fulfilment", "--context", json.dumps(context), "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["execution"]["id"])


def test_show_prints_the_state_and_a_timeline_of_every_handler_call(home: Path) -> None:
    execution_id = _flaky_order_run()

    result = flowmonkey("executions", "show", execution_id)

    assert result.exit_code == 0, result.output
    rows = [line.split("│")[1:-1] for line in result.stdout.splitlines() if line.count("│") > 6]
    cells = [[cell.strip() for cell in row] for row in rows]
    by_event = [(row[1], row[2], row[3], row[5]) for row in cells]  # event, step, attempt, outcome
    assert by_event[:3] == [
        ("created", "validate", "", ""),
        ("step", "validate", "1", "success"),
        ("step", "route-by-total", "1", "success"),
    ]
    assert ("step", "charge-payment", "1", "failure") in by_event
    assert ("retry", "charge-payment", "2", "") in by_event
    assert ("resumed", "charge-payment", "", "") in by_event
    assert ("step", "charge-payment", "2", "success") in by_event
    assert by_event[-1] == ("completed", "notify-customer", "", "")
    failure = next(row for row in cells if row[2] == "charge-payment" and row[5] == "failure")
    assert failure[6] == "CARD_NETWORK_DOWN: card network timed out"
    assert failure[4].endswith(" ms")  # the handler call's duration
    validate = next(row for row in cells if row[2] == "validate" and row[1] == "step")
    assert validate[6] == "→ route-by-total"
    assert "completed" in result.stdout.split("History of")[0]  # the state, above the table


def test_show_json_gives_the_execution_and_its_history(home: Path) -> None:
    execution_id = _flaky_order_run()

    result = flowmonkey("executions", "show", execution_id, "--json")

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["execution"]["id"] == execution_id
    assert body["execution"]["status"] == "completed"
    types = [event["type"] for event in body["history"]]
    assert types[0] == "execution.created"
    assert types[-1] == "execution.completed"
    assert "step.retry" in types
    attempts = [
        (event["attempt"], event["outcome"])
        for event in body["history"]
        if event["type"] == "step.completed" and event["step_id"] == "charge-payment"
    ]
    assert attempts == [(1, "failure"), (2, "success")]


def test_show_an_unknown_execution(home: Path) -> None:
    result = flowmonkey("executions", "show", "nope", "--json")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "EXECUTION_NOT_FOUND: execution 'nope' not found\n"
