"""Schema migrations on real PostgreSQL and SQLite: the migrated schema is exactly the models',
migrating is idempotent (also when processes race), and an outdated schema is refused with a
message that says what to run."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, insert, inspect, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from flowmonkey_celery import ErrorCode, Execution, Flow
from flowmonkey_celery.core.api_keys import new_api_key
from flowmonkey_celery.core.inbox import EventWait
from flowmonkey_celery.core.triggers import ScheduleTrigger, TriggerFire
from flowmonkey_celery.errors import SchemaOutdatedError
from flowmonkey_celery.stores.sql import SqlStore
from flowmonkey_celery.stores.sql.migrations import (
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)
from flowmonkey_celery.stores.sql.schema import event_waits, metadata, triggers
from flowmonkey_celery.stores.sql.types import UtcDateTime

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
FM_TABLES = {
    "fm_joins",
    "fm_join_branches",
    "fm_executions",
    "fm_events",
    "fm_idempotency_keys",
    "fm_flow_definitions",
    "fm_triggers",
    "fm_trigger_fires",
    "fm_resume_tokens",
    "fm_jobs",
    "fm_inbox_events",
    "fm_event_waits",
    "fm_trigger_history",
    "fm_api_keys",
    "fm_flow_owners",
    "fm_heartbeats",
    "fm_execution_counts",
    "fm_execution_count_changes",
}
# What 0005 adds (and its downgrade drops).
TABLES_OF_0006 = {"fm_execution_counts", "fm_execution_count_changes"}
TABLES_OF_0005 = {
    "fm_inbox_events",
    "fm_event_waits",
    "fm_trigger_history",
    "fm_api_keys",
    "fm_flow_owners",
    "fm_heartbeats",
}
GREETING = Flow.from_dict(
    {
        "id": "greeting",
        "initialStepId": "say-hello",
        "steps": {"say-hello": {"type": "greet", "transitions": {"onSuccess": None}}},
    }
)


@pytest.fixture(params=["postgres", "sqlite"])
def empty_url(request: pytest.FixtureRequest) -> str:
    """A fresh database with no schema at all."""
    if request.param == "postgres":
        return str(request.getfixturevalue("empty_postgres_url"))
    return f"sqlite:///{request.getfixturevalue('tmp_path')}/flowmonkey.db"


@pytest.fixture
def store(empty_url: str) -> Iterator[SqlStore]:
    store = SqlStore(empty_url)
    yield store
    store.dispose()


def schema_differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        return list(compare_metadata(context, metadata))


def version_rows(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def an_execution() -> Execution:
    return Execution(
        id="kept-across-migrations",
        flow_id="greeting",
        flow_version="1.0.0",
        current_step_id="say-hello",
        context={"user": {"name": "World"}},
        created_at=T0,
        updated_at=T0,
    )


# -- the migrated schema -------------------------------------------------------------------------


def test_upgrading_an_empty_database_yields_exactly_the_models_schema(store: SqlStore) -> None:
    assert current_revision(store.engine) is None

    store.migrate()

    assert schema_differences(store.engine) == []
    assert current_revision(store.engine) == head_revision()


def test_every_flowmonkey_table_exists_after_migrating(store: SqlStore) -> None:
    store.migrate()

    tables = set(inspect(store.engine).get_table_names())

    assert {t for t in tables if t.startswith("fm_")} == FM_TABLES | {VERSION_TABLE}
    assert set(metadata.tables) == FM_TABLES


def test_migrating_twice_is_a_no_op_that_keeps_the_data(store: SqlStore) -> None:
    store.migrate()
    store.create_execution(an_execution(), now=T0)
    assert store.save_flow_definition(GREETING, now=T0) is True

    store.migrate()

    assert current_revision(store.engine) == head_revision()
    assert version_rows(store.engine) == [head_revision()]
    assert schema_differences(store.engine) == []
    assert store.get_execution("kept-across-migrations") == an_execution()
    assert store.list_flow_definitions() == [GREETING]


def test_a_schedule_trigger_stored_before_other_trigger_types_still_loads(
    store: SqlStore,
) -> None:
    upgrade(store.engine, "0004")
    with store.engine.begin() as connection:
        # The row as the schedule-only code wrote it: its fields, and no others, in `config`.
        connection.execute(
            insert(triggers).values(
                id="daily",
                type="schedule",
                name="Daily",
                flow_id="report",
                enabled=True,
                config={
                    "schedule": "0 9 * * *",
                    "timezone": "Europe/Berlin",
                    "static_context": {"kind": "daily", "n": 1.5},
                },
                created_at=T0,
                updated_at=T0,
            )
        )
    store.record_fire(TriggerFire(trigger_id="daily", scheduled_for=T0, fired_at=T0))

    store.migrate()

    expected = ScheduleTrigger(
        id="daily",
        name="Daily",
        flow_id="report",
        schedule="0 9 * * *",
        timezone="Europe/Berlin",
        static_context={"kind": "daily", "n": 1.5},
        created_at=T0,
        updated_at=T0,
    )
    assert store.get_trigger("daily") == expected
    assert store.list_triggers(enabled_only=True, trigger_type="schedule") == [expected]
    assert store.list_triggers() == [expected]
    assert store.last_fire("daily") == TriggerFire(
        trigger_id="daily", scheduled_for=T0, fired_at=T0
    )
    assert store.save_trigger(expected.model_copy(update={"name": "Renamed"}), T0).name == (
        "Renamed"
    )


def test_event_waits_stored_before_0007_count_as_searched_and_new_ones_do_not(
    store: SqlStore,
) -> None:
    upgrade(store.engine, "0006")
    with store.engine.begin() as connection:
        connection.execute(  # the columns of 0006, no inbox_checked_at
            insert(event_waits).values(
                execution_id="old",
                sequence=1,
                step_id="await",
                event_type="paid",
                match={},
                since=T0,
                created_at=T0,
            )
        )

    store.migrate()

    later = T0 + timedelta(hours=1)
    new = EventWait(
        execution_id="new", step_id="await", sequence=1, event_type="paid", since=T0, created_at=T0
    )
    with store.transaction() as tx:
        tx.insert_event_wait(new)
    with store.transaction() as tx:
        (old,) = [w for w in tx.find_event_waits("paid") if w.execution_id == "old"]
        assert old.inbox_checked_at == T0  # searched by the process that made it
        assert tx.find_unchecked_event_waits(later, 10) == [new]


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.connect() as connection, connection.begin():
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_downgrading_0005_drops_its_tables_and_upgrading_again_restores_them(
    store: SqlStore,
) -> None:
    store.migrate()
    store.create_execution(an_execution(), now=T0)

    _downgrade(store.engine, "0004")

    tables = {t for t in inspect(store.engine).get_table_names() if t.startswith("fm_")}
    assert current_revision(store.engine) == "0004"
    assert tables == (FM_TABLES - TABLES_OF_0005 - TABLES_OF_0006) | {VERSION_TABLE}
    assert store.get_execution("kept-across-migrations") == an_execution()

    store.migrate()

    assert current_revision(store.engine) == head_revision()
    assert schema_differences(store.engine) == []
    store.save_api_key(new_api_key("ops", T0, admin=True).record)
    assert store.claim_flow("greeting", "acme") == "acme"
    store.record_heartbeat("tick", T0)
    assert store.last_heartbeat("tick") == T0


# -- refusing an outdated schema -----------------------------------------------------------------


def test_check_schema_on_an_unmigrated_database_names_it_and_the_command_to_run(
    empty_url: str,
) -> None:
    url = make_url(empty_url)
    if url.get_backend_name() == "postgresql":
        # The test server trusts local connections, so a password is accepted and ignored:
        # the error must still never show it.
        url = url.set(password="s3cret-pw")
    store = SqlStore(url)
    try:
        with pytest.raises(SchemaOutdatedError) as raised:
            store.check_schema()
    finally:
        store.dispose()

    message = str(raised.value)
    assert raised.value.code == ErrorCode.SCHEMA_OUTDATED
    assert "flowmonkey db migrate" in message
    assert str(url.database) in message
    assert "s3cret-pw" not in message
    assert "s3cret-pw" not in repr(raised.value.details)


def test_check_schema_passes_once_migrated(store: SqlStore) -> None:
    with pytest.raises(SchemaOutdatedError):
        store.check_schema()

    store.migrate()

    store.check_schema()  # no error: the worker may start


# -- racing processes ----------------------------------------------------------------------------


def _migrate_each_in_turn(urls: list[str], barrier: Any, results: Any) -> None:
    """For each fresh database in turn: line up with every other caller, then migrate."""
    for url in urls:
        store = SqlStore(url)
        try:
            barrier.wait(timeout=60)
            store.migrate()
            results.put((url, "ok", current_revision(store.engine)))
        except BaseException as exc:
            results.put((url, "error", f"{type(exc).__name__}: {exc}"))
        finally:
            store.dispose()


def _migrate_in_threads(urls: list[str], barrier: Any, results: Any, threads: int) -> None:
    callers = [
        threading.Thread(target=_migrate_each_in_turn, args=(urls, barrier, results))
        for _ in range(threads)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=120)


@pytest.fixture(params=["postgres", "sqlite"])
def fresh_urls(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Several fresh, empty databases. First use is where processes collide (a worker and the
    beat starting together on a new FLOWMONKEY_HOME); on SQLite the window (two connections
    switching a fresh file to WAL) is microseconds wide, so the race is run on 50 files."""
    if request.param == "sqlite":
        tmp_path = request.getfixturevalue("tmp_path")
        yield [f"sqlite:///{tmp_path}/flowmonkey-{n}.db" for n in range(50)]
        return
    postgres = request.getfixturevalue("postgres")
    names = [postgres.create(migrated=False) for _ in range(3)]
    try:
        yield [postgres.url_for(name) for name in names]
    finally:
        for name in names:
            postgres.drop(name)


def test_two_processes_migrating_fresh_databases_at_once_all_succeed(
    fresh_urls: list[str],
) -> None:
    processes, threads = 2, 2  # e.g. a worker and the beat, each with a couple of threads
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes * threads)
    results = ctx.Queue()
    children = [
        ctx.Process(target=_migrate_in_threads, args=(fresh_urls, barrier, results, threads))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in range(processes * threads * len(fresh_urls))]
    for child in children:
        child.join(timeout=60)

    failures = [(url, message) for url, kind, message in outcomes if kind != "ok"]
    assert failures == []
    assert {revision for _, _, revision in outcomes} == {head_revision()}
    for url in fresh_urls:
        engine = create_engine(url)
        try:
            assert version_rows(engine) == [head_revision()], url
            assert schema_differences(engine) == [], url
        finally:
            engine.dispose()


# -- PostgreSQL column types ---------------------------------------------------------------------


def _migrate(url: str) -> None:
    store = SqlStore(url)
    try:
        store.migrate()
    finally:
        store.dispose()


def _postgres_columns(url: str, data_type: str) -> set[tuple[str, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name LIKE 'fm\\_%' "
                    "AND data_type = :data_type"
                ),
                {"data_type": data_type},
            )
            return {(table, column) for table, column in rows}
    finally:
        engine.dispose()


def _model_columns(compiled_as: str) -> set[tuple[str, str]]:
    dialect = postgresql.dialect()
    return {
        (table.name, column.name)
        for table in metadata.tables.values()
        for column in table.columns
        if column.type.compile(dialect=dialect) == compiled_as
    }


def test_json_columns_are_jsonb_on_postgres(empty_postgres_url: str) -> None:
    _migrate(empty_postgres_url)

    jsonb = _postgres_columns(empty_postgres_url, "jsonb")

    expected = _model_columns("JSONB")
    assert {("fm_executions", "context"), ("fm_events", "data")} <= expected
    assert jsonb == expected
    assert _postgres_columns(empty_postgres_url, "json") == set()


def test_instants_are_timestamptz_on_postgres(empty_postgres_url: str) -> None:
    _migrate(empty_postgres_url)

    timestamptz = _postgres_columns(empty_postgres_url, "timestamp with time zone")

    expected = {
        (table.name, column.name)
        for table in metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, UtcDateTime)
    }
    assert ("fm_executions", "wake_at") in expected
    assert timestamptz == expected
    assert _postgres_columns(empty_postgres_url, "timestamp without time zone") == set()
