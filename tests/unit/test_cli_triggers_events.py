"""`flowmonkey keys`, `triggers` and `events` on the embedded default (SQLite store and broker):
keys are shown once and stored hashed, events dedupe by key and start what they match,
triggers are listed, shown with their history and fired by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flowmonkey_celery.cli import app
from flowmonkey_celery.core.api_keys import hash_key
from flowmonkey_celery.stores.sql import SqlStore

FLOW = """
id: greet
version: 1.0.0
initial_step_id: hold
steps:
  hold: { type: wait_for_signal }
triggers:
  - { id: greet-on-signup, type: event, event_type: user.signed_up, context_key: user,
      conditions: [{ path: plan, op: eq, value: pro }] }
  - { id: greet-hook, type: http, context_key: user }
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("FLOWMONKEY_"):
            monkeypatch.delenv(key)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "greet.yaml").write_text(FLOW, encoding="utf-8")
    monkeypatch.setenv("FLOWMONKEY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWMONKEY_FLOWS", str(flows))
    return tmp_path / "home"


def flowmonkey(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def store_of(home: Path) -> SqlStore:
    return SqlStore(f"sqlite:///{home / 'flowmonkey.db'}")


def test_a_key_is_shown_once_and_only_its_hash_is_stored(home: Path) -> None:
    created = flowmonkey("keys", "create", "acme-app", "--tenant", "acme", "--quiet")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("fmk_")

    listed = json.loads(flowmonkey("keys", "list", "--json").stdout)
    assert [(k["name"], k["tenant_id"], k["admin"]) for k in listed] == [
        ("acme-app", "acme", False)
    ]
    assert key not in flowmonkey("keys", "list").stdout
    store = store_of(home)
    try:
        [record] = store.list_api_keys()
        assert record.key_hash == hash_key(key) and key not in record.model_dump_json()
    finally:
        store.dispose()

    assert flowmonkey("keys", "revoke", "acme-app").exit_code == 0
    again = flowmonkey("keys", "revoke", "acme-app")
    assert again.exit_code == 1 and "no live API key named 'acme-app'" in again.stderr


def test_a_key_needs_exactly_one_scope(home: Path) -> None:
    neither = flowmonkey("keys", "create", "k")
    both = flowmonkey("keys", "create", "k", "--tenant", "a", "--admin")
    assert neither.exit_code == both.exit_code == 2
    assert "exactly one of --tenant TENANT or --admin" in neither.output


def test_an_event_starts_the_flows_whose_rules_match_once_per_key(home: Path) -> None:
    payload = json.dumps({"name": "Ada", "plan": "pro"})
    first = flowmonkey(
        "events", "emit", "user.signed_up", "--payload", payload, "--key", "u-1", "--json"
    )
    again = flowmonkey(
        "events", "emit", "user.signed_up", "--payload", payload, "--key", "u-1", "--json"
    )
    free = flowmonkey("events", "emit", "user.signed_up", "--payload", '{"plan": "free"}', "--json")

    assert first.exit_code == 0, first.output
    started = json.loads(first.stdout)["started"]
    assert len(started) == 1
    assert json.loads(again.stdout) == {
        "event_id": json.loads(first.stdout)["event_id"],
        "created": False,
        "started": [],
        "resumed": [],
    }
    assert json.loads(free.stdout)["started"] == []
    listed = json.loads(flowmonkey("events", "list", "--json").stdout)
    assert [e["key"] for e in listed] == ["u-1", None]
    store = store_of(home)
    try:
        execution = store.get_execution(started[0])
        assert execution is not None and execution.context["user"] == {"name": "Ada", "plan": "pro"}
    finally:
        store.dispose()


def test_triggers_are_listed_shown_with_their_history_and_fired_by_hand(home: Path) -> None:
    listed = json.loads(flowmonkey("triggers", "list", "--json").stdout)
    assert [(t["id"], t["type"]) for t in listed] == [
        ("greet-hook", "http"),
        ("greet-on-signup", "event"),
    ]

    fired = flowmonkey("triggers", "fire", "greet-hook", "--payload", '{"name": "Bo"}', "--json")
    assert fired.exit_code == 0, fired.output
    execution_id = json.loads(fired.stdout)["execution_id"]

    shown = json.loads(flowmonkey("triggers", "show", "greet-hook", "--json").stdout)
    assert shown["stats"]["accepted"] == 1
    assert [f["execution_id"] for f in shown["fires"]] == [execution_id]
    assert "POST /webhooks/greet-hook" in flowmonkey("triggers", "list").stdout
    unknown = flowmonkey("triggers", "show", "nope")
    assert unknown.exit_code == 1 and "TRIGGER_NOT_FOUND: no trigger 'nope'" in unknown.stderr


def test_a_file_trigger_changed_in_the_store_stays_changed_until_a_new_version_ships(
    home: Path,
) -> None:
    assert flowmonkey("triggers", "list").exit_code == 0  # saves the file's triggers
    store = store_of(home)
    try:
        hook = store.get_trigger("greet-hook")
        assert hook is not None
        store.save_trigger(hook.model_copy(update={"enabled": False}), hook.created_at)
    finally:
        store.dispose()

    listed = json.loads(flowmonkey("triggers", "list", "--json").stdout)
    assert {t["id"]: t["enabled"] for t in listed}["greet-hook"] is False
    flows = Path(os.environ["FLOWMONKEY_FLOWS"])
    (flows / "greet.yaml").write_text(FLOW.replace("1.0.0", "1.1.0"), encoding="utf-8")
    listed = json.loads(flowmonkey("triggers", "list", "--json").stdout)
    assert {t["id"]: t["enabled"] for t in listed}["greet-hook"] is True  # the new version's
