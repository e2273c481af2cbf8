"""Who is calling: an API key (`Authorization: Bearer fmk_...` or `X-API-Key`), scoped to one
tenant or an operator's admin key. A tenant's key sees only its tenant: anything else answers
404, exactly as if it did not exist."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from flowmonkey_celery.api.errors import ApiError
from flowmonkey_celery.core.api_keys import KEY_PREFIX, hash_key
from flowmonkey_celery.core.ports import OperatorStore
from flowmonkey_celery.errors import ErrorCode


@dataclass(frozen=True)
class Principal:
    """The caller: a key's name, and its tenant (None for an admin key)."""

    name: str
    tenant_id: str | None
    admin: bool

    def sees(self, tenant_id: str | None) -> bool:
        """Whether something of `tenant_id` is visible to this caller."""
        return self.admin or tenant_id == self.tenant_id

    def tenant_for(self, asked: str | None) -> str | None:
        """The tenant a new execution, trigger or event gets: the key's own; an admin key may
        name any (or none)."""
        return asked if self.admin else self.tenant_id


OPEN = Principal(name="auth-off", tenant_id=None, admin=True)


def authenticate(request: Request, keys: OperatorStore | None, required: bool) -> Principal:
    """The caller of `request`.

    Raises:
        ApiError: 401 UNAUTHORIZED for a missing, unknown or revoked key.
    """
    if not required:
        return OPEN
    presented = _presented_key(request)
    if presented is None:
        raise _unauthorized(
            "an API key is required: send Authorization: Bearer <key> (create one with "
            "`flowmonkey keys create`)"
        )
    found = keys.get_api_key_by_hash(hash_key(presented)) if keys is not None else None
    if found is None or not presented.startswith(KEY_PREFIX):
        raise _unauthorized("unknown API key")
    if found.revoked_at is not None:
        raise _unauthorized(f"API key {found.name!r} was revoked")
    return Principal(name=found.name, tenant_id=found.tenant_id, admin=found.admin)


def require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise ApiError(403, ErrorCode.UNAUTHORIZED, "this needs an admin API key")


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key", "").strip() or None


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, ErrorCode.UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})
