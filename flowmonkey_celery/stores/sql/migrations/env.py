"""Alembic environment: always run through flowmonkey_celery.stores.sql.migrations.upgrade()."""

from __future__ import annotations

from alembic import context

from flowmonkey_celery.stores.sql.migrations import VERSION_TABLE
from flowmonkey_celery.stores.sql.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run flowmonkey migrations with `flowmonkey db migrate` or SqlStore(url).migrate()"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
