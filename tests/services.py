"""Real PostgreSQL and Redis for tests: found at their standard local ports (URLs overridable
by environment variables). A missing service fails the test run with a message saying how to
get it; it is never a skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "FLOWMONKEY_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("FLOWMONKEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

HOW_TO_GET = {
    "PostgreSQL": (
        "install it (Debian: apt-get install postgresql; then pg_ctlcluster <version> main start) "
        "or run `docker compose -f deploy/docker-compose.yml up -d postgres`, or point "
        "FLOWMONKEY_TEST_POSTGRES_URL at a server where this user may create databases"
    ),
    "Redis": (
        "install it (Debian: apt-get install redis-server; then redis-server --daemonize yes) "
        "or run `docker compose -f deploy/docker-compose.yml up -d redis`, or set "
        "FLOWMONKEY_TEST_REDIS_URL"
    ),
}


def service_missing(name: str, url: str, error: Exception) -> None:
    shown = make_url(url).render_as_string(hide_password=True) if "://" in url else url
    pytest.fail(
        f"{name} is not reachable at {shown} ({type(error).__name__}: {error}). "
        f"The test suite needs it: {HOW_TO_GET[name]}.",
        pytrace=False,
    )


class PostgresDatabases:
    """Creates throwaway databases, each a copy of one migrated template (fast: no DDL)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url)
        self.admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.template: str | None = None

    def check(self) -> None:
        try:
            with self.admin.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            service_missing("PostgreSQL", str(self.admin_url), exc)

    def url_for(self, database: str) -> str:
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def create(self, *, migrated: bool = True) -> str:
        name = f"fm_test_{uuid.uuid4().hex[:12]}"
        template = self._template() if migrated else "template0"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        return name

    def drop(self, name: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def _template(self) -> str:
        if self.template is None:
            from flowmonkey_celery.stores.sql import SqlStore

            name = self.create(migrated=False)
            store = SqlStore(self.url_for(name))
            store.migrate()
            store.dispose()  # CREATE DATABASE ... TEMPLATE needs the template unused
            self.template = name
        return self.template

    @contextmanager
    def database(self, *, migrated: bool = True) -> Iterator[str]:
        name = self.create(migrated=migrated)
        try:
            yield self.url_for(name)
        finally:
            self.drop(name)

    def close(self) -> None:
        if self.template is not None:
            self.drop(self.template)
        self.admin.dispose()
