"""Fixtures shared by every test layer: real PostgreSQL and Redis (see tests/services.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.services import POSTGRES_URL, REDIS_URL, PostgresDatabases, service_missing


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    """Factory of throwaway PostgreSQL databases (fails the run if PostgreSQL is missing)."""
    databases = PostgresDatabases(POSTGRES_URL)
    databases.check()
    yield databases
    databases.close()


@pytest.fixture
def postgres_url(postgres: PostgresDatabases) -> Iterator[str]:
    """The URL of a fresh, migrated PostgreSQL database, dropped after the test."""
    with postgres.database() as url:
        yield url


@pytest.fixture
def empty_postgres_url(postgres: PostgresDatabases) -> Iterator[str]:
    """The URL of a fresh PostgreSQL database with no schema, dropped after the test."""
    with postgres.database(migrated=False) as url:
        yield url


@pytest.fixture(scope="session")
def redis_client() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:
        service_missing("Redis", REDIS_URL, exc)
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: Any) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"fmtest:{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(redis_client.scan_iter(f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)
