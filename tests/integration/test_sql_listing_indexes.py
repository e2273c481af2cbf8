"""The dashboard's queries (newest first, lookups by idempotency key and metadata, counts) use
the indexes of migration 0006 and the kept counts, on a table with enough rows (20,000,
analyzed) for PostgreSQL's planner to choose as it would on a big one. Plans, not timings:
bench/dashboard.py measures those at 1,000,000 rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from flowmonkey_celery.stores.sql import SqlStore, counting, listing
from tests.services import PostgresDatabases

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ROWS = 20_000
# A month of executions, one every two minutes; three flows, two tenants; mostly completed;
# every order has an order id of its own in its metadata; every third one a key.
_LOAD = f"""
INSERT INTO fm_executions (id, flow_id, flow_version, status, context, step_count, tenant_id,
                           metadata, idempotency_key, retry_attempts, created_at, updated_at,
                           version)
SELECT 'x-' || i, (ARRAY['orders', 'refunds', 'reports'])[1 + i % 3], '1.0.0',
       CASE WHEN i % 50 = 0 THEN 'waiting' WHEN i % 20 = 0 THEN 'failed' ELSE 'completed' END,
       '{{}}', 3, (ARRAY['acme', 'globex'])[1 + i % 2],
       jsonb_build_object('region', (ARRAY['eu', 'us'])[1 + i % 2], 'order_id', 'o-' || i),
       CASE WHEN i % 3 = 0 THEN 'key-' || i END, 0,
       :now - i * interval '2 minutes', :now - i * interval '2 minutes', 6
FROM generate_series(1, {ROWS}) AS i
"""


@pytest.fixture(scope="module")
def loaded(postgres: PostgresDatabases) -> Iterator[SqlStore]:
    with postgres.database() as url:
        store = SqlStore(url)
        with store.engine.begin() as connection:
            connection.execute(text(_LOAD), {"now": NOW})
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE fm_executions"))
        yield store
        store.dispose()


def plan(store: SqlStore, query: Any) -> str:
    compiled = query.compile(dialect=store.engine.dialect, compile_kwargs={"literal_binds": True})
    with store.engine.connect() as connection:
        return "\n".join(connection.execute(text(f"EXPLAIN {compiled}")).scalars())


NEWEST_PAGES: dict[str, dict[str, Any]] = {
    "all": {},
    "status": {"status": "failed"},
    "flow": {"flow_id": "refunds"},
    "tenant": {"tenant_id": "globex"},
    "flow and tenant": {"flow_id": "refunds", "tenant_id": "globex"},
    "deep page": {"after": "x-15000"},
    "deep page of a status": {"after": "x-15000", "status": "waiting"},
}


@pytest.mark.parametrize("name", list(NEWEST_PAGES))
def test_a_newest_first_page_walks_an_index_backwards_without_sorting(
    loaded: SqlStore, name: str
) -> None:
    query = listing.list_query("postgresql", newest_first=True, limit=50, **NEWEST_PAGES[name])

    found = plan(loaded, query)

    # A filter on a common value may walk the time index and filter: the page is as near.
    assert "Index Scan Backward using ix_fm_executions_" in found, found
    assert "Sort" not in found and "Seq Scan" not in found, found


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"idempotency_key": "key-300"}, "ix_fm_executions_idempotency_key"),
        ({"idempotency_key": "key-300", "tenant_id": "acme"}, "ix_fm_executions_idempotency_key"),
        ({"metadata": {"order_id": "o-4242"}}, "ix_fm_executions_metadata"),
        ({"metadata": {"order_id": "o-4242"}, "status": "failed"}, "ix_fm_executions_metadata"),
        ({"metadata": {"order_id": "42"}}, "ix_fm_executions_metadata"),  # a number, or text
    ],
    ids=repr,
)
@pytest.mark.parametrize("newest_first", [False, True], ids=["oldest first", "newest first"])
def test_a_rare_key_or_metadata_value_is_found_through_its_index(
    loaded: SqlStore, filters: dict[str, Any], index: str, newest_first: bool
) -> None:
    query = listing.list_query("postgresql", newest_first=newest_first, limit=50, **filters)

    found = plan(loaded, query)

    assert index in found, found
    assert "Seq Scan on fm_executions" not in found, found


def test_a_common_metadata_value_pages_through_the_time_index_instead(loaded: SqlStore) -> None:
    # Half the rows match: walking created_at and filtering finds a page at once, where the
    # GIN lookup would fetch and sort 10,000 rows.
    query = listing.list_query("postgresql", newest_first=True, metadata={"region": "eu"})

    found = plan(loaded, query)

    assert "Index Scan Backward using ix_fm_executions_created_at_id" in found, found


@pytest.mark.parametrize(
    "filters", [{}, {"tenant_id": "acme"}, {"flow_id": "orders", "tenant_id": "globex"}], ids=repr
)
def test_counts_by_flow_and_tenant_read_the_kept_counts_not_the_executions(
    loaded: SqlStore, filters: dict[str, Any]
) -> None:
    found = plan(loaded, counting.counters_query(**{"flow_id": None, "tenant_id": None, **filters}))

    assert "fm_executions" not in found, found  # neither its table nor one of its indexes
    assert "fm_execution_counts" in found and "fm_execution_count_changes" in found, found
    assert loaded.count_executions(**filters) == {
        status: len(loaded.list_executions(status=status, limit=ROWS, **filters))
        for status in ("pending", "running", "waiting", "completed", "failed", "cancelled")
    }


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"idempotency_key": "key-300"}, "ix_fm_executions_idempotency_key"),
        ({"metadata": {"order_id": "o-4242"}}, "ix_fm_executions_metadata"),
        (
            {"created_after": NOW.replace(day=30)},
            "Index Only Scan using ix_fm_executions_status_created_at_id",
        ),
        ({"created_after": NOW.replace(day=1, hour=0), "tenant_id": "acme"}, "created_at"),
    ],
    ids=repr,
)
def test_other_counts_count_the_executions_through_an_index(
    loaded: SqlStore, filters: dict[str, Any], index: str
) -> None:
    found = plan(loaded, counting.rows_query("postgresql", **filters))

    assert index in found, found
    assert "Seq Scan on fm_executions" not in found, found


@pytest.mark.parametrize(
    "filters",
    [
        {"newest_first": True},
        {"newest_first": True, "status": "waiting"},
        {"newest_first": True, "after": "x"},
        {"idempotency_key": "key-3"},
        {"idempotency_key": "key-3", "newest_first": True},
    ],
    ids=repr,
)
def test_the_same_queries_use_an_index_on_sqlite(tmp_path: Path, filters: dict[str, Any]) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/flowmonkey.db")
    store.migrate()
    query = listing.list_query("sqlite", **filters)
    compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    with store.engine.connect() as connection:
        found = "\n".join(
            str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        )
    store.dispose()
    scans = [line for line in found.splitlines() if "fm_executions" in line]
    assert scans and all("INDEX" in line for line in scans), found
    if "idempotency_key" in filters:
        assert "ix_fm_executions_idempotency_key" in found, found
