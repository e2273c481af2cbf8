"""What every route needs: the runtime, the Celery side that enqueues, and who is calling."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request

from flowmonkey_celery.api.auth import Principal, authenticate
from flowmonkey_celery.api.errors import ApiError, not_found
from flowmonkey_celery.core.execution import CreateResult, Execution
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.ports import AnyTrigger, OperatorStore, TriggerStore
from flowmonkey_celery.errors import ErrorCode
from flowmonkey_celery.runtime import Runtime
from flowmonkey_celery.triggers.webhooks import WebhookReceiver

log = logging.getLogger("flowmonkey_celery.api")

if TYPE_CHECKING:
    from flowmonkey_celery.celery.app import FlowMonkeyCelery


@dataclass
class ApiContext:
    runtime: Runtime
    celery: FlowMonkeyCelery | None
    auth_required: bool
    receiver: WebhookReceiver

    @property
    def operators(self) -> OperatorStore | None:
        store = self.runtime.store
        return store if isinstance(store, OperatorStore) else None

    @property
    def triggers(self) -> TriggerStore:
        store = self.runtime.store
        assert isinstance(store, TriggerStore)
        return store

    # -- tenant scope: another tenant's things answer as if they did not exist ---------------

    def execution_for(self, principal: Principal, execution_id: str) -> Execution:
        execution = self.runtime.engine.get(execution_id)
        if execution is None or not principal.sees(execution.tenant_id):
            raise not_found("execution", execution_id, ErrorCode.EXECUTION_NOT_FOUND)
        return execution

    def flow_owner(self, flow_id: str) -> str | None:
        operators = self.operators
        return operators.flow_owners().get(flow_id) if operators is not None else None

    def sees_flow(self, principal: Principal, flow_id: str) -> bool:
        owner = self.flow_owner(flow_id)
        return principal.admin or owner is None or owner == principal.tenant_id

    def flow_for(self, principal: Principal, flow_id: str, version: str | None = None) -> Flow:
        """The flow, or 404: the same answer for an unknown id, another tenant's flow or a
        missing version (the registry's own message lists every flow id: not for a tenant)."""
        found = self.runtime.flows.find(flow_id, version)
        if found is None or not self.sees_flow(principal, flow_id):
            what = f"{flow_id!r} version {version}" if version else repr(flow_id)
            raise ApiError(404, ErrorCode.FLOW_NOT_FOUND, f"flow {what} not found", {"id": flow_id})
        return found

    def trigger_for(self, principal: Principal, trigger_id: str) -> AnyTrigger:
        trigger = self.triggers.get_trigger(trigger_id)
        if trigger is None or not principal.sees(_tenant_of(trigger)):
            raise not_found("trigger", trigger_id, ErrorCode.TRIGGER_NOT_FOUND)
        return trigger

    # -- commit, then enqueue ------------------------------------------------------------------

    def start(self, flow_id: str, context: dict[str, Any], **options: Any) -> CreateResult:
        result = self.runtime.engine.create(flow_id, context, **options)
        if result.created and self.celery is not None:
            try:
                self.celery.dispatch(result.execution)
            except Exception:  # committed: the stalled sweep sends it one lease later
                log.exception("execution %s committed but not enqueued", result.execution.id)
        return result


def _tenant_of(trigger: AnyTrigger) -> str | None:
    return getattr(trigger, "tenant_id", None)


def context_of(request: Request) -> ApiContext:
    found: ApiContext = request.app.state.flowmonkey
    return found


def caller(request: Request) -> Principal:
    """The FastAPI dependency naming the caller (401 without a valid key)."""
    context = context_of(request)
    return authenticate(request, context.operators, context.auth_required)
