"""`flowmonkey triggers`: list triggers, show one (with stats and recent fires), fire one."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from flowmonkey_celery.cli.arguments import JsonOutput, parse_json
from flowmonkey_celery.cli.failures import fail
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.output import note, print_json
from flowmonkey_celery.cli.wiring import load_settings, opened_client, opened_runtime
from flowmonkey_celery.core.ports import AnyTrigger
from flowmonkey_celery.core.triggers import (
    EventTrigger,
    HttpTrigger,
    ScheduleTrigger,
    without_secrets,
)
from flowmonkey_celery.errors import ErrorCode
from flowmonkey_celery.triggers.manual import fire_now

app = typer.Typer(help="Triggers: schedules, webhooks, event rules.", no_args_is_help=True)
TriggerArgument = Annotated[str, typer.Argument(metavar="ID", help="The trigger's id.")]


def _what(trigger: AnyTrigger) -> str:
    if isinstance(trigger, ScheduleTrigger):
        return f"{trigger.schedule} ({trigger.timezone})"
    if isinstance(trigger, HttpTrigger):
        return f"POST /webhooks/{trigger.id} (auth {trigger.auth.type})"
    assert isinstance(trigger, EventTrigger)
    return f"event {trigger.event_type}" + (" if conditions hold" if trigger.conditions else "")


@app.command("list")
def list_triggers(
    trigger_type: Annotated[
        str | None,
        typer.Option("--type", help="Only schedule, http or event triggers.", show_default=False),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Every trigger, by id."""
    # The runtime, not just the store: triggers declared in FLOWMONKEY_FLOWS files are saved.
    with opened_runtime(load_settings()) as runtime:
        found = runtime.store.list_triggers(trigger_type=trigger_type)
    if as_json:
        print_json([without_secrets(t) for t in found])
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("id", "type", "flow", "enabled", "fires on"):
        table.add_column(column)
    for trigger in found:
        table.add_row(
            trigger.id,
            trigger.type,
            trigger.flow_id,
            "yes" if trigger.enabled else "no",
            _what(trigger),
        )
    make_console().print(table)


@app.command("show")
def show(
    trigger_id: TriggerArgument,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Recent fires.")] = 10,
    as_json: JsonOutput = False,
) -> None:
    """One trigger, its stats and its latest fires."""
    with opened_runtime(load_settings()) as runtime:
        store = runtime.store
        trigger = store.get_trigger(trigger_id)
        if trigger is None:
            raise fail(ErrorCode.TRIGGER_NOT_FOUND, f"no trigger {trigger_id!r}")
        stats = store.trigger_stats(trigger_id)
        fires = store.list_trigger_fires(trigger_id, limit=limit)
    if as_json:
        print_json(
            {
                "trigger": without_secrets(trigger),
                "stats": stats.model_dump(mode="json"),
                "fires": [f.model_dump(mode="json") for f in fires],
            }
        )
        return
    console = make_console()
    console.print(
        f"[bold]{escape(trigger.id)}[/] ({trigger.type}) starts {escape(trigger.flow_id)}: "
        f"{escape(_what(trigger))}"
    )
    latency = f", mean {stats.mean_latency_ms:.1f} ms" if stats.mean_latency_ms is not None else ""
    console.print(
        f"{stats.fires} fires: {stats.accepted} accepted, {stats.duplicate} duplicate, "
        f"{stats.rejected} rejected, {stats.failed} failed{latency}"
    )
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("at", "status", "latency ms", "execution", "error"):
        table.add_column(column)
    for fire in fires:
        error = f"{fire.error.get('code')}: {fire.error.get('message')}" if fire.error else ""
        latency_ms = f"{fire.latency_ms:.1f}" if fire.latency_ms is not None else ""
        table.add_row(
            fire.at.isoformat(timespec="seconds"),
            fire.status,
            latency_ms,
            fire.execution_id or "",
            error,
        )
    console.print(table)


@app.command("fire")
def fire(
    trigger_id: TriggerArgument,
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload", help="What it receives: JSON (or @file.json).", show_default=False
        ),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Start the trigger's flow now, as if it fired with PAYLOAD (no signature or condition is
    checked), and enqueue it for the workers."""
    data = parse_json(payload, "'--payload'")
    with opened_client(load_settings()) as client:
        store = client.runtime.store
        trigger = store.get_trigger(trigger_id)
        if trigger is None:
            raise fail(ErrorCode.TRIGGER_NOT_FOUND, f"no trigger {trigger_id!r}")
        created = fire_now(client.runtime.engine, store, trigger, data)
        client.dispatch(created.execution)
    if as_json:
        print_json({"execution_id": created.execution.id, "trigger_id": trigger_id})
    else:
        typer.echo(created.execution.id)
        note(f"trigger {trigger_id!r} fired: execution {created.execution.id} enqueued")
