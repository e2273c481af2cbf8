"""`flowmonkey demo [NAME]`: the examples, with per-step progress. `orders` (the default) runs
on a real Celery worker and beat, or in-process; the others run in this process on the
configured store (`flowmonkey_celery.examples.catalogue`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowmonkey_celery.cli.demo_distributed import run_distributed
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.progress import ProgressPrinter
from flowmonkey_celery.cli.wiring import load_settings
from flowmonkey_celery.core.clock import ManualClock
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.examples.catalogue import EXAMPLES
from flowmonkey_celery.examples.demo_run import DemoRun, Summary
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


ORDERS_EXAMPLE = "orders"
ORDERS_DESCRIPTION = (
    "order processing: a retry, a manager's approval, a durable timer, on a Celery worker and "
    "beat (--in-process: on a simulated clock)"
)
DECISIONS = ("approve", "reject")


def example_names() -> list[str]:
    return [ORDERS_EXAMPLE, *EXAMPLES]


class ConsolePresenter:
    """Prints what an example reports: headings, narration, and (ProgressPrinter) one line
    per committed step of every engine it is asked to watch."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.labels: dict[str, str] = {}

    def heading(self, text: str) -> None:
        self.console.print(f"[bold]{escape(text)}[/]")

    def say(self, text: str) -> None:
        self.console.print(text, markup=False)

    def label(self, execution_id: str, name: str) -> None:
        self.labels[execution_id] = name

    def watch(self, engine: Engine) -> None:
        engine.on("*", ProgressPrinter(self.console, self.labels))


def print_summary(console: Console, summary: Summary) -> None:
    table = Table(title=summary.title)
    for column in summary.columns:
        table.add_column(column)
    for row in summary.rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
    for note in summary.notes:
        console.print(note, markup=False)


def run_example(console: Console, settings: Settings, name: str, options: dict[str, Any]) -> None:
    """Run one of the in-process examples on the configured store and show its summary."""
    example = EXAMPLES[name]
    console.rule(f"[bold]flowmonkey demo {name}[/]: {escape(example.description)}")
    store = build_store(settings)
    try:
        summary = example.run(
            DemoRun(
                store=store,
                home=settings.home,
                embedded=settings.embedded,
                presenter=ConsolePresenter(console),
                options=options,
            )
        )
        print_summary(console, summary)
    finally:
        store.dispose()


def list_examples(console: Console) -> None:
    descriptions = {ORDERS_EXAMPLE: ORDERS_DESCRIPTION} | {
        name: example.description for name, example in EXAMPLES.items()
    }
    width = max(map(len, descriptions))
    for name, description in descriptions.items():
        console.print(f"{name:{width}}  {description}", markup=False)
    console.print("Run one with: flowmonkey demo NAME (./dev demo NAME)", markup=False)


def demo(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME",
            help="The example to run (default: orders); --list shows them all.",
            show_default=False,
        ),
    ] = None,
    list_names: Annotated[
        bool, typer.Option("--list", help="List the examples, with a line on each, and exit.")
    ] = False,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process",
            help="orders: run on an in-process engine with a simulated clock instead of a "
            "Celery worker and beat (the other examples always run in this process).",
        ),
    ] = False,
    decide: Annotated[
        str | None,
        typer.Option(
            "--decide",
            metavar="approve|reject",
            help="approval: decide the waiting expense here and carry it on, instead of "
            "leaving it for you to resume.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run an example and show every step as it commits: orders, approval, leads,
    daily-report or fanout (`--list` says what each does).

    `orders` (the default) starts a real `celery worker` and `celery beat` on the embedded
    default (SQLite store and broker under FLOWMONKEY_HOME, no servers), or on
    FLOWMONKEY_DATABASE_URL / FLOWMONKEY_BROKER_URL when set. The others run in this
    process, their executions stored in the same place.
    """
    console = make_console()
    if list_names:
        list_examples(console)
        return
    chosen = name or ORDERS_EXAMPLE
    if chosen not in example_names():
        raise typer.BadParameter(
            f"there is no example {chosen!r}; choose one of: {', '.join(example_names())}",
            param_hint="NAME",
        )
    if decide is not None and (chosen != "approval" or decide not in DECISIONS):
        raise typer.BadParameter(
            f"{decide!r} is not a decision; use approve or reject"
            if chosen == "approval"
            else f"only the approval example takes a decision, not {chosen!r}",
            param_hint="'--decide'",
        )
    settings = load_settings()
    if chosen != ORDERS_EXAMPLE:
        run_example(console, settings, chosen, {"decide": decide})
    elif in_process:
        run_in_process(console, settings)
    else:
        run_distributed(console, settings, ORDERS, ProgressPrinter)
