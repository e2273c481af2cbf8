"""`flowmonkey demo`: the example order flows, run in-process with per-step progress."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flowmonkey_celery.cli.demo_distributed import run_distributed
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.progress import ProgressPrinter
from flowmonkey_celery.cli.wiring import load_settings
from flowmonkey_celery.core.clock import ManualClock
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.examples.orders import HANDLERS, order_flow
from flowmonkey_celery.runtime import build_store
from flowmonkey_celery.settings import Settings
from flowmonkey_celery.stores.sql import SqlStore

ORDERS: list[tuple[str, dict[str, Any]]] = [
    (
        "small order, card network fails once",
        {
            "id": "A-1001",
            "country": "NL",
            "card": "flaky",
            "customer": {"email": "ana@example.com"},
            "items": [{"sku": "mug", "price": 12, "qty": 2}],
        },
    ),
    (
        "large order, needs a manager",
        {
            "id": "A-1002",
            "country": "DE",
            "card": "visa",
            "customer": {"email": "ben@example.com"},
            "items": [{"sku": "sofa", "price": 1500}],
        },
    ),
    (
        "order without items",
        {
            "id": "A-1003",
            "country": "FR",
            "card": "visa",
            "customer": {"email": "chloe@example.com"},
            "items": [],
        },
    ),
]


def run_in_process(console: Console, settings: Settings) -> None:
    """The example orders on an in-process engine with a simulated clock."""
    store = build_store(settings)
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    handlers = HandlerRegistry(HANDLERS)
    flows = FlowRegistry([order_flow()])
    engine = Engine(store, handlers, flows, clock=clock)
    labels: dict[str, str] = {}
    engine.on("*", ProgressPrinter(console, labels))
    run = uuid.uuid4().hex[:6]  # keeps this run's idempotency keys apart from earlier runs'

    console.rule("[bold]flowmonkey demo: order-fulfilment")
    where = "embedded default" if settings.embedded else "FLOWMONKEY_DATABASE_URL"
    console.print(
        f"Store: {store.database} ({where}). Waits (a retry backoff, a 20 h pickup delay) are "
        "durable wake times; a simulated clock skips them, so nothing sleeps.\n"
    )
    finished: list[tuple[str, Execution]] = []
    for description, order in ORDERS:
        console.print(f"[bold]{order['id']}[/]: {description}")
        created = engine.create(
            "order-fulfilment",
            {"order": order},
            idempotency_key=f"order-{order['id']}-{run}",
            idempotency_ttl=timedelta(days=7),
        )
        labels[created.execution.id] = order["id"]
        execution = engine.run(created.execution.id, simulate_time=True)
        if execution.status == "waiting":
            console.print(f"  [dim]... a manager approves {order['id']} (engine.resume)[/]")
            engine.resume(execution.id, {"decision": "approved", "by": "manager@example.com"})
            execution = engine.run(execution.id, simulate_time=True)
        finished.append((order["id"], execution))
        console.print()

    console.print("[bold]A-1001 again[/]: the webhook fires twice")
    again = engine.create(
        "order-fulfilment", {"order": ORDERS[0][1]}, idempotency_key=f"order-A-1001-{run}"
    )
    console.print(
        f"  created={again.created}, same execution: {again.execution.id == finished[0][1].id}\n"
    )

    # A fresh store on the same database: what a restarted process would see.
    reopened = SqlStore(settings.resolved_database_url())
    table = Table(title=f"Executions, read back from {reopened.database}")
    for column in (
        "order",
        "status",
        "handler calls",
        "history events",
        "payment",
        "email subject",
    ):
        table.add_column(column)
    for order_id, execution in finished:
        stored = reopened.get_execution(execution.id)
        assert stored is not None
        payment = stored.context.get("payment", {}).get("charge_id", "-")
        subject = stored.context.get("notification", {}).get("subject", "-")
        events = len(reopened.list_events(stored.id))
        table.add_row(
            order_id, stored.status.value, str(stored.step_count), str(events), payment, subject
        )
    console.print(table)
    reopened.dispose()
    store.dispose()


def demo(
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process",
            help="Run on an in-process engine with a simulated clock instead of a Celery "
            "worker and beat.",
        ),
    ] = False,
) -> None:
    """Run the example order flows and show every step as it commits.

    By default a real `celery worker` and `celery beat` are started on the embedded default
    (SQLite store and broker under FLOWMONKEY_HOME, no servers), or on FLOWMONKEY_DATABASE_URL /
    FLOWMONKEY_BROKER_URL when set.
    """
    console = make_console()
    settings = load_settings()
    if in_process:
        run_in_process(console, settings)
    else:
        run_distributed(console, settings, ORDERS, ProgressPrinter)
