"""`waiting_stats` is read at every /metrics scrape: each of its subqueries must come from an
index of fm_executions, never a scan of the whole table (a million finished executions)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite

from flowmonkey_celery.stores.sql import SqlStore
from flowmonkey_celery.stores.sql.waiting import waiting_stats_query

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_waiting_stats_query_uses_indexes_on_postgresql(postgres_url: str) -> None:
    store = SqlStore(postgres_url)
    query = waiting_stats_query(NOW).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    with store.engine.connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(connection.execute(text(f"EXPLAIN {query}")).scalars())
    store.dispose()
    assert "Seq Scan on fm_executions" not in plan, plan
    assert plan.count("Index") >= 4, plan  # one per subquery
    assert "ix_fm_executions_status_wait_started_at" in plan, plan  # the oldest wait


def test_the_waiting_stats_query_uses_indexes_on_sqlite(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/flowmonkey.db")
    store.migrate()
    query = waiting_stats_query(NOW).compile(
        dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
    )
    with store.engine.connect() as connection:
        rows = connection.execute(text(f"EXPLAIN QUERY PLAN {query}"))
        plan = "\n".join(str(row[-1]) for row in rows)
    store.dispose()
    scans = [line for line in plan.splitlines() if "fm_executions" in line]
    assert len(scans) == 4 and all("INDEX" in line for line in scans), plan
    assert "ix_fm_executions_status_wait_started_at" in plan, plan
