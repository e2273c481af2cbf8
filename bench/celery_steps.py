"""Per-step cost of flowmonkey on Celery, next to a raw Celery chain on the same worker.

Run from the repository root (about 2 minutes with the defaults):

    .venv/bin/python bench/celery_steps.py [--postgres-url URL] [--redis-url URL]

One run, one machine, PostgreSQL (a throwaway database per worker session, dropped at the
end) and the Redis broker (a queue of its own per worker session, deleted at the end). Each
session starts a real `celery -A bench.celery_app worker -c 2` (prefork, two pool processes)
and measures one scenario:

- (a) raw Celery: a chain of no-op tasks (`bench.raw_step`), each link sent by the worker when
  the previous one succeeds (Celery's own chain mechanism); acks_late, prefetch 1, the same app
  configuration as flowmonkey's tasks, since it is registered on the same app;
- (b) flowmonkey no-op steps, inline continuation off (FLOWMONKEY_INLINE_STEPS=0): every step is
  one `flowmonkey.step` message, one committed transaction, then the next message;
- (c) the same with inline continuation on (the defaults: up to 50 steps or 2 s per message):
  the worker that committed step N runs step N+1 itself.

For each scenario:

- sequential per-step latency: one execution (or chain) of `--steps` (20) no-op steps at a time;
  (finish - start) / steps, over `--runs` runs; p50 and p95 over the runs. "start" is taken in
  this process just before `FlowMonkeyCelery.start()` (which commits the execution, then sends
  its first message) or `chain.apply_async()`; "finish" is the worker's clock when the last
  raw link runs, or when flowmonkey has committed the final step (an `execution.completed`
  subscriber in the worker pushes the time to Redis);
- throughput: `--concurrent` (50) executions started at once; steps completed per second until
  the last one finishes (median of the repeats);
- CPU per step during the throughput repeats, from /proc (Linux): the worker's processes (main
  and pool), the PostgreSQL server processes, redis-server. The last two count whatever else
  uses those servers meanwhile: run on a quiet machine;
- the "40 sequential steps of 10 ms work" flow end to end (a 10 ms blocking call per step; for
  (a) a 40-link chain doing the same), median seconds, and the overhead per step above 10 ms.

Sessions run in the order a b c, then c b a (`--rounds 2`), and each scenario's figures pool
both of its sessions, so that a slow moment of the machine does not hit one scenario only.
Ratios are b/a and c/a from the same run; absolute figures depend heavily on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
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

import redis
from celery import chain
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.stores.sql import SqlStore

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
HANDLERS = "bench.celery_handlers"
NOOP_FLOW = "bench-noop"
WORK_FLOW = "bench-work"
WORK_STEPS = 40
WORK_MS = 10  # bench.celery_handlers.WORK_SECONDS
WARMUP_RUNS = 3
# A worker starts in a few seconds; this only runs out if it never consumes.
FIRST_RESULT_SECONDS = 90.0
RESULT_SECONDS = 60.0
STOP_SECONDS = 30.0


class BenchError(Exception):
    """The benchmark cannot go on (a worker died, an execution failed, nothing came back)."""


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    raw: bool = False
    env: dict[str, str] = field(default_factory=dict)


SCENARIOS = {
    "a": Scenario("a", "raw Celery chain", raw=True),
    "b": Scenario("b", "flowmonkey inline off", env={"FLOWMONKEY_INLINE_STEPS": "0"}),
    "c": Scenario("c", "flowmonkey inline on"),
}


@dataclass
class Measurements:
    """Everything measured for one scenario, pooled over its sessions."""

    per_step: list[float] = field(default_factory=list)  # seconds per step, one per run
    throughput: list[float] = field(default_factory=list)  # steps/s, one per repeat
    work: list[float] = field(default_factory=list)  # seconds end to end, one per run
    # CPU seconds used during the throughput repeats, by the worker (main and pool processes),
    # PostgreSQL and Redis; and the steps run meanwhile.
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys((*CPU_GROUPS, OTHER), 0.0))
    cpu_steps: int = 0


# -- the worker ---------------------------------------------------------------------------------


class Worker:
    """`celery -A bench.celery_app worker -c 2` (prefork) in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        args = [
            *(sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker"),
            *("-P", "prefork", "-c", "2", "-l", "warning"),
            *("-n", f"bench-{uuid.uuid4().hex[:8]}@%h"),
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

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        text_ = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        state = "running" if self.alive else f"exited with {self.popen.returncode}"
        return f"worker ({state}), last lines of {self.log_path}:\n" + "\n".join(
            text_.splitlines()[-lines:]
        )

    def stop(self) -> None:
        """Warm shutdown (SIGTERM); kill -9 the group if it has not exited in time."""
        if self.alive:
            self._signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=STOP_SECONDS)
        self._signal(signal.SIGKILL)  # pool processes orphaned by a dead main process too
        self.popen.wait(timeout=STOP_SECONDS)
        self._log.close()

    def _signal(self, sig: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


# -- one worker session -------------------------------------------------------------------------


class Session:
    """One scenario against one fresh worker, database and queue."""

    def __init__(
        self, scenario: Scenario, client: FlowMonkeyCelery, worker: Worker, broker: redis.Redis
    ) -> None:
        self.scenario = scenario
        self.client = client
        self.worker = worker
        self.redis = broker
        self.done_key = f"{client.options.queue}:bench-done"  # bench.celery_app.done_key()

    def launch(self, count: int, flow: str, steps: int) -> list[str]:
        """Start `count` executions of `flow` (or raw chains of as many links); their tags."""
        if not self.scenario.raw:
            return [self.client.start(flow, {}).execution.id for _ in range(count)]
        tags = [uuid.uuid4().hex for _ in range(count)]
        work = flow == WORK_FLOW
        for tag in tags:
            links = [
                self.client.app.signature(
                    "bench.raw_step",
                    args=(tag, n == steps - 1, work),
                    immutable=True,
                    queue=self.client.options.queue,  # the queue flowmonkey's steps use
                )
                for n in range(steps)
            ]
            chain(*links).apply_async()
        return tags

    def wait(self, tags: list[str], timeout: float = RESULT_SECONDS) -> float:
        """Wait until every tag is reported finished; the worker's time of the last one."""
        pending = set(tags)
        last = 0.0
        deadline = time.monotonic() + timeout
        while pending:
            item = self.redis.blpop([self.done_key], timeout=1)
            if item is None:
                if not self.worker.alive:
                    raise BenchError(f"the worker exited\n{self.worker.tail()}")
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{len(pending)} of {len(tags)} executions not finished after "
                        f"{timeout:.0f} s\n{self.worker.tail()}"
                    )
                continue
            tag, finished_at, status = json.loads(item[1])
            if tag not in pending:
                continue
            if status != "completed":
                raise BenchError(f"execution {tag} {status}\n{self.worker.tail()}")
            pending.discard(tag)
            last = max(last, finished_at)
        return last

    def one(self, flow: str, steps: int, timeout: float = RESULT_SECONDS) -> float:
        """Seconds from start to finish of one execution."""
        started = time.time()
        return self.wait(self.launch(1, flow, steps), timeout) - started

    def concurrent(self, count: int, steps: int) -> float:
        """Steps per second with `count` executions started at once."""
        started = time.time()
        finished = self.wait(self.launch(count, NOOP_FLOW, steps))
        return count * steps / (finished - started)


def measure(session: Session, args: argparse.Namespace, into: Measurements) -> None:
    # The first run also waits for the worker to be up; the others warm connections and code.
    session.one(NOOP_FLOW, args.steps, timeout=FIRST_RESULT_SECONDS)
    for _ in range(WARMUP_RUNS):
        session.one(NOOP_FLOW, args.steps)
    session.concurrent(min(args.concurrent, 10), args.steps)
    for _ in range(args.runs):
        into.per_step.append(session.one(NOOP_FLOW, args.steps) / args.steps)
    before = cpu_times(session.worker.popen.pid)
    for _ in range(args.repeats):
        into.throughput.append(session.concurrent(args.concurrent, args.steps))
    for group, seconds in cpu_used(before, cpu_times(session.worker.popen.pid)).items():
        into.cpu[group] += seconds
    into.cpu_steps += args.repeats * args.concurrent * args.steps
    for _ in range(args.work_runs):
        into.work.append(session.one(WORK_FLOW, WORK_STEPS))


# -- CPU accounting (Linux /proc) ---------------------------------------------------------------

CPU_GROUPS = ("worker", "postgres", "redis")
# Busy CPU time of the whole machine not accounted for by the groups above or this process:
# other programs competing for the CPUs.
OTHER = "other"
SELF_PID = 0  # cpu_times() key for this process
MACHINE_PID = -1  # cpu_times() key for the whole machine's busy time


def cpu_times(worker_group: int) -> dict[int, tuple[str, float]]:
    """pid -> (group, CPU seconds so far) for the worker's processes (its process group), the
    PostgreSQL server processes and redis-server. Empty where there is no /proc."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[2] is the process group, [11] and [12] user and system time in ticks.
        if int(fields[2]) == worker_group:
            group = "worker"
        elif name == "postgres":
            group = "postgres"
        elif name.startswith("redis-server"):
            group = "redis"
        else:
            continue
        found[int(entry.name)] = (group, (int(fields[11]) + int(fields[12])) / ticks)
    own = os.times()
    found[SELF_PID] = ("self", own.user + own.system)
    with suppress(OSError):
        # /proc/stat "cpu" line: user nice system idle iowait irq softirq steal ... (ticks).
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        )
        busy = user + nice + system + irq + softirq + steal
        found[MACHINE_PID] = ("machine", busy / ticks)
    return found


def cpu_used(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per group between two snapshots, over processes present in both, and
    the machine's busy time used by anything else (OTHER)."""
    used = dict.fromkeys((*CPU_GROUPS, "self", "machine"), 0.0)
    for pid, (group, seconds) in after.items():
        if pid in before:
            used[group] += seconds - before[pid][1]
    machine, own = used.pop("machine"), used.pop("self")
    used[OTHER] = max(0.0, machine - own - sum(used.values())) if machine else 0.0
    return used


# -- services -----------------------------------------------------------------------------------


def postgres_admin(url: str) -> Engine:
    """An AUTOCOMMIT engine on the admin URL, or exit with a clear message."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        sys.exit(
            f"error: PostgreSQL is not reachable at {shown} ({reason}).\n"
            "Start it (e.g. `docker compose -f deploy/docker-compose.yml up -d postgres`) or "
            "pass --postgres-url with a user allowed to create databases."
        )
    return admin


def redis_client(url: str) -> redis.Redis:
    """A Redis client on the broker URL, or exit with a clear message."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        sys.exit(
            f"error: Redis is not reachable at {url} ({exc}).\n"
            "Start it (e.g. `docker compose -f deploy/docker-compose.yml up -d redis`) or "
            "pass --redis-url."
        )
    return client


@contextmanager
def postgres_database(admin: Engine) -> Iterator[str]:
    """A fresh, migrated database; dropped afterwards."""
    name = f"fm_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        store = SqlStore(url)
        store.migrate()
        store.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def delete_queue(client: redis.Redis, queue: str) -> None:
    """The queue's list, kombu's binding keys, the done list, and any unacked message of it."""
    keys = list(client.scan_iter(f"*{queue}*"))
    if keys:
        client.delete(*keys)
    for tag, payload in client.hgetall("unacked").items():
        try:
            _message, exchange, routing_key = json.loads(payload)
        except ValueError:
            continue
        if queue in (exchange, routing_key):
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


def write_flows(folder: Path, steps: int) -> None:
    """The two flows, as files in FLOWMONKEY_FLOWS: `steps` no-op steps, 40 steps of work."""
    for flow_id, handler_type, length in (
        (NOOP_FLOW, "bench-noop", steps),
        (WORK_FLOW, "bench-work", WORK_STEPS),
    ):
        chain_ = {
            f"s{n}": {"type": handler_type, "transitions": {"on_success": f"s{n + 1}"}}
            for n in range(1, length)
        }
        chain_[f"s{length}"] = {"type": handler_type}
        flow = {"id": flow_id, "version": "1.0.0", "initial_step_id": "s1", "steps": chain_}
        (folder / f"{flow_id}.json").write_text(json.dumps(flow, indent=1))


@contextmanager
def session(
    scenario: Scenario, admin: Engine, broker: redis.Redis, broker_url: str, home: Path
) -> Iterator[Session]:
    """A fresh database and queue, a worker with the scenario's environment, a client."""
    queue = f"fm-bench-{uuid.uuid4().hex[:12]}"
    with postgres_database(admin) as database_url:
        settings = {
            "FLOWMONKEY_DATABASE_URL": database_url,
            "FLOWMONKEY_BROKER_URL": broker_url,
            "FLOWMONKEY_QUEUE": queue,
            "FLOWMONKEY_HOME": str(home),
            "FLOWMONKEY_FLOWS": str(home / "flows"),
            "FLOWMONKEY_HANDLERS": HANDLERS,
            **scenario.env,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMONKEY_")}
        env |= settings
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        client = FlowMonkeyCelery.from_env(settings, app_name="flowmonkey-bench-client")
        worker = Worker(env, home / f"worker-{scenario.key}-{queue}.log")
        try:
            yield Session(scenario, client, worker, broker)
        finally:
            worker.stop()
            client.runtime.store.dispose()
            client.app.close()
            delete_queue(broker, queue)


# -- output -------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


@dataclass
class Summary:
    p50_ms: float
    p95_ms: float
    throughput: float
    work_s: float
    cpu_ms: dict[str, float]  # group -> CPU ms per step during the throughput repeats

    @classmethod
    def of(cls, m: Measurements) -> Summary:
        per_step = sorted(m.per_step)
        return cls(
            p50_ms=percentile(per_step, 0.50) * 1000,
            p95_ms=percentile(per_step, 0.95) * 1000,
            throughput=statistics.median(m.throughput),
            work_s=statistics.median(m.work),
            cpu_ms={g: used / m.cpu_steps * 1000 for g, used in m.cpu.items()},
        )


def results_table(summaries: dict[str, Summary], args: argparse.Namespace) -> Table:
    table = Table(
        title=f"{args.steps} no-op steps per execution; worker -c 2, PostgreSQL, Redis broker"
    )
    table.add_column("scenario")
    for name in (
        "ms/step p50 / p95",
        "p50 ÷ a",
        f"steps/s ({args.concurrent} at once)",
        "÷ a",
        "CPU ms/step: worker / PG / Redis",
        f"{WORK_STEPS}x{WORK_MS} ms flow s",
        "+ms/step",
    ):
        table.add_column(name, justify="right")
    base = summaries["a"]
    for key, s in summaries.items():
        table.add_row(
            f"({key}) {SCENARIOS[key].title}",
            f"{s.p50_ms:.2f} / {s.p95_ms:.2f}",
            f"{s.p50_ms / base.p50_ms:.2f}",
            f"{s.throughput:,.0f}",
            f"{s.throughput / base.throughput:.2f}",
            " / ".join(f"{s.cpu_ms[g]:.2f}" for g in CPU_GROUPS),
            f"{s.work_s:.3f}",
            f"{s.work_s / WORK_STEPS * 1000 - WORK_MS:.2f}",
        )
    return table


def quietness(summaries: dict[str, Summary]) -> str:
    """How much CPU other programs took during the throughput repeats, and whether that makes
    the run unreliable (more than 10 % of what the measured processes used themselves)."""
    shares = {
        key: s.cpu_ms[OTHER] / max(sum(s.cpu_ms[g] for g in CPU_GROUPS), 1e-9)
        for key, s in summaries.items()
    }
    listed = ", ".join(
        f"({key}) {summaries[key].cpu_ms[OTHER]:.2f} ms/step ({share:.0%})"
        for key, share in shares.items()
    )
    line = f"CPU used by other programs during the throughput repeats: {listed}"
    if max(shares.values()) > 0.10:
        line += "\nwarning: the machine was not quiet; rerun when nothing else is running"
    return line


def targets(summaries: dict[str, Summary], concurrent: int) -> list[tuple[str, bool]]:
    a, b, c = summaries["a"], summaries["b"], summaries["c"]
    ratio = b.throughput / a.throughput
    return [
        (
            f"(c) sequential per-step latency p50 {c.p50_ms:.2f} ms at or below (a)'s "
            f"{a.p50_ms:.2f} ms",
            c.p50_ms <= a.p50_ms,
        ),
        (
            f"(b) throughput with {concurrent} concurrent executions {b.throughput:,.0f} steps/s "
            f"at least "
            f"0.8 x (a)'s {a.throughput:,.0f} (ratio {ratio:.2f})",
            ratio >= 0.8,
        ),
    ]


def versions(admin: Engine, broker: redis.Redis) -> str:
    with admin.connect() as connection:
        postgres = connection.execute(text("SHOW server_version")).scalar()
    redis_server = broker.info("server").get("redis_version")
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"celery {version('celery')}, kombu {version('kombu')}, "
        f"PostgreSQL {postgres}, Redis {redis_server}, SQLAlchemy {version('sqlalchemy')}"
    )


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="admin URL; a throwaway database per session is created and dropped "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help="the broker (default: %(default)s)"
    )
    parser.add_argument("--steps", type=int, default=20, help="no-op steps per flow (default: 20)")
    parser.add_argument(
        "--runs", type=int, default=25, help="sequential runs per session (default: 25)"
    )
    parser.add_argument(
        "--concurrent", type=int, default=50, help="executions at once (default: 50)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="throughput repeats per session (default: 3)"
    )
    parser.add_argument(
        "--work-runs",
        type=int,
        default=3,
        help=f"runs of the {WORK_STEPS}x{WORK_MS} ms flow per session (default: 3)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="sessions per scenario, in the order a b c, c b a, ... (default: 2)",
    )
    parser.add_argument(
        "--only", default="abc", help="scenarios to run, e.g. 'ac' (ratios need a; default: abc)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if "a" not in args.only:
        sys.exit("error: --only must include a: every ratio is against the raw Celery chain")
    sys.path.insert(0, str(REPO))  # FLOWMONKEY_HANDLERS=bench.celery_handlers, in the client too
    admin = postgres_admin(args.postgres_url)
    broker = redis_client(args.redis_url)
    console = Console()
    if not console.is_terminal:  # piped to a file: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {versions(admin, broker)}")
    order = [key for key in SCENARIOS if key in args.only]
    measured = {key: Measurements() for key in order}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fm_bench_celery_") as directory:
        home = Path(directory)
        (home / "flows").mkdir()
        write_flows(home / "flows", args.steps)
        try:
            for round_ in range(args.rounds):
                for key in order if round_ % 2 == 0 else order[::-1]:
                    console.print(f"round {round_ + 1}: ({key}) {SCENARIOS[key].title}...")
                    with session(SCENARIOS[key], admin, broker, args.redis_url, home) as s:
                        measure(s, args, measured[key])
        except BenchError as exc:
            sys.exit(f"error: {exc}")
        finally:
            admin.dispose()
    summaries = {key: Summary.of(m) for key, m in measured.items()}
    console.print(results_table(summaries, args))
    if set(summaries) >= {"a", "b", "c"}:
        for description, met in targets(summaries, args.concurrent):
            console.print(f"target {'met' if met else 'NOT MET'}: {description}")
    console.print(quietness(summaries))
    console.print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
