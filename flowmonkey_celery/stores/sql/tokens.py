"""Resume token rows (fm_resume_tokens): inserted, read, used once, revoked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from flowmonkey_celery.core.tokens import ResumeToken
from flowmonkey_celery.stores.sql.schema import resume_tokens


def insert_token(conn: Connection, token: ResumeToken) -> None:
    conn.execute(insert(resume_tokens), token.model_dump(mode="python"))


def get_token(conn: Connection, token_hash: str, *, lock: bool) -> ResumeToken | None:
    query = select(resume_tokens).where(resume_tokens.c.token_hash == token_hash)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return ResumeToken.model_validate(dict(row)) if row else None


def use_token(conn: Connection, token_hash: str, now: datetime) -> bool:
    # One conditional UPDATE: of two concurrent uses, the second matches no row.
    statement = (
        update(resume_tokens)
        .where(
            resume_tokens.c.token_hash == token_hash,
            resume_tokens.c.used_at.is_(None),
            resume_tokens.c.revoked_at.is_(None),
        )
        .values(used_at=now)
    )
    return bool(conn.execute(statement).rowcount == 1)


def revoke_tokens(
    conn: Connection,
    execution_id: str,
    now: datetime,
    reason: str,
    token_hashes: list[str] | None = None,
) -> int:
    statement = (
        update(resume_tokens)
        .where(
            resume_tokens.c.execution_id == execution_id,
            resume_tokens.c.used_at.is_(None),
            resume_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=now, revoked_reason=reason)
    )
    if token_hashes is not None:
        statement = statement.where(resume_tokens.c.token_hash.in_(token_hashes))
    return int(conn.execute(statement).rowcount)
