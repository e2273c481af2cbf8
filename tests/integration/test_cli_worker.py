"""`flowmonkey worker` and `flowmonkey beat` as real processes on the embedded default (SQLite
store and broker under FLOWMONKEY_HOME, no servers), started from a folder without the
repository's workers/ and beat/ entry points; `start`, `resume` and `run --via-celery` hand
executions to them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowmonkey_celery.examples.orders import FLOWS_DIR
from flowmonkey_celery.stores.sql import SqlStore

STARTUP_SECONDS = 60.0


def order(order_id: str, *, card: str = "visa", price: int = 12) -> str:
    return json.dumps(
        {
            "order": {
                "id": order_id,
                "country": "NL",
                "card": card,
                "customer": {"email": "ana@example.com"},
                "items": [{"sku": "mug", "price": price}],
                "pickup_wait": {"seconds": 1},
            }
        }
    )


class Deployment:
    """A FLOWMONKEY_* environment in a temporary folder, and the processes started in it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.home = folder / "home"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMONKEY_")}
        self.env.update(
            FLOWMONKEY_HOME=str(self.home),
            FLOWMONKEY_HANDLERS="flowmonkey_celery.examples.orders",
            FLOWMONKEY_FLOWS=str(FLOWS_DIR),
            FLOWMONKEY_TICK_SECONDS="0.5",
            PYTHONPATH="",
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def flowmonkey(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowmonkey_celery.cli", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_process(self, name: str, *args: str) -> Path:
        log = self.folder / f"{name}.log"
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "flowmonkey_celery.cli", name, *args],
                cwd=self.folder,
                env=self.env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        return log

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def execution(self, execution_id: str) -> Any:
        store = SqlStore(f"sqlite:///{self.home / 'flowmonkey.db'}")
        try:
            return store.get_execution(execution_id)
        finally:
            store.dispose()


def poll(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp("cli-worker"))
    # Create and migrate the embedded store first, so the two processes do not race to.
    assert deployment.flowmonkey("db", "upgrade").returncode == 0
    worker_log = deployment.start_process(
        "worker", "-c", "2", "-l", "info", "--without-gossip", "--without-mingle"
    )
    beat_log = deployment.start_process(
        "beat", "-l", "info", "-s", str(deployment.folder / "sched")
    )
    try:
        poll(
            lambda: "ready." in worker_log.read_text(errors="replace"),
            timeout=STARTUP_SECONDS,
            what=f"the worker to start:\n{worker_log.read_text(errors='replace')}",
        )
        poll(
            lambda: "flowmonkey.tick" in beat_log.read_text(errors="replace"),
            timeout=STARTUP_SECONDS,
            what=f"the beat to send a tick:\n{beat_log.read_text(errors='replace')}",
        )
        yield deployment
    finally:
        deployment.stop()


@pytest.mark.slow
def test_worker_and_beat_are_celery_processes_on_the_package_apps(deployment: Deployment) -> None:
    worker, beat = deployment.processes
    for process, app in ((worker, "celery_apps:worker"), (beat, "celery_apps:beat")):
        # The flowmonkey command replaced itself with Celery (same pid).
        command = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"celery" in command
        assert f"flowmonkey_celery.cli.{app}".encode() in command
    worker_log = deployment.folder / "worker.log"
    poll(
        lambda: "Task flowmonkey.tick[" in worker_log.read_text(errors="replace"),
        timeout=30,
        what="the worker to run a tick the beat sent",
    )


@pytest.mark.slow
def test_start_hands_the_execution_to_the_worker(deployment: Deployment) -> None:
    started = deployment.flowmonkey("start", "order-fulfilment", "--context", order("W-1"))

    assert started.returncode == 0, started.stderr
    execution_id = started.stdout.strip()
    done = poll(
        lambda: (e := deployment.execution(execution_id)) is not None and e.is_terminal and e,
        timeout=60,
        what=f"execution {execution_id} to finish on the worker",
    )
    assert done.status == "completed"
    assert done.context["notification"]["subject"].startswith("Order W-1 is on its way")


@pytest.mark.slow
def test_run_via_celery_follows_the_workers_steps_and_resume_enqueues(
    deployment: Deployment,
) -> None:
    flaky = deployment.flowmonkey(
        "run", "order-fulfilment", "--via-celery", "--context", order("W-2", card="flaky")
    )
    assert flaky.returncode == 0, flaky.stdout + flaky.stderr
    assert "charge-payment retry 2 scheduled for" in flaky.stdout
    assert "charge-payment success" in flaky.stdout
    assert "wait-for-pickup resumed by timer" in flaky.stdout
    assert "✓ completed" in flaky.stdout

    waiting = deployment.flowmonkey(
        "run", "order-fulfilment", "--via-celery", "--json", "-c", order("W-3", price=1500)
    )
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    execution_id = json.loads(waiting.stdout)["execution"]["id"]
    assert deployment.execution(execution_id).current_step_id == "manager-approval"

    resumed = deployment.flowmonkey("resume", execution_id, "--data", '{"decision": "approved"}')
    assert resumed.returncode == 0, resumed.stderr
    done = poll(
        lambda: (e := deployment.execution(execution_id)).is_terminal and e,
        timeout=60,
        what=f"resumed execution {execution_id} to finish on the worker",
    )
    assert done.status == "completed"
    assert done.context["approval"] == {"decision": "approved"}
