"""`flowmonkey handlers`: the step types this deployment can run, with their config schemas."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.output import print_json
from flowmonkey_celery.cli.wiring import load_settings
from flowmonkey_celery.core.registries import HandlerRegistry
from flowmonkey_celery.loading import handlers_in_modules


def deployment_handlers() -> HandlerRegistry:
    """The built-in handlers plus those of the FLOWMONKEY_HANDLERS modules, as a worker has."""
    return HandlerRegistry(handlers_in_modules(load_settings().handlers))


def handlers(
    types: Annotated[
        list[str] | None,
        typer.Argument(metavar="TYPE", help="Step types to describe.", show_default=False),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (every field, full schemas).")
    ] = False,
) -> None:
    """List the handlers (built-in and FLOWMONKEY_HANDLERS), or describe the TYPES given."""
    registry = deployment_handlers()
    types = types or []
    unknown = [t for t in types if not registry.has(t)]
    if unknown:
        raise typer.BadParameter(
            f"no handler for {', '.join(unknown)}; registered: {', '.join(registry.types())}",
            param_hint="TYPES",
        )
    infos = [registry.info(t) for t in types] if types else registry.infos()
    if as_json:
        print_json([info.to_dict() for info in infos])
        return
    console = make_console()
    if types:
        for info in infos:
            console.print(f"[bold]{info.type}[/]: {info.description or ''}")
            stateful = "yes" if info.stateful else "no"
            console.print(f"  category: {info.category or '-'}  stateful: {stateful}")
            console.print_json(json.dumps(info.config_schema or {}))
        return
    table = Table("type", "category", "stateful", "config keys", "description")
    for info in infos:
        schema = info.config_schema or {}
        required = set(schema.get("required", []))
        keys = [f"{k}*" if k in required else k for k in schema.get("properties", {})]
        table.add_row(
            info.type,
            info.category or "",
            "yes" if info.stateful else "",
            ", ".join(keys),
            info.description or "",
        )
    console.print(table)
    console.print("* required. `flowmonkey handlers TYPE` shows a handler's full config schema.")
