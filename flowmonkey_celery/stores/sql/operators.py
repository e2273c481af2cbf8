"""What the REST API keeps besides executions and triggers (the SqlStore's `OperatorStore`
half): API keys in `fm_api_keys`, the tenant that owns each flow registered through the API in
`fm_flow_owners`, and the last run of each periodic process in `fm_heartbeats`.

The races are decided by unique keys, not by a read first: of two keys saved with one name the
unique index on `name` stores one, and of two tenants claiming one flow id the primary key on
`flow_id` makes the first the owner.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from flowmonkey_celery.core.api_keys import ApiKey
from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.errors import ErrorCode, ExecutionError
from flowmonkey_celery.stores.sql.schema import api_keys, flow_owners, heartbeats

# A taken name is skipped (rowcount 0) and reported as such; any other conflict (the id, the
# hash: never with random keys) still raises, and is translated into a StoreError.
_INSERT_KEY = {
    "postgresql": postgresql.insert(api_keys).on_conflict_do_nothing(index_elements=["name"]),
    "sqlite": sqlite.insert(api_keys).on_conflict_do_nothing(index_elements=["name"]),
}
# On PostgreSQL, a concurrent claim of the same id waits for the first to commit, then does
# nothing (or inserts, if the first rolled back).
_INSERT_OWNER = {
    "postgresql": postgresql.insert(flow_owners).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(flow_owners).on_conflict_do_nothing(),
}


def save_api_key(conn: Connection, key: ApiKey) -> None:
    if conn.execute(_INSERT_KEY[conn.dialect.name], key.model_dump(mode="python")).rowcount != 1:
        raise ExecutionError(
            f"an API key named {key.name!r} exists already",
            ErrorCode.INVALID_ARGUMENT,
            {"name": key.name},
        )


def get_api_key_by_hash(conn: Connection, key_hash: str) -> ApiKey | None:
    query = select(api_keys).where(api_keys.c.key_hash == key_hash)
    row = conn.execute(query).mappings().first()
    return ApiKey.model_validate(dict(row)) if row else None


def list_api_keys(conn: Connection) -> list[ApiKey]:
    query = select(api_keys).order_by(api_keys.c.name)
    return [ApiKey.model_validate(dict(row)) for row in conn.execute(query).mappings()]


def revoke_api_key(conn: Connection, key_id: str, now: datetime) -> bool:
    statement = (
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=ensure_aware(now, "revoked_at"))
    )
    return bool(conn.execute(statement).rowcount == 1)


def claim_flow(conn: Connection, flow_id: str, tenant_id: str) -> str:
    """Insert the owner unless one is stored, then read who it is (in one transaction: on
    PostgreSQL, in READ COMMITTED, the read sees the row of a claim that won meanwhile)."""
    values = {"flow_id": flow_id, "tenant_id": tenant_id}
    if conn.execute(_INSERT_OWNER[conn.dialect.name], values).rowcount == 1:
        return tenant_id
    query = select(flow_owners.c.tenant_id).where(flow_owners.c.flow_id == flow_id)
    return str(conn.execute(query).scalar_one())


def list_flow_owners(conn: Connection) -> dict[str, str]:
    query = select(flow_owners.c.flow_id, flow_owners.c.tenant_id).order_by(flow_owners.c.flow_id)
    return {flow_id: tenant_id for flow_id, tenant_id in conn.execute(query)}


def record_heartbeat(conn: Connection, name: str, at: datetime) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(heartbeats).values(name=name, at=ensure_aware(at, "heartbeat"))
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[heartbeats.c.name], set_={"at": insert.excluded.at}
        )
    )


def last_heartbeat(conn: Connection, name: str) -> datetime | None:
    query = select(heartbeats.c.at).where(heartbeats.c.name == name)
    found: datetime | None = conn.execute(query).scalar()
    return found


def list_heartbeats(conn: Connection, prefix: str) -> dict[str, datetime]:
    query = select(heartbeats.c.name, heartbeats.c.at).order_by(heartbeats.c.name)
    if prefix:
        query = query.where(heartbeats.c.name.startswith(prefix, autoescape=True))
    return {name: at for name, at in conn.execute(query)}


def delete_heartbeats(conn: Connection, prefix: str, before: datetime) -> int:
    query = delete(heartbeats).where(
        heartbeats.c.name.startswith(prefix, autoescape=True),
        heartbeats.c.at < ensure_aware(before, "cutoff"),
    )
    return conn.execute(query).rowcount
