"""Fan-out and join of n no-op children: flowmonkey's `parallel` foreach vs a raw Celery chord.

Run from the repository root (about 1 minute with the defaults):

    .venv/bin/python bench/fanout.py [--sizes 10,100,1000] [--repeats 3]
        [--postgres-url URL] [--redis-url URL] [--max-concurrency N]

One run, one machine, PostgreSQL (a throwaway database, dropped at the end) and the Redis
broker (a queue of its own, deleted at the end, result keys included). One real
`celery -A bench.fanout_app worker -P prefork -c 2` serves both sides, alternately:

- raw Celery: `chord(group(bench.fanout_noop.s(i) for i in range(n)), bench.fanout_join.s())`
  sent from this process; the header tasks store their results in Redis (the result backend
  the worker's app adds for them; flowmonkey's own tasks still ignore results), the last one to
  finish triggers the callback (Celery's native Redis chord join, a counter in Redis);
- flowmonkey: `FlowMonkeyCelery.start("bench-fanout", {"items": list(range(n))})`, a parent
  whose one step is `{type: parallel, config: {foreach: items, flow: bench-fanout-item}}`;
  each child is an execution of `bench-fanout-item` (one `bench-noop` step); the join resumes
  the parent with the n results in item order. Inline continuation is on (the default).

For each size: one warm-up of each side, then `--repeats` measured joins of each, in the order
raw, flowmonkey, then flowmonkey, raw, and so on, so that a slow moment of the machine does not
hit one side only. "Start" is this process's clock just before `chord(...).apply_async()` /
`start()`; "done" is the worker's clock when the chord's callback runs, or once the parent's
completion has committed (an `execution.completed` subscriber in the worker,
`bench.fanout_app`, pushes the parent's id and time to Redis; children, which end in another
step, are not reported). Completion is detected by that push, not by polling the store.
Every join is checked: the callback receives the n results in order, and the parent's `results`
holds n completed entries (read after the timed window).

Also measured, around each measured join: the CPU time used by the worker (main and pool
processes), PostgreSQL and redis-server, from /proc (Linux), per child; and, for flowmonkey,
the phases of the join from the children's rows (`started_at`, `finished_at`: the clock at the
start of their step's transaction): fan-out (start → the first child starts: the parent's
create and first message, its `parallel` step creating the n children in its own transaction,
the first child's message), children (first child started → last child finished), resume
(last child finished → parent reported completed: the last child's commit, which records the
last branch under the join's row lock and resumes the parent in the same transaction; `fan`
being the parent's last step, that commit also completes it, with the n results).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from celery import chord, group
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, text

from flowmonkey_celery.celery import FlowMonkeyCelery

# Run as a script, bench/ is on the path but not the repository root that holds the package
# `bench` (FLOWMONKEY_HANDLERS=bench.celery_handlers needs it in the client too).
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.celery_steps import (
    CPU_GROUPS,
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    FIRST_RESULT_SECONDS,
    HANDLERS,
    OTHER,
    REPO,
    RESULT_SECONDS,
    BenchError,
    Scenario,
    Session,
    Worker,
    cpu_times,
    cpu_used,
    delete_queue,
    postgres_admin,
    postgres_database,
    redis_client,
    versions,
)

PARENT_FLOW = "bench-fanout"
CHILD_FLOW = "bench-fanout-item"
FAN_STEP = "fan"  # the parent's step: bench.fanout_app reports executions that end in it
CHILD_HANDLER = "bench-noop"  # bench.celery_handlers
WARMUP_SIZE = 10
WARMUP_RUNS = 3
SECONDS_PER_CHILD = 0.05  # added to RESULT_SECONDS as a join's timeout: far above either side
SIDES = ("raw", "flowmonkey")
SIDE_TITLES = {"raw": "raw Celery chord", "flowmonkey": "flowmonkey foreach"}


def result_conf(broker_url: str, queue: str) -> dict[str, Any]:
    """The raw side's result backend, for the worker's app and the client's: Redis, keys
    prefixed with the queue's name (so that `delete_queue` removes them afterwards)."""
    return {
        "result_backend": broker_url,
        "result_backend_transport_options": {"global_keyprefix": f"{queue}:"},
        "result_expires": 3600,
    }


@dataclass
class SizeMeasurements:
    """One size, both sides: seconds per join, seconds spent in the start call, CPU."""

    join: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIDES})
    phases: list[tuple[float, float, float]] = field(default_factory=list)  # flowmonkey's
    call: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIDES})
    cpu: dict[str, dict[str, float]] = field(
        default_factory=lambda: {s: dict.fromkeys((*CPU_GROUPS, OTHER), 0.0) for s in SIDES}
    )


# -- the worker and its session -----------------------------------------------------------------


class FanoutWorker(Worker):
    """`celery_steps.Worker` (same options: prefork, -c 2, no gossip/mingle/heartbeat), on
    this benchmark's app module."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        args = [
            *(sys.executable, "-m", "celery", "-A", "bench.fanout_app", "worker"),
            *("-P", "prefork", "-c", "2", "-l", "warning"),
            *("-n", f"bench-fanout-{uuid.uuid4().hex[:8]}@%h"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
        self.popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def write_flows(folder: Path, max_concurrency: int | None) -> None:
    """The parent and child flows, one YAML file each, in FLOWMONKEY_FLOWS."""
    config: dict[str, Any] = {"foreach": "items", "flow": CHILD_FLOW}
    if max_concurrency:
        config["max_concurrency"] = max_concurrency
    parent = {
        "id": PARENT_FLOW,
        "version": "1.0.0",
        "initial_step_id": FAN_STEP,
        "steps": {FAN_STEP: {"type": "parallel", "config": config, "output_key": "results"}},
    }
    child = {
        "id": CHILD_FLOW,
        "version": "1.0.0",
        "initial_step_id": "work",
        "steps": {"work": {"type": CHILD_HANDLER}},
    }
    for flow in (parent, child):
        # JSON is YAML: flow-style YAML that yaml.safe_load reads as is.
        (folder / f"{flow['id']}.yaml").write_text(json.dumps(flow, indent=1) + "\n")


class FanoutSession(Session):
    """`celery_steps.Session` plus an engine on the session's database, to read the children's
    timestamps, and the phases of the last flowmonkey join."""

    def __init__(self, client: FlowMonkeyCelery, worker: Worker, broker: redis.Redis, url: str):
        super().__init__(Scenario("f", "fan-out"), client, worker, broker)
        self.database = create_engine(url)
        self.phases = (0.0, 0.0, 0.0)


@contextmanager
def fanout_session(
    admin: Engine, broker: redis.Redis, broker_url: str, home: Path
) -> Iterator[FanoutSession]:
    """A fresh database and queue, one worker for both sides, a client with a result backend."""
    queue = f"fm-bench-{uuid.uuid4().hex[:12]}"
    with postgres_database(admin) as database_url:
        settings = {
            "FLOWMONKEY_DATABASE_URL": database_url,
            "FLOWMONKEY_BROKER_URL": broker_url,
            "FLOWMONKEY_QUEUE": queue,
            "FLOWMONKEY_HOME": str(home),
            "FLOWMONKEY_FLOWS": str(home / "flows"),
            "FLOWMONKEY_HANDLERS": HANDLERS,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMONKEY_")}
        env |= settings
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        client = FlowMonkeyCelery.from_env(settings, app_name="flowmonkey-bench-client")
        client.app.conf.update(result_conf(broker_url, queue))  # chords need it on this side too
        worker = FanoutWorker(env, home / f"worker-fanout-{queue}.log")
        s: FanoutSession | None = None
        try:
            s = FanoutSession(client, worker, broker, database_url)
            yield s
        finally:
            worker.stop()
            if s is not None:
                s.database.dispose()
            client.runtime.store.dispose()
            client.app.close()
            delete_queue(broker, queue)


# -- one join -----------------------------------------------------------------------------------


def join_timeout(n: int) -> float:
    return RESULT_SECONDS + n * SECONDS_PER_CHILD


def raw_join(s: FanoutSession, n: int, timeout: float) -> tuple[float, float]:
    """A chord of n no-op header tasks; (seconds start → callback, seconds in apply_async)."""
    app, queue = s.client.app, s.client.options.queue
    tag = uuid.uuid4().hex
    header = group(app.signature("bench.fanout_noop", args=(i,), queue=queue) for i in range(n))
    body = app.signature("bench.fanout_join", args=(tag, n), queue=queue)
    started = time.time()
    chord(header, body).apply_async()
    sent = time.time()
    return s.wait([tag], timeout) - started, sent - started


def flowmonkey_join(s: FanoutSession, n: int, timeout: float) -> tuple[float, float]:
    """A parent fanning out to n no-op children; (seconds start → parent completed, seconds in
    start()). Checks the parent's results afterwards, outside the timed window."""
    started = time.time()
    parent = s.client.start(PARENT_FLOW, {"items": list(range(n))}).execution
    sent = time.time()
    finished = s.wait([parent.id], timeout)
    stored = s.client.get(parent.id)
    results = (stored.context.get("results") if stored is not None else None) or []
    completed = [r for r in results if isinstance(r, dict) and r.get("status") == "completed"]
    if len(results) != n or len(completed) != n:
        raise BenchError(
            f"parent {parent.id}: {len(completed)} completed results of {len(results)}, "
            f"expected {n}\n{s.worker.tail()}"
        )
    with s.database.connect() as connection:
        first, last = connection.execute(
            text(
                "SELECT min(started_at), max(finished_at) FROM fm_executions "
                "WHERE parent_execution_id = :parent"
            ),
            {"parent": parent.id},
        ).one()
    first_s, last_s = first.timestamp(), last.timestamp()
    s.phases = (first_s - started, last_s - first_s, finished - last_s)
    return finished - started, sent - started


JOINS: dict[str, Callable[[FanoutSession, int, float], tuple[float, float]]] = {
    "raw": raw_join,
    "flowmonkey": flowmonkey_join,
}


def measure(s: FanoutSession, sizes: list[int], repeats: int, console: Console) -> dict[int, Any]:
    measured: dict[int, SizeMeasurements] = {}
    # The first join also waits for the worker to be up; the others warm connections and code.
    for side in SIDES:
        JOINS[side](s, WARMUP_SIZE, FIRST_RESULT_SECONDS)
        for _ in range(WARMUP_RUNS):
            JOINS[side](s, WARMUP_SIZE, RESULT_SECONDS)
    for n in sizes:
        console.print(f"{n:,} children: {repeats} joins per side...")
        m = measured[n] = SizeMeasurements()
        for side in SIDES:  # one unmeasured join of this size each
            JOINS[side](s, n, join_timeout(n))
        for repeat in range(repeats):
            for side in SIDES if repeat % 2 == 0 else SIDES[::-1]:
                before = cpu_times(s.worker.popen.pid)
                joined, called = JOINS[side](s, n, join_timeout(n))
                for group_, seconds in cpu_used(before, cpu_times(s.worker.popen.pid)).items():
                    m.cpu[side][group_] += seconds
                m.join[side].append(joined)
                if side == "flowmonkey":
                    m.phases.append(s.phases)
                m.call[side].append(called)
    return measured


# -- output -------------------------------------------------------------------------------------


def results_table(measured: dict[int, SizeMeasurements], repeats: int) -> Table:
    table = Table(
        title=f"fan-out of n no-op children and join; median of {repeats}; "
        "worker -c 2, PostgreSQL, Redis broker"
    )
    table.add_column("n")
    table.add_column("side")
    for name in (
        "join s",
        "÷ raw",
        "children/s",
        "÷ raw",
        "start call ms",
        "fan-out / children / resume s",
        "CPU ms/child worker / PG / Redis",
    ):
        table.add_column(name, justify="right")
    for n, m in measured.items():
        raw = statistics.median(m.join["raw"])
        for side in SIDES:
            joined = statistics.median(m.join[side])
            cpu = m.cpu[side]
            table.add_row(
                f"{n:,}",
                SIDE_TITLES[side],
                f"{joined:.3f}",
                f"{joined / raw:.2f}",
                f"{n / joined:,.0f}",
                f"{raw / joined:.2f}",
                f"{statistics.median(m.call[side]) * 1000:.1f}",
                " / ".join(f"{statistics.median(p):.3f}" for p in zip(*m.phases, strict=True))
                if side == "flowmonkey"
                else "",
                " / ".join(f"{cpu[g] / (n * repeats) * 1000:.2f}" for g in CPU_GROUPS),
            )
        table.add_section()
    return table


def quietness(measured: dict[int, SizeMeasurements]) -> str:
    """CPU other programs used during the measured joins, against the measured processes'."""
    other = sum(m.cpu[side][OTHER] for m in measured.values() for side in SIDES)
    own = sum(m.cpu[side][g] for m in measured.values() for side in SIDES for g in CPU_GROUPS)
    share = other / max(own, 1e-9)
    line = f"CPU used by other programs during the measured joins: {other:.2f} s ({share:.0%})"
    if share > 0.10:
        line += "\nwarning: the machine was not quiet; rerun when nothing else is running"
    return line


# -- main ---------------------------------------------------------------------------------------


def parse_sizes(value: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of sizes: {value!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers: {value!r}")
    return sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="admin URL; a throwaway database is created and dropped (default: %(default)s)",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="the broker, and the raw side's result backend (default: %(default)s)",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[10, 100, 1000],
        help="children per join, comma-separated (default: 10,100,1000)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="measured joins per size and side (default: 3)"
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="the parallel step's max_concurrency (default: none, all children at once)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.repeats < 1:
        sys.exit("error: --repeats must be at least 1")
    admin = postgres_admin(args.postgres_url)
    broker = redis_client(args.redis_url)
    console = Console()
    if not console.is_terminal:  # piped to a file: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {versions(admin, broker)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fm_bench_fanout_") as directory:
        home = Path(directory)
        (home / "flows").mkdir()
        write_flows(home / "flows", args.max_concurrency)
        try:
            with fanout_session(admin, broker, args.redis_url, home) as s:
                measured = measure(s, args.sizes, args.repeats, console)
        except BenchError as exc:
            sys.exit(f"error: {exc}")
        finally:
            admin.dispose()
    console.print(results_table(measured, args.repeats))
    console.print(quietness(measured))
    console.print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
