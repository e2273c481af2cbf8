"""Durable storage on SQLAlchemy 2: PostgreSQL in production, SQLite as the embedded default."""

from flowmonkey_celery.stores.sql.store import SqlStore

__all__ = ["SqlStore"]
