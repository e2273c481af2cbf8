"""`flowmonkey db` (schema migrations and retention for the configured database) and
`flowmonkey purge`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from flowmonkey_celery.cli.arguments import JsonOutput, parse_duration
from flowmonkey_celery.cli.failures import ExitCode
from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.cli.output import print_json
from flowmonkey_celery.cli.wiring import load_settings
from flowmonkey_celery.stores.sql import SqlStore
from flowmonkey_celery.stores.sql.migrations import current_revision, head_revision

app = typer.Typer(help="Database schema and retention.", no_args_is_help=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Database URL (default: FLOWMONKEY_DATABASE_URL, else the embedded SQLite file).",
    ),
]
BatchSizeOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Executions deleted per transaction.")
]


def _store(url: str | None) -> SqlStore:
    settings = load_settings()
    if url:
        settings = settings.model_copy(update={"database_url": url})
    if settings.embedded:
        settings.home.mkdir(parents=True, exist_ok=True)
    return SqlStore(settings.resolved_database_url())


@app.command()
def migrate(url: UrlOption = None, as_json: JsonOutput = False) -> None:
    """Apply pending migrations (safe to run from several processes at once)."""
    store = _store(url)
    try:
        before = current_revision(store.engine)
        store.migrate()
        after = current_revision(store.engine)
    finally:
        store.dispose()
    if as_json:
        print_json({"database": store.database, "from": before, "to": after})
        return
    state = "already up to date" if before == after else f"migrated {before or 'empty'} -> {after}"
    make_console().print(f"{store.database}: {state}")


app.command("upgrade", help="Apply pending migrations: the same as `flowmonkey db migrate`.")(
    migrate
)


@app.command()
def check(url: UrlOption = None, as_json: JsonOutput = False) -> None:
    """Exit 1 unless the schema is at the latest revision."""
    store = _store(url)
    try:
        current, head = current_revision(store.engine), head_revision()
    finally:
        store.dispose()
    if as_json:
        print_json(
            {
                "database": store.database,
                "revision": current,
                "latest": head,
                "up_to_date": current == head,
            }
        )
    else:
        make_console().print(
            f"{store.database}: schema at {current or 'nothing'}, latest is {head}"
        )
    if current != head:
        raise typer.Exit(ExitCode.FAILED)


def purge_finished(url: str | None, older_than: timedelta, batch_size: int, as_json: bool) -> None:
    """Delete finished executions (with their history) that finished `older_than` ago."""
    store = _store(url)
    try:
        store.check_schema()
        cutoff = datetime.now(UTC) - older_than
        deleted = store.delete_finished_before(cutoff, batch_size=batch_size)
    finally:
        store.dispose()
    if as_json:
        print_json({"database": store.database, "deleted": deleted, "cutoff": cutoff.isoformat()})
        return
    make_console().print(
        f"{store.database}: deleted {deleted} executions finished before {cutoff:%F %T} UTC"
    )


@app.command()
def purge(
    older_than_days: Annotated[
        int, typer.Option("--older-than-days", min=1, help="Finished more than N days ago.")
    ],
    url: UrlOption = None,
    batch_size: BatchSizeOption = 500,
    as_json: JsonOutput = False,
) -> None:
    """Delete finished executions (and their history) older than N days, in batches."""
    purge_finished(url, timedelta(days=older_than_days), batch_size, as_json)


def purge_older_than(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Finished longer ago than this: 30d, 12h, 1h30m, 2w (units s, m, h, d, w).",
        ),
    ],
    url: UrlOption = None,
    batch_size: BatchSizeOption = 500,
    as_json: JsonOutput = False,
) -> None:
    """Delete finished executions older than a duration (30d, 12h, 1h30m...).

    Completed, failed and cancelled executions that finished before the cutoff, with their
    history, idempotency keys, resume tokens and jobs, in short batches; running executions
    are never touched. Dispatched events, trigger history and superseded cron slots from
    before the cutoff go too. `flowmonkey db purge --older-than-days N` does the same in days.
    """
    purge_finished(url, parse_duration(older_than, "'--older-than'"), batch_size, as_json)
