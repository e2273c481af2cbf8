"""The REST API: `create_app(fm)` gives a FastAPI app to serve (`flowmonkey api`) or to mount in
an existing FastAPI/Starlette app (`parent.mount("/flowmonkey", create_app(fm))`).

OpenAPI is at `/docs` and `/openapi.json`. Every route but `/health`, `/ready` and
`/webhooks/{id}` (which check a trigger's own secret) needs an API key; `/metrics` an admin one,
unless FLOWMONKEY_METRICS_PUBLIC=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from flowmonkey_celery.api import executions, flows, metrics, triggers
from flowmonkey_celery.api.bodies import RequestGuard
from flowmonkey_celery.api.context import ApiContext, context_of
from flowmonkey_celery.api.dashboard import install_dashboard
from flowmonkey_celery.api.errors import install_error_handlers
from flowmonkey_celery.core.ports import OperatorStore
from flowmonkey_celery.core.triggers import HTTP
from flowmonkey_celery.observability.metrics import default_metrics
from flowmonkey_celery.observability.tracing import TracingMiddleware, install_tracing
from flowmonkey_celery.runtime import Runtime
from flowmonkey_celery.triggers.webhooks import WebhookReceiver

if TYPE_CHECKING:
    from flowmonkey_celery.celery.app import FlowMonkeyCelery

log = logging.getLogger("flowmonkey_celery.api")
API_HEARTBEAT = "api"
HEARTBEAT_SECONDS = 30.0


def create_app(
    fm: FlowMonkeyCelery | Runtime,
    *,
    auth: bool = True,
    title: str = "FlowMonkey",
) -> FastAPI:
    """The API over a Celery runtime (executions it starts are enqueued) or a bare Runtime.

    `auth=False` serves every route without a key, as an admin: only for a local trial.
    """
    runtime = fm if isinstance(fm, Runtime) else fm.runtime
    celery = None if isinstance(fm, Runtime) else fm
    receiver = WebhookReceiver(
        runtime.engine,
        runtime.store,
        dispatch=celery.dispatch if celery is not None else None,
        clock=runtime.clock,
        # Counted like the rejections the history keeps (flowmonkey_trigger_fires_total).
        on_unrecorded=lambda record: default_metrics().trigger_fired(HTTP, record.status),
    )
    context = ApiContext(runtime=runtime, celery=celery, auth_required=auth, receiver=receiver)
    runtime.http_adapter = True  # this process serves the webhooks (mounted or not)
    if not auth:
        log.warning("the FlowMonkey API runs without API keys: anyone can reach every route")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        beat = asyncio.create_task(_heartbeat(runtime))
        try:
            yield
        finally:
            beat.cancel()

    app = FastAPI(
        title=title,
        description="Durable workflows on Celery: flows, executions, triggers and events.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.flowmonkey = context
    install_error_handlers(app)
    app.include_router(flows.router)
    app.include_router(executions.router)
    app.include_router(triggers.triggers)
    app.include_router(triggers.events)
    app.include_router(triggers.webhooks)
    app.include_router(metrics.metrics_router(runtime))
    install_dashboard(app)  # /ui and the JSON routes only the dashboard needed

    app.add_middleware(RequestGuard)
    tracing = install_tracing(runtime)  # the runtime's own, provider and all
    if tracing.enabled:
        # Outermost: a webhook's `traceparent` becomes the parent of the executions it starts.
        app.add_middleware(TracingMiddleware, tracing=tracing)

    @app.get("/health", tags=["health"], summary="Liveness: the process answers")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], summary="Readiness: database, broker and a recent tick")
    def ready(request: Request) -> JSONResponse:
        checks = _readiness(context_of(request))
        ok = all(check["ok"] for check in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, 200 if ok else 503)

    return app


def _readiness(context: ApiContext) -> dict[str, dict[str, Any]]:
    runtime = context.runtime
    checks: dict[str, dict[str, Any]] = {}
    try:
        runtime.store.list_executions(limit=1)
        checks["database"] = {"ok": True}
    except Exception as exc:  # the details (host, user) go to the log, not to anyone asking
        log.warning("readiness: the database does not answer: %s", exc)
        checks["database"] = {
            "ok": False,
            "error": f"the database does not answer ({type(exc).__name__})",
        }
    if context.celery is not None:
        try:
            with context.celery.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = {"ok": True}
        except Exception as exc:
            log.warning("readiness: the broker does not answer: %s", exc)
            checks["broker"] = {
                "ok": False,
                "error": f"the broker does not answer ({type(exc).__name__})",
            }
    store = runtime.store
    if isinstance(store, OperatorStore):
        last = _quietly(lambda: store.last_heartbeat("tick"))
        allowed = timedelta(seconds=max(30.0, 10 * runtime.options.tick_seconds))
        recent = last is not None and runtime.clock.now() - last <= allowed
        checks["tick"] = {
            "ok": recent,
            "last_tick_at": last.isoformat() if last else None,
            **({} if recent else {"error": f"no tick in the last {allowed}: is a beat running?"}),
        }
    return checks


async def _heartbeat(runtime: Runtime) -> None:
    """Tell the store an API serves this deployment (registering an HTTP trigger checks)."""
    store = runtime.store
    if not isinstance(store, OperatorStore):
        return
    while True:
        try:
            await asyncio.to_thread(store.record_heartbeat, API_HEARTBEAT, runtime.clock.now())
        except Exception:
            log.exception("cannot record the API's heartbeat")
        await asyncio.sleep(HEARTBEAT_SECONDS)


def _quietly(read: Any) -> Any:
    try:
        return read()
    except Exception:
        return None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowmonkey-celery")
    except PackageNotFoundError:
        return "0"
