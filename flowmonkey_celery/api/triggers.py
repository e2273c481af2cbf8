"""`/triggers` (CRUD, fire history, stats), `/events` (emit, list) and `/webhooks/{id}`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from flowmonkey_celery.api.auth import Principal
from flowmonkey_celery.api.context import ApiContext, caller, context_of
from flowmonkey_celery.api.errors import ApiError, not_found
from flowmonkey_celery.core.ports import AnyTrigger
from flowmonkey_celery.core.triggers import (
    TRIGGER_TYPES,
    HttpTrigger,
    parse_trigger,
    without_secrets,
)
from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError

triggers = APIRouter(prefix="/triggers", tags=["triggers"])
events = APIRouter(prefix="/events", tags=["events"])
webhooks = APIRouter(prefix="/webhooks", tags=["webhooks"])
Caller = Annotated[Principal, Depends(caller)]
TriggerBody = Annotated[
    dict[str, Any], Body(description="a trigger: type schedule, http or event (seed README shape)")
]


def shown(trigger: AnyTrigger) -> dict[str, Any]:
    """The trigger as the API shows it: never a secret; an HTTP trigger with its URL."""
    data = without_secrets(trigger)
    if isinstance(trigger, HttpTrigger):
        data["url"] = f"/webhooks/{trigger.id}"
    return data


def _as_stored(body: dict[str, Any], existing: AnyTrigger | None) -> dict[str, Any]:
    """A body as a trigger's fields: what GET shows but a trigger does not hold (`url`,
    `auth.has_secret`) is dropped, and an HTTP trigger's stored secret is kept
    when the body (a GET's output, say) carries none."""
    data = {k: v for k, v in body.items() if k != "url"}
    auth = data.get("auth")
    if isinstance(auth, dict):
        auth = {k: v for k, v in auth.items() if k != "has_secret"}
        kept = existing.auth if isinstance(existing, HttpTrigger) else None
        wants_secret = auth.get("type", "none") != "none"
        if (
            kept is not None
            and kept.secret
            and wants_secret
            and "secret" not in auth
            and not auth.get("secret_env")
        ):
            auth["secret"] = kept.secret
        data["auth"] = auth
    return data


def _parsed(body: dict[str, Any], principal: Principal, context: ApiContext) -> AnyTrigger:
    try:
        trigger = parse_trigger(body)
    except ValidationError as exc:
        issues = [
            {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        listed = "; ".join(f"{i['path']}: {i['message']}" for i in issues)
        raise ApiError(
            422,
            ErrorCode.INVALID_INPUT,
            f"the trigger is invalid ({len(issues)} problem(s)): {listed}",
            {"issues": issues},
        ) from None
    if isinstance(trigger, HttpTrigger) and trigger.auth.secret_env and not principal.admin:
        raise ApiError(
            403,
            ErrorCode.UNAUTHORIZED,
            "auth.secret_env (a variable of the API's host) needs an admin API key; give the "
            "secret itself in auth.secret",
        )
    if hasattr(trigger, "tenant_id"):
        asked = getattr(trigger, "tenant_id", None)
        trigger = trigger.model_copy(update={"tenant_id": principal.tenant_for(asked)})
    elif not principal.admin:  # a schedule trigger has no tenant: an operator's
        raise ApiError(403, ErrorCode.UNAUTHORIZED, "schedule triggers need an admin API key")
    context.flow_for(principal, trigger.flow_id)  # 404 for a flow this key cannot use
    return trigger


@triggers.get("", summary="Triggers this key may see")
def list_triggers(request: Request, principal: Caller, type: str | None = None) -> dict[str, Any]:
    context = context_of(request)
    if type is not None and type not in TRIGGER_TYPES:
        raise ApiError(
            400,
            ErrorCode.INVALID_ARGUMENT,
            f"unknown trigger type {type!r} in query parameter type; one of "
            f"{', '.join(TRIGGER_TYPES)}",
        )
    found = context.triggers.list_triggers(trigger_type=type)
    return {"items": [shown(t) for t in found if principal.sees(getattr(t, "tenant_id", None))]}


@triggers.post("", status_code=201, summary="Create a trigger (409 if the id exists: use PUT)")
def create_trigger(body: TriggerBody, request: Request, principal: Caller) -> dict[str, Any]:
    context = context_of(request)
    trigger = _parsed(_as_stored(body, None), principal, context)
    taken = ApiError(
        409,
        ErrorCode.INVALID_ARGUMENT,
        f"trigger id {trigger.id!r} is taken; PUT /triggers/{trigger.id} replaces a trigger "
        "of yours, PATCH changes some of its fields",
    )
    if context.triggers.get_trigger(trigger.id) is not None:
        raise taken
    try:  # the store decides between two creators of one id
        return shown(context.runtime.register_trigger(trigger, create_only=True))
    except FlowMonkeyError as exc:
        if exc.details.get("taken"):
            raise taken from None
        raise


@triggers.get("/{trigger_id}", summary="One trigger")
def get_trigger(trigger_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    return shown(context_of(request).trigger_for(principal, trigger_id))


@triggers.put("/{trigger_id}", summary="Replace a trigger (a GET's output, edited, will do)")
def replace_trigger(
    trigger_id: str, body: TriggerBody, request: Request, principal: Caller
) -> dict[str, Any]:
    context = context_of(request)
    existing = context.trigger_for(principal, trigger_id)
    trigger = _parsed({**_as_stored(body, existing), "id": trigger_id}, principal, context)
    return shown(context.runtime.register_trigger(trigger))


@triggers.patch("/{trigger_id}", summary='Change some fields, e.g. {"enabled": false}')
def change_trigger(
    trigger_id: str, body: TriggerBody, request: Request, principal: Caller
) -> dict[str, Any]:
    context = context_of(request)
    existing = context.trigger_for(principal, trigger_id)
    merged = {**existing.model_dump(mode="json"), **_as_stored(body, existing), "id": trigger_id}
    if isinstance(existing, HttpTrigger) and "auth" not in body:
        merged["auth"] = existing.auth.model_dump(mode="json")  # with its secret
    trigger = _parsed(_as_stored(merged, existing), principal, context)
    return shown(context.runtime.register_trigger(trigger))


@triggers.delete("/{trigger_id}", summary="Delete a trigger and its history")
def delete_trigger(trigger_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    context = context_of(request)
    context.trigger_for(principal, trigger_id)
    context.triggers.delete_trigger(trigger_id)
    return {"deleted": trigger_id}


@triggers.get("/{trigger_id}/history", summary="Fires, newest first")
def trigger_history(
    trigger_id: str,
    request: Request,
    principal: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    context = context_of(request)
    context.trigger_for(principal, trigger_id)
    fires = context.triggers.list_trigger_fires(trigger_id, limit=limit)
    return {"items": [f.model_dump(mode="json") for f in fires]}


@triggers.get("/{trigger_id}/stats", summary="Fires by status, last fire, mean latency")
def trigger_stats(trigger_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    context = context_of(request)
    context.trigger_for(principal, trigger_id)
    stats: dict[str, Any] = context.triggers.trigger_stats(trigger_id).model_dump(mode="json")
    return stats


# -- events -----------------------------------------------------------------------------------


class EmitRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, loc_by_alias=False
    )

    type: str = Field(min_length=1, max_length=200)
    payload: Any = None
    key: str | None = Field(default=None, min_length=1, max_length=500)
    tenant_id: str | None = Field(default=None, min_length=1, max_length=200)


@events.post("", status_code=202, summary="Emit an event: start and resume what it matches")
def emit(body: EmitRequest, request: Request, principal: Caller) -> dict[str, Any]:
    context = context_of(request)
    result = context.runtime.emit(
        body.type,
        body.payload,
        body.key,
        tenant_id=principal.tenant_for(body.tenant_id),
        source="api",
    )
    return {
        "event": result.event.model_dump(mode="json"),
        "created": result.created,
        "started": result.started,
        "resumed": result.resumed,
    }


@events.get("", summary="Stored events, oldest first (keyset paging with `after`)")
def list_events(
    request: Request,
    principal: Caller,
    type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: str | None = None,
) -> dict[str, Any]:
    context = context_of(request)
    tenant = None if principal.admin else principal.tenant_id
    with context.runtime.store.transaction() as tx:
        if after is not None:
            anchor = tx.get_event(after)
            if anchor is None or not principal.sees(anchor.tenant_id):
                raise not_found("event", after, ErrorCode.EVENT_NOT_FOUND)
        found = tx.list_events(event_type=type, tenant_id=tenant, after=after, limit=limit)
    if not principal.admin:  # tenant None means "any" to the store: keep only the key's own
        found = [e for e in found if e.tenant_id == principal.tenant_id]
    return {
        "items": [e.model_dump(mode="json") for e in found],
        "next_after": found[-1].id if len(found) == limit else None,
    }


# -- webhooks (the trigger's own auth, not an API key) -------------------------------------------


@webhooks.post("/{trigger_id}", summary="Fire an HTTP trigger: 202 with the execution id")
async def fire_webhook(trigger_id: str, request: Request) -> JSONResponse:
    context = context_of(request)
    receiver = context.receiver
    # The store and the broker are blocking calls: off the event loop, so one delivery's
    # commits never stall the others (or /health).
    trigger = await run_in_threadpool(receiver.trigger, trigger_id)
    body = await _read_capped(request, trigger.max_body_bytes)
    if body is None:
        answer = await run_in_threadpool(receiver.too_large, trigger)
    else:
        headers = dict(request.headers)
        answer = await run_in_threadpool(
            lambda: receiver.receive(trigger_id, headers, body, trigger=trigger)
        )
    return JSONResponse(answer.body, answer.status, headers=answer.headers)


@webhooks.get("/{trigger_id}", summary="What the HTTP trigger expects (no secrets)")
def webhook_info(trigger_id: str, request: Request) -> dict[str, Any]:
    trigger = context_of(request).receiver.trigger(trigger_id)
    return {
        "id": trigger.id,
        "name": trigger.name,
        "flow_id": trigger.flow_id,
        "enabled": trigger.enabled,
        "input_schema": trigger.input_schema,
        "auth": {"type": trigger.auth.type, "scheme": trigger.auth.scheme}
        if trigger.auth.type == "hmac"
        else {"type": trigger.auth.type},
        "max_body_bytes": trigger.max_body_bytes,
    }


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than `limit` (never read whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
