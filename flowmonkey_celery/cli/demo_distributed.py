"""`flowmonkey demo`: the example orders through a real Celery worker and beat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from flowmonkey_celery.cli.failures import ExitCode
from flowmonkey_celery.cli.output import error_console
from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.examples.orders import order_flow
from flowmonkey_celery.runtime import Runtime
from flowmonkey_celery.settings import Settings

# Where the flowmonkey_celery package is: on the processes' PYTHONPATH, so the demo also runs
# from a source tree that is not installed.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 90.0


def _demo_env(settings: Settings) -> dict[str, str]:
    # No FLOWMONKEY_FLOWS: the order flow is saved to the store before the worker starts, and
    # every runtime loads stored flows. The examples' folder holds other examples' flows (and
    # a cron trigger) that this demo's worker and beat must not deploy.
    env = {k: v for k, v in os.environ.items() if k != "FLOWMONKEY_FLOWS"}
    env.update(
        FLOWMONKEY_HANDLERS="flowmonkey_celery.examples.orders",
        FLOWMONKEY_HOME=str(settings.home.resolve()),
        PYTHONPATH=os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH")])),
    )
    return env


@contextmanager
def _celery_processes(env: dict[str, str], log_dir: Path) -> Iterator[None]:
    """A worker and a beat (`flowmonkey worker` and `flowmonkey beat`: the same as
    `celery -A workers.app worker` and `celery -A beat.app beat`, without needing a source
    checkout), each in its own process group, stopped on the way out."""
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = {
        "worker": ["worker", "-c", "2", "-l", "warning", "--without-gossip", "--without-mingle"],
        "beat": ["beat", "-l", "warning", "-s", str(log_dir / "celerybeat-schedule")],
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, args in commands.items():
            log = (log_dir / f"{name}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flowmonkey_celery.cli", *args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def run_distributed(
    console: Console,
    settings: Settings,
    orders: list[tuple[str, dict[str, Any]]],
    printer_class: Callable[[Console, dict[str, str]], Callable[[HistoryEvent], None]],
) -> None:
    """Start worker and beat, run the orders through them, print each committed step."""
    from flowmonkey_celery.celery import FlowMonkeyCelery
    from flowmonkey_celery.celery.app import make_app

    env = _demo_env(settings)
    demo_settings = Settings.from_env(env)
    runtime = Runtime.from_settings(demo_settings, flows=[order_flow()])
    client = FlowMonkeyCelery(make_app(demo_settings, "flowmonkey-demo"), runtime)
    store = client.runtime.store
    console.rule("[bold]flowmonkey demo: order-fulfilment on a Celery worker and beat")
    console.print(
        f"Store: {store.database}. Broker: {client.app.conf.broker_url}.\n"
        f"Worker and beat logs: {settings.home / 'demo-logs'}. The pickup wait is 3 s here "
        "(a durable wake time in the database, woken by its countdown message or the beat's "
        "tick, whichever comes first).\n"
    )
    labels: dict[str, str] = {}
    printer = printer_class(console, labels)
    with _celery_processes(env, settings.home / "demo-logs"):
        started = time.monotonic()
        ids = []
        for description, order in orders:
            order = {**order, "pickup_wait": {"seconds": 3}}
            created = client.start("order-fulfilment", {"order": order}).execution
            labels[created.id] = order["id"]
            ids.append(created.id)
            console.print(f"[bold]{order['id']}[/]: {description} (started {created.id[:8]})")
        console.print()
        seen = {execution_id: 0 for execution_id in ids}
        resumed: set[str] = set()
        while time.monotonic() - started < DEADLINE_SECONDS:
            finished = 0
            for execution_id in ids:
                events = store.list_events(execution_id)
                for event in events[seen[execution_id] :]:
                    printer(event)
                seen[execution_id] = len(events)
                current = client.get(execution_id)
                assert current is not None
                if current.is_terminal:
                    finished += 1
                elif (
                    current.current_step_id == "manager-approval"
                    and current.status == "waiting"
                    and execution_id not in resumed
                ):
                    console.print(
                        f"  [dim]... a manager approves {labels[execution_id]} (resume)[/]"
                    )
                    client.resume(
                        execution_id, {"decision": "approved", "by": "manager@example.com"}
                    )
                    resumed.add(execution_id)
            if finished == len(ids):
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started

    table = Table(title=f"Executions ({elapsed:.1f} s wall time, worker and beat stopped)")
    for column in ("order", "status", "handler calls", "history events", "payment"):
        table.add_column(column)
    unfinished = 0
    for execution_id in ids:
        final = client.get(execution_id)
        assert final is not None
        unfinished += 0 if final.is_terminal else 1
        payment = final.context.get("payment", {}).get("charge_id", "-")
        table.add_row(
            labels[execution_id],
            final.status.value,
            str(final.step_count),
            str(len(store.list_events(execution_id))),
            payment,
        )
    console.print(table)
    if unfinished:
        error_console().print(
            f"Error: not every execution finished within {DEADLINE_SECONDS:.0f} s; see the logs "
            f"in {settings.home / 'demo-logs'}",
            markup=False,
        )
        raise typer.Exit(ExitCode.FAILED)
