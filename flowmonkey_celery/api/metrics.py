"""`GET /metrics`: Prometheus's view of this API process and of the store.

The answer holds this process's counters (executions it created or cancelled, webhook and
event fires it recorded; with FLOWMONKEY_METRICS_DIR, summed over every process writing to that
directory, e.g. `flowmonkey api --workers 4`) and the store gauges (waiting executions, the
oldest wait, due wakes not yet woken), which only this route serves: every API replica reports
the same fleet-wide values, so aggregate them with `max`, never `sum`.

It needs an admin API key (flow ids of every tenant are in it), like the operator routes,
unless FLOWMONKEY_METRICS_PUBLIC=true (a port only Prometheus reaches) or the API runs without
keys. Prometheus sends the key with `authorization: {credentials: fmk_...}` in its scrape job.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from flowmonkey_celery.api.auth import authenticate, require_admin
from flowmonkey_celery.api.context import context_of
from flowmonkey_celery.observability.metrics import exposition_registry, observe_engine, render
from flowmonkey_celery.runtime import Runtime


def metrics_router(runtime: Runtime) -> APIRouter:
    """The `/metrics` route, with `runtime`'s engine counted (once, however many apps)."""
    observe_engine(runtime.engine)
    registry = exposition_registry(runtime.store, runtime.clock)
    router = APIRouter(tags=["health"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    def metrics(request: Request) -> Response:
        context = context_of(request)
        settings = context.runtime.settings
        if not (settings is not None and settings.metrics_public):
            require_admin(authenticate(request, context.operators, context.auth_required))
        body, content_type = render(registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return router
