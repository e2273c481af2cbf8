"""`flowmonkey start`, `resume` and `cancel`: commit the change, then enqueue what it made
runnable for the workers (FLOWMONKEY_BROKER_URL, else the embedded broker)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from kombu.exceptions import KombuError
from rich.markup import escape

from flowmonkey_celery.cli.arguments import (
    ExecutionArgument,
    FlowArgument,
    JsonOutput,
    parse_json,
)
from flowmonkey_celery.cli.failures import fail
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.output import note, print_json
from flowmonkey_celery.cli.run import (
    ContextOption,
    FollowView,
    TenantOption,
    TimeoutOption,
    broker_name,
    follow_here_and_finish,
)
from flowmonkey_celery.cli.wiring import load_settings, opened_client, opened_runtime
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.errors import ErrorCode


def start(
    flow: FlowArgument,
    context: ContextOption = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Start at most one execution per key (per tenant and flow, for 24 h); a "
            "repeat prints the first one's id.",
            show_default=False,
        ),
    ] = None,
    tenant: TenantOption = None,
    as_json: JsonOutput = False,
) -> None:
    """Create an execution of FLOW, enqueue it for the workers, print its id.

    The first step goes to FLOWMONKEY_BROKER_URL (else the embedded broker under
    FLOWMONKEY_HOME), where a `flowmonkey worker` on the same settings picks it up. The
    execution is committed first: if the broker cannot be reached, it still exists and a
    `flowmonkey beat` sends it on once its lease runs out. `flowmonkey run` runs a flow in
    this process instead.
    """
    data = parse_json(context, "'--context'")
    with opened_client(load_settings()) as client:
        result = client.runtime.engine.create(
            flow, data, tenant_id=tenant, idempotency_key=idempotency_key
        )
        execution = result.execution
        enqueued = False
        if result.created:
            try:
                client.dispatch(execution)
                enqueued = True
            except (OSError, KombuError) as exc:
                note(
                    f"execution {execution.id} is created, but its first step could not be "
                    f"enqueued ({exc}); a `flowmonkey beat` sends it once its lease runs out"
                )
        broker = broker_name(client)
    if as_json:
        print_json(
            {
                "execution_id": execution.id,
                "created": result.created,
                "idempotency_hit": result.idempotency_hit,
                "status": execution.status.value,
                "enqueued": enqueued,
            }
        )
        return
    typer.echo(execution.id)
    if result.idempotency_hit:
        note(
            f"idempotency key {idempotency_key!r} was used already: this is that execution "
            f"({execution.status.value}); nothing new was started"
        )
    elif enqueued:
        note(f"enqueued on {broker}: a `flowmonkey worker` with the same settings runs it")


def _resume_here(
    engine: Engine, execution_id: str | None, token: str | None, data: Any, outcome: str | None
) -> Execution:
    if token is not None:
        return engine.resume_with_token(token, data, outcome=outcome)
    assert execution_id is not None
    return engine.resume(execution_id, data)


def resume(
    execution_id: Annotated[
        str | None,
        typer.Argument(
            metavar="ID", help="The waiting execution's id (or give --token).", show_default=False
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="A resume token (fmrt_...) a step issued, instead of an id.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="JSON (or @file.json) stored at the waiting step's output_key, else merged "
            "into the context.",
            show_default=False,
        ),
    ] = None,
    outcome: Annotated[
        str | None,
        typer.Option(
            "--outcome",
            help="With --token: the outcome to report, one the token allows (e.g. approved).",
            show_default=False,
        ),
    ] = None,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process",
            help="Carry on in this process and follow it as `flowmonkey run` does (same exit "
            "codes), instead of enqueueing it for the workers.",
        ),
    ] = False,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOutput = False,
) -> None:
    """Resume a waiting execution, by id or with a resume token.

    `flowmonkey resume ID` or `flowmonkey resume --token TOKEN` (the fmrt_... string the
    step issued). It moves on at once: enqueued for the workers, or run here with
    --in-process (then exit codes as for `run`).
    """
    if (execution_id is None) == (token is None):
        raise typer.BadParameter(
            "give the execution's id, or --token (one of the two)", param_hint="ID / '--token'"
        )
    if outcome is not None and token is None:
        raise typer.BadParameter(
            "an outcome is reported with a resume token; add --token", param_hint="'--outcome'"
        )
    payload = parse_json(data, "'--data'")
    settings = load_settings()
    if in_process:
        view = FollowView(as_json)
        with opened_runtime(settings) as runtime:

            def resume_now() -> Execution:
                which = escape(execution_id) if execution_id else "the execution of this token"
                view.say(f"Resuming {which} in this process")
                return _resume_here(runtime.engine, execution_id, token, payload, outcome)

            follow_here_and_finish(view, runtime.engine, resume_now, timeout)
        return
    with opened_client(settings) as client:
        # The Celery runtime enqueues whatever the engine's resume made runnable.
        execution = _resume_here(client.runtime.engine, execution_id, token, payload, outcome)
    if as_json:
        print_json(execution.model_dump(mode="json"))
        return
    make_console().print(
        f"resumed {escape(execution.id)}: {execution.status.value} at step "
        f"[bold]{escape(execution.current_step_id or '-')}[/]; a `flowmonkey worker` carries "
        "it on"
    )


def cancel(
    execution_id: ExecutionArgument,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why, recorded with the cancellation.", show_default=False),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Cancel a pending, running or waiting execution, and its children.

    Exit 1 if it has finished already. A step already running finishes, but its result is
    not applied.
    """
    with opened_client(load_settings()) as client:
        result = client.cancel(execution_id, source="user", reason=reason)
    if not result.cancelled:
        raise fail(ErrorCode.INVALID_TRANSITION, result.error or "not cancelled")
    if as_json:
        print_json({"execution_id": execution_id, **result.model_dump(mode="json")})
        return
    was = result.previous_status.value if result.previous_status else "?"
    children = (
        f"; children cancelled: {', '.join(result.children_cancelled)}"
        if result.children_cancelled
        else ""
    )
    make_console().print(f"cancelled {escape(execution_id)} (it was {was}){children}")
