"""The dashboard's reads at scale: the executions list, its counts and an execution's detail
through flowmonkey's REST API over 1,000,000 executions in PostgreSQL, against the same SQL
run by a bare FastAPI app.

Run from the repository root (about 4 minutes with the defaults, half of it loading):

    .venv/bin/python bench/dashboard.py [--rows 1000000] [--requests 200] [--warmup 20]
        [--postgres-url URL] [--keep] [--reuse URL]

1. A fresh database `fm_bench_<random>` (dropped at the end unless `--keep`), migrated, then
   loaded with `--rows` executions by `INSERT ... SELECT generate_series` (bench/
   dashboard_data.py: six flows, five tenants and none, 90 % completed, 5 % failed, some
   waiting, running, pending and cancelled, metadata, an idempotency key on every third,
   created over 30 days; the history of every 50th), then VACUUM ANALYZE.
2. Two API keys in the store: an admin key and one of tenant `acme`.
3. Two servers, each `uvicorn --factory ... --host 127.0.0.1 --port <free>` with uvicorn's
   defaults (one process, asyncio loop, access log on), as `flowmonkey api` serves it:
   - flowmonkey: `flowmonkey_celery.api.server:app_from_env` on this database;
   - the baseline: `bench.dashboard_baseline:app_from_env`, one route that runs the same SQL
     statement flowmonkey's API runs for each request, hand-written, and answers its rows as
     JSON; no key lookup, no validation, no models (the floor for these reads).
4. Per request kind (the table's rows): `--warmup` unmeasured requests to each server, then
   `--requests` measured ones in two halves, baseline, flowmonkey, flowmonkey, baseline, one
   at a time on one keep-alive connection (a person's dashboard, not a load test). Parameters
   vary from request to request where a dashboard's would (which customer, which key, which
   execution, how deep the page).

Measured per request: from sending it to having read the whole answer. Printed: p50, p95 and
p99 per server, flowmonkey's p50 ÷ the baseline's, the answer's size, and the verdict against
the target of issue 12 (p95 under 100 ms for every list, count and detail request).

Checked (the run fails otherwise): every answer is 200; for each list request kind, both
servers answer the same ids for the same parameters; the counts of the admin key add up to
`--rows` and equal a `GROUP BY status` over the table; every detail has its history.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, text

# Run as a script, bench/ is on the path but not the repository root that holds the package.
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import dashboard_data
from bench.api import Server, cpu_snapshot, cpu_used, server_stack
from bench.celery_steps import DEFAULT_POSTGRES_URL, BenchError, percentile, postgres_admin
from flowmonkey_celery.core.api_keys import new_api_key
from flowmonkey_celery.stores.sql import SqlStore

FLOWMONKEY_APP = "flowmonkey_celery.api.server:app_from_env"
BASELINE_APP = "bench.dashboard_baseline:app_from_env"
TARGET_MS = 100.0
TENANT = "acme"
PAGE = 50
CURSORS = 20  # deep-page cursors, spread over the second half of the list


@dataclass(frozen=True)
class Call:
    """One request to each server: flowmonkey's path and key, the baseline's statement."""

    path: str
    key: str  # "admin" or "tenant"
    baseline: str
    baseline_params: dict[str, str] = field(default_factory=dict)

    def baseline_path(self) -> str:
        query = f"?{urlencode(self.baseline_params)}" if self.baseline_params else ""
        return f"/q/{self.baseline}{query}"


@dataclass(frozen=True)
class Kind:
    """A row of the table: what a dashboard asks, and how to make the i-th such request."""

    name: str
    make: Callable[[random.Random], Call]
    listing: bool = False  # answers items: both servers must answer the same ids
    flowmonkey: bool = True  # False: the baseline only (the naive count)


@dataclass
class Samples:
    flowmonkey: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


def _path(path: str, **params: Any) -> str:
    return f"{path}?{urlencode(params, doseq=True)}" if params else path


def kinds(rows: int, now: datetime, cursors: list[str]) -> list[Kind]:
    """Every request kind measured, over a data set of `rows` executions loaded at `now`."""
    day_ago = (now - timedelta(days=1)).isoformat()
    until = now.isoformat()

    def some_row(rng: random.Random) -> int:
        return rng.randint(1, rows)

    def keyed_row(rng: random.Random) -> int:  # every third execution has a key
        return 3 * rng.randint(1, max(1, rows // 3))

    def sampled_id(rng: random.Random) -> str:  # every HISTORY_EVERY-th has a history
        step = dashboard_data.HISTORY_EVERY
        return dashboard_data.execution_id(step * rng.randint(1, max(1, rows // step)))

    newest = {"order": "newest", "limit": PAGE}

    def by_customer(rng: random.Random) -> Call:  # 20 executions each at 1,000,000 rows
        found = f"c-{some_row(rng) % dashboard_data.CUSTOMERS}"
        return Call(
            _path("/executions", metadata=f"customer:{found}", **newest),
            "admin",
            "metadata",
            {"doc": json.dumps({"customer": found})},
        )

    def by_key(rng: random.Random) -> Call:
        key = f"idem-{keyed_row(rng)}"
        return Call(
            _path("/executions", idempotency_key=key, **newest),
            "admin",
            "idempotency",
            {"idempotency_key": key},
        )

    def deep_page(rng: random.Random) -> Call:
        after = rng.choice(cursors)
        return Call(_path("/executions", after=after, **newest), "admin", "deep", {"after": after})

    def detail(rng: random.Random) -> Call:
        ident = sampled_id(rng)
        return Call(f"/executions/{ident}", "admin", "detail", {"id": ident})

    def history(rng: random.Random) -> Call:
        ident = sampled_id(rng)
        return Call(f"/executions/{ident}/history", "admin", "history", {"id": ident})

    return [
        Kind(
            "list, newest first",
            lambda rng: Call(_path("/executions", **newest), "admin", "newest"),
            listing=True,
        ),
        Kind(
            "list, status failed",
            lambda rng: Call(
                _path("/executions", status="failed", **newest),
                "admin",
                "status",
                {"status": "failed"},
            ),
            listing=True,
        ),
        Kind(
            "list, status waiting",
            lambda rng: Call(
                _path("/executions", status="waiting", **newest),
                "admin",
                "status",
                {"status": "waiting"},
            ),
            listing=True,
        ),
        Kind(
            "list, flow invoices",
            lambda rng: Call(
                _path("/executions", flow_id="invoices", **newest),
                "admin",
                "flow",
                {"flow_id": "invoices"},
            ),
            listing=True,
        ),
        Kind(
            f"list, tenant key ({TENANT})",
            lambda rng: Call(
                _path("/executions", **newest), "tenant", "tenant", {"tenant_id": TENANT}
            ),
            listing=True,
        ),
        Kind(
            "list, tenant key, status running",
            lambda rng: Call(
                _path("/executions", status="running", **newest),
                "tenant",
                "tenant-status",
                {"tenant_id": TENANT, "status": "running"},
            ),
            listing=True,
        ),
        Kind(
            "list, last 24 h",
            lambda rng: Call(
                _path("/executions", created_after=day_ago, created_before=until, **newest),
                "admin",
                "range",
                {"created_after": day_ago, "created_before": until},
            ),
            listing=True,
        ),
        Kind("list, metadata customer (rare)", by_customer, listing=True),
        Kind(
            "list, metadata region eu (a third)",
            lambda rng: Call(
                _path("/executions", metadata="region:eu", **newest),
                "admin",
                "metadata",
                {"doc": json.dumps({"region": "eu"})},
            ),
            listing=True,
        ),
        Kind("list, idempotency key", by_key, listing=True),
        Kind("list, deep page (cursor)", deep_page, listing=True),
        Kind("counts", lambda rng: Call("/executions/counts", "admin", "counts")),
        Kind(
            f"counts, tenant key ({TENANT})",
            lambda rng: Call(
                "/executions/counts", "tenant", "counts-tenant", {"tenant_id": TENANT}
            ),
        ),
        Kind(
            "counts, flow orders",
            lambda rng: Call(
                _path("/executions/counts", flow_id="orders"),
                "admin",
                "counts-flow",
                {"flow_id": "orders"},
            ),
        ),
        Kind(
            "counts, last 24 h",
            lambda rng: Call(
                _path("/executions/counts", created_after=day_ago, created_before=until),
                "admin",
                "counts-range",
                {"created_after": day_ago, "created_before": until},
            ),
        ),
        Kind(
            "(naive GROUP BY status count)",
            lambda rng: Call("", "admin", "counts-naive"),
            flowmonkey=False,
        ),
        Kind("detail", detail),
        Kind(f"detail history ({dashboard_data.EVENTS_PER_EXECUTION} events)", history),
    ]


# -- requests -----------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection to one server (http.client: a few tens of
    microseconds per request, the same for both servers). uvicorn closes a connection idle
    for 5 s: one idle for longer is replaced before the next request, outside its time."""

    IDLE_SECONDS = 4.0

    def __init__(self, port: int, headers: dict[str, dict[str, str]]) -> None:
        self.port = port
        self.headers = headers
        self.connection = self._connect()
        self.last_used = time.monotonic()

    def _connect(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        connection.connect()
        return connection

    def get(self, path: str, key: str) -> tuple[float, int, bytes]:
        if time.monotonic() - self.last_used > self.IDLE_SECONDS:
            self.connection.close()
            self.connection = self._connect()
        started = time.perf_counter()
        self.connection.request("GET", path, headers=self.headers.get(key, {}))
        response = self.connection.getresponse()
        body = response.read()
        seconds = time.perf_counter() - started
        self.last_used = time.monotonic()
        return seconds, response.status, body

    def close(self) -> None:
        self.connection.close()


def answered(target: str, call: Call, status: int, body: bytes) -> dict[str, Any]:
    if status != 200:
        path = call.path if target == "flowmonkey" else call.baseline_path()
        raise BenchError(f"{target}: GET {path} answered {status}: {body[:500]!r}")
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def measure(
    kind: Kind,
    clients: dict[str, Client],
    requests: int,
    warmup: int,
    seed: int,
) -> Samples:
    """Warm-up, then two halves in the order baseline, flowmonkey, flowmonkey, baseline, the
    same parameters (same seed) for both servers."""
    samples = Samples()
    targets = ("baseline", "flowmonkey") if kind.flowmonkey else ("baseline",)
    halves = (requests // 2, requests - requests // 2)
    plan: list[tuple[str, int, int, bool]] = [(t, warmup, seed, False) for t in targets]
    for number, count in enumerate(halves, start=1):
        order = targets if number == 1 else targets[::-1]
        plan += [(t, count, seed + number, True) for t in order]
    for target, count, batch_seed, measured in plan:
        rng = random.Random(batch_seed)
        client = clients[target]
        for _ in range(count):
            call = kind.make(rng)
            path = call.path if target == "flowmonkey" else call.baseline_path()
            seconds, status, body = client.get(path, call.key)
            answer = answered(target, call, status, body)
            if measured:
                getattr(samples, target).append(seconds)
                if target == "flowmonkey":
                    samples.sizes.append(len(body))
            elif target == "flowmonkey" and kind.listing:
                _same_ids(call, answer, clients["baseline"])
    return samples


def _same_ids(call: Call, flowmonkey: dict[str, Any], baseline: Client) -> None:
    """Both servers find the same executions for the same filters (same SQL, same order)."""
    _, status, body = baseline.get(call.baseline_path(), call.key)
    theirs = [row["id"] for row in answered("baseline", call, status, body)["items"]]
    ours = [item["id"] for item in flowmonkey["items"]]
    if ours != theirs:
        raise BenchError(
            f"GET {call.path}: flowmonkey answered {ours[:3]}..., the baseline "
            f"{theirs[:3]}... ({len(ours)} and {len(theirs)} ids)"
        )


# -- the database -------------------------------------------------------------------------------


@contextmanager
def database(admin: Engine, keep: bool, console: Console) -> Iterator[str]:
    """A fresh, migrated database; dropped afterwards unless `keep`."""
    name = f"fm_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        store = SqlStore(url)
        store.migrate()
        store.dispose()
        yield url
    finally:
        if keep:
            console.print(f"kept the database: {url}")
        else:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def issue_keys(url: str, now: datetime) -> dict[str, dict[str, str]]:
    """An admin key and a key of TENANT, saved in the store; their request headers."""
    store = SqlStore(url)
    try:
        run_id = uuid.uuid4().hex[:8]  # a reused database keeps the keys of earlier runs
        admin = new_api_key(f"bench-admin-{run_id}", now, admin=True)
        tenant = new_api_key(f"bench-{TENANT}-{run_id}", now, tenant_id=TENANT)
        for issued in (admin, tenant):
            store.save_api_key(issued.record)
    finally:
        store.dispose()
    return {
        "admin": {"Authorization": f"Bearer {admin.key}"},
        "tenant": {"Authorization": f"Bearer {tenant.key}"},
    }


def deep_cursors(engine: Engine, rows: int) -> list[str]:
    """Ids at CURSORS depths of the newest-first list between its middle and its end."""
    depths = sorted({rows // 2 + (rows // 2 - PAGE) * k // CURSORS for k in range(CURSORS)})
    found = []
    with engine.connect() as connection:
        for depth in depths:
            found.append(
                connection.execute(
                    text(
                        "SELECT id FROM fm_executions ORDER BY created_at DESC, id DESC "
                        "OFFSET :depth LIMIT 1"
                    ),
                    {"depth": max(0, depth)},
                ).scalar_one()
            )
    return found


def check_counts(engine: Engine, clients: dict[str, Client], rows: int) -> str:
    """The admin's counts add up to `rows` and are the table's own GROUP BY."""
    _, status, body = clients["flowmonkey"].get("/executions/counts", "admin")
    counts = json.loads(body)["counts"] if status == 200 else None
    with engine.connect() as connection:
        table: dict[str, int] = dict(
            connection.execute(
                text("SELECT status, count(*) FROM fm_executions GROUP BY status")
            ).all()
        )
    expected = {s: table.get(s, 0) for s in (counts or {})}
    if counts is None or sum(counts.values()) != rows or counts != expected:
        raise BenchError(f"the counts {counts} are not the table's {table} ({rows} rows)")
    return ", ".join(f"{s} {n:,}" for s, n in counts.items())


def check_details(clients: dict[str, Client], rows: int) -> int:
    """Every sampled execution's detail has its 12 events (a few, spread over the table)."""
    step = dashboard_data.HISTORY_EVERY
    checked = 0
    for i in range(step, rows + 1, max(step, rows // 10 // step * step)):
        ident = dashboard_data.execution_id(i)
        _, status, body = clients["flowmonkey"].get(f"/executions/{ident}/history", "admin")
        events = json.loads(body).get("items", []) if status == 200 else []
        if len(events) != dashboard_data.EVENTS_PER_EXECUTION:
            raise BenchError(f"execution {ident}: {status}, {len(events)} events: {body[:300]!r}")
        checked += 1
    return checked


# -- output -------------------------------------------------------------------------------------


def results_table(results: dict[str, Samples], rows: int) -> Table:
    table = Table(
        title=f"dashboard reads over {rows:,} executions, one request at a time; "
        "uvicorn 1 process each, PostgreSQL"
    )
    table.add_column("request")
    for name in (
        "flowmonkey p50 / p95 / p99 ms",
        "baseline p50 / p95 / p99 ms",
        "p50 ÷ baseline",
        "answer KB",
        f"p95 < {TARGET_MS:.0f} ms",
    ):
        table.add_column(name, justify="right")
    for name, s in results.items():
        base = sorted(s.baseline)
        base_cols = " / ".join(f"{percentile(base, q) * 1000:.1f}" for q in (0.5, 0.95, 0.99))
        if not s.flowmonkey:
            table.add_row(name, "", base_cols, "", "", "")
            continue
        ours = sorted(s.flowmonkey)
        p95 = percentile(ours, 0.95) * 1000
        table.add_row(
            name,
            " / ".join(f"{percentile(ours, q) * 1000:.1f}" for q in (0.5, 0.95, 0.99)),
            base_cols,
            f"{percentile(ours, 0.5) / percentile(base, 0.5):.2f}",
            f"{sum(s.sizes) / len(s.sizes) / 1024:.1f}",
            "yes" if p95 < TARGET_MS else "NO",
        )
    return table


def verdict(results: dict[str, Samples]) -> str:
    worst_name, worst = max(
        (
            (n, percentile(sorted(s.flowmonkey), 0.95) * 1000)
            for n, s in results.items()
            if s.flowmonkey
        ),
        key=lambda pair: pair[1],
    )
    met = worst < TARGET_MS
    return (
        f"verdict: target {'met' if met else 'NOT met'}: every list, count and detail request "
        f"p95 {'under' if met else 'not all under'} {TARGET_MS:.0f} ms (slowest: {worst_name}, "
        f"p95 {worst:.1f} ms)"
    )


def quietness(used: dict[str, float]) -> str:
    """CPU used by anything but the two servers, PostgreSQL and this script meanwhile."""
    other = used.get("other", 0.0)
    own = sum(seconds for group, seconds in used.items() if group != "other")
    share = other / max(own, 1e-9)
    line = (
        f"CPU used by other programs during the measurements: {other:.1f} s ({share:.0%} of "
        f"the servers', PostgreSQL's and this script's {own:.1f} s)"
    )
    if share > 0.10:
        line += "; warning: the machine was not quiet, rerun when nothing else is running"
    return line


def database_versions(engine: Engine) -> str:
    with engine.connect() as connection:
        server = connection.execute(text("SHOW server_version")).scalar()
        size = connection.execute(
            text("SELECT pg_size_pretty(pg_total_relation_size('fm_executions'))")
        ).scalar()
    return f"PostgreSQL {server}, fm_executions with its indexes: {size}"


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="executions loaded (default: 1,000,000)"
    )
    parser.add_argument(
        "--requests", type=int, default=200, help="measured requests per kind (default: 200)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="unmeasured requests per kind and server"
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="admin URL; a throwaway database is created and dropped (default: %(default)s)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the database (its URL is printed)"
    )
    parser.add_argument(
        "--reuse",
        metavar="URL",
        help="measure a database a run with --keep left (its rows, as loaded then) instead "
        "of creating and loading one; it is not dropped",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rows < 2 * dashboard_data.HISTORY_EVERY or args.requests < 2 or args.warmup < 1:
        sys.exit(
            f"error: --rows must be at least {2 * dashboard_data.HISTORY_EVERY}, --requests at "
            "least 2, --warmup at least 1"
        )
    admin = postgres_admin(args.postgres_url)
    console = Console()
    if not console.is_terminal:  # piped to a file: do not squeeze the table into 80 columns
        console = Console(width=170)
    started = time.monotonic()
    now = datetime.now(UTC).replace(microsecond=0)
    console.print(f"{now:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {server_stack()}")
    try:
        with (
            nullcontext(args.reuse) if args.reuse else database(admin, args.keep, console) as url,
            tempfile.TemporaryDirectory(prefix="fm_bench_dashboard_") as directory,
        ):
            engine = create_engine(url)
            try:
                if args.reuse:
                    args.rows, now = loaded_before(engine)
                    console.print(f"reusing {args.rows:,} executions; {database_versions(engine)}")
                else:
                    load(engine, args.rows, now, started, console)
                results, checks, quiet = run(engine, url, now, args, Path(directory), console)
            finally:
                engine.dispose()
    except BenchError as exc:
        sys.exit(f"error: {exc}")
    finally:
        admin.dispose()
    console.print(results_table(results, args.rows))
    for line in checks:
        console.print(f"checked: {line}")
    console.print(
        "p50 ÷ baseline: flowmonkey's median ÷ the bare app's for the same SQL; what the API "
        "layer (key lookup, validation, tenant scope, models, JSON) adds to the query itself"
    )
    console.print(quiet)
    console.print(verdict(results))
    console.print(f"total {time.monotonic() - started:.0f} s")


def load(engine: Engine, rows: int, now: datetime, started: float, console: Console) -> None:
    loaded = dashboard_data.load(
        engine,
        rows,
        now,
        progress=lambda done, total: console.print(
            f"loaded {done:,} of {total:,} executions ({time.monotonic() - started:.0f} s)"
        ),
    )
    console.print(
        f"loaded {loaded.rows:,} executions and {loaded.events:,} events in "
        f"{loaded.seconds_insert:.0f} s, VACUUM ANALYZE {loaded.seconds_vacuum:.0f} s; "
        f"{database_versions(engine)}"
    )


def loaded_before(engine: Engine) -> tuple[int, datetime]:
    """(rows, the instant they were loaded at) of a database loaded by an earlier run."""
    with engine.connect() as connection:
        rows, newest = connection.execute(
            text("SELECT count(*), max(created_at) FROM fm_executions")
        ).one()
    if not rows:
        raise BenchError("the database to reuse holds no executions")
    return int(rows), newest.replace(microsecond=0) + timedelta(seconds=1)


def run(
    engine: Engine,
    url: str,
    now: datetime,
    args: argparse.Namespace,
    home: Path,
    console: Console,
) -> tuple[dict[str, Samples], list[str], str]:
    headers = issue_keys(url, now)
    cursors = deep_cursors(engine, args.rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMONKEY_")}
    env |= {"FLOWMONKEY_DATABASE_URL": url, "FLOWMONKEY_HOME": str(home)}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])
    )
    servers = {
        "flowmonkey": Server("flowmonkey-api", FLOWMONKEY_APP, env, home),
        "baseline": Server("dashboard-baseline", BASELINE_APP, env, home),
    }
    clients: dict[str, Client] = {}
    try:
        for server in servers.values():
            server.wait_ready()
        clients = {name: Client(s.port, headers) for name, s in servers.items()}
        results: dict[str, Samples] = {}
        groups = {s.popen.pid: name for name, s in servers.items()}
        before = cpu_snapshot(groups)
        for number, kind in enumerate(kinds(args.rows, now, cursors)):
            console.print(f"measuring: {kind.name}...")
            results[kind.name] = measure(kind, clients, args.requests, args.warmup, 1000 * number)
        used = cpu_used(before, cpu_snapshot(groups))
        checks = [
            f"every answer was 200; both servers listed the same ids for each list request "
            f"kind; the admin's counts add up to {args.rows:,} and are the table's GROUP BY: "
            f"{check_counts(engine, clients, args.rows)}",
            f"{check_details(clients, args.rows)} sampled executions each have their "
            f"{dashboard_data.EVENTS_PER_EXECUTION} events",
        ]
        return results, checks, quietness(used)
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
