"""Real `celery -A workers.app worker` and `celery -A beat.app beat` processes for end-to-end tests.

Each test gets a `FlowMonkeyCluster`: a fresh PostgreSQL database, its own queue on the broker
under test, a FLOWMONKEY_* environment, helpers to start / stop / kill -9 workers and beats, and
a client (`FlowMonkeyCelery.from_env`) in the test process. Every process it started is stopped
and its queue deleted after the test, whatever the outcome; a failing test's report carries the
tail of every process log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flowmonkey_celery.celery import FlowMonkeyCelery

REPO = Path(__file__).resolve().parents[2]
FLOWS = REPO / "tests" / "e2e" / "flows"
HANDLERS = "tests.e2e.handlers"
BROKER_URLS = {
    "redis": os.environ.get("FLOWMONKEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get(
        "FLOWMONKEY_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"
    ),
}
# The beat's tick period in these tests: short, so sweeps (wakes, stalled re-dispatch) are
# observable within seconds.
TICK_SECONDS = 0.5
STARTUP_SECONDS = 60.0
STOP_SECONDS = 30.0
LOG_TAIL_LINES = 40

T = TypeVar("T")
# Each phase's report (setup, call, teardown) of a test, for fixtures that act on a failure.
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def poll(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    details: Callable[[], str] = lambda: "",
    interval: float = 0.05,
) -> T:
    """Call `condition` until it returns something truthy (returned), or fail after `timeout`
    seconds with `what` and `details()` in the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{details()}")
        time.sleep(interval)


class CeleryProcess:
    """One `celery worker` or `celery beat` subprocess, in its own process group, logging to a
    file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.ended = False  # set once the whole process group has exited
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes the pool children too
        )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        state = "running" if self.alive else f"exited with {self.popen.returncode}"
        shown = "\n".join(self.log().splitlines()[-lines:])
        return f"--- {self.name} ({state}), last {lines} lines of {self.log_path} ---\n{shown}"

    def kill(self) -> None:
        """kill -9 the whole process group (main process and pool children)."""
        if self.ended:
            return
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=STOP_SECONDS)
        self._wait_group_gone()
        self._log.close()

    def stop(self) -> None:
        """SIGTERM to the main process (Celery's warm shutdown: running tasks finish); kill -9
        the group if it has not exited in time."""
        if self.ended:
            return
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=STOP_SECONDS)
        # Children orphaned by a dead main process would still hold messages: end them too.
        self._signal_group(signal.SIGKILL)
        self._wait_group_gone()
        self._log.close()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.ended:
            return  # the group is gone; its id may belong to someone else by now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def _wait_group_gone(self) -> None:
        def gone() -> bool:
            try:
                os.killpg(self.popen.pid, 0)
            except ProcessLookupError:
                return True
            return False

        poll(gone, timeout=STOP_SECONDS, what=f"process group of {self.name} to exit")
        self.ended = True


class FlowMonkeyCluster:
    """Workers, beats and a client sharing one database, broker and queue."""

    def __init__(self, settings_env: dict[str, str], home: Path, broker: str | None) -> None:
        self.settings_env = settings_env
        self.home = home
        self.broker = broker
        self.queue = settings_env.get("FLOWMONKEY_QUEUE", "flowmonkey")
        self.processes: list[CeleryProcess] = []
        self._client: FlowMonkeyCelery | None = None

    def set_env(self, **variables: str) -> None:
        """Add FLOWMONKEY_* variables for every process and the client (before any starts)."""
        assert not self.processes and self._client is None, "set_env() before starting anything"
        self.settings_env.update(variables)

    # -- processes -----------------------------------------------------------------------------

    def process_env(self, overrides: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMONKEY_")}
        env.update(self.settings_env)
        env.update(overrides)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start_worker(self, concurrency: int = 2, **overrides: str) -> CeleryProcess:
        """Start `celery -A workers.app worker -c <concurrency>` (prefork) and wait until it
        is ready. `overrides` are extra FLOWMONKEY_* variables for this process only."""
        name = f"worker-{len(self.processes) + 1}"
        args = [
            *(sys.executable, "-m", "celery", "-A", "workers.app", "worker"),
            *("-c", str(concurrency), "-l", "info", "-n", f"{name}-{uuid.uuid4().hex[:8]}@%h"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
        process = self._start(name, args, overrides)
        self._wait_for_log(process, " ready.")
        return process

    def start_beat(self, **overrides: str) -> CeleryProcess:
        """Start `celery -A beat.app beat` and wait until it is scheduling."""
        name = f"beat-{len(self.processes) + 1}"
        args = [
            *(sys.executable, "-m", "celery", "-A", "beat.app", "beat", "-l", "info"),
            *("-s", str(self.home / f"{name}-schedule")),
        ]
        process = self._start(name, args, overrides)
        self._wait_for_log(process, "beat: Starting...")
        return process

    def start_api(self, **overrides: str) -> str:
        """Start the REST API (`uvicorn --factory flowmonkey_celery.api.server:app_from_env`) on
        a free port and wait until it answers; its base URL."""
        name = f"api-{len(self.processes) + 1}"
        port = free_port()
        args = [
            *(sys.executable, "-m", "uvicorn", "--factory"),
            "flowmonkey_celery.api.server:app_from_env",
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "info"),
        ]
        process = self._start(name, args, overrides)
        self._wait_for_log(process, "Application startup complete")
        return f"http://127.0.0.1:{port}"

    def _start(self, name: str, args: list[str], overrides: dict[str, str]) -> CeleryProcess:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        process = CeleryProcess(
            name, args, self.process_env(overrides), self.home / "logs" / f"{name}.log"
        )
        self.processes.append(process)
        return process

    def _wait_for_log(self, process: CeleryProcess, text: str) -> None:
        def started() -> bool:
            if not process.alive:
                raise AssertionError(f"{process.name} exited during startup\n{self.log_tails()}")
            return text in process.log()

        what = f"{process.name} to start"
        poll(started, timeout=STARTUP_SECONDS, what=what, details=self.log_tails)

    def log_tails(self) -> str:
        return "\n".join(process.tail() for process in self.processes)

    # -- the client in this process ------------------------------------------------------------

    @property
    def client(self) -> FlowMonkeyCelery:
        """`FlowMonkeyCelery.from_env(env)`: commits to the same database, sends to the same
        queue as the processes."""
        if self._client is None:
            self._client = FlowMonkeyCelery.from_env(self.settings_env, app_name="e2e-client")
        return self._client

    # -- waiting -------------------------------------------------------------------------------

    def wait_for(self, condition: Callable[[], T], *, timeout: float, what: str) -> T:
        """Poll `condition` until truthy; on timeout fail with every process's log tail."""
        return poll(condition, timeout=timeout, what=what, details=self.log_tails)

    def wait_finished(self, execution_ids: list[str], *, timeout: float) -> None:
        """Wait until every execution is terminal (completed, failed or cancelled)."""
        store = self.client.runtime.store
        pending = set(execution_ids)

        def all_finished() -> bool:
            for execution_id in list(pending):
                execution = store.get_execution(execution_id)
                if execution is not None and execution.is_terminal:
                    pending.discard(execution_id)
            return not pending

        def details() -> str:
            shown = sorted(pending)[:5]
            states = [store.get_execution(i) for i in shown]
            described = [
                f"{i}: {e.status.value} at {e.current_step_id} (version {e.version})"
                if e
                else f"{i}: missing"
                for i, e in zip(shown, states, strict=True)
            ]
            return (
                f"{len(pending)} not finished, e.g.\n"
                + "\n".join(described)
                + "\n"
                + (self.log_tails())
            )

        poll(
            all_finished,
            timeout=timeout,
            what=f"{len(execution_ids)} executions to finish",
            details=details,
            interval=0.2,
        )

    # -- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        """kill -9 every process still running (the test is over: a warm shutdown would only
        cost seconds), close the client, delete the queues; each step runs even if an earlier
        one failed."""
        errors: list[str] = []
        for process in reversed(self.processes):
            try:
                process.kill()
            except Exception as exc:  # keep stopping the others
                errors.append(f"stopping {process.name}: {exc!r}")
        try:
            if self._client is not None:
                self._client.runtime.store.dispose()
                # Not app.pool.force_close_all(): Celery's connection pools are kombu's
                # global ones, shared with the next test's client.
                self._client.app.close()
        except Exception as exc:
            errors.append(f"closing the client: {exc!r}")
        if self.broker is not None:
            tick_queue = self.settings_env.get("FLOWMONKEY_TICK_QUEUE", f"{self.queue}.tick")
            for queue in (self.queue, tick_queue):
                delete_queue(BROKER_URLS[self.broker], queue)
        if errors:
            raise AssertionError("; ".join(errors))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def delete_queue(broker_url: str, queue: str) -> None:
    """Delete the test's queue (and, on Redis, its unacknowledged messages)."""
    if broker_url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker_url)
        try:
            keys = list(client.scan_iter(f"*{queue}*"))
            if keys:
                client.delete(*keys)
            # Messages a killed worker held stay in kombu's global unacked hash; drop ours.
            for tag, payload in client.hgetall("unacked").items():
                try:
                    _message, exchange, routing_key = json.loads(payload)
                except ValueError:
                    continue
                if queue in (exchange, routing_key):
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)
        finally:
            client.close()
        return
    from kombu import Connection

    with Connection(broker_url) as connection:
        channel = connection.default_channel
        channel.queue_delete(queue)
        channel.exchange_delete(queue)


def settings_env(
    *, home: Path, database_url: str | None, broker: str | None, **extra: str
) -> dict[str, str]:
    """The FLOWMONKEY_* variables of one test: the e2e flows and handlers, its home, and (unless
    embedded) its database, broker and own queue."""
    env = {
        "FLOWMONKEY_HOME": str(home),
        "FLOWMONKEY_FLOWS": str(FLOWS),
        "FLOWMONKEY_HANDLERS": HANDLERS,
    }
    if database_url is not None:
        env["FLOWMONKEY_DATABASE_URL"] = database_url
    if broker is not None:
        env["FLOWMONKEY_BROKER_URL"] = BROKER_URLS[broker]
        env["FLOWMONKEY_QUEUE"] = f"fm-e2e-{uuid.uuid4().hex[:12]}"
        env["FLOWMONKEY_TICK_SECONDS"] = str(TICK_SECONDS)
    env.update(extra)
    return env


@pytest.fixture(params=sorted(BROKER_URLS))
def broker(request: pytest.FixtureRequest) -> str:
    """The broker under test: "rabbitmq" or "redis"."""
    return str(request.param)


@pytest.fixture
def cluster(broker: str, postgres_url: str, tmp_path: Path) -> Iterator[FlowMonkeyCluster]:
    """A fresh PostgreSQL database, a queue of its own on `broker`, tick every 0.5 s; start
    workers and beats with `cluster.start_worker()` / `cluster.start_beat()`."""
    running = FlowMonkeyCluster(
        settings_env(home=tmp_path, database_url=postgres_url, broker=broker), tmp_path, broker
    )
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def embedded_cluster(tmp_path: Path) -> Iterator[FlowMonkeyCluster]:
    """The embedded default: no database or broker URL, everything under FLOWMONKEY_HOME."""
    running = FlowMonkeyCluster(
        settings_env(home=tmp_path / "home", database_url=None, broker=None),
        tmp_path / "home",
        None,
    )
    try:
        yield running
    finally:
        running.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """A failing end-to-end test's report ends with the tail of every process log."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[call.when] = report  # for fixtures' teardown
    if report.failed and call.when == "call":
        for fixture in ("cluster", "embedded_cluster"):
            running = getattr(item, "funcargs", {}).get(fixture)
            if isinstance(running, FlowMonkeyCluster) and running.processes:
                report.sections.append(("worker and beat logs", running.log_tails()))
    return report
