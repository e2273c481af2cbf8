"""Store implementations. `MemoryStore` needs nothing; `stores.sql.SqlStore` needs a database."""

from flowmonkey_celery.stores.memory import MemoryStore

__all__ = ["MemoryStore"]
