"""`flowmonkey run` (and `resume --in-process`) on the embedded default: a SQLite file under
FLOWMONKEY_HOME, no servers. The example order flow and its handlers are the deployment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from flowmonkey_celery.cli import app
from flowmonkey_celery.examples.orders import FLOWS_DIR
from flowmonkey_celery.stores.sql import SqlStore

APPROVAL_FLOW = """
id: approval
initial_step_id: approve
steps:
  approve:
    type: wait_for_signal
    output_key: decision
    config: { reason: "approve order ${order.id}", outcomes: [approved, rejected] }
"""
PICK_FLOW = """
id: pick
initial_step_id: route
steps:
  route:
    type: conditional
    input: { type: full }
    config: { conditions: [{ path: colour, op: eq, value: red, target: null }] }
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded default in tmp_path, with the example flows, and two flows of built-in
    steps, as its deployment."""
    for key in list(os.environ):
        if key.startswith("FLOWMONKEY_"):
            monkeypatch.delenv(key)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "order-fulfilment.yaml").write_text(
        (FLOWS_DIR / "order-fulfilment.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (flows / "approval.yaml").write_text(APPROVAL_FLOW, encoding="utf-8")
    (flows / "pick.yaml").write_text(PICK_FLOW, encoding="utf-8")
    monkeypatch.setenv("FLOWMONKEY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWMONKEY_HANDLERS", "flowmonkey_celery.examples.orders")
    monkeypatch.setenv("FLOWMONKEY_FLOWS", str(flows))
    return tmp_path / "home"


def flowmonkey(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def order(order_id: str, *, card: str = "visa", price: int = 12, pickup_seconds: float = 0) -> str:
    return json.dumps(
        {
            "order": {
                "id": order_id,
                "country": "NL",
                "card": card,
                "customer": {"email": "ana@example.com"},
                "items": [{"sku": "mug", "price": price}],
                "pickup_wait": {"seconds": pickup_seconds},
            }
        }
    )


def stored(home: Path, execution_id: str) -> Any:
    store = SqlStore(f"sqlite:///{home / 'flowmonkey.db'}")
    try:
        return store.get_execution(execution_id)
    finally:
        store.dispose()


def line_with(output: str, *parts: str) -> str:
    found = [line for line in output.splitlines() if all(part in line for part in parts)]
    assert found, f"no line with {parts} in:\n{output}"
    return found[0]


def test_run_follows_each_step_through_a_retry_backoff_and_a_delay_to_completion(
    home: Path,
) -> None:
    result = flowmonkey(
        "run", "order-fulfilment", "--context", order("A-1", card="flaky", pickup_seconds=0.5)
    )

    assert result.exit_code == 0, result.output
    out = result.stdout
    line_with(out, "charge-payment", "failure", "attempt 1", "CARD_NETWORK_DOWN")
    line_with(out, "charge-payment", "retry 2 scheduled for")
    line_with(out, "charge-payment", "success", "attempt 2")  # the 2 s backoff, waited out
    line_with(out, "wait-for-pickup", "resumed by timer")
    line_with(out, "execution.completed")
    summary = line_with(out, "✓ completed")
    execution_id = summary.split()[2]
    assert '"charge_id": "ch_' in out  # the final context is printed
    execution = stored(home, execution_id)
    assert execution.status == "completed"
    assert execution.context["notification"]["subject"].startswith("Order A-1 is on its way")


def test_a_wait_for_a_signal_exits_3_and_resume_in_process_finishes_it(home: Path) -> None:
    waiting = flowmonkey("run", "order-fulfilment", "--context", order("A-2", price=1500))

    assert waiting.exit_code == 3, waiting.output
    line_with(waiting.stdout, "manager-approval", "waiting for a signal", "Approve order A-2")
    summary = line_with(waiting.stdout, "… waiting")
    execution_id = summary.split()[2]
    assert f"flowmonkey resume {execution_id} --data" in waiting.stdout
    assert stored(home, execution_id).status == "waiting"

    resumed = flowmonkey(
        "resume", execution_id, "--data", '{"decision": "approved"}', "--in-process"
    )

    assert resumed.exit_code == 0, resumed.output
    line_with(resumed.stdout, "manager-approval", "resumed by signal")
    line_with(resumed.stdout, "check-approval", "success")
    line_with(resumed.stdout, "✓ completed", execution_id)
    execution = stored(home, execution_id)
    assert execution.status == "completed"
    assert execution.context["approval"] == {"decision": "approved"}


def test_a_failed_flow_exits_1_with_its_error_code_on_stderr(home: Path) -> None:
    result = flowmonkey("run", "pick", "--context", '{"colour": "blue"}')

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("NO_MATCH: ")
    line_with(result.stdout, "route", "failure", "NO_MATCH")
    execution_id = line_with(result.stdout, "✗ failed").split()[2]
    assert stored(home, execution_id).status == "failed"


def test_an_unknown_flow_is_refused_with_flow_not_found(home: Path) -> None:
    result = flowmonkey("run", "no-such-flow")

    assert result.exit_code == 1
    assert result.stderr.startswith("FLOW_NOT_FOUND: ")
    assert "no-such-flow" in result.stderr
    assert "Running" not in result.stdout  # nothing was started


def test_run_json_prints_only_the_execution_and_its_resume_tokens(home: Path) -> None:
    result = flowmonkey("run", "approval", "--context", '{"order": {"id": 7}}', "--json")

    assert result.exit_code == 3
    body = json.loads(result.stdout)  # all of stdout is the JSON document
    assert body["execution"]["status"] == "waiting"
    assert body["execution"]["wait_reason"] == "approve order 7"
    (token,) = body["resume_tokens"]
    assert token["token"].startswith("fmrt_")
    assert token["step_id"] == "approve"
    assert token["outcomes"] == ["approved", "rejected"]


def test_resume_with_the_token_a_run_printed(home: Path) -> None:
    waiting = flowmonkey("run", "approval", "--context", '{"order": {"id": 8}}')
    assert waiting.exit_code == 3
    token_line = line_with(waiting.stdout, "resume token for step approve:")
    token = token_line.split(": ")[1].split()[0]
    execution_id = line_with(waiting.stdout, "… waiting").split()[2]

    refused = flowmonkey("resume", "--token", token, "--outcome", "maybe", "--in-process")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("INVALID_ARGUMENT: ")
    assert "approved, rejected" in refused.stderr

    resumed = flowmonkey(
        "resume", "--token", token, "--outcome", "approved", "--data", '{"by": "ana"}',
        "--in-process",
    )  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert stored(home, execution_id).context["decision"] == {"by": "ana", "outcome": "approved"}

    again = flowmonkey("resume", "--token", token, "--in-process")
    assert again.exit_code == 1
    assert again.stderr.startswith("INVALID_RESUME_TOKEN: ")


def test_a_timer_due_after_the_timeout_exits_3_and_says_when(home: Path) -> None:
    result = flowmonkey(
        "run", "order-fulfilment", "--context", order("A-3", pickup_seconds=3600), "--timeout", "1"
    )

    assert result.exit_code == 3, result.output
    summary = line_with(result.stdout, "… waiting", "wait-for-pickup")
    assert "past --timeout" in summary
    execution = stored(home, summary.split()[2])
    assert execution.status == "waiting"
    assert execution.wait_kind == "timer"


def test_context_can_come_from_a_file(home: Path, tmp_path: Path) -> None:
    context = tmp_path / "order.json"
    context.write_text(order("A-4"), encoding="utf-8")

    result = flowmonkey("run", "order-fulfilment", "--context", f"@{context}", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["execution"]["context"]["order"]["id"] == "A-4"


def test_context_that_is_not_json_is_a_usage_error(home: Path) -> None:
    result = flowmonkey("run", "order-fulfilment", "--context", "{order: 1}")

    assert result.exit_code == 2
    assert "not valid JSON" in result.output
    assert not (home / "flowmonkey.db").exists()  # refused before anything was opened


def test_context_that_is_not_an_object_is_invalid_input(home: Path) -> None:
    result = flowmonkey("run", "order-fulfilment", "--context", "[1, 2]")

    assert result.exit_code == 1
    assert result.stderr.startswith("INVALID_ARGUMENT: ")
