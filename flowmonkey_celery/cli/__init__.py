"""The `flowmonkey` command: parse, call the library, print.

One module per command or command group; this module only assembles them. A new group is a
`typer.Typer()` in its own module, added below with `app.add_typer(its_app, name="...")`.
Engine errors that a command lets through are reported by `FlowMonkeyGroup` (`CODE: message`
on stderr, exit 1); exit codes are `failures.ExitCode`.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from flowmonkey_celery.cli import control, db, events, executions, flows, keys, processes, triggers
from flowmonkey_celery.cli.api import api
from flowmonkey_celery.cli.demo import demo
from flowmonkey_celery.cli.failures import FlowMonkeyGroup
from flowmonkey_celery.cli.handlers import handlers
from flowmonkey_celery.cli.replay import replay
from flowmonkey_celery.cli.run import run

app = typer.Typer(
    cls=FlowMonkeyGroup,
    name="flowmonkey",
    help="FlowMonkey for Python on Celery: durable, declarative workflows.",
    epilog="Configuration: the FLOWMONKEY_* environment variables (README, Running on Celery). "
    "Exit codes: 0 ok, 1 failed, 2 usage error, 3 not finished (run).",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold database passwords
)


def _print_version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"flowmonkey, version {version('flowmonkey-celery')}")
        except PackageNotFoundError:
            typer.echo("flowmonkey, version unknown (not installed)")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
) -> None:
    """FlowMonkey for Python on Celery: durable, declarative workflows."""
    # Handler modules (FLOWMONKEY_HANDLERS) are imported from the current directory too, as
    # `celery -A` imports its app: a console script's sys.path has only its own folder.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


# Executions
app.command(rich_help_panel="Executions")(run)
app.command(rich_help_panel="Executions")(control.start)
app.command(rich_help_panel="Executions")(control.resume)
app.command(rich_help_panel="Executions")(control.cancel)
app.command(rich_help_panel="Executions")(replay)
app.add_typer(executions.app, name="executions", rich_help_panel="Executions")

# Flows and handlers
app.add_typer(flows.app, name="flows", rich_help_panel="Flows")
app.command(
    "validate",
    rich_help_panel="Flows",
    help="Validate flow files: the same as `flowmonkey flows validate`.",
)(flows.validate)
app.command(rich_help_panel="Flows")(handlers)

# Processes
app.command(
    context_settings=processes.PASS_THROUGH, add_help_option=False, rich_help_panel="Processes"
)(processes.worker)
app.command(
    context_settings=processes.PASS_THROUGH, add_help_option=False, rich_help_panel="Processes"
)(processes.beat)

# Triggers, events and the REST API
app.add_typer(triggers.app, name="triggers", rich_help_panel="Triggers and events")
app.add_typer(events.app, name="events", rich_help_panel="Triggers and events")
app.command(rich_help_panel="Processes")(api)
app.add_typer(keys.app, name="keys", rich_help_panel="Processes")

# Database
app.add_typer(db.app, name="db", rich_help_panel="Database")
app.command("purge", rich_help_panel="Database")(db.purge_older_than)

app.command(rich_help_panel="Demo")(demo)

#: The console script (`flowmonkey = "flowmonkey_celery.cli:main"`): a command object, callable
#: as `main()`, whose `.main(args=...)` test runners (click's or typer's) invoke.
main = typer.main.get_command(app)

__all__ = ["app", "main"]
