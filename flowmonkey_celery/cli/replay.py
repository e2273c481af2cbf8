"""`flowmonkey replay`: run an execution again from one of its steps, or every failed one."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flowmonkey_celery.cli.arguments import JsonOutput, parse_json
from flowmonkey_celery.cli.failures import fail
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.output import note, print_json
from flowmonkey_celery.cli.run import TenantOption
from flowmonkey_celery.cli.wiring import load_settings, opened_client
from flowmonkey_celery.core.replay import ReplayOutcome
from flowmonkey_celery.errors import ErrorCode


def replay(
    execution_id: Annotated[
        str | None,
        typer.Argument(
            metavar="ID",
            help="The execution to replay (or give --failed).",
            show_default=False,
        ),
    ] = None,
    from_step: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="The step to start from. With --failed, the default is the step each "
            "execution failed at.",
            show_default=False,
        ),
    ] = None,
    patch: Annotated[
        str | None,
        typer.Option(
            "--patch",
            "-p",
            help="A JSON merge patch (or @file.json) for the context the step had: keys "
            "replace, null removes.",
            show_default=False,
        ),
    ] = None,
    failed: Annotated[
        bool,
        typer.Option("--failed", help="Replay failed executions selected by the filters."),
    ] = False,
    flow: Annotated[
        str | None, typer.Option("--flow", help="With --failed: only this flow's.")
    ] = None,
    tenant: TenantOption = None,
    error_code: Annotated[
        str | None,
        typer.Option("--error-code", help="With --failed: only failures with this code."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="With --failed: at most this many.")
    ] = 100,
    include_replays: Annotated[
        bool,
        typer.Option(
            "--include-replays",
            help="With --failed: select failed replays too (by default only their originals).",
        ),
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Start a new execution from a step of an old one, with the context it had there.

    `flowmonkey replay ID --from STEP [--patch JSON]` copies the context the execution had
    just before it last ran STEP, applies the patch, and enqueues a new execution of the same
    flow version at STEP (linked by its metadata: replay_of, replay_from_step). The original
    is not changed. `flowmonkey replay --failed [--flow F] [--error-code C]` does that for
    every failed execution selected, each from the step it failed at; running the same bulk
    replay again starts nothing new.
    """
    if failed == (execution_id is not None):
        raise typer.BadParameter(
            "give an execution's id, or --failed (one of the two)", param_hint="ID / '--failed'"
        )
    if execution_id is not None and from_step is None:
        raise typer.BadParameter("name the step to replay from", param_hint="'--from'")
    if not failed and (flow or tenant or error_code):
        raise typer.BadParameter(
            "--flow, --tenant and --error-code select executions for --failed",
            param_hint="'--failed'",
        )
    context_patch = parse_json(patch, "'--patch'")
    if context_patch is not None and not isinstance(context_patch, dict):
        raise typer.BadParameter("the patch must be a JSON object", param_hint="'--patch'")
    with opened_client(load_settings()) as client:
        engine = client.runtime.engine
        if execution_id is not None:
            assert from_step is not None
            result = engine.replay(execution_id, from_step, context_patch)
            new = result.execution
            if as_json:
                print_json({"execution": new.model_dump(mode="json"), "created": result.created})
                return
            typer.echo(new.id)
            note(
                f"replay of {execution_id} from step {from_step!r}: enqueued; a `flowmonkey "
                "worker` with the same settings runs it"
            )
            return
        bulk = engine.replay_failed(
            flow_id=flow,
            tenant_id=tenant,
            error_code=error_code,
            from_step=from_step,
            context_patch=context_patch,
            limit=limit,
            include_replays=include_replays,
        )
    if as_json:
        print_json(
            {
                "replayed": bulk.replayed,
                "outcomes": [o.model_dump(mode="json") for o in bulk.outcomes],
            }
        )
    else:
        _print_outcomes(bulk.outcomes)
    if any(outcome.error is not None for outcome in bulk.outcomes):
        raise fail(ErrorCode.INVALID_ARGUMENT, "some executions could not be replayed (above)")


def _print_outcomes(outcomes: list[ReplayOutcome]) -> None:
    console = make_console()
    if not outcomes:
        console.print("no failed execution matches: nothing replayed")
        return
    table = Table("failed execution", "from step", "replay", "")
    for outcome in outcomes:
        if outcome.error is not None:
            result = f"[red]{escape(outcome.error.code)}[/]: {escape(outcome.error.message)}"
        elif outcome.created:
            result = "started"
        else:
            result = "replayed before (not again)"
        table.add_row(
            escape(outcome.original_id),
            escape(outcome.from_step or "-"),
            escape(outcome.execution_id or "-"),
            result,
        )
    console.print(table)
    started = sum(1 for o in outcomes if o.created)
    console.print(f"{started} replay(s) started; a `flowmonkey worker` runs them")
