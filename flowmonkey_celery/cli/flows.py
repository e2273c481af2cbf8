"""`flowmonkey flows`: check flow files (`validate`, also `flowmonkey validate`), save them to
the store for the workers (`register`), and list the stored versions (`list`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowmonkey_celery.celery.task_steps import CELERY_TASK_TYPE
from flowmonkey_celery.cli.arguments import JsonOutput
from flowmonkey_celery.cli.failures import ExitCode
from flowmonkey_celery.cli.handlers import deployment_handlers
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.output import print_json
from flowmonkey_celery.cli.wiring import load_settings, opened_store, save_flows
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.flow_files import FLOW_FILE_SUFFIXES, load_flow_file
from flowmonkey_celery.core.registries import HandlerRegistry
from flowmonkey_celery.errors import FlowValidationError

app = typer.Typer(
    help="Flow definitions: validate files, register them for the workers, list them.",
    no_args_is_help=True,
)

PathsArgument = Annotated[
    list[Path],
    typer.Argument(
        metavar="PATH",
        exists=True,
        help="Flow files (.yaml, .yml, .json) or folders of them.",
        show_default=False,
    ),
]


@dataclass
class CheckedFile:
    """One flow file: the flow it defines, or every problem found in it."""

    path: Path
    flow: Flow | None = None
    issues: list[tuple[str, str]] = field(default_factory=list)
    saved: bool | None = None  # register: newly stored (True) or stored already (False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "file": str(self.path),
            "valid": not self.issues,
            "flow_id": self.flow.id if self.flow else None,
            "version": self.flow.version if self.flow else None,
            "steps": len(self.flow.steps) if self.flow else None,
            "issues": [{"path": where, "message": message} for where, message in self.issues],
        }
        if self.saved is not None:
            data["saved"] = self.saved
        return data


def flow_files(paths: list[Path]) -> list[Path]:
    """The flow files named, folders expanded (their flow files, sorted by name).

    Raises:
        typer.BadParameter: none of them is a flow file (a usage error).
    """
    files = [
        file
        for path in paths
        for file in (sorted(path.iterdir()) if path.is_dir() else [path])
        if file.suffix.lower() in FLOW_FILE_SUFFIXES
    ]
    if not files:
        raise typer.BadParameter("no .yaml, .yml or .json files found", param_hint="PATHS")
    return files


def check_files(files: list[Path], registry: HandlerRegistry) -> list[CheckedFile]:
    """Load and validate every file, step configs included (against `registry`)."""
    checked = []
    for file in files:
        try:
            checked.append(CheckedFile(file, load_flow_file(file, registry.step_config_issues)))
        except FlowValidationError as exc:
            checked.append(CheckedFile(file, issues=list(exc.issues)))
    return checked


def _print_report(console: Console, checked: list[CheckedFile]) -> None:
    for entry in checked:
        file = escape(str(entry.path))
        if entry.issues:
            console.print(f"[red]✗[/] {file}: {len(entry.issues)} problem(s)")
            for where, message in entry.issues:
                console.print(
                    f"    [bold]{escape(where or '<flow>')}[/]: {escape(message)}", highlight=False
                )
            continue
        assert entry.flow is not None
        flow = entry.flow
        done = {None: "", True: ", saved", False: ", already stored"}[entry.saved]
        console.print(
            f"[green]✓[/] {file}: {escape(flow.id)} {escape(flow.version)}, "
            f"{len(flow.steps)} steps{done}"
        )


def validate(paths: PathsArgument, as_json: JsonOutput = False) -> None:
    """Validate flow files (YAML or JSON) or folders of them; exit 1 if any is invalid.

    Step configs are checked too, against the built-in handlers and those of
    FLOWMONKEY_HANDLERS.
    """
    checked = check_files(flow_files(paths), deployment_handlers())
    if as_json:
        print_json([entry.to_dict() for entry in checked])
    else:
        _print_report(make_console(), checked)
    if any(entry.issues for entry in checked):
        raise typer.Exit(ExitCode.FAILED)


app.command("validate")(validate)


def _unknown_handlers(flow: Flow, registry: HandlerRegistry) -> list[tuple[str, str]]:
    # celery_task steps are installed by the Celery runtime, which every worker has.
    known = {*registry.types(), CELERY_TASK_TYPE}
    return [
        (
            f"steps.{step.id}.type",
            f"no handler for step type {step.type!r} in this deployment (built-in, or in "
            "the FLOWMONKEY_HANDLERS modules); add its module to FLOWMONKEY_HANDLERS",
        )
        for step in flow.steps.values()
        if step.type not in known
    ]


def _compare_with_stored(checked: list[CheckedFile], stored: list[Flow]) -> None:
    """Mark each flow new or stored already; a version stored (or named earlier in `checked`)
    with another definition is an issue of its file."""
    known = {(flow.id, flow.version): flow.to_dict() for flow in stored}
    for entry in checked:
        assert entry.flow is not None
        key = (entry.flow.id, entry.flow.version)
        definition = entry.flow.to_dict()
        if key in known and known[key] != definition:
            entry.issues.append(
                (
                    "version",
                    f"flow {entry.flow.id!r} version {entry.flow.version} is already stored (or "
                    "named twice) with a different definition; give the changed flow a new "
                    "version",
                )
            )
        entry.saved = all(key != (flow.id, flow.version) for flow in stored)
        known[key] = definition


@app.command()
def register(paths: PathsArgument, as_json: JsonOutput = False) -> None:
    """Validate flow files, then save their versions to the store for the workers.

    What FLOWMONKEY_FLOWS does at a worker's start-up, triggers declared in the files
    included. All or nothing: if any file is invalid, names a step type no handler serves, or
    has a version already stored with a different definition, nothing is saved (exit 1).
    """
    registry = deployment_handlers()
    checked = check_files(flow_files(paths), registry)
    for entry in checked:
        if entry.flow is not None:
            entry.issues += _unknown_handlers(entry.flow, registry)
    settings = load_settings()
    if not any(entry.issues for entry in checked):
        with opened_store(settings) as store:
            _compare_with_stored(checked, store.list_flow_definitions())
    if any(entry.issues for entry in checked):
        for entry in checked:
            entry.saved = None
    else:
        # FLOWMONKEY_FLOWS is left out: this command registers the files it is given.
        save_flows(
            settings.model_copy(update={"flows": None}),
            [entry.flow for entry in checked if entry.flow is not None],
        )
    if as_json:
        print_json([entry.to_dict() for entry in checked])
    else:
        _print_report(make_console(), checked)
    if any(entry.issues for entry in checked):
        raise typer.Exit(ExitCode.FAILED)


@app.command("list")
def list_flows(as_json: JsonOutput = False) -> None:
    """List the flow versions stored in the database, oldest version of each flow first.

    They were registered (`flows register`) or saved by a process from FLOWMONKEY_FLOWS.
    """
    with opened_store(load_settings()) as store:
        flows = store.list_flow_definitions()
    if as_json:
        print_json(
            [
                {
                    "id": flow.id,
                    "version": flow.version,
                    "name": flow.name,
                    "initial_step_id": flow.initial_step_id,
                    "steps": list(flow.steps),
                    "triggers": [entry.get("id") for entry in flow.triggers],
                }
                for flow in flows
            ]
        )
        return
    console = make_console()
    if not flows:
        console.print("No flows stored yet: `flowmonkey flows register PATH` saves some.")
        return
    table = Table("flow", "version", "name", "first step", "steps", "triggers")
    for flow in flows:
        table.add_row(
            escape(flow.id),
            escape(flow.version),
            escape(flow.name or ""),
            escape(flow.initial_step_id),
            str(len(flow.steps)),
            escape(", ".join(str(entry.get("id")) for entry in flow.triggers)),
        )
    console.print(table)
