"""Alembic migrations: one history for PostgreSQL and SQLite, run programmatically.

`upgrade()` is idempotent and safe when several processes call it at once: on PostgreSQL the
whole upgrade runs in one transaction behind an advisory lock (DDL is transactional there); on
SQLite it runs in one BEGIN IMMEDIATE transaction, which holds the single write lock.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from flowmonkey_celery.errors import SchemaOutdatedError
from flowmonkey_celery.stores.sql.connection import WRITE, describe

VERSION_TABLE = "fm_alembic_version"
# An arbitrary constant that names "flowmonkey schema migration" among advisory locks.
_ADVISORY_LOCK_ID = 0x466C6F774D6B  # "FlowMk"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` (default: the latest)."""
    config = alembic_config()
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.execution_options(**WRITE)
        with connection.begin():
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, revision)


def check_current(engine: Engine) -> None:
    """Raise SchemaOutdatedError unless the schema is at the latest revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        found = f"at revision {current}" if current else "not initialised"
        raise SchemaOutdatedError(
            f"the flowmonkey schema in {describe(engine.url)} is {found}; this version needs "
            f"{head}. Run `flowmonkey db migrate` (or SqlStore(url).migrate()) once per deploy",
            details={"current": current, "head": head},
        )
