"""PostgreSQL's kept execution counts (migration 0006): exact under concurrent writers and a
concurrent fold, after folding, after migrating a database that already has executions, and
after a TRUNCATE."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from flowmonkey_celery import Execution, ExecutionStatus
from flowmonkey_celery.stores.sql import SqlStore, counting
from flowmonkey_celery.stores.sql.migrations import upgrade

T0 = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
ZERO = dict.fromkeys((s.value for s in ExecutionStatus), 0)


def new_execution(**fields: object) -> Execution:
    values: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "flow_id": "orders",
        "flow_version": "1.0.0",
        "tenant_id": "acme",
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return Execution.model_validate(values)


def changes_pending(store: SqlStore) -> int:
    with store.engine.connect() as connection:
        return int(
            connection.execute(text("SELECT count(*) FROM fm_execution_count_changes")).scalar_one()
        )


def listed_counts(store: SqlStore, **filters: object) -> dict[str, int]:
    return {
        status: len(store.list_executions(status=status, limit=100_000, **filters))  # type: ignore[arg-type]
        for status in ZERO
    }


def run_to_completion(store: SqlStore, execution: Execution) -> None:
    """pending -> running -> (two saves that keep the status) -> completed."""
    current = store.save_execution(
        execution.model_copy(update={"status": ExecutionStatus.RUNNING}),
        expected_version=execution.version,
    )
    for step in range(2):
        current = store.save_execution(
            current.model_copy(update={"step_count": step + 1}), expected_version=current.version
        )
    store.save_execution(
        current.model_copy(update={"status": ExecutionStatus.COMPLETED, "finished_at": T0}),
        expected_version=current.version,
    )


def test_counts_stay_exact_under_concurrent_writers_and_folds(postgres_url: str) -> None:
    store = SqlStore(postgres_url)
    writers, each = 6, 40
    errors: list[BaseException] = []
    done = threading.Event()
    start = threading.Barrier(writers + 1)

    def write(tenant: str) -> None:
        try:
            start.wait()
            for i in range(each):
                execution, _ = store.create_execution(new_execution(tenant_id=tenant), now=T0)
                if i % 4:  # three in four complete, the rest stay pending
                    run_to_completion(store, execution)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def fold() -> None:
        start.wait()
        while not done.is_set():
            store.fold_execution_counts()

    # Two tenants only: writers share the same (tenant, flow, status) rows of changes.
    threads = [
        threading.Thread(target=write, args=(("acme", "globex")[n % 2],)) for n in range(writers)
    ]
    folder = threading.Thread(target=fold)
    for thread in [*threads, folder]:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    folder.join(timeout=60)

    assert not errors, errors
    completed_each = each - each // 4
    assert store.count_executions() == {
        **ZERO,
        "completed": writers * completed_each,
        "pending": writers * (each // 4),
    }
    assert store.count_executions(tenant_id="acme") == listed_counts(store, tenant_id="acme")
    store.fold_execution_counts()
    assert changes_pending(store) == 0
    assert store.count_executions(tenant_id="globex", flow_id="orders") == listed_counts(
        store, tenant_id="globex"
    )
    store.dispose()


def test_a_count_that_sums_many_changes_folds_them(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlStore(postgres_url)
    for i in range(30):
        execution, _ = store.create_execution(
            new_execution(tenant_id=f"t{i % 3}", flow_id=f"f{i % 2}"), now=T0
        )
        if i % 2:
            run_to_completion(store, execution)
    assert changes_pending(store) == 30 + 15 * 4  # +1 per create, -1/+1 per status change
    monkeypatch.setattr(counting, "FOLD_AFTER", 10)

    first = store.count_executions()

    assert first == {**ZERO, "pending": 15, "completed": 15}
    assert changes_pending(store) == 0  # folded after answering
    assert store.count_executions() == first
    assert store.count_executions(tenant_id="t1", flow_id="f1") == listed_counts(
        store, tenant_id="t1", flow_id="f1"
    )
    assert store.fold_execution_counts() == 0  # nothing left
    store.dispose()


def test_a_fold_in_batches_folds_everything(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlStore(postgres_url)
    for _ in range(25):
        store.create_execution(new_execution(), now=T0)
    monkeypatch.setattr(counting, "FOLD_BATCH", 10)

    assert store.fold_execution_counts() == 25

    assert changes_pending(store) == 0
    assert store.count_executions() == {**ZERO, "pending": 25}
    store.dispose()


def test_migrating_a_database_with_executions_counts_them(empty_postgres_url: str) -> None:
    engine = create_engine(empty_postgres_url)
    upgrade(engine, "0005")
    store = SqlStore(empty_postgres_url)
    for i in range(12):
        execution, _ = store.create_execution(
            new_execution(tenant_id=None if i % 4 == 0 else "acme", created_at=T0 + timedelta(i)),
            now=T0,
        )
        if i % 3 == 0:
            run_to_completion(store, execution)

    store.migrate()

    assert store.count_executions() == {**ZERO, "pending": 8, "completed": 4}
    assert store.count_executions(tenant_id="acme") == listed_counts(store, tenant_id="acme")
    assert changes_pending(store) == 0  # the rows there before were counted, not changed
    store.dispose()
    engine.dispose()


def test_a_truncate_empties_the_counts(postgres_url: str) -> None:
    store = SqlStore(postgres_url)
    for _ in range(3):
        store.create_execution(new_execution(), now=T0)
    store.fold_execution_counts()
    store.create_execution(new_execution(), now=T0)

    with store.engine.begin() as connection:
        connection.execute(text("TRUNCATE fm_executions CASCADE"))

    assert store.count_executions() == ZERO
    store.create_execution(new_execution(status=ExecutionStatus.WAITING), now=T0)
    assert store.count_executions() == {**ZERO, "waiting": 1}
    store.dispose()


def test_the_tick_folds_the_count_changes_so_they_never_pile_up(postgres_url: str) -> None:
    """Nobody reads the counts on this deployment: the beat's tick folds them anyway."""
    from celery import Celery

    from flowmonkey_celery.celery import FlowMonkeyCelery
    from flowmonkey_celery.runtime import Runtime
    from flowmonkey_celery.settings import Settings

    runtime = Runtime.from_settings(Settings(database_url=postgres_url))
    app = Celery("fold-test", broker="memory://")
    fm = FlowMonkeyCelery(app, runtime)
    try:
        for _ in range(3):
            runtime.store.create_execution(new_execution(), now=T0)
        assert changes_pending(runtime.store) == 3

        fm.tick()

        assert changes_pending(runtime.store) == 0
        assert runtime.store.count_executions()["pending"] == 3
    finally:
        runtime.store.dispose()
        app.close()
