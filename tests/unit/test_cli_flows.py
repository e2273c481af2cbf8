"""`flowmonkey flows validate | register | list`, on the embedded default (SQLite under
FLOWMONKEY_HOME)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flowmonkey_celery.cli import app
from flowmonkey_celery.stores.sql import SqlStore

GREETING = """
id: greeting
version: 1.0.0
initial_step_id: pause
steps:
  pause: { type: delay, config: { seconds: 1 } }
"""
REPORT = """
id: nightly-report
version: 2.0.0
initial_step_id: build
steps:
  build: { type: conditional, config: { conditions: [{ path: x, op: exists, target: null }] } }
triggers:
  - { id: nightly, type: schedule, schedule: "0 2 * * *", timezone: Europe/Berlin }
"""
BAD = """
id: bad
initial_step_id: p
steps:
  p: { type: delay, config: { secnds: 1 }, transitions: { on_success: gone } }
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("FLOWMONKEY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FLOWMONKEY_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def flowmonkey(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def stored_flows(home: Path) -> list[tuple[str, str]]:
    store = SqlStore(f"sqlite:///{home / 'flowmonkey.db'}")
    try:
        return [(flow.id, flow.version) for flow in store.list_flow_definitions()]
    finally:
        store.dispose()


def test_flows_validate_is_validate(home: Path, tmp_path: Path) -> None:
    write(tmp_path / "flows", "greeting.yaml", GREETING)
    write(tmp_path / "flows", "bad.yaml", BAD)

    alias = flowmonkey("validate", "flows")
    grouped = flowmonkey("flows", "validate", "flows")

    assert alias.exit_code == grouped.exit_code == 1
    assert alias.stdout == grouped.stdout
    assert "flows/greeting.yaml: greeting 1.0.0, 1 steps" in grouped.stdout
    assert "unknown key 'secnds' (did you mean 'seconds'?)" in grouped.stdout


def test_flows_validate_json(home: Path, tmp_path: Path) -> None:
    write(tmp_path / "flows", "bad.yaml", BAD)
    write(tmp_path / "flows", "greeting.yaml", GREETING)

    result = flowmonkey("flows", "validate", "flows", "--json")

    assert result.exit_code == 1
    bad, good = json.loads(result.stdout)
    assert (bad["file"], bad["valid"], len(bad["issues"])) == ("flows/bad.yaml", False, 2)
    assert {"path": "steps.p.transitions.on_success"} in [
        {"path": issue["path"]} for issue in bad["issues"]
    ]
    assert (good["flow_id"], good["version"], good["valid"]) == ("greeting", "1.0.0", True)


def test_register_saves_the_flows_and_their_triggers_for_the_workers(
    home: Path, tmp_path: Path
) -> None:
    write(tmp_path / "flows", "greeting.yaml", GREETING)
    write(tmp_path / "flows", "report.yaml", REPORT)

    result = flowmonkey("flows", "register", "flows")

    assert result.exit_code == 0, result.output
    assert "greeting 1.0.0, 1 steps, saved" in result.stdout
    assert "nightly-report 2.0.0, 1 steps, saved" in result.stdout
    assert sorted(stored_flows(home)) == [("greeting", "1.0.0"), ("nightly-report", "2.0.0")]
    store = SqlStore(f"sqlite:///{home / 'flowmonkey.db'}")
    (trigger,) = store.list_triggers()
    store.dispose()
    assert (trigger.id, trigger.flow_id, trigger.schedule) == (
        "nightly",
        "nightly-report",
        "0 2 * * *",
    )

    again = flowmonkey("flows", "register", "flows/greeting.yaml", "--json")
    assert again.exit_code == 0, again.output
    (entry,) = json.loads(again.stdout)
    assert entry["saved"] is False  # the same version, stored already

    # A stored flow can be run without FLOWMONKEY_FLOWS: every runtime loads stored versions.
    started = flowmonkey("start", "greeting", "--json")
    assert started.exit_code == 0, started.output


def test_register_is_all_or_nothing(home: Path, tmp_path: Path) -> None:
    write(tmp_path / "v1", "greeting.yaml", GREETING)
    assert flowmonkey("flows", "register", "v1").exit_code == 0
    changed = GREETING.replace("seconds: 1", "seconds: 2")  # same version, other definition
    write(tmp_path / "v2", "greeting.yaml", changed)
    write(tmp_path / "v2", "report.yaml", REPORT)

    result = flowmonkey("flows", "register", "v2")

    assert result.exit_code == 1
    assert "version: flow 'greeting' version 1.0.0 is already stored" in result.stdout
    assert "give the changed flow a new version" in result.stdout
    assert stored_flows(home) == [("greeting", "1.0.0")]  # the valid report was not saved either


def test_register_refuses_invalid_files_and_unknown_step_types(home: Path, tmp_path: Path) -> None:
    write(tmp_path / "flows", "bad.yaml", BAD)
    write(
        tmp_path / "flows", "fax.yaml", "id: fax\ninitial_step_id: s\nsteps:\n  s: { type: fax }\n"
    )
    write(tmp_path / "flows", "greeting.yaml", GREETING)

    result = flowmonkey("flows", "register", "flows")

    assert result.exit_code == 1
    assert "bad.yaml: 2 problem(s)" in result.stdout
    assert "steps.s.type: no handler for step type 'fax'" in result.stdout
    assert "FLOWMONKEY_HANDLERS" in result.stdout
    assert not (home / "flowmonkey.db").exists()  # refused before the store was opened


def test_flows_list(home: Path, tmp_path: Path) -> None:
    assert "No flows stored yet" in flowmonkey("flows", "list").stdout
    write(tmp_path / "flows", "report.yaml", REPORT)
    assert flowmonkey("flows", "register", "flows").exit_code == 0

    table = flowmonkey("flows", "list")
    listed = flowmonkey("flows", "list", "--json")

    assert table.exit_code == 0, table.output
    assert "nightly-report" in table.stdout and "2.0.0" in table.stdout
    assert json.loads(listed.stdout) == [
        {
            "id": "nightly-report",
            "version": "2.0.0",
            "name": None,
            "initial_step_id": "build",
            "steps": ["build"],
            "triggers": ["nightly"],
        }
    ]


def test_a_path_that_does_not_exist_is_a_usage_error(home: Path) -> None:
    assert flowmonkey("flows", "register", "nowhere").exit_code == 2
    assert flowmonkey("flows", "validate").exit_code == 2
