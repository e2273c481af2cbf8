"""`/flows`: list, read (a version or the latest), register (validated), validate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from flowmonkey_celery.api.auth import Principal
from flowmonkey_celery.api.context import ApiContext, caller, context_of
from flowmonkey_celery.api.errors import ApiError
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.validation import build_flow
from flowmonkey_celery.errors import ErrorCode, FlowNotFoundError, FlowValidationError

router = APIRouter(prefix="/flows", tags=["flows"])
Caller = Annotated[Principal, Depends(caller)]
FlowBody = Annotated[dict[str, Any], Body(description="a flow (FlowMonkey JSON or snake_case)")]


def _summary(flow: Flow, versions: list[str], owner: str | None) -> dict[str, Any]:
    return {
        "id": flow.id,
        "name": flow.name,
        "latest_version": flow.version,
        "versions": versions,
        "steps": len(flow.steps),
        "tenant_id": owner,
    }


@router.get("", summary="The flows this key may use, with their versions")
def list_flows(request: Request, principal: Caller) -> dict[str, Any]:
    context = context_of(request)
    registry = context.runtime.flows
    owners = context.operators.flow_owners() if context.operators is not None else {}
    items = []
    for flow_id in registry.flow_ids():
        if context.sees_flow(principal, flow_id):
            latest, versions = registry.get(flow_id), registry.versions(flow_id)
            items.append(_summary(latest, versions, owners.get(flow_id)))
    return {"items": items}


@router.get("/{flow_id}", summary="A flow (latest version, or ?version=)")
def get_flow(
    flow_id: str, request: Request, principal: Caller, version: str | None = None
) -> dict[str, Any]:
    flow = context_of(request).flow_for(principal, flow_id, version)
    shown: dict[str, Any] = {**flow.to_dict(), "version": flow.version}
    if shown.get("triggers"):  # a flow file's webhook secrets are nobody's to read here
        shown["triggers"] = [_without_secret(t) for t in shown["triggers"]]
    return shown


def _without_secret(trigger: dict[str, Any]) -> dict[str, Any]:
    auth = trigger.get("auth")
    if not isinstance(auth, dict) or "secret" not in auth:
        return trigger
    public = {k: v for k, v in auth.items() if k != "secret"}
    return {**trigger, "auth": {**public, "has_secret": True}}


@router.post("/validate", summary="Check a flow, step configs included, without registering it")
def validate(body: FlowBody, request: Request, principal: Caller) -> dict[str, Any]:
    context = context_of(request)
    flow = build_flow(body, context.runtime.handlers.step_config_issues)
    _check_handlers(context, flow)  # what register would refuse, validate refuses
    return {"valid": True, "id": flow.id, "version": flow.version, "steps": len(flow.steps)}


@router.post("", status_code=201, summary="Register a flow version (422 lists every problem)")
def register(body: FlowBody, request: Request, principal: Caller) -> dict[str, Any]:
    context = context_of(request)
    flow = build_flow(body, context.runtime.handlers.step_config_issues)
    _check_handlers(context, flow)
    _check_children(context, principal, flow)
    _claim(context, principal, flow.id)
    save = getattr(context.runtime.store, "save_flow_definition", None)
    if callable(save):  # the store decides first (another process may hold this version)
        save(flow, now=context.runtime.clock.now())
    registered = context.runtime.flows.register(flow)
    return {"id": registered.id, "version": registered.version, "steps": len(registered.steps)}


def _check_handlers(context: ApiContext, flow: Flow) -> None:
    """A step type no handler of this deployment serves is refused now, not at the first start."""
    handlers = context.runtime.handlers
    issues = [
        (f"steps.{step.id}.type", f"no handler for step type {step.type!r} in this deployment")
        for step in flow.steps.values()
        if not handlers.has(step.type)
    ]
    if issues:
        raise FlowValidationError(
            f"flow {flow.id!r} uses step types no handler serves ({len(issues)})", issues
        )


def _check_children(context: ApiContext, principal: Principal, flow: Flow) -> None:
    """A sub-flow or parallel branch may only start flows this key may use: a tenant's flow
    cannot run another tenant's private one as its child."""
    issues = []
    for step in flow.steps.values():
        config = step.config
        named = [(f"steps.{step.id}.config.flow", config.get("flow"))]
        for index, branch in enumerate(config.get("branches") or []):
            if isinstance(branch, dict):
                named.append((f"steps.{step.id}.config.branches.{index}.flow", branch.get("flow")))
        for path, child in named:
            if (
                isinstance(child, str)
                and child != flow.id
                and not context.sees_flow(principal, child)
            ):
                issues.append((path, f"flow {child!r} not found"))
    if issues:
        raise FlowValidationError(f"flow {flow.id!r} starts flows it cannot use", issues)


def _claim(context: ApiContext, principal: Principal, flow_id: str) -> None:
    """A tenant's key registers flows of its own; it cannot add versions to a shared flow or
    to another tenant's."""
    if principal.admin:
        return
    exists = _registered(context, flow_id)
    owner = context.flow_owner(flow_id)
    if exists and owner is None:
        raise ApiError(
            409,
            ErrorCode.INVALID_ARGUMENT,
            f"flow id {flow_id!r} is not available to this key; choose another id",
        )
    assert context.operators is not None and principal.tenant_id is not None
    if context.operators.claim_flow(flow_id, principal.tenant_id) != principal.tenant_id:
        raise ApiError(
            409,
            ErrorCode.INVALID_ARGUMENT,
            f"flow id {flow_id!r} is not available to this key; choose another id",
        )


def _registered(context: ApiContext, flow_id: str) -> bool:
    try:
        context.runtime.flows.get(flow_id)
    except FlowNotFoundError:
        return False
    return True
