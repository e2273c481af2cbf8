"""`flowmonkey run`: start an execution and follow it, step by step, until it completes,
fails, is cancelled or waits; in this process, or through the workers (`--via-celery`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from kombu.utils.url import maybe_sanitize_url
from rich.console import Console
from rich.markup import escape

from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.cli.arguments import FlowArgument, JsonOutput, parse_json
from flowmonkey_celery.cli.failures import ExitCode, exit_code_for
from flowmonkey_celery.cli.follow import follow_here, follow_in_store
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.output import note, print_json, report_error
from flowmonkey_celery.cli.progress import LiveProgress
from flowmonkey_celery.cli.wiring import load_settings, opened_client, opened_runtime
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import Execution, ExecutionStatus, WaitKind
from flowmonkey_celery.core.tokens import IssuedResumeToken

ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context",
        "-c",
        help="The execution's initial context: a JSON object, or @file.json.",
        show_default=False,
    ),
]
TenantOption = Annotated[
    str | None, typer.Option("--tenant", help="Tenant id.", show_default=False)
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0,
        help="Seconds to follow the execution. Timed waits (a retry backoff, a delay) that "
        "fall due within it are waited out; after it the command returns, exit code 3 if the "
        "execution is not finished.",
    ),
]


class FollowView:
    """What the operator sees of a followed execution: progress lines (none with --json), the
    resume tokens issued on the way, and how it ended."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = make_console()
        self.progress = None if as_json else LiveProgress(self.console)
        self.tokens: list[IssuedResumeToken] = []
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        """A line of the progress view (not printed with --json)."""
        if not self.as_json:
            self.console.print(text, highlight=False)

    def on_event(self, event: HistoryEvent) -> None:
        if self.progress is not None:
            self.progress(event)

    def on_token(self, issued: IssuedResumeToken) -> None:
        self.tokens.append(issued)
        if self.progress is not None:
            self.progress.token_issued(issued)

    def on_sleep(self, wake: datetime) -> None:
        if self.progress is not None:
            self.progress.update(f"waiting until {wake:%H:%M:%S} UTC")

    @contextmanager
    def live(self) -> Iterator[None]:
        """The live status line while the execution moves; Ctrl-C stops following it."""
        try:
            if self.progress is None:
                yield
            else:
                with self.progress:
                    yield
        except KeyboardInterrupt:
            note("stopped following (interrupted); the execution is left as it is")
            raise typer.Exit(130) from None

    @contextmanager
    def watching(self, engine: Engine) -> Iterator[None]:
        """Subscribed to `engine`'s events and resume tokens (in-process runs)."""
        unsubscribe_events = engine.on("*", self.on_event)
        unsubscribe_tokens = engine.on_resume_token(self.on_token)
        try:
            yield
        finally:
            unsubscribe_events()
            unsubscribe_tokens()

    def finish(self, execution: Execution, *, via_workers: bool) -> None:
        """Print how it ended (or the JSON), and exit 0 (completed), 1 (failed, cancelled) or
        3 (not finished)."""
        code = exit_code_for(execution)
        if execution.error is not None and code is ExitCode.FAILED:
            report_error(execution.error.code, execution.error.message)
        elif execution.status is ExecutionStatus.CANCELLED and execution.cancellation:
            why = execution.cancellation
            note(f"execution {execution.id} was cancelled by {why.source}: {why.reason or '-'}")
        if self.as_json:
            print_json(
                {
                    "execution": execution.model_dump(mode="json"),
                    "resume_tokens": [token_dict(t) for t in self.tokens],
                }
            )
        else:
            _summary(self.console, execution, time.monotonic() - self.started, via_workers)
        raise typer.Exit(code)


def broker_name(client: FlowMonkeyCelery) -> str:
    """The client's broker URL, password hidden."""
    return str(maybe_sanitize_url(client.app.conf.broker_url))


def token_dict(issued: IssuedResumeToken) -> dict[str, Any]:
    return {
        "token": issued.token,
        "execution_id": issued.execution_id,
        "step_id": issued.step_id,
        "expires_at": issued.expires_at.isoformat() if issued.expires_at else None,
        "outcomes": issued.outcomes,
    }


def _summary(console: Console, execution: Execution, elapsed: float, via_workers: bool) -> None:
    ident = escape(execution.id)
    step = f"[bold]{escape(execution.current_step_id or '-')}[/]"
    took = f"{execution.step_count} handler calls, {elapsed:.1f} s"
    console.print()
    if execution.status is ExecutionStatus.COMPLETED:
        console.print(f"[green]✓ completed[/] {ident} ({took}); context:")
        console.print(json.dumps(execution.context, indent=2, ensure_ascii=False), markup=False)
    elif execution.is_terminal:
        console.print(f"[red]✗ {execution.status.value}[/] {ident} at step {step} ({took})")
    elif execution.status is ExecutionStatus.WAITING:
        what, hint = _wait(execution)
        console.print(f"[yellow]… waiting[/] {ident} at step {step} ({took}) {what}")
        console.print(f"  {hint}", highlight=False)
    else:
        hint = (
            "Is a `flowmonkey worker` running on the same settings? "
            if via_workers and execution.status is ExecutionStatus.PENDING
            else ""
        )
        console.print(
            f"[yellow]… still {execution.status.value}[/] {ident} at step {step} when --timeout "
            f"ran out ({took}). {hint}`flowmonkey executions show {ident}` shows where it is."
        )


def _wait(execution: Execution) -> tuple[str, str]:
    """What a waiting execution waits for, and what the operator can do about it."""
    ident = escape(execution.id)
    reason = escape(execution.wait_reason or "")
    if execution.wait_kind in (WaitKind.TIMER, WaitKind.RETRY) and execution.wake_at:
        return (
            f"until {execution.wake_at:%F %T} UTC (past --timeout): {reason}",
            f"a `flowmonkey beat` wakes it then; `flowmonkey resume {ident} --in-process` ends "
            "a delay early and carries on here",
        )
    if execution.wait_kind in (WaitKind.CHILDREN, WaitKind.JOB):
        return f"for its {execution.wait_kind.value}: {reason}", "the workers move it on"
    return (
        f"for a signal: {reason}",
        f"resume it: flowmonkey resume {ident} --data '{{...}}' (--in-process to carry on "
        "here), or flowmonkey resume --token TOKEN",
    )


def follow_here_and_finish(
    view: FollowView,
    engine: Engine,
    start: Callable[[], Execution],
    timeout: float,
) -> None:
    """Subscribe, call `start` (create or resume, in this process), then run the execution
    here and report how it ended."""
    with view.watching(engine), view.live():
        execution = start()
        execution = follow_here(
            engine,
            execution.id,
            until=engine.clock.now() + timedelta(seconds=timeout),
            on_sleep=view.on_sleep,
        )
    view.finish(execution, via_workers=False)


def run(
    flow: FlowArgument,
    context: ContextOption = None,
    tenant: TenantOption = None,
    timeout: TimeoutOption = 60.0,
    via_celery: Annotated[
        bool,
        typer.Option(
            "--via-celery",
            help="Enqueue it for the workers (FLOWMONKEY_BROKER_URL, else the embedded broker) "
            "and follow it through the store, instead of running it in this process.",
        ),
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Start an execution of FLOW and follow it, step by step, until it ends or waits.

    Exit code 0 if it completes, 1 if it fails or is cancelled, 3 if it waits for a signal
    or a timer past --timeout (or is still going then). By default the engine runs it in
    this process, on the configured store (FLOWMONKEY_*; the embedded SQLite default needs
    no server); --via-celery hands it to the workers and follows it through the store.
    """
    data = parse_json(context, "'--context'")
    settings = load_settings()
    view = FollowView(as_json)
    if not via_celery:
        with opened_runtime(settings) as runtime:
            engine = runtime.engine

            def create() -> Execution:
                execution = engine.create(flow, data, tenant_id=tenant).execution
                view.say(
                    f"Running [bold]{escape(execution.flow_id)}[/] {escape(execution.flow_version)}"
                    f" as {escape(execution.id)} in this process (store: "
                    f"{escape(runtime.store.database)})"
                )
                return execution

            follow_here_and_finish(view, engine, create, timeout)
        return
    with opened_client(settings) as client:
        execution = client.start(flow, data, tenant_id=tenant).execution
        view.say(
            f"Started [bold]{escape(execution.flow_id)}[/] {escape(execution.flow_version)} as "
            f"{escape(execution.id)} on {escape(broker_name(client))}; following it "
            "as the workers run it"
        )
        with view.live():
            execution = follow_in_store(
                client.runtime.store,
                execution.id,
                clock=client.runtime.clock,
                until=client.runtime.clock.now() + timedelta(seconds=timeout),
                on_event=view.on_event,
            )
    view.finish(execution, via_workers=True)
