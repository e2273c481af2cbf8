"""`flowmonkey db`: schema migrations and retention for the configured database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from flowmonkey_celery.cli.output import console as make_console
from flowmonkey_celery.settings import Settings
from flowmonkey_celery.stores.sql import SqlStore
from flowmonkey_celery.stores.sql.migrations import current_revision, head_revision

URL_HELP = "Database URL (default: FLOWMONKEY_DATABASE_URL, else the embedded SQLite file)."


def _store(url: str | None) -> SqlStore:
    settings = Settings.from_env()
    if url:
        settings = settings.model_copy(update={"database_url": url})
    if settings.embedded:
        settings.home.mkdir(parents=True, exist_ok=True)
    return SqlStore(settings.resolved_database_url())


@click.group()
def db() -> None:
    """Database schema and retention."""


@db.command()
@click.option("--url", help=URL_HELP)
def migrate(url: str | None) -> None:
    """Apply pending migrations (safe to run from several processes at once)."""
    store = _store(url)
    before = current_revision(store.engine)
    store.migrate()
    after = current_revision(store.engine)
    state = "already up to date" if before == after else f"migrated {before or 'empty'} -> {after}"
    make_console().print(f"{store.database}: {state}")


@db.command()
@click.option("--url", help=URL_HELP)
def check(url: str | None) -> None:
    """Exit 1 unless the schema is at the latest revision."""
    store = _store(url)
    current, head = current_revision(store.engine), head_revision()
    make_console().print(f"{store.database}: schema at {current or 'nothing'}, latest is {head}")
    if current != head:
        raise SystemExit(1)


@db.command()
@click.option("--url", help=URL_HELP)
@click.option("--older-than-days", type=click.IntRange(min=1), required=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
def purge(url: str | None, older_than_days: int, batch_size: int) -> None:
    """Delete finished executions (and their history) older than N days, in batches."""
    store = _store(url)
    store.check_schema()
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    deleted = store.delete_finished_before(cutoff, batch_size=batch_size)
    make_console().print(
        f"{store.database}: deleted {deleted} executions finished before {cutoff:%F %T} UTC"
    )
