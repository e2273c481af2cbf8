"""The operator's commands on a configured PostgreSQL database (FLOWMONKEY_DATABASE_URL):
`db upgrade`, an outdated schema refused with what to run, `run` and `executions` on it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flowmonkey_celery.cli import app
from flowmonkey_celery.examples.orders import FLOWS_DIR
from flowmonkey_celery.stores.sql import SqlStore
from flowmonkey_celery.stores.sql.migrations import head_revision


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("FLOWMONKEY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FLOWMONKEY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWMONKEY_HANDLERS", "flowmonkey_celery.examples.orders")
    monkeypatch.setenv("FLOWMONKEY_FLOWS", str(FLOWS_DIR))


def flowmonkey(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"FLOWMONKEY_DATABASE_URL": url})


ORDER = {
    "order": {
        "id": "P-1",
        "country": "DE",
        "card": "visa",
        "customer": {"email": "ana@example.com"},
        "items": [{"sku": "sofa", "price": 1500}],
        "pickup_wait": {"seconds": 0},
    }
}


def test_db_upgrade_migrates_the_configured_database(
    settings: None, empty_postgres_url: str
) -> None:
    refused = flowmonkey(empty_postgres_url, "run", "order-fulfilment")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("SCHEMA_OUTDATED: ")
    assert "flowmonkey db migrate" in refused.stderr

    assert flowmonkey(empty_postgres_url, "db", "check").exit_code == 1
    upgraded = flowmonkey(empty_postgres_url, "db", "upgrade", "--json")
    assert upgraded.exit_code == 0, upgraded.output
    assert json.loads(upgraded.stdout)["to"] == head_revision()
    assert flowmonkey(empty_postgres_url, "db", "check").exit_code == 0


def test_run_resume_and_show_on_postgresql(settings: None, postgres_url: str) -> None:
    waiting = flowmonkey(postgres_url, "run", "order-fulfilment", "-c", json.dumps(ORDER), "--json")
    assert waiting.exit_code == 3, waiting.output
    execution_id = json.loads(waiting.stdout)["execution"]["id"]

    listed = flowmonkey(postgres_url, "executions", "list", "--status", "waiting", "--json")
    assert [e["id"] for e in json.loads(listed.stdout)["executions"]] == [execution_id]

    resumed = flowmonkey(
        postgres_url, "resume", execution_id, "-d", '{"decision": "approved"}', "--in-process"
    )
    assert resumed.exit_code == 0, resumed.output

    shown = flowmonkey(postgres_url, "executions", "show", execution_id)
    assert shown.exit_code == 0, shown.output
    assert "manager-approval" in shown.stdout and "by signal with data" in shown.stdout
    store = SqlStore(postgres_url)
    try:
        execution = store.get_execution(execution_id)
        assert execution is not None
        assert execution.status == "completed"
        assert execution.context["approval"] == {"decision": "approved"}
    finally:
        store.dispose()
