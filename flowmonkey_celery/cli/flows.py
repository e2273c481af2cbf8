"""`flowmonkey validate`: check flow files before deploying them."""

from __future__ import annotations

from pathlib import Path

import click

from flowmonkey_celery.cli.handlers import deployment_handlers
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.core.flow_files import FLOW_FILE_SUFFIXES, load_flow_file
from flowmonkey_celery.errors import FlowValidationError


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Validate flow files (YAML or JSON) or folders of them, step configs included (against
    the built-in handlers and those of FLOWMONKEY_HANDLERS); exit 1 if any is invalid."""
    console = make_console()
    files = [
        file
        for path in paths
        for file in (sorted(path.iterdir()) if path.is_dir() else [path])
        if file.suffix.lower() in FLOW_FILE_SUFFIXES
    ]
    bad = 0
    registry = deployment_handlers()
    for file in files:
        try:
            flow = load_flow_file(file, registry.step_config_issues)
        except FlowValidationError as exc:
            bad += 1
            console.print(f"[red]✗[/] {file}: {len(exc.issues)} problem(s)")
            for where, message in exc.issues:
                console.print(f"    [bold]{where or '<flow>'}[/]: {message}", highlight=False)
        else:
            console.print(f"[green]✓[/] {file}: {flow.id} {flow.version}, {len(flow.steps)} steps")
    if not files:
        raise click.UsageError("no .yaml, .yml or .json files found")
    if bad:
        raise SystemExit(1)
