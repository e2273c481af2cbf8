"""`flowmonkey demo`: the example order flows, run in-process with per-step progress."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from flowmonkey_celery.cli.demo_distributed import run_distributed
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.core.clock import ManualClock
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.events import EventType, HistoryEvent
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


class ProgressPrinter:
    """Prints one line per committed step event."""

    SHOWN = {
        EventType.STEP_COMPLETED,
        EventType.STEP_RETRY,
        EventType.EXECUTION_WAITING,
        EventType.EXECUTION_RESUMED,
        EventType.EXECUTION_COMPLETED,
        EventType.EXECUTION_FAILED,
        EventType.EXECUTION_CANCELLED,
        EventType.IDEMPOTENCY_HIT,
    }

    def __init__(self, console: Console, labels: dict[str, str]) -> None:
        self.console = console
        self.labels = labels

    def __call__(self, event: HistoryEvent) -> None:
        if event.type not in self.SHOWN:
            return
        when = event.at.strftime("%a %H:%M:%S")
        who = self.labels.get(event.execution_id, event.execution_id[:8])
        self.console.print(
            f"  [dim]{when}[/]  [cyan]{who:7}[/] {self._describe(event)}", highlight=False
        )

    @staticmethod
    def _describe(event: HistoryEvent) -> str:
        step = f"[bold]{event.step_id}[/]"
        if event.type is EventType.STEP_COMPLETED:
            colour = {"success": "green", "failure": "red", "wait": "yellow"}.get(
                event.outcome or "", "white"
            )
            error = f" ({event.error.code}: {event.error.message})" if event.error else ""
            return (
                f"{step} [{colour}]{event.outcome}[/] in {event.duration_ms:.2f} ms, "
                f"attempt {event.attempt}{error}"
            )
        if event.type is EventType.STEP_RETRY:
            at = event.data["wake_at"][11:19]
            return f"{step} [yellow]retry {event.attempt}[/] scheduled for {at}"
        if event.type is EventType.EXECUTION_WAITING:
            wake = event.data.get("wake_at")
            until = f"until {wake[:19].replace('T', ' ')}" if wake else "for a signal (resume)"
            return f"{step} [yellow]waiting {until}[/]: {event.data.get('reason')}"
        if event.type is EventType.EXECUTION_RESUMED:
            return f"{step} resumed by {event.data.get('trigger')}"
        if event.type is EventType.IDEMPOTENCY_HIT:
            key = event.data.get("idempotency_key")
            return f"[magenta]idempotency hit[/] for key {key!r}: no new execution"
        colour = {EventType.EXECUTION_COMPLETED: "green", EventType.EXECUTION_FAILED: "red"}.get(
            event.type, "yellow"
        )
        return f"[{colour}]{event.type.value}[/]"


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


@click.command()
@click.option(
    "--in-process",
    is_flag=True,
    help="Run on an in-process engine with a simulated clock instead of a Celery worker and beat.",
)
def demo(in_process: bool) -> None:
    """Run the example order flows and show every step as it commits.

    By default a real `celery worker` and `celery beat` are started on the embedded default
    (SQLite store and broker under FLOWMONKEY_HOME, no servers), or on FLOWMONKEY_DATABASE_URL /
    FLOWMONKEY_BROKER_URL when set.
    """
    console = make_console()
    settings = Settings.from_env()
    if in_process:
        run_in_process(console, settings)
    else:
        run_distributed(console, settings, ORDERS, ProgressPrinter)
