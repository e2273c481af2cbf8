"""`flowmonkey keys`: API keys for the REST API (create, list, revoke). A key is shown once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from flowmonkey_celery.cli.arguments import JsonOutput
from flowmonkey_celery.cli.failures import fail
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.output import note, print_json
from flowmonkey_celery.cli.wiring import load_settings, opened_store
from flowmonkey_celery.core.api_keys import new_api_key
from flowmonkey_celery.errors import ErrorCode

app = typer.Typer(help="API keys for the REST API.", no_args_is_help=True)
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The key's name.")]


@app.command("create")
def create(
    name: NameArgument,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Scope the key to this tenant.", show_default=False),
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="An operator's key: every tenant.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the key.")] = False,
    as_json: JsonOutput = False,
) -> None:
    """Create a key (give exactly one of --tenant or --admin) and print it, once: only its
    SHA-256 is stored."""
    if admin == (tenant is not None):
        raise typer.BadParameter("give exactly one of --tenant TENANT or --admin")
    issued = new_api_key(name, datetime.now(UTC), tenant_id=tenant, admin=admin)
    with opened_store(load_settings()) as store:
        store.save_api_key(issued.record)
    if as_json:
        print_json({"name": name, "key": issued.key, "tenant_id": tenant, "admin": admin})
    elif quiet:
        typer.echo(issued.key)
    else:
        make_console().print(issued.key, markup=False)
        note(f"API key {name!r} ({'admin' if admin else f'tenant {tenant}'}): shown once, keep it")


@app.command("list")
def list_keys(as_json: JsonOutput = False) -> None:
    """The keys (names, scopes, dates; never the keys themselves)."""
    with opened_store(load_settings()) as store:
        keys = store.list_api_keys()
    if as_json:
        print_json([k.model_dump(mode="json", exclude={"key_hash"}) for k in keys])
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("name", "scope", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        scope = "admin" if key.admin else f"tenant {key.tenant_id}"
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
        table.add_row(key.name, scope, key.created_at.isoformat(timespec="seconds"), revoked)
    make_console().print(table)


@app.command("revoke")
def revoke(name: NameArgument, as_json: JsonOutput = False) -> None:
    """Revoke a key by name: requests with it get 401 from now on."""
    with opened_store(load_settings()) as store:
        found = next((k for k in store.list_api_keys() if k.name == name), None)
        if found is None or not store.revoke_api_key(found.id, datetime.now(UTC)):
            raise fail(ErrorCode.INVALID_ARGUMENT, f"no live API key named {name!r}")
    if as_json:
        print_json({"revoked": name})
    else:
        note(f"API key {name!r} revoked")
