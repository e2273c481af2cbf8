"""The `flowmonkey` entry point as a whole: its commands, `main` (the console script), exit
codes for usage errors, `worker` / `beat` handing over to Celery, and `purge --older-than`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner as ClickRunner
from typer.testing import CliRunner, Result

from flowmonkey_celery.cli import app, main
from flowmonkey_celery.stores.sql import SqlStore


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("FLOWMONKEY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FLOWMONKEY_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def flowmonkey(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_help_lists_every_command(home: Path) -> None:
    result = flowmonkey("--help")

    assert result.exit_code == 0, result.output
    commands = {
        line.split()[1]
        for line in result.stdout.splitlines()
        if line.startswith("│ ") and len(line.split()) > 2 and not line.split()[1].startswith("-")
    }
    assert {
        "run",
        "start",
        "resume",
        "cancel",
        "executions",
        "flows",
        "validate",
        "handlers",
        "worker",
        "beat",
        "db",
        "purge",
        "demo",
    } <= commands


def test_main_is_still_a_command_that_click_runners_and_scripts_invoke(home: Path) -> None:
    result = ClickRunner().invoke(main, ["--version"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("flowmonkey, version ")
    # The console script pyproject.toml installs: `flowmonkey = "flowmonkey_celery.cli:main"`.
    script = Path(sys.executable).with_name("flowmonkey")
    scripted = subprocess.run(
        [str(script), "db", "upgrade", "--json"], capture_output=True, text=True, timeout=60
    )
    assert scripted.returncode == 0, scripted.stderr
    assert '"to": ' in scripted.stdout
    assert (home / "flowmonkey.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["run"],
        ["executions", "list", "--limit", "many"],
        ["executions", "show"],
        ["purge", "--older-than", "30x"],
        ["purge", "--older-than", "0d"],
        ["resume", "some-id", "--data", "{not json"],
        ["db", "purge", "--older-than-days", "0"],
    ],
)
def test_usage_errors_exit_2(home: Path, args: list[str]) -> None:
    result = flowmonkey(*args)

    assert result.exit_code == 2, result.output
    assert "Usage: " in result.stderr


def test_a_bad_setting_is_named_with_its_variable(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWMONKEY_LEASE_SECONDS", "soon")

    result = flowmonkey("executions", "list")

    assert result.exit_code == 1
    assert result.stderr.startswith("INVALID_ARGUMENT: invalid setting: FLOWMONKEY_LEASE_SECONDS")


@pytest.mark.parametrize(
    ("command", "celery_says"),
    [("worker", "Start worker instance."), ("beat", "Start the beat periodic task scheduler.")],
)
def test_worker_and_beat_hand_every_argument_to_celery_from_the_installed_package(
    home: Path, tmp_path: Path, command: str, celery_says: str
) -> None:
    # Run from a folder without the repository's workers/ and beat/ entry points.
    result = subprocess.run(
        [sys.executable, "-m", "flowmonkey_celery.cli", command, "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": ""},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert celery_says in result.stdout  # Celery's own help: --help went to Celery
    assert "flowmonkey_celery.cli.celery_apps" not in result.stderr  # the app loaded cleanly


def test_worker_reports_a_bad_setting_before_starting_celery(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowmonkey_celery.cli", "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FLOWMONKEY_TICK_SECONDS": "often"},
    )

    assert result.returncode == 1
    assert result.stderr.startswith("INVALID_ARGUMENT: invalid setting: FLOWMONKEY_TICK_SECONDS")


def _store_with_finished_executions(home: Path) -> tuple[SqlStore, dict[str, str]]:
    from tests.contract.test_store_contract import make_execution  # the contract's builder

    home.mkdir(parents=True)
    store = SqlStore(f"sqlite:///{home / 'flowmonkey.db'}")
    store.migrate()
    now = datetime.now(UTC)
    executions = {
        "40 days": make_execution(status="completed", finished_at=now - timedelta(days=40)),
        "13 hours": make_execution(status="failed", finished_at=now - timedelta(hours=13)),
        "1 hour": make_execution(status="cancelled", finished_at=now - timedelta(hours=1)),
        "live": make_execution(status="waiting"),
    }
    for execution in executions.values():
        store.create_execution(execution, now=now)
    return store, {age: execution.id for age, execution in executions.items()}


def test_purge_older_than_a_duration(home: Path) -> None:
    store, ids = _store_with_finished_executions(home)
    try:
        month = flowmonkey("purge", "--older-than", "30d")
        assert month.exit_code == 0, month.output
        assert "deleted 1 executions finished before" in month.stdout
        assert store.get_execution(ids["40 days"]) is None

        half_day = flowmonkey("purge", "--older-than", "12h", "--json")
        assert half_day.exit_code == 0, half_day.output
        assert '"deleted": 1' in half_day.stdout
        remaining = {age for age, execution_id in ids.items() if store.get_execution(execution_id)}
        assert remaining == {"1 hour", "live"}
    finally:
        store.dispose()


def test_db_upgrade_is_db_migrate(tmp_path: Path, home: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"

    upgraded = flowmonkey("db", "upgrade", "--url", url)
    again = flowmonkey("db", "migrate", "--url", url)
    checked = flowmonkey("db", "check", "--url", url, "--json")

    assert upgraded.exit_code == 0, upgraded.output
    assert "migrated empty -> " in upgraded.stdout
    assert "already up to date" in again.stdout
    assert checked.exit_code == 0
    assert '"up_to_date": true' in checked.stdout
