"""API keys for the REST API: each is scoped to one tenant, or is an operator's admin key.

Only a key's SHA-256 is stored, like a resume token's: whoever reads the database cannot call
the API. A key is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import Field, field_validator, model_validator

from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.core.execution import StateModel

KEY_PREFIX = "fmk_"


class ApiKey(StateModel):
    """A stored API key (its hash) and what it may see: one tenant's executions, flows,
    triggers and events, or everything (`admin`)."""

    id: str
    name: str = Field(min_length=1, max_length=200)
    key_hash: str
    tenant_id: str | None = Field(default=None, min_length=1, max_length=200)
    admin: bool = False
    created_at: datetime
    revoked_at: datetime | None = None

    @field_validator("created_at", "revoked_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return ensure_aware(value, "API key times") if value is not None else None

    @model_validator(mode="after")
    def _scoped(self) -> ApiKey:
        if self.admin == (self.tenant_id is not None):
            raise ValueError("an API key is either an admin key or scoped to one tenant")
        return self


@dataclass(frozen=True)
class IssuedApiKey:
    """A new key: the raw key (shown once, stored nowhere) and its stored record."""

    key: str
    record: ApiKey


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key(
    name: str, now: datetime, *, tenant_id: str | None = None, admin: bool = False
) -> IssuedApiKey:
    """A fresh key (256 random bits) for `tenant_id`, or an admin key.

    Raises:
        pydantic.ValidationError: no tenant and not admin, or both; a bad name.
    """
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        id=str(uuid.uuid4()),
        name=name,
        key_hash=hash_key(key),
        tenant_id=tenant_id,
        admin=admin,
        created_at=now,
    )
    return IssuedApiKey(key, record)
