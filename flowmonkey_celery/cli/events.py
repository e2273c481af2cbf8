"""`flowmonkey events`: emit an event, list stored ones."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from flowmonkey_celery.cli.arguments import JsonOutput, parse_json
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.output import note, print_json
from flowmonkey_celery.cli.wiring import load_settings, opened_client, opened_store

app = typer.Typer(help="Events: emit one, list them.", no_args_is_help=True)


@app.command("emit")
def emit(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="e.g. order.paid")],
    payload: Annotated[
        str | None, typer.Option("--payload", help="JSON (or @file.json).", show_default=False)
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Dedupe key: the same key again stores nothing.", show_default=False
        ),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="The event's tenant.", show_default=False)
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Store an event, start the executions of the event triggers it matches and resume the
    flows waiting for it (enqueued for the workers)."""
    data = parse_json(payload, "'--payload'")
    with opened_client(load_settings()) as client:
        result = client.emit(event_type, data, key, tenant_id=tenant, source="cli")
    if as_json:
        print_json(
            {
                "event_id": result.event.id,
                "created": result.created,
                "started": result.started,
                "resumed": result.resumed,
            }
        )
        return
    typer.echo(result.event.id)
    if not result.created:
        note(f"an event with key {key!r} was stored before: nothing new started")
    else:
        for execution_id in result.started:
            note(f"started {execution_id}")
        for execution_id in result.resumed:
            note(f"resumed {execution_id}")
        if not result.started and not result.resumed:
            note("no trigger matched and no flow was waiting for it")


@app.command("list")
def list_events(
    event_type: Annotated[
        str | None, typer.Option("--type", help="Only this type.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most N.")] = 50,
    after: Annotated[
        str | None, typer.Option("--after", help="After this event id.", show_default=False)
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Stored events, oldest first."""
    with opened_store(load_settings()) as store, store.transaction() as tx:
        found = tx.list_events(event_type=event_type, after=after, limit=limit)
    if as_json:
        print_json([e.model_dump(mode="json") for e in found])
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("id", "type", "key", "tenant", "at", "dispatched"):
        table.add_column(column)
    for event in found:
        table.add_row(
            event.id,
            event.type,
            event.key or "",
            event.tenant_id or "",
            event.created_at.isoformat(timespec="seconds"),
            "yes" if event.dispatched_at else "no",
        )
    make_console().print(table)
