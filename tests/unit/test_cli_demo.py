"""`flowmonkey demo --in-process`: the engine alone, with a simulated clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowmonkey_celery.cli import main


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flowmonkey-home")


@pytest.fixture(scope="module")
def demo_run(demo_home: Path) -> Result:
    # The embedded default: no database URL, so a SQLite file under FLOWMONKEY_HOME.
    env = {"FLOWMONKEY_HOME": str(demo_home), "FLOWMONKEY_DATABASE_URL": ""}
    return CliRunner().invoke(main, ["demo", "--in-process"], env=env)


def test_demo_exits_cleanly(demo_run: Result) -> None:
    assert demo_run.exception is None, demo_run.output
    assert demo_run.exit_code == 0


def test_demo_shows_each_step_retry_and_approval_resume(demo_run: Result) -> None:
    lines = demo_run.output.splitlines()

    def line_with(*parts: str) -> str:
        found = [line for line in lines if all(part in line for part in parts)]
        assert found, f"no line with {parts} in:\n{demo_run.output}"
        return found[0]

    line_with("A-1001", "validate", "success")
    line_with("A-1001", "charge-payment", "failure", "CARD_NETWORK_DOWN")
    line_with("A-1001", "charge-payment", "retry")
    line_with("A-1001", "charge-payment", "success", "attempt 2")
    line_with("A-1002", "manager-approval", "waiting for a signal")
    line_with("A-1002", "manager-approval", "resumed by signal")
    line_with("A-1003", "validate", "failure", "INVALID_ORDER")
    line_with("A-1003", "reject-order", "success")
    completed = [line for line in lines if "execution.completed" in line]
    assert [line.split()[2] for line in completed] == ["A-1001", "A-1002", "A-1003"]


def test_demo_shows_the_idempotency_hit(demo_run: Result) -> None:
    output = demo_run.output
    assert "idempotency hit for key 'order-A-1001-" in output
    assert "created=False, same execution: True" in output


def test_demo_stores_executions_durably_in_the_embedded_sqlite_file(
    demo_run: Result, demo_home: Path
) -> None:
    from flowmonkey_celery.stores.sql import SqlStore

    database = demo_home / "flowmonkey.db"
    assert database.exists()
    store = SqlStore(f"sqlite:///{database}")
    stored = store.list_executions(flow_id="order-fulfilment")
    store.dispose()
    assert sorted(e.context["order"]["id"] for e in stored) == ["A-1001", "A-1002", "A-1003"]
    assert {e.status.value for e in stored} == {"completed"}
    assert f"read back from sqlite:///{database}" in demo_run.output
