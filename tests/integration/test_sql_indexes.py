"""Every query the runtime makes is backed by an index (PostgreSQL's planner says so).

With sequential scans priced out (`enable_seqscan = off`), a query that still plans a
sequential scan on fm_executions has no usable index: the sweep would read the whole table on
every beat tick once it holds millions of finished executions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select, text
from sqlalchemy.dialects import postgresql, sqlite

from flowmonkey_celery.stores.sql import SqlStore, listing
from flowmonkey_celery.stores.sql.schema import executions

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _queries(store: SqlStore) -> dict[str, Any]:
    """The store's own query builders, captured instead of executed."""
    captured: dict[str, Any] = {}

    def capture(name: str) -> Any:
        def fake(query: Select[Any], *_: Any) -> list[Any]:
            captured[name] = query
            return []

        return fake

    store._fetch = capture("fetch")  # type: ignore[method-assign]
    store._claim = capture("claim")  # type: ignore[method-assign]
    plans: dict[str, Any] = {}
    for name, call in {
        "due wakes": lambda: store.find_due_wakes(NOW, 100),
        "timed out": lambda: store.find_timed_out(NOW, 100),
        "children": lambda: store.list_children("parent-1"),
        "claim due wakes": lambda: store.claim_due_wakes(NOW, 100, NOW),
        "claim stalled": lambda: store.claim_stalled(NOW, 100, NOW),
    }.items():
        call()
        plans[name] = captured.pop("fetch") if "fetch" in captured else captured.pop("claim")
    return plans


def _plan(store: SqlStore, query: Any) -> str:
    compiled = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    with store.engine.connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))
        rows = connection.execute(text(f"EXPLAIN {compiled}")).scalars()
        return "\n".join(rows)


@pytest.mark.parametrize(
    "name", ["due wakes", "timed out", "children", "claim due wakes", "claim stalled"]
)
def test_sweep_queries_use_an_index(postgres_url: str, name: str) -> None:
    store = SqlStore(postgres_url)
    plan = _plan(store, _queries(store)[name])
    store.dispose()
    assert "Seq Scan on fm_executions" not in plan, plan
    assert "Index" in plan, plan


@pytest.mark.parametrize(
    "where",
    [
        executions.c.status == "waiting",
        executions.c.flow_id == "orders",
        executions.c.tenant_id == "acme",
        executions.c.id.isnot(None),
    ],
    ids=["status", "flow", "tenant", "all"],
)
def test_listing_pages_use_an_index(postgres_url: str, where: Any) -> None:
    from sqlalchemy import select, tuple_

    query = (
        select(executions)
        .where(where, tuple_(executions.c.created_at, executions.c.id) > tuple_(NOW, "x"))
        .order_by(executions.c.created_at, executions.c.id)
        .limit(100)
    )
    store = SqlStore(postgres_url)
    plan = _plan(store, query)
    store.dispose()
    assert "Seq Scan on fm_executions" not in plan, plan


# -- list_executions, as the store builds it (stores/sql/listing.py) -----------------------------

LISTINGS: dict[str, dict[str, Any]] = {
    "all": {},
    "status": {"status": "waiting"},
    "flow": {"flow_id": "orders"},
    "tenant": {"tenant_id": "acme"},
    "created range": {"created_after": NOW, "created_before": NOW},
    "metadata": {"metadata": {"region": "eu", "priority": "42", "note": "null"}},
    "everything": {
        "status": "running",
        "tenant_id": "acme",
        "created_after": NOW,
        "created_before": NOW,
        "metadata": {"region": "eu"},
    },
}


@pytest.mark.parametrize("after", [None, "x"], ids=["first page", "next page"])
@pytest.mark.parametrize("name", list(LISTINGS))
def test_the_stores_listing_queries_use_an_index(
    postgres_url: str, name: str, after: str | None
) -> None:
    query = listing.list_query("postgresql", after=after, **LISTINGS[name])
    store = SqlStore(postgres_url)
    plan = _plan(store, query)
    store.dispose()
    assert "Seq Scan on fm_executions" not in plan, plan
    assert "Index" in plan, plan


@pytest.mark.parametrize("after", [None, "x"], ids=["first page", "next page"])
@pytest.mark.parametrize("name", list(LISTINGS))
def test_the_stores_listing_queries_use_an_index_on_sqlite(
    tmp_path: Path, name: str, after: str | None
) -> None:
    query = listing.list_query("sqlite", after=after, **LISTINGS[name])
    store = SqlStore(f"sqlite:///{tmp_path}/flowmonkey.db")
    store.migrate()
    compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    with store.engine.connect() as connection:
        plan = "\n".join(
            str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        )
    store.dispose()
    # A full scan reads "SCAN fm_executions" with no index after it.
    scans = [line for line in plan.splitlines() if "fm_executions" in line]
    assert scans and all("INDEX" in line for line in scans), plan
