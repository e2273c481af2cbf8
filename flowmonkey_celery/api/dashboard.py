"""The web dashboard at `/ui` (static files, no build step) and the JSON routes only it needed:
who is calling (`/whoami`), the waiting inbox (`/inbox`), an execution's children, and the fleet
(`/fleet`: last tick, workers seen, queue depths, waiting stats).

Every datum the pages show comes through the tenant-scoped API; the files themselves hold none
and are served without a key.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from flowmonkey_celery.api.auth import Principal, require_admin
from flowmonkey_celery.api.context import ApiContext, caller, context_of
from flowmonkey_celery.api.errors import ApiError
from flowmonkey_celery.api.executions import shown
from flowmonkey_celery.core.execution import Execution, ExecutionStatus, WaitKind
from flowmonkey_celery.errors import ErrorCode

if TYPE_CHECKING:
    from flowmonkey_celery.celery.app import FlowMonkeyCelery

log = logging.getLogger("flowmonkey_celery.api")
UI_DIR = Path(__file__).parent / "ui"
Caller = Annotated[Principal, Depends(caller)]
router = APIRouter(tags=["dashboard"])

# What a person or another system must act on; timers, retry backoffs, children and jobs
# end by themselves.
INBOX_KINDS = (WaitKind.SIGNAL, WaitKind.EVENT)
WORKER_PREFIX = "worker:"
# A worker records its heartbeat every 5 s: one not seen for this long has stopped or is stuck.
WORKER_ALIVE_SECONDS = 30.0
# Workers last seen longer ago than this are no longer listed (their rows stay in the store).
WORKER_LISTED_SECONDS = 24 * 3600.0
BROKER_TIMEOUT_SECONDS = 2.0
# Scripts, styles and data only from this origin: no inline script, nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'self'"
)


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at `/ui` and add its JSON routes."""
    app.include_router(router)

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        html = (UI_DIR / "index.html").read_text(encoding="utf-8")
        if not request.url.path.endswith("/"):
            # Relative to /ui, "app.js" would be /app.js: anchor every relative URL in /ui/
            # (whatever prefix the app is mounted under).
            html = html.replace("<head>", '<head>\n    <base href="ui/">', 1)
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
            },
        )

    app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")


@router.get("/whoami", summary="The caller: its key's name and tenant, and whether it is admin")
def whoami(request: Request, principal: Caller) -> dict[str, Any]:
    return {
        "name": principal.name,
        "tenant_id": principal.tenant_id,
        "admin": principal.admin,
        "auth_required": context_of(request).auth_required,
    }


@router.get(
    "/inbox",
    summary="Executions waiting for a person or a signal (oldest first; keyset paging)",
)
def inbox(
    request: Request,
    principal: Caller,
    flow_id: str | None = None,
    kind: Annotated[WaitKind | None, Query(description="signal or event (default: both)")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: str | None = None,
) -> dict[str, Any]:
    """Waiting executions whose wait a person or another system must end (`signal`: a resume
    or a resume token; `event`: an emitted event), each with its step and deadline.

    `next_after` is the id to pass as `after` for the next page (None at the end).
    """
    context = context_of(request)
    if kind is not None and kind not in INBOX_KINDS:
        raise ApiError(
            400,
            ErrorCode.INVALID_ARGUMENT,
            f"query parameter kind {kind.value!r} is no inbox wait; one of signal, event",
        )
    kinds = (kind,) if kind is not None else INBOX_KINDS
    if after is not None:
        context.execution_for(principal, after)  # another tenant's cursor is unknown too
    page = context.runtime.store.list_executions(
        status=ExecutionStatus.WAITING,
        wait_kinds=kinds,
        flow_id=flow_id,
        tenant_id=None if principal.admin else principal.tenant_id,
        limit=limit + 1,  # one more than asked: whether there is a next page
        after=after,
    )
    items = [_inbox_item(context, execution) for execution in page[:limit]]
    return {"items": items, "next_after": page[limit - 1].id if len(page) > limit else None}


def _inbox_item(context: ApiContext, execution: Execution) -> dict[str, Any]:
    flow = context.runtime.flows.find(execution.flow_id, execution.flow_version)
    step = flow.steps.get(execution.current_step_id or "") if flow is not None else None
    deadline, deadline_kind = _deadline(execution)
    return {
        **shown(execution),
        "waiting_for": {
            "kind": execution.wait_kind.value if execution.wait_kind else None,
            "reason": execution.wait_reason,
            "since": execution.wait_started_at.isoformat() if execution.wait_started_at else None,
            "deadline_at": deadline.isoformat() if deadline else None,
            "deadline": deadline_kind,
            "step_name": (step.name if step else None) or execution.current_step_id,
            "step_type": step.type if step else None,
            # Where resume data lands: at this key, or (None) merged into the context.
            "output_key": step.output_key if step else None,
        },
    }


def _deadline(execution: Execution) -> tuple[datetime | None, str | None]:
    """When the wait ends by itself, and why: the step's or the execution's wait timeout
    (a signal or event wait's `wake_at` is its step's wait deadline), or the execution's."""
    candidates = [
        (execution.wake_at, "wait timeout"),
        (execution.wait_deadline_at, "wait timeout"),
        (execution.deadline_at, "execution timeout"),
    ]
    present = [(at, why) for at, why in candidates if at is not None]
    if not present:
        return None, None
    return min(present, key=lambda pair: pair[0])


@router.get(
    "/executions/{execution_id}/children",
    summary="The executions it started (sub-flows, parallel branches), oldest first",
)
def children(
    execution_id: str,
    request: Request,
    principal: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: str | None = None,
) -> dict[str, Any]:
    context = context_of(request)
    context.execution_for(principal, execution_id)
    store = context.runtime.store
    # One more than asked: whether there is a next page. Children share their parent's
    # tenant, so the caller who sees the parent sees them.
    found = store.list_children(execution_id, limit=limit + 1, after=after)
    if not found and after is not None:
        # Only an empty page can hide a cursor that names no child of this execution.
        anchor = store.get_execution(after)
        if anchor is None or anchor.parent_execution_id != execution_id:
            raise ApiError(
                400,
                ErrorCode.INVALID_ARGUMENT,
                f"after {after!r} is not a child of execution {execution_id!r}",
            )
    page = [c for c in found[:limit] if principal.sees(c.tenant_id)]
    return {
        "items": [shown(c) for c in page],
        "next_after": found[limit - 1].id if len(found) > limit else None,
    }


@router.get("/fleet", summary="Last tick, workers seen, queue depths, waiting executions (admin)")
def fleet(request: Request, principal: Caller) -> dict[str, Any]:
    """What runs the deployment, for an admin key (a tenant's key gets 403: workers, queues
    and waiting counts are everyone's)."""
    require_admin(principal)
    context = context_of(request)
    runtime = context.runtime
    now = runtime.clock.now()
    operators = context.operators
    heartbeats = _quietly(lambda: operators.list_heartbeats(), {}) if operators else {}
    tick = heartbeats.get("tick")
    api = heartbeats.get("api")
    workers = [
        {
            "name": name.removeprefix(WORKER_PREFIX),
            "last_seen_at": at.isoformat(),
            "age_seconds": _age(at, now),
            "alive": _age(at, now) <= WORKER_ALIVE_SECONDS,
        }
        for name, at in sorted(heartbeats.items(), key=lambda pair: pair[1], reverse=True)
        if name.startswith(WORKER_PREFIX) and _age(at, now) <= WORKER_LISTED_SECONDS
    ]
    stats = runtime.store.waiting_stats(now)
    tick_allowed = max(30.0, 10 * runtime.options.tick_seconds)
    return {
        "now": now.isoformat(),
        "tick": {
            "last_at": tick.isoformat() if tick else None,
            "age_seconds": _age(tick, now) if tick else None,
            "period_seconds": runtime.options.tick_seconds,
            "ok": tick is not None and _age(tick, now) <= tick_allowed,
        },
        "api": {
            "last_at": api.isoformat() if api else None,
            "age_seconds": _age(api, now) if api else None,
        },
        "workers": workers,
        "queues": _queues(context),
        "waiting": {
            **stats.model_dump(mode="json"),
            "oldest_waiting_seconds": stats.oldest_waiting_seconds(now),
            "due_lag_seconds": stats.due_lag_seconds(now),
        },
    }


def _queues(context: ApiContext) -> dict[str, Any]:
    """The depth of the step and tick queues, and of every queue a flow or step names."""
    options = context.runtime.options
    names = [options.queue, options.tick_queue_name]
    for flow in context.runtime.flows.all():
        names += [q for q in (flow.queue, *(s.queue for s in flow.steps.values())) if q]
    names = list(dict.fromkeys(names))
    if context.celery is None:
        return {"broker": None, "error": "this API runs without a broker", "items": []}
    return _queue_depths(context.celery, names, step_queue=options.queue)


def _queue_depths(celery: FlowMonkeyCelery, names: list[str], *, step_queue: str) -> dict[str, Any]:
    from kombu.exceptions import ChannelError

    broker = celery.app.connection_for_read().as_uri()  # password masked
    items: list[dict[str, Any]] = []
    try:
        with celery.app.connection_for_read(connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
            for name in names:
                role = "steps" if name == step_queue else "tick" if name.endswith(".tick") else ""
                # One channel per queue: RabbitMQ closes a channel that asked for a missing one.
                channel = connection.channel()
                try:
                    declared = channel.queue_declare(queue=name, passive=True)
                    items.append(
                        {
                            "name": name,
                            "role": role,
                            "messages": declared.message_count,
                            "exists": True,
                        }
                    )
                except ChannelError:  # not declared yet (Redis: never used) or deleted
                    items.append({"name": name, "role": role, "messages": 0, "exists": False})
                finally:
                    _quietly(channel.close, None)
    except Exception as exc:  # the details (host, user) go to the log, not to the page
        log.warning("fleet: the broker does not answer: %s", exc)
        return {
            "broker": broker,
            "error": f"the broker does not answer ({type(exc).__name__})",
            "items": items,
        }
    return {"broker": broker, "error": None, "items": items}


def _age(instant: datetime | None, now: datetime) -> float:
    if instant is None:
        return 0.0
    return round(max((now - instant).total_seconds(), 0.0), 3)


def _quietly(read: Any, default: Any) -> Any:
    try:
        return read()
    except Exception:
        return default
