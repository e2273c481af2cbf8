"""The Store contract suite runs once for every backend in `STORE_FACTORIES`.

Adding a backend is one line. A factory is called with no arguments and returns either a
store, or a context manager that yields one: use the latter for setup and teardown (create a
temporary database, run migrations, drop it afterwards), e.g.

    @contextmanager
    def sqlite_store() -> Iterator[SqlStore]:
        store = SqlStore("sqlite://")
        store.migrate()
        yield store
        store.dispose()

    STORE_FACTORIES = {"memory": MemoryStore, "sqlite": sqlite_store}

Every test gets a fresh, empty store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from flowmonkey_celery import MemoryStore, Store

StoreFactory = Callable[[], Any]

STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": MemoryStore,
}


@pytest.fixture(params=list(STORE_FACTORIES))
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    made = STORE_FACTORIES[request.param]()
    if isinstance(made, AbstractContextManager):
        with made as entered:
            yield entered
    else:
        yield made
