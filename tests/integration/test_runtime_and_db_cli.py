"""Building the store from settings, and the `flowmonkey db` commands, on real databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from click.testing import CliRunner

from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.cli import main
from flowmonkey_celery.coordination.redis import RedisLockManager
from flowmonkey_celery.errors import SchemaOutdatedError
from flowmonkey_celery.runtime import Runtime, build_store
from flowmonkey_celery.settings import Settings
from flowmonkey_celery.stores.sql import SqlStore
from flowmonkey_celery.stores.sql.migrations import current_revision, head_revision
from tests.services import REDIS_URL


def test_embedded_default_creates_and_migrates_its_sqlite_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = build_store(Settings(home=home))
    assert (home / "flowmonkey.db").exists()
    assert current_revision(store.engine) == head_revision()
    store.dispose()


def test_a_configured_database_with_an_old_schema_is_refused_with_what_to_run(
    empty_postgres_url: str,
) -> None:
    with pytest.raises(SchemaOutdatedError) as raised:
        build_store(Settings(database_url=empty_postgres_url))
    assert "flowmonkey db migrate" in raised.value.message
    assert raised.value.code == "SCHEMA_OUTDATED"


def test_a_migrated_configured_database_is_accepted(postgres_url: str) -> None:
    store = build_store(Settings(database_url=postgres_url))
    assert store.list_executions() == []
    store.dispose()


def test_db_migrate_then_check(empty_postgres_url: str) -> None:
    runner = CliRunner()
    before = runner.invoke(main, ["db", "check", "--url", empty_postgres_url])
    assert before.exit_code == 1
    assert "schema at nothing" in before.output

    migrated = runner.invoke(main, ["db", "migrate", "--url", empty_postgres_url])
    assert migrated.exit_code == 0, migrated.output
    assert f"migrated empty -> {head_revision()}" in migrated.output

    again = runner.invoke(main, ["db", "migrate", "--url", empty_postgres_url])
    assert "already up to date" in again.output
    assert runner.invoke(main, ["db", "check", "--url", empty_postgres_url]).exit_code == 0


def test_db_purge_deletes_only_old_finished_executions(tmp_path: Path) -> None:
    from tests.contract.test_store_contract import make_execution  # the contract's builder

    url = f"sqlite:///{tmp_path}/fm.db"
    store = SqlStore(url)
    store.migrate()
    now = datetime.now(UTC)
    old = make_execution(status="completed", finished_at=now - timedelta(days=40))
    recent = make_execution(status="completed", finished_at=now - timedelta(days=2))
    live = make_execution(status="waiting")
    for execution in (old, recent, live):
        store.create_execution(execution, now=now)

    result = CliRunner().invoke(main, ["db", "purge", "--url", url, "--older-than-days", "30"])

    assert result.exit_code == 0, result.output
    assert "deleted 1 executions" in result.output
    assert store.get_execution(old.id) is None
    assert store.get_execution(recent.id) is not None
    assert store.get_execution(live.id) is not None
    store.dispose()


def test_triggers_declared_in_flow_files_are_registered_at_start_up(tmp_path: Path) -> None:
    from flowmonkey_celery.runtime import Runtime

    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "report.yaml").write_text(
        """
id: nightly-report
version: 1.0.0
initial_step_id: build
steps:
  build: { type: conditional, config: { conditions: [{ path: x, op: exists, target: null }] } }
triggers:
  - { id: nightly, type: schedule, schedule: "0 2 * * *", timezone: Europe/Berlin,
      static_context: { kind: nightly } }
""",
        encoding="utf-8",
    )
    runtime = Runtime.from_settings(Settings(home=tmp_path / "home", flows=flows))
    (trigger,) = runtime.store.list_triggers()
    assert (trigger.id, trigger.flow_id, trigger.schedule) == (
        "nightly",
        "nightly-report",
        "0 2 * * *",
    )
    assert trigger.timezone == "Europe/Berlin"
    assert trigger.static_context == {"kind": "nightly"}
    runtime.store.dispose()


def test_with_flowmonkey_redis_url_ticks_share_one_sweep_per_period_through_redis(
    postgres_url: str, redis_client: Any
) -> None:
    queue = f"fmtest-{uuid.uuid4().hex[:10]}"
    settings = Settings(database_url=postgres_url, redis_url=REDIS_URL, queue=queue)
    runtime = Runtime.from_settings(settings)
    app = Celery("redis-lock-test", broker="memory://")
    fm = FlowMonkeyCelery(app, runtime)
    try:
        assert isinstance(runtime.locks, RedisLockManager)
        fm.tick()
        key = f"flowmonkey:lock:tick:{queue}"
        # The first tick holds the period (0.8 of it), so another beat's tick skips its sweep.
        assert 0 < redis_client.pttl(key) <= 800
        assert runtime.locks.acquire(f"tick:{queue}", ttl=1) is None
    finally:
        redis_client.delete(f"flowmonkey:lock:tick:{queue}")
        runtime.store.dispose()
        app.close()
