"""bench/dashboard.py end to end on a tiny data set: it creates, loads and drops its database,
starts both servers, measures every request kind, checks the answers and prints its verdict.
(Its figures mean nothing at this size and are not asserted.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.services import POSTGRES_URL

REPO = Path(__file__).resolve().parents[2]


def bench_databases() -> set[str]:
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            return set(
                connection.execute(
                    text("SELECT datname FROM pg_database WHERE datname LIKE 'fm_bench_%'")
                ).scalars()
            )
    finally:
        engine.dispose()


@pytest.mark.slow
def test_the_dashboard_bench_runs_end_to_end_and_drops_its_database(
    postgres: object,  # fails the run when PostgreSQL is missing
) -> None:
    before = bench_databases()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMONKEY_")}

    finished = subprocess.run(
        [
            sys.executable,
            "bench/dashboard.py",
            *("--rows", "2000", "--requests", "4", "--warmup", "1"),
            *("--postgres-url", POSTGRES_URL),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    out = finished.stdout
    assert finished.returncode == 0, out + finished.stderr
    assert "loaded 2,000 executions and 480 events" in out
    for row in ("list, newest first", "list, deep page (cursor)", "counts, tenant key", "detail"):
        assert row in out, out
    assert "the admin's counts add up to 2,000 and are the table's GROUP BY" in out
    assert "verdict: target" in out
    assert bench_databases() == before  # dropped
