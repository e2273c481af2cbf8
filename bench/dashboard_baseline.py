"""bench/dashboard.py's baseline: a bare FastAPI app that runs, for each of the dashboard's
requests, the one SQL statement flowmonkey's API runs for it, hand-written, and answers its
rows as JSON.

    uvicorn --factory bench.dashboard_baseline:app_from_env

One route, `GET /q/{name}`: the statement `STATEMENTS[name]` with the query string as its
parameters, through SQLAlchemy's default pool and psycopg2 (flowmonkey's driver) on
FLOWMONKEY_DATABASE_URL, each row as a JSON object (`json.dumps(..., default=str)`). Like
flowmonkey's read routes it is a plain `def`, run in Starlette's thread pool. Nothing else: no
API key lookup, no validation, no models, no tenant check. What flowmonkey's answer costs on
top of this is its API layer; the database work is the same.

`counts-naive` is the exception: not flowmonkey's statement but the `GROUP BY status` over
every execution one would write by hand, to show what the kept counts (migration 0006) save.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI, Request, Response
from sqlalchemy import create_engine, text

_PAGE = "ORDER BY created_at DESC, id DESC LIMIT 50"
_KEPT = """
SELECT status, sum(n) AS n FROM (
    SELECT status, count AS n FROM fm_execution_counts {where}
    UNION ALL
    SELECT status, delta AS n FROM fm_execution_count_changes {where}
) AS kept GROUP BY status
"""

STATEMENTS: dict[str, str] = {
    "newest": f"SELECT * FROM fm_executions {_PAGE}",
    "status": f"SELECT * FROM fm_executions WHERE status = :status {_PAGE}",
    "flow": f"SELECT * FROM fm_executions WHERE flow_id = :flow_id {_PAGE}",
    "tenant": f"SELECT * FROM fm_executions WHERE tenant_id = :tenant_id {_PAGE}",
    "tenant-status": (
        f"SELECT * FROM fm_executions WHERE tenant_id = :tenant_id AND status = :status {_PAGE}"
    ),
    "range": (
        "SELECT * FROM fm_executions WHERE created_at >= CAST(:created_after AS timestamptz) "
        f"AND created_at < CAST(:created_before AS timestamptz) {_PAGE}"
    ),
    "metadata": f"SELECT * FROM fm_executions WHERE metadata @> CAST(:doc AS jsonb) {_PAGE}",
    "idempotency": (
        "SELECT * FROM fm_executions WHERE idempotency_key IS NOT NULL "
        f"AND idempotency_key = :idempotency_key {_PAGE}"
    ),
    "deep": (
        "SELECT * FROM fm_executions WHERE (created_at, id) < "
        f"((SELECT created_at FROM fm_executions WHERE id = :after), :after) {_PAGE}"
    ),
    "counts": _KEPT.format(where=""),
    "counts-tenant": _KEPT.format(where="WHERE tenant_key = :tenant_id"),
    "counts-flow": _KEPT.format(where="WHERE flow_id = :flow_id"),
    "counts-range": "SELECT "
    + ", ".join(
        f"(SELECT count(*) FROM fm_executions WHERE status = '{status}' "
        "AND created_at >= CAST(:created_after AS timestamptz) "
        f"AND created_at < CAST(:created_before AS timestamptz)) AS {status}"
        for status in ("pending", "running", "waiting", "cancelled", "completed", "failed")
    ),
    "counts-naive": "SELECT status, count(*) AS n FROM fm_executions GROUP BY status",
    "detail": "SELECT * FROM fm_executions WHERE id = :id",
    "history": "SELECT * FROM fm_events WHERE execution_id = :id ORDER BY seq",
}


def app_from_env() -> FastAPI:
    # Autocommit, as flowmonkey runs its one-statement reads: one round trip per query.
    engine = create_engine(os.environ["FLOWMONKEY_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    statements = {name: text(sql) for name, sql in STATEMENTS.items()}
    app = FastAPI(title="dashboard-baseline")

    @app.get("/q/{name}")
    def query(name: str, request: Request) -> Response:
        with engine.connect() as connection:
            rows = connection.execute(statements[name], dict(request.query_params)).mappings()
            items: list[dict[str, Any]] = [dict(row) for row in rows]
        return Response(json.dumps({"items": items}, default=str), media_type="application/json")

    return app
