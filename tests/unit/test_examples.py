"""`flowmonkey demo NAME`: each example, run through the command line on the embedded default
(a SQLite file under a temporary FLOWMONKEY_HOME), checked by what a user sees: the output,
the executions stored, the files written."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from flowmonkey_celery.cli import main
from flowmonkey_celery.core.events import EventType
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.stores.sql import SqlStore

NAMES = ["orders", "approval", "leads", "daily-report", "fanout"]


def flowmonkey(home: Path, *args: str, handlers: str = "") -> Result:
    env = {
        "FLOWMONKEY_HOME": str(home),
        "FLOWMONKEY_DATABASE_URL": "",  # the embedded default
        "FLOWMONKEY_HANDLERS": handlers,
        "FLOWMONKEY_FLOWS": "",
    }
    return CliRunner().invoke(main, list(args), env=env)


def demo(home: Path, name: str, *options: str) -> Result:
    result = flowmonkey(home, "demo", name, *options)
    assert result.exception is None, result.output
    assert result.exit_code == 0, result.output
    return result


StoreOf = Callable[[Path], SqlStore]


@pytest.fixture
def store_of() -> Iterator[StoreOf]:
    """Opens the embedded store under a FLOWMONKEY_HOME (closed after the test)."""
    opened: list[SqlStore] = []

    def open_store(home: Path) -> SqlStore:
        opened.append(SqlStore(f"sqlite:///{home / 'flowmonkey.db'}"))
        return opened[-1]

    yield open_store
    for store in opened:
        store.dispose()


def unboxed(output: str) -> str:
    """The words of an error, without rich's box around it or its line breaks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def by_context_id(executions: list[Execution], key: str) -> dict[str, Execution]:
    return {e.context[key]["id"]: e for e in executions}


# -- choosing an example ------------------------------------------------------------------------


def test_list_names_every_example_with_a_line_each(tmp_path: Path) -> None:
    result = flowmonkey(tmp_path, "demo", "--list")
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.splitlines()[: len(NAMES)]]
    assert listed == NAMES
    assert not (tmp_path / "flowmonkey.db").exists()  # listing runs nothing


def test_an_unknown_example_is_a_usage_error_naming_it_and_the_choices(tmp_path: Path) -> None:
    result = flowmonkey(tmp_path, "demo", "invoices")
    assert result.exit_code == 2
    assert "there is no example 'invoices'; choose one of: orders, approval, leads, " in unboxed(
        result.output
    )
    assert "daily-report, fanout" in unboxed(result.output)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["leads", "--decide", "approve"], "only the approval example takes a decision"),
        (["approval", "--decide", "maybe"], "'maybe' is not a decision; use approve or reject"),
    ],
)
def test_a_decision_is_only_taken_by_the_approval_example(
    tmp_path: Path, args: list[str], problem: str
) -> None:
    result = flowmonkey(tmp_path, "demo", *args)
    assert result.exit_code == 2
    assert problem in unboxed(result.output)


def test_orders_by_name_runs_the_order_demo(tmp_path: Path, store_of: StoreOf) -> None:
    output = demo(tmp_path, "orders", "--in-process").output
    assert "A-1002  manager-approval resumed by signal" in output
    stored = store_of(tmp_path).list_executions(flow_id="order-fulfilment")
    assert sorted(e.context["order"]["id"] for e in stored) == ["A-1001", "A-1002", "A-1003"]
    assert {e.status.value for e in stored} == {"completed"}


# -- leads ---------------------------------------------------------------------------------------


def test_leads_are_routed_by_the_flows_conditions(tmp_path: Path, store_of: StoreOf) -> None:
    output = demo(tmp_path, "leads").output
    store = store_of(tmp_path)
    leads = by_context_id(store.list_executions(flow_id="lead-routing"), "lead")
    routes = {}
    for lead_id, execution in leads.items():
        assert execution.status == "completed", execution
        (routed,) = [
            event.data["to"]
            for event in store.list_events(execution.id)
            if event.type is EventType.TRANSITION and event.step_id == "route-lead"
        ]
        routes[lead_id] = (routed, execution.context["assignment"]["queue"])
    assert routes == {
        "L-1": ("enterprise-sales", "enterprise"),
        "L-2": ("smb-trial", "smb-trial"),
        "L-3": ("discard-spam", "spam"),  # spam words and a throwaway address
        "L-4": ("newsletter", "newsletter"),  # scores below every rule: the default
        "L-5": ("smb-trial", "smb-trial"),  # enterprise-sized, but a free mail address
    }
    assert "L-1     enterprise-sales success" in output
    assert re.search(r"│ L-3\s+│ 20\s+│ yes\s+│ discard-spam", output), output


# -- daily report --------------------------------------------------------------------------------


def report_fires(output: str) -> list[str]:
    return re.findall(r"fires the (\w{3} \d\d \w{3} 07:00) slot", output)


def test_daily_report_fires_once_a_day_and_writes_each_report_none_twice(
    tmp_path: Path, store_of: StoreOf
) -> None:
    output = demo(tmp_path, "daily-report").output
    assert len(report_fires(output)) == 3, output
    assert "a second beat ticking at the same instant fired 0" in output
    store = store_of(tmp_path)
    runs = store.list_executions(flow_id="daily-report")
    assert [e.status.value for e in runs] == ["completed"] * 3
    slots = sorted(datetime.fromisoformat(e.context["trigger"]["scheduled_for"]) for e in runs)
    amsterdam = [slot.astimezone(ZoneInfo("Europe/Amsterdam")) for slot in slots]
    assert {(local.hour, local.minute) for local in amsterdam} == {(7, 0)}
    assert [b - a for a, b in itertools.pairwise(slots)] == [timedelta(days=1)] * 2
    days = [(local - timedelta(days=1)).date() for local in amsterdam]  # yesterday's sales
    files = sorted((tmp_path / "reports").iterdir())
    assert [f.name for f in files] == [f"daily-sales-{day.isoformat()}.txt" for day in days]
    first = files[0].read_text(encoding="utf-8")
    assert first.startswith(f"Daily sales report for {days[0]:%A %d %B %Y}\n")
    assert re.search(r"^Orders: +\d+$", first, re.MULTILINE)
    assert "Sent to sales@example.com, ceo@example.com by trigger daily-report" in first
    trigger = store.get_trigger("daily-report")
    assert trigger is not None and not trigger.enabled  # a real beat sends nothing afterwards

    # Run again: the simulated days start after the first run's, and no slot fires twice.
    again = report_fires(demo(tmp_path, "daily-report").output)
    assert len(again) == 3 and not set(again) & set(report_fires(output))
    runs = store.list_executions(flow_id="daily-report")
    assert len(runs) == 6 and {e.status.value for e in runs} == {"completed"}
    assert len(list((tmp_path / "reports").iterdir())) == 6


# -- fan-out -------------------------------------------------------------------------------------


def test_fanout_runs_a_child_per_photo_and_joins_them(tmp_path: Path, store_of: StoreOf) -> None:
    output = demo(tmp_path, "fanout").output
    store = store_of(tmp_path)
    (parent,) = store.list_executions(flow_id="thumbnail-batch")
    assert parent.status == "completed", parent
    assert parent.context["summary"] == {"thumbnails": 5, "failed": 1, "photos": 6}
    children = {c.context["item"]["name"]: c for c in store.list_children(parent.id)}
    assert len(children) == 6
    assert children["broken.jpg"].status == "failed"
    assert children["broken.jpg"].error is not None
    assert children["broken.jpg"].error.code == "BAD_IMAGE"
    assert children["slow-server.jpg"].status == "completed"
    assert children["slow-server.jpg"].step_count == 3  # resize twice (a retry), store once
    # The join's output: one entry per photo, in the batch's order.
    entries = parent.context["thumbnails"]
    assert [e["status"] for e in entries] == ["completed"] * 4 + ["failed", "completed"]
    assert entries[0]["output"]["width"] == 128 and entries[0]["output"]["height"] == 96
    assert output.count("make-thumbnails resumed by children") == 1
    assert "photo-3 resize retry 2" in output
    assert "Batch B-1: completed, 5 thumbnails, 1 failed" in output


# -- approval ------------------------------------------------------------------------------------

APPROVAL = "flowmonkey_celery.examples.approval"


def expenses(store: SqlStore) -> dict[str, Execution]:
    return by_context_id(store.list_executions(flow_id="expense-approval"), "expense")


def test_approval_leaves_the_large_expense_waiting_and_says_how_to_resume_it(
    tmp_path: Path, store_of: StoreOf
) -> None:
    output = demo(tmp_path, "approval").output
    found = expenses(store_of(tmp_path))
    assert found["E-101"].status == "completed"  # small: paid with nobody asked
    assert found["E-101"].context["payment"]["amount"] == 38
    waiting = found["E-102"]
    assert waiting.status == "waiting" and waiting.current_step_id == "ask-approver"
    assert waiting.wait_reason == (
        "Approve E-102: 1450 EUR for a laptop (ben@example.com), by finance"
    )
    # The step's wait_timeout_ms: the inbox shows it as the deadline.
    assert waiting.wake_at is not None
    assert waiting.wake_at - waiting.updated_at == timedelta(days=3)
    assert f"export FLOWMONKEY_HOME={tmp_path.resolve()} FLOWMONKEY_HANDLERS={APPROVAL}" in output
    assert f"  flowmonkey resume {waiting.id} --data '{{\"approved\": true}}'   # or" in output
    assert "  flowmonkey worker   # runs the steps after the decision" in output
    assert "http://127.0.0.1:8000/ui/#/inbox" in output


def test_the_waiting_expense_resumed_from_the_cli_is_paid(
    tmp_path: Path, store_of: StoreOf
) -> None:
    demo(tmp_path, "approval")
    waiting = expenses(store_of(tmp_path))["E-102"]
    resumed = flowmonkey(
        tmp_path,
        *("resume", waiting.id, "--data", json.dumps({"approved": True}), "--in-process"),
        handlers=APPROVAL,
    )
    assert resumed.exit_code == 0, resumed.output
    paid = expenses(store_of(tmp_path))["E-102"]
    assert paid.status == "completed"
    assert paid.context["payment"]["amount"] == 1450
    assert paid.context["notification"]["message"].startswith("E-102 approved: 1450 EUR paid")


def test_the_printed_resume_token_reports_an_outcome(tmp_path: Path, store_of: StoreOf) -> None:
    output = demo(tmp_path, "approval").output
    (token,) = re.findall(r"flowmonkey resume --token (fmrt_\S+) --outcome approved", output)
    resumed = flowmonkey(
        tmp_path,
        *("resume", "--token", token, "--outcome", "rejected", "--in-process"),
        handlers=APPROVAL,
    )
    assert resumed.exit_code == 0, resumed.output
    turned_down = expenses(store_of(tmp_path))["E-102"]
    assert turned_down.status == "completed"
    assert turned_down.context["decision"]["outcome"] == "rejected"
    assert "payment" not in turned_down.context
    assert turned_down.context["notification"]["message"] == "E-102 was not approved"


@pytest.mark.parametrize(
    ("decision", "paid", "message"),
    [("approve", True, "E-102 approved: 1450 EUR paid"), ("reject", False, "E-102 was not")],
)
def test_decide_carries_the_expense_on_in_one_go(
    tmp_path: Path, store_of: StoreOf, decision: str, paid: bool, message: str
) -> None:
    output = demo(tmp_path, "approval", "--decide", decision).output
    assert f"the approver decides: {decision}" in output
    decided = expenses(store_of(tmp_path))["E-102"]
    assert decided.status == "completed"
    assert ("payment" in decided.context) is paid
    assert decided.context["notification"]["message"].startswith(message)
    assert "flowmonkey resume" not in output  # nothing is left waiting


# -- deploying every example ---------------------------------------------------------------------


def test_a_worker_with_all_examples_can_run_every_example_flow(tmp_path: Path) -> None:
    from flowmonkey_celery.examples.demo_run import FLOWS_DIR
    from flowmonkey_celery.runtime import Runtime
    from flowmonkey_celery.settings import Settings

    settings = Settings.from_env(
        {
            "FLOWMONKEY_HOME": str(tmp_path),
            "FLOWMONKEY_HANDLERS": "flowmonkey_celery.examples.all_examples",
            "FLOWMONKEY_FLOWS": str(FLOWS_DIR),
        }
    )
    runtime = Runtime.from_settings(settings)
    try:
        flow_ids = runtime.flows.flow_ids()
        assert len(flow_ids) == 6
        for flow_id in flow_ids:  # refused with HANDLER_NOT_FOUND if a step type had none
            assert runtime.engine.create(flow_id, {}).created
        # Deployed, the cron trigger is off until someone turns it on.
        trigger = runtime.store.get_trigger("daily-report")
        assert trigger is not None and not trigger.enabled
    finally:
        runtime.store.dispose()
