"""`/executions`: start, list, read, history, resume (by id or by token), cancel, replay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from flowmonkey_celery.api.auth import Principal
from flowmonkey_celery.api.context import caller, context_of
from flowmonkey_celery.api.errors import ApiError, not_found
from flowmonkey_celery.core import tokens
from flowmonkey_celery.core.clock import ensure_aware
from flowmonkey_celery.core.execution import Execution, ExecutionStatus
from flowmonkey_celery.errors import ErrorCode

router = APIRouter(prefix="/executions", tags=["executions"])
# Word for word what an unknown token gets (core/tokens.py): another tenant's is unknown too.
UNKNOWN_TOKEN = "resume token not recognised (it is wrong, or was purged with its execution)"
Caller = Annotated[Principal, Depends(caller)]


class Strict(BaseModel):
    """A request body: snake_case or camelCase keys (as flows and triggers), nothing else."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, loc_by_alias=False
    )


class StartRequest(Strict):
    flow_id: str = Field(min_length=1, max_length=200)
    context: dict[str, Any] = Field(default_factory=dict)
    flow_version: str | None = None
    tenant_id: str | None = Field(default=None, min_length=1, max_length=200)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    metadata: dict[str, Any] | None = None
    timeout: dict[str, Any] | None = None


class ResumeRequest(Strict):
    data: Any = None
    expected_version: int | None = Field(default=None, ge=0, strict=True)  # true is no version


class TokenResumeRequest(Strict):
    token: str = Field(min_length=1, max_length=200)
    data: Any = None
    outcome: str | None = Field(default=None, min_length=1, max_length=200)


class CancelRequest(Strict):
    reason: str | None = Field(default=None, max_length=1000)


class ReplayRequest(Strict):
    from_step: str = Field(min_length=1, max_length=200)
    context_patch: dict[str, Any] | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class BulkReplayRequest(Strict):
    """Which failed executions to replay (the list's filters, plus the failure's error code),
    from which step (default: the step each failed at), with what patch."""

    flow_id: str | None = Field(default=None, min_length=1, max_length=200)
    tenant_id: str | None = Field(default=None, min_length=1, max_length=200)
    created_after: datetime | None = None
    created_before: datetime | None = None
    metadata: dict[str, str] | None = None
    error_code: str | None = Field(default=None, min_length=1, max_length=200)
    from_step: str | None = Field(default=None, min_length=1, max_length=200)
    context_patch: dict[str, Any] | None = None
    limit: int = Field(default=100, ge=1, le=1000, strict=True)
    include_replays: bool = Field(default=False, strict=True)


def _utc(instant: datetime | None) -> datetime | None:
    """A filter's instant; one without an offset is read as UTC (every stored time is)."""
    if instant is None:
        return None
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else ensure_aware(instant, "")


def shown(execution: Execution) -> dict[str, Any]:
    """An execution as the API answers it (the dashboard's routes too)."""
    data: dict[str, Any] = execution.model_dump(mode="json")
    return data


@router.post("", status_code=201, summary="Start an execution (committed, then enqueued)")
def start(body: StartRequest, request: Request, principal: Caller) -> dict[str, Any]:
    context = context_of(request)
    context.flow_for(principal, body.flow_id, body.flow_version)
    result = context.start(
        body.flow_id,
        body.context,
        tenant_id=principal.tenant_for(body.tenant_id),
        idempotency_key=body.idempotency_key,
        metadata=body.metadata,
        timeout=body.timeout,
        flow_version=body.flow_version,
    )
    return {"execution": shown(result.execution), "created": result.created}


MetadataFilter = Annotated[list[str] | None, Query(description="key:value, repeatable")]
IdempotencyKeyFilter = Annotated[
    str | None,
    Query(min_length=1, max_length=500, description="the execution created with this key"),
]


@dataclass(frozen=True)
class ExecutionFilter:
    """The filters the list, the counts and the bulk replay share."""

    flow_id: str | None = None
    tenant_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    metadata: dict[str, str] | None = None
    idempotency_key: str | None = None

    def scoped(self, principal: Principal) -> dict[str, Any] | None:
        """The store's keyword arguments, narrowed to what `principal` may see; None when the
        filter names another tenant (none of whose executions this key can see)."""
        if self.tenant_id is not None and not principal.sees(self.tenant_id):
            return None
        scoped: dict[str, Any] = {
            "flow_id": self.flow_id,
            "tenant_id": self.tenant_id if principal.admin else principal.tenant_id,
            "created_after": _utc(self.created_after),
            "created_before": _utc(self.created_before),
            "metadata": self.metadata or None,
        }
        if self.idempotency_key is not None:
            scoped["idempotency_key"] = self.idempotency_key
        return scoped


def execution_filter(
    flow_id: str | None = None,
    tenant_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    metadata: MetadataFilter = None,
    idempotency_key: IdempotencyKeyFilter = None,
) -> ExecutionFilter:
    """The list's query parameters (`metadata` as repeated `key:value`)."""
    return ExecutionFilter(
        flow_id=flow_id,
        tenant_id=tenant_id,
        created_after=created_after,
        created_before=created_before,
        metadata=_metadata_filter(metadata),
        idempotency_key=idempotency_key,
    )


Filter = Annotated[ExecutionFilter, Depends(execution_filter)]


@router.get("", summary="List executions (keyset paging: pass `after` = the last id)")
def list_executions(
    request: Request,
    principal: Caller,
    filters: Filter,
    status: ExecutionStatus | None = None,
    order: Annotated[
        Literal["oldest", "newest"], Query(description="oldest first (default) or newest first")
    ] = "oldest",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: str | None = None,
) -> dict[str, Any]:
    context = context_of(request)
    if after is not None:
        context.execution_for(principal, after)  # a cursor of another tenant is unknown too
    scoped = filters.scoped(principal)
    if scoped is None:
        return {"items": [], "next_after": None}
    items = context.runtime.store.list_executions(
        status=status, newest_first=order == "newest", limit=limit, after=after, **scoped
    )
    return {
        "items": [shown(e) for e in items],
        "next_after": items[-1].id if len(items) == limit else None,
    }


@router.get("/counts", summary="How many executions the list's filters find, per status")
def count_executions(request: Request, principal: Caller, filters: Filter) -> dict[str, Any]:
    scoped = filters.scoped(principal)
    if scoped is None:
        return {"counts": dict.fromkeys((s.value for s in ExecutionStatus), 0)}
    return {"counts": context_of(request).runtime.store.count_executions(**scoped)}


def _metadata_filter(pairs: list[str] | None) -> dict[str, str]:
    """`key:value` pairs as a dict (400 for one that is not key:value)."""
    wanted: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition(":")
        if not sep or not key:
            raise ApiError(
                400, ErrorCode.INVALID_ARGUMENT, f"metadata filter {pair!r} is not key:value"
            )
        wanted[key] = value
    return wanted


@router.get("/{execution_id}", summary="One execution")
def get_execution(execution_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    return shown(context_of(request).execution_for(principal, execution_id))


@router.get("/{execution_id}/history", summary="Its recorded events, oldest first")
def history(execution_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    context = context_of(request)
    context.execution_for(principal, execution_id)
    events = context.runtime.engine.history(execution_id)
    return {"items": [e.model_dump(mode="json") for e in events]}


@router.post("/{execution_id}/resume", summary="Resume a waiting execution with data")
def resume(
    execution_id: str, body: ResumeRequest, request: Request, principal: Caller
) -> dict[str, Any]:
    context = context_of(request)
    context.execution_for(principal, execution_id)
    resumed = context.runtime.engine.resume(
        execution_id, body.data, expected_version=body.expected_version
    )
    return shown(resumed)


@router.post("/resume-with-token", summary="Resume the wait a resume token was issued for")
def resume_with_token(
    body: TokenResumeRequest, request: Request, principal: Caller
) -> dict[str, Any]:
    context = context_of(request)
    if tokens.looks_like_token(body.token):
        with context.runtime.store.transaction() as tx:
            record = tx.get_resume_token(tokens.hash_token(body.token))
        owner = context.runtime.engine.get(record.execution_id) if record else None
        if owner is not None and not principal.sees(owner.tenant_id):
            raise ApiError(400, ErrorCode.INVALID_RESUME_TOKEN, UNKNOWN_TOKEN)  # as unknown
    resumed = context.runtime.engine.resume_with_token(body.token, body.data, outcome=body.outcome)
    return shown(resumed)


@router.post("/{execution_id}/cancel", summary="Cancel it and its children")
def cancel(
    execution_id: str, request: Request, principal: Caller, body: CancelRequest | None = None
) -> dict[str, Any]:
    context = context_of(request)
    context.execution_for(principal, execution_id)
    result = context.runtime.engine.cancel(
        execution_id, source="api", reason=(body.reason if body else None)
    )
    if not result.cancelled:
        raise ApiError(
            409,
            ErrorCode.INVALID_TRANSITION,
            result.error or "not cancelled",
            {"status": result.previous_status.value if result.previous_status else None},
        )
    return {
        "cancelled": True,
        "previous_status": result.previous_status.value if result.previous_status else None,
        "children_cancelled": result.children_cancelled,
    }


@router.post(
    "/replay",
    summary="Replay failed executions selected by a filter, each from the step it failed at",
)
def replay_failed(body: BulkReplayRequest, request: Request, principal: Caller) -> dict[str, Any]:
    filters = ExecutionFilter(
        flow_id=body.flow_id,
        tenant_id=body.tenant_id,
        created_after=body.created_after,
        created_before=body.created_before,
        metadata=body.metadata,
    )
    scoped = filters.scoped(principal)
    if scoped is None:
        return {"replayed": 0, "outcomes": []}
    result = context_of(request).runtime.engine.replay_failed(
        **scoped,
        error_code=body.error_code,
        from_step=body.from_step,
        context_patch=body.context_patch,
        limit=body.limit,
        include_replays=body.include_replays,
    )
    return {
        "replayed": result.replayed,
        "outcomes": [outcome.model_dump(mode="json") for outcome in result.outcomes],
    }


@router.post(
    "/{execution_id}/replay",
    status_code=201,
    summary="Start a new execution from a step of this one, with its context there, patched",
)
def replay(
    execution_id: str, body: ReplayRequest, request: Request, principal: Caller
) -> dict[str, Any]:
    context = context_of(request)
    context.execution_for(principal, execution_id)
    result = context.runtime.engine.replay(
        execution_id,
        body.from_step,
        body.context_patch,
        idempotency_key=body.idempotency_key,
    )
    return {"execution": shown(result.execution), "created": result.created}


__all__ = ["not_found", "router"]
