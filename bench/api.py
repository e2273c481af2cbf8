"""Webhook → 202 through flowmonkey's REST API vs a bare FastAPI app that enqueues a Celery task.

Run from the repository root (about 20 s with the defaults):

    .venv/bin/python bench/api.py [--requests 2000] [--concurrency 50] [--warmup 200]
        [--postgres-url URL] [--redis-url URL] [--profile FILE] [--app MODULE:FACTORY]

One run, one machine, PostgreSQL (a throwaway database, dropped at the end) and the Redis
broker (a queue of its own, its keys deleted at the end). Started, each in its own process
group and stopped at the end:

- flowmonkey: `uvicorn --factory flowmonkey_celery.api.server:app_from_env` with uvicorn's
  defaults (one process, asyncio loop, access log on), as `flowmonkey api` serves it, on the
  FLOWMONKEY_* settings of this run; an HTTP trigger with no auth (registered with
  `FlowMonkeyCelery.register_trigger`) starts the one-step flow `bench-api`
  (bench/api_flow.yaml, one `bench-noop` step);
- the baseline: `uvicorn --factory bench.api_baseline:app_from_env`, same options: one route
  that parses the JSON body, sends one raw Celery task (`bench.raw_step`) to the same queue on
  the same Redis, and answers 202;
- one worker, `celery -A bench.celery_app worker -P prefork -c 2` (flowmonkey's worker app plus
  the `bench.raw_step` task), consuming that queue: flowmonkey's executions and the raw tasks
  run while the requests come in, as in production.

The load: `--concurrency` keep-alive connections (a minimal HTTP/1.1 client on asyncio
streams, about 0.04 ms of CPU per request, so that the load generator takes as little as
possible of the CPUs the servers need; httpx.AsyncClient took 2.9 ms per request here, more
than either server), each sending the next request as soon as its previous answer is in, the
same JSON body to both,
every request with its own `Idempotency-Key`. Per target: `--warmup` requests (unmeasured),
then `--requests` measured ones in two halves, in the order baseline, flowmonkey, flowmonkey,
baseline, so that a slow moment of the machine does not hit one side only. After each batch
the benchmark waits until the worker has run everything that batch enqueued (each finished
execution or raw task is reported on a Redis list by the worker), so that one side's backlog
never runs during the other's measurement.

Measured per request: the time from writing the request to having read the whole answer
(latency, queueing in the server included). Per target: p50 and p99 of those, accepted
requests (202) per second of the batches' wall time, and the CPU time per request of the
server process, the worker, PostgreSQL and Redis (from /proc, from the start of a batch until
the worker has drained it), and of this process (the load generator).

Checked: every answer is 202; for flowmonkey, that each body names a new execution (distinct
ids, `duplicate: false`), that the Idempotency-Keys sent were all distinct, one per request,
that the database holds exactly as many executions of `bench-api` (and accepted fires in the
trigger's history) as there were 202s, and that the worker completed every one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, text

from flowmonkey_celery.celery import FlowMonkeyCelery

# Run as a script, bench/ is on the path but not the repository root that holds the package
# `bench` (FLOWMONKEY_HANDLERS=bench.celery_handlers needs it in the client too).
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.celery_steps import (
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    FIRST_RESULT_SECONDS,
    HANDLERS,
    REPO,
    STOP_SECONDS,
    BenchError,
    Worker,
    delete_queue,
    percentile,
    postgres_admin,
    postgres_database,
    redis_client,
    versions,
)

FLOW_FILE = Path(__file__).resolve().with_name("api_flow.yaml")
FLOW_ID = "bench-api"
TRIGGER_ID = "bench-api"
PATH = f"/webhooks/{TRIGGER_ID}"  # the baseline answers on the same path
FLOWMONKEY_APP = "flowmonkey_celery.api.server:app_from_env"
BASELINE_APP = "bench.api_baseline:app_from_env"
TARGETS = ("baseline", "flowmonkey")
TITLES = {"baseline": "baseline: FastAPI + send_task", "flowmonkey": "flowmonkey webhook"}
STARTUP_SECONDS = 60.0
DRAIN_SECONDS = 120.0  # the worker's backlog after a batch; far above what it needs
# A realistic small webhook: an order, about 300 bytes of JSON.
BODY = json.dumps(
    {
        "event": "order.created",
        "order": {
            "id": "A-10017",
            "customer": {"id": "c-981", "email": "ada@example.com", "tier": "gold"},
            "items": [
                {"sku": "MONKEY-01", "qty": 2, "price": 12.5},
                {"sku": "BANANA-09", "qty": 12, "price": 0.35},
            ],
            "total": 29.2,
            "currency": "EUR",
            "created_at": "2026-12-06T10:00:00Z",
        },
    }
).encode()
CPU_COLUMNS = ("server", "worker", "postgres", "redis", "client")


# -- the two servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """`uvicorn --factory APP --host 127.0.0.1 --port P` (uvicorn's defaults otherwise: one
    process, asyncio loop, access log) in its own process group, logging to a file."""

    def __init__(
        self, name: str, app: str, env: dict[str, str], home: Path, profile: Path | None = None
    ) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = home / f"{name}.log"
        self._log = self.log_path.open("wb")
        runner = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
        # uvicorn re-raises the signal it stopped on once shut down: SIGTERM's default action
        # would end the process before cProfile writes its file, SIGINT's KeyboardInterrupt
        # lets it.
        self.stop_signal = signal.SIGINT if profile is not None else signal.SIGTERM
        args = [
            *(sys.executable, *runner, "-m", "uvicorn", "--factory", app),
            *("--host", "127.0.0.1", "--port", str(self.port)),
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

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        state = "running" if self.alive else f"exited with {self.popen.returncode}"
        return f"{self.name} ({state}), last lines of {self.log_path}:\n" + "\n".join(
            self.log().splitlines()[-lines:]
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while "Application startup complete" not in self.log():
            if not self.alive or time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not start\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM (SIGINT under cProfile): uvicorn shuts down gracefully; then SIGKILL of the
        group if it has not exited in time."""
        if self.alive:
            with suppress(ProcessLookupError):
                os.killpg(self.popen.pid, self.stop_signal)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=STOP_SECONDS)
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_SECONDS)
        self._log.close()


# -- the load -----------------------------------------------------------------------------------


@dataclass
class Batch:
    """One batch of requests to one target."""

    seconds: float
    latencies: list[float]
    statuses: list[int]
    bodies: list[bytes]
    keys: list[str]


def request_bytes(port: int, key: str) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
        f"Idempotency-Key: {key}\r\n\r\n"
    )
    return head.encode() + BODY


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the server closes the connection) of one HTTP/1.1 answer with a
    Content-Length (what uvicorn sends for a JSONResponse)."""
    line = await reader.readline()
    if not line:
        raise BenchError("the server closed the connection before answering")
    status = int(line.split(b" ", 2)[1])
    length, close = 0, False
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
        elif name == b"transfer-encoding":
            raise BenchError(f"unexpected Transfer-Encoding: {value.strip().decode()}")
    return status, await reader.readexactly(length), close


async def fire(port: int, count: int, concurrency: int) -> Batch:
    """`count` requests over `concurrency` keep-alive connections, each sending its next
    request once its previous answer is in. The clock starts once every connection is open."""
    keys = [f"bench-{uuid.uuid4().hex}" for _ in range(count)]
    requests = [request_bytes(port, key) for key in keys]
    latencies = [0.0] * count
    statuses = [0] * count
    bodies = [b""] * count
    indexes = iter(range(count))  # shared: each connection takes the next request
    connections = [
        await asyncio.open_connection("127.0.0.1", port) for _ in range(min(concurrency, count))
    ]

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for i in indexes:
                started = time.perf_counter()
                writer.write(requests[i])
                status, body, close = await read_response(reader)
                latencies[i] = time.perf_counter() - started
                statuses[i], bodies[i] = status, body
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(client(r, w) for r, w in connections))
    return Batch(time.perf_counter() - started, latencies, statuses, bodies, keys)


# -- CPU accounting (Linux /proc) ---------------------------------------------------------------


def cpu_snapshot(groups: dict[int, str]) -> dict[Any, tuple[str, float]]:
    """pid -> (group, CPU seconds so far): the processes of the given process groups (the
    servers, the worker), PostgreSQL, redis-server; this process ("client") and the machine's
    busy time ("machine"). Empty where there is no /proc."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found: dict[Any, tuple[str, float]] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[2] is the process group, [11] and [12] user and system time in ticks.
        group = groups.get(int(fields[2]))
        if group is None:
            if name == "postgres":
                group = "postgres"
            elif name.startswith("redis-server"):
                group = "redis"
            else:
                continue
        found[int(entry.name)] = (group, (int(fields[11]) + int(fields[12])) / ticks)
    own = os.times()
    found["client"] = ("client", own.user + own.system)
    with suppress(OSError):
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        )
        found["machine"] = ("machine", (user + nice + system + irq + softirq + steal) / ticks)
    return found


def cpu_used(before: dict[Any, tuple[str, float]], after: dict[Any, tuple[str, float]]) -> Any:
    used: dict[str, float] = {}
    for pid, (group, seconds) in after.items():
        if pid in before:
            used[group] = used.get(group, 0.0) + seconds - before[pid][1]
    machine = used.pop("machine", 0.0)
    used["other"] = max(0.0, machine - sum(used.values())) if machine else 0.0
    return used


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Measured:
    """One target, its measured batches pooled."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    drain: list[float] = field(default_factory=list)  # seconds from the batch's end to drained


class Bench:
    def __init__(
        self,
        servers: dict[str, Server],
        worker: Worker,
        broker: redis.Redis,
        queue: str,
        database: Engine,
        concurrency: int,
    ) -> None:
        self.servers = servers
        self.worker = worker
        self.redis = broker
        self.done_key = f"{queue}:bench-done"  # bench.celery_app.done_key()
        self.database = database
        self.concurrency = concurrency
        self.sent = dict.fromkeys(TARGETS, 0)  # 202s so far, warm-up included
        self.keys: list[str] = []  # every Idempotency-Key sent to flowmonkey
        self.execution_ids: list[str] = []
        self.groups = {s.popen.pid: name for name, s in servers.items()}
        self.groups[worker.popen.pid] = "worker"
        self.first = True

    def batch(self, target: str, count: int) -> tuple[Batch, dict[str, float], float]:
        """Send `count` requests to `target`, check the answers, wait for the worker to have
        run what they enqueued; the batch, the CPU used meanwhile, the wait after the batch."""
        server = self.servers[target]
        before = cpu_snapshot(self.groups)
        result = asyncio.run(fire(server.port, count, self.concurrency))
        ended = time.monotonic()
        refused = [(s, b) for s, b in zip(result.statuses, result.bodies, strict=True) if s != 202]
        if refused:
            status, body = refused[0]
            raise BenchError(
                f"{target}: {len(refused)} of {count} answers were not 202; the first: {status} "
                f"{body[:500]!r}\n{server.tail()}"
            )
        self.sent[target] += count
        if target == "flowmonkey":
            self.keys += result.keys
            for body in result.bodies:
                answer = json.loads(body)
                if answer.get("duplicate") is not False or not answer.get("execution_id"):
                    raise BenchError(f"flowmonkey: not a new execution: {body!r}")
                self.execution_ids.append(answer["execution_id"])
        self.wait_drained()
        used = cpu_used(before, cpu_snapshot(self.groups))
        return result, used, time.monotonic() - ended

    def wait_drained(self) -> None:
        """Until the worker has reported as many finished executions and raw tasks as there
        were 202s so far."""
        expected = sum(self.sent.values())
        timeout = FIRST_RESULT_SECONDS if self.first else DRAIN_SECONDS
        deadline = time.monotonic() + timeout
        while self.redis.llen(self.done_key) < expected:
            if not self.worker.alive or time.monotonic() > deadline:
                raise BenchError(
                    f"the worker reported {self.redis.llen(self.done_key)} of {expected} "
                    f"finished in {timeout:.0f} s\n{self.worker.tail()}"
                )
            time.sleep(0.02)
        self.first = False

    def check(self) -> list[str]:
        """The end-of-run checks (raises BenchError on a failure); their descriptions."""
        accepted = self.sent["flowmonkey"]
        if len(set(self.keys)) != len(self.keys) or len(self.keys) != accepted:
            raise BenchError(f"{len(set(self.keys))} distinct Idempotency-Keys for {accepted}")
        if len(set(self.execution_ids)) != accepted:
            raise BenchError(f"{len(set(self.execution_ids))} distinct executions for {accepted}")
        with self.database.connect() as connection:
            by_status: dict[str, int] = dict(
                connection.execute(
                    text(
                        "SELECT status, count(*) FROM fm_executions WHERE flow_id = :flow "
                        "GROUP BY status"
                    ),
                    {"flow": FLOW_ID},
                ).all()
            )
            fires = connection.execute(
                text(
                    "SELECT count(*) FROM fm_trigger_history WHERE trigger_id = :trigger "
                    "AND status = 'accepted'"
                ),
                {"trigger": TRIGGER_ID},
            ).scalar_one()
        stored = sum(by_status.values())
        if stored != accepted or fires != accepted:
            raise BenchError(
                f"{accepted} accepted webhooks, but {stored} executions of {FLOW_ID} in the "
                f"database ({by_status}) and {fires} accepted fires in the trigger's history"
            )
        if by_status.get("completed", 0) != accepted:
            raise BenchError(f"not every execution completed: {by_status}")
        reports = [json.loads(r) for r in self.redis.lrange(self.done_key, 0, -1)]
        failed = [r for r in reports if r[2] != "completed"]
        reported = {r[0] for r in reports}
        if failed or not reported >= set(self.execution_ids):
            raise BenchError(f"the worker reported {failed[:3]} / missing executions")
        baseline = self.sent["baseline"]
        return [
            f"all {accepted + baseline:,} answers were 202 ({accepted:,} flowmonkey, "
            f"{baseline:,} baseline, warm-up included)",
            f"flowmonkey: {accepted:,} distinct Idempotency-Keys, one per request; {accepted:,} "
            f"distinct execution ids, none a duplicate; the database holds {stored:,} "
            f"executions of {FLOW_ID} and {fires:,} accepted fires of trigger {TRIGGER_ID}",
            f"the worker completed all {accepted:,} executions and {baseline:,} raw tasks",
        ]


def measure(b: Bench, requests: int, warmup: int, console: Console) -> dict[str, Measured]:
    for target in TARGETS:
        if warmup:
            b.batch(target, warmup)
    measured = {target: Measured() for target in TARGETS}
    halves = (requests // 2, requests - requests // 2)
    for number, (order, count) in enumerate(
        ((TARGETS, halves[0]), (TARGETS[::-1], halves[1])), start=1
    ):
        for target in order:
            if not count:
                continue
            console.print(f"batch {number}: {count:,} requests to {target}...")
            result, used, drain = b.batch(target, count)
            m = measured[target]
            m.seconds += result.seconds
            m.latencies += result.latencies
            m.accepted += count
            m.drain.append(drain)
            used["server"] = used.pop(target, 0.0)
            for idle in TARGETS:  # the other server, idle
                used["other"] = used.get("other", 0.0) + used.pop(idle, 0.0)
            for group, seconds in used.items():
                m.cpu[group] = m.cpu.get(group, 0.0) + seconds
    return measured


# -- output -------------------------------------------------------------------------------------


def results_table(measured: dict[str, Measured], concurrency: int) -> Table:
    table = Table(
        title=f"webhook → 202, {concurrency} concurrent clients; uvicorn 1 process each, "
        "worker -c 2 running, PostgreSQL, Redis broker"
    )
    table.add_column("target")
    for name in (
        "requests",
        "p50 ms",
        "p99 ms",
        "req/s",
        "req/s ÷ baseline",
        "p50 ÷ baseline",
        "CPU ms/req server / worker / PG / Redis / client",
    ):
        table.add_column(name, justify="right")
    base = measured["baseline"]
    base_rate = base.accepted / base.seconds
    base_p50 = percentile(sorted(base.latencies), 0.50)
    for target in TARGETS:
        m = measured[target]
        latencies = sorted(m.latencies)
        p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        rate = m.accepted / m.seconds
        table.add_row(
            TITLES[target],
            f"{m.accepted:,}",
            f"{p50 * 1000:.1f}",
            f"{p99 * 1000:.1f}",
            f"{rate:,.0f}",
            f"{rate / base_rate:.2f}",
            f"{p50 / base_p50:.2f}",
            " / ".join(f"{m.cpu.get(g, 0.0) / m.accepted * 1000:.2f}" for g in CPU_COLUMNS),
        )
    return table


def quietness(measured: dict[str, Measured]) -> str:
    other = sum(m.cpu.get("other", 0.0) for m in measured.values())
    own = sum(m.cpu.get(g, 0.0) for m in measured.values() for g in CPU_COLUMNS)
    share = other / max(own, 1e-9)
    drains = ", ".join(
        f"{target} {statistics.median(m.drain):.2f} s" for target, m in measured.items()
    )
    line = (
        f"worker backlog after a batch (median wait until drained): {drains}\n"
        f"CPU used by other programs during the batches: {other:.2f} s ({share:.0%})"
    )
    if share > 0.10:
        line += "\nwarning: the machine was not quiet; rerun when nothing else is running"
    return line


def server_stack() -> str:
    extras = [
        f"{name} {'installed' if importlib.util.find_spec(name) else 'not installed'}"
        for name in ("uvloop", "httptools")
    ]
    return (
        f"uvicorn {version('uvicorn')} ({', '.join(extras)}), fastapi {version('fastapi')}, "
        f"starlette {version('starlette')}"
    )


def print_profile(path: Path, console: Console) -> None:
    stats = pstats.Stats(str(path))
    console.print(f"\nflowmonkey API under cProfile ({path}), top 25 by cumulative time:")
    stats.sort_stats("cumulative").print_stats(25)
    console.print("top 25 by own time:")
    stats.sort_stats("tottime").print_stats(25)


# -- main ---------------------------------------------------------------------------------------


@contextmanager
def services(
    admin: Engine,
    broker: redis.Redis,
    broker_url: str,
    home: Path,
    app: str,
    profile: Path | None,
) -> Iterator[tuple[dict[str, Server], Worker, str, str]]:
    """A fresh database and queue, the worker, both servers; the trigger registered."""
    queue = f"fm-bench-api-{uuid.uuid4().hex[:12]}"
    started: list[Any] = []
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
        client: FlowMonkeyCelery | None = None
        try:
            worker = Worker(env, home / f"worker-{queue}.log")
            started.append(worker)
            servers = {
                "flowmonkey": Server("flowmonkey-api", app, env, home, profile),
                "baseline": Server("api-baseline", BASELINE_APP, env, home),
            }
            started += servers.values()
            for server in servers.values():
                server.wait_ready()
            client = FlowMonkeyCelery.from_env(settings, app_name="flowmonkey-bench-api")
            client.register_trigger(
                {"id": TRIGGER_ID, "type": "http", "flow_id": FLOW_ID, "auth": {"type": "none"}}
            )
            yield servers, worker, queue, database_url
        finally:
            for process in reversed(started):
                process.stop()
            if client is not None:
                client.runtime.store.dispose()
                client.app.close()
            delete_queue(broker, queue)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="admin URL; a throwaway database is created and dropped (default: %(default)s)",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help="the broker (default: %(default)s)"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=2000,
        help="measured requests per target, sent in two halves (default: 2000)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=50, help="concurrent clients (default: 50)"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="unmeasured requests per target (default: 200)"
    )
    parser.add_argument(
        "--app",
        default=FLOWMONKEY_APP,
        help="the flowmonkey side's app factory, to measure a variant (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the flowmonkey API under cProfile, write its stats to this file and print the "
        "top entries (its figures are then the profiler's, not the benchmark's)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.requests < 2 or args.concurrency < 1 or args.warmup < 0:
        sys.exit("error: --requests must be at least 2, --concurrency at least 1")
    admin = postgres_admin(args.postgres_url)
    broker = redis_client(args.redis_url)
    console = Console()
    if not console.is_terminal:  # piped to a file: do not squeeze the table into 80 columns
        console = Console(width=170)
    console.print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {versions(admin, broker)}")
    console.print(server_stack())
    if args.app != FLOWMONKEY_APP:
        console.print(f"flowmonkey side: {args.app}")
    profile = args.profile.resolve() if args.profile is not None else None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fm_bench_api_") as directory:
        home = Path(directory)
        (home / "flows").mkdir()
        shutil.copy(FLOW_FILE, home / "flows" / FLOW_FILE.name)
        try:
            with services(admin, broker, args.redis_url, home, args.app, profile) as (
                servers,
                worker,
                queue,
                database_url,
            ):
                database = create_engine(database_url)
                try:
                    b = Bench(servers, worker, broker, queue, database, args.concurrency)
                    measured = measure(b, args.requests, args.warmup, console)
                    checks = b.check()
                finally:
                    database.dispose()
        except BenchError as exc:
            sys.exit(f"error: {exc}")
        finally:
            admin.dispose()
    console.print(results_table(measured, args.concurrency))
    for line in checks:
        console.print(f"checked: {line}")
    console.print(quietness(measured))
    console.print(f"total {time.monotonic() - started:.0f} s")
    if profile is not None:
        print_profile(profile, console)


if __name__ == "__main__":
    main()
