"""`flowmonkey executions`: list executions (keyset paging) and show one with its timeline."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from flowmonkey_celery.cli.arguments import ExecutionArgument, JsonOutput
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.output import print_json
from flowmonkey_celery.cli.timeline import STATUS_COLOURS, summary_table, timeline_table
from flowmonkey_celery.cli.wiring import history_engine, load_settings, opened_store
from flowmonkey_celery.core.execution import ExecutionStatus

app = typer.Typer(help="Executions: list them, show one with its history.", no_args_is_help=True)


@app.command("list")
def list_executions(
    status: Annotated[
        ExecutionStatus | None,
        typer.Option("--status", case_sensitive=False, help="Only these.", show_default=False),
    ] = None,
    flow: Annotated[
        str | None, typer.Option("--flow", help="Only this flow's.", show_default=False)
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most N.")] = 50,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            help="Start after this execution id (the last of the previous page).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """List executions, oldest first, one page at a time.

    Pass the last id shown as --after for the next page.
    """
    with opened_store(load_settings()) as store:
        page = store.list_executions(
            status=status, flow_id=flow, tenant_id=tenant, limit=limit, after=after
        )
    next_after = page[-1].id if len(page) == limit else None
    if as_json:
        print_json(
            {
                "executions": [execution.model_dump(mode="json") for execution in page],
                "next_after": next_after,
            }
        )
        return
    console = make_console()
    if not page:
        console.print("No executions match." if after is None else "No more executions.")
        return
    with_tenant = any(execution.tenant_id for execution in page)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("flow", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("step", overflow="fold")
    table.add_column("calls", justify="right")
    if with_tenant:
        table.add_column("tenant", overflow="fold")
    table.add_column("created (UTC)", no_wrap=True)
    for execution in page:
        colour = STATUS_COLOURS.get(execution.status, "cyan")
        cells = [
            escape(execution.id),
            escape(execution.flow_id),
            f"[{colour}]{execution.status.value}[/]",
            escape(execution.current_step_id or "-"),
            str(execution.step_count),
            *([escape(execution.tenant_id or "")] if with_tenant else []),
            f"{execution.created_at:%F %T}",
        ]
        table.add_row(*cells)
    console.print(table)
    if next_after is not None:
        console.print(
            f"More: flowmonkey executions list --after {escape(next_after)}", highlight=False
        )


@app.command()
def show(
    execution_id: ExecutionArgument,
    as_json: JsonOutput = False,
) -> None:
    """Show an execution and its timeline.

    Each handler call with its attempt, duration, outcome and error; retries, waits, resumes,
    and how it ended.
    """
    with opened_store(load_settings()) as store:
        engine = history_engine(store)
        history = engine.history(execution_id)  # EXECUTION_NOT_FOUND for an unknown id
        execution = engine.get(execution_id)
    assert execution is not None
    if as_json:
        print_json(
            {
                "execution": execution.model_dump(mode="json"),
                "history": [event.model_dump(mode="json") for event in history],
            }
        )
        return
    console = make_console()
    console.print(summary_table(execution))
    console.print()
    console.print(timeline_table(execution, history))
