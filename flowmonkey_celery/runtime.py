"""Composition: settings -> concrete store (and, later, broker and coordination)."""

from __future__ import annotations

from flowmonkey_celery.settings import Settings
from flowmonkey_celery.stores.sql import SqlStore


def build_store(settings: Settings) -> SqlStore:
    """The store the settings name.

    The embedded default (no database URL) creates its SQLite file under `settings.home` and
    migrates it on the spot. A configured database must already be migrated: migrations run
    once per deploy (`flowmonkey db migrate`), so a process refuses to start on an outdated
    schema with a message saying what to run.

    Raises:
        SchemaOutdatedError: a configured database is not at the latest schema revision.
    """
    if settings.embedded:
        settings.home.mkdir(parents=True, exist_ok=True)
        store = SqlStore(settings.resolved_database_url())
        store.migrate()
        return store
    store = SqlStore(settings.resolved_database_url())
    store.check_schema()
    return store
