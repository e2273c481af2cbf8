"""The Store contract suite runs once for every backend in `STORE_FACTORIES`.

Adding a backend is one line. A factory gets the pytest request (to reach fixtures such as
`tmp_path` or `postgres`) and returns a store, or a context manager that yields one for
setup and teardown. Every test gets a fresh, empty store of its own: a new SQLite file, or a
new PostgreSQL database copied from a migrated template and dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from flowmonkey_celery import MemoryStore, Store
from flowmonkey_celery.stores.sql import SqlStore

StoreFactory = Callable[[pytest.FixtureRequest], Any]


@contextmanager
def sqlite_store(request: pytest.FixtureRequest) -> Iterator[SqlStore]:
    store = SqlStore(f"sqlite:///{request.getfixturevalue('tmp_path')}/flowmonkey.db")
    store.migrate()
    yield store
    store.dispose()


@contextmanager
def postgres_store(request: pytest.FixtureRequest) -> Iterator[SqlStore]:
    store = SqlStore(request.getfixturevalue("postgres_url"))
    yield store
    store.dispose()


STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": lambda _: MemoryStore(),
    "sqlite": sqlite_store,
    "postgres": postgres_store,
}


@pytest.fixture(params=list(STORE_FACTORIES))
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    made = STORE_FACTORIES[request.param](request)
    if isinstance(made, AbstractContextManager):
        with made as entered:
            yield entered
    else:
        yield made
