"""OpenTelemetry traces: a span per step attempt, in one trace per execution, across processes.

Library code uses `opentelemetry-api` only, and only if it is installed (the `[otel]` extra):
without it every function here is a no-op and nothing else changes. With the API but no SDK
configured, spans are the API's no-op spans (context still propagates). The SDK is set up only
by `configure_tracing` at the entry points, when FLOWMONKEY_OTEL_EXPORTER asks for it; a
TracerProvider your own app set gets flowmonkey's spans instead.

How one execution stays one trace, for days and across processes:

* When an execution is created, its trace context is saved in its `metadata` as W3C
  `traceparent` (and `tracestate`): the caller's current span (a webhook's server span, a cron
  fire's span, your own span around `fm.start`), else a child's parent execution's, else one
  already in the metadata (yours, or a replayed execution's), else a new root span
  `flowmonkey.execution <flow_id>`.
* Every attempt of a step is a span `flowmonkey.step <step_id>` whose parent is that saved
  context, whichever worker runs it and however much later: the trace reads as the execution's
  timeline. The span is current while the handler runs, so spans the handler makes (an
  instrumented HTTP client, say) nest under it.
* Celery messages of flowmonkey's tasks carry the sender's context in their headers. When it
  belongs to another trace (a resume sent by an API request, an event emitted in someone else's
  trace), the step span links to it: a link, not a parent, because the step belongs to its
  execution's trace and the sender's trace only caused it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.hooks import HandlerCall
from flowmonkey_celery.core.invoke import Invocation
from flowmonkey_celery.core.triggers import ScheduleTrigger
from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError
from flowmonkey_celery.settings import Settings

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.trace import (
        Link,
        NonRecordingSpan,
        Span,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
    )
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the [otel] extra is not installed: tracing is off
    OTEL_AVAILABLE = False
else:
    OTEL_AVAILABLE = True

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Tracer, TracerProvider

    from flowmonkey_celery.core.engine import Engine

log = logging.getLogger("flowmonkey_celery.tracing")

TRACER_NAME = "flowmonkey_celery"
# Where an execution's trace context lives (its metadata: a JSON document, no extra column).
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Celery tasks whose messages carry the sender's context: flowmonkey's own, not yours.
TASK_PREFIX = "flowmonkey."
# Requests that start or move nothing: no server span (probes would flood the traces).
_UNTRACED_SUFFIXES = ("/health", "/ready", "/metrics", "/openapi.json", "/docs", "/redoc")
EXPORTERS = ("none", "console", "otlp")
_INSTALL_OTEL = "pip install 'flowmonkey-celery[otel]'"
_INSTALL_OTLP_GRPC = "pip install opentelemetry-exporter-otlp-proto-grpc"

# The span that started the work under way (a webhook request, a cron fire): the execution it
# creates is recorded on it.
_starter: ContextVar[Any] = ContextVar("flowmonkey_starter_span", default=None)
_installed: WeakKeyDictionary[Engine, Tracing] = WeakKeyDictionary()


class Tracing:
    """flowmonkey's spans for one engine (see `install_tracing`).

    Attributes:
        enabled: False when OpenTelemetry is not installed (everything is then a no-op).
    """

    def __init__(self, engine: Engine, tracer_provider: TracerProvider | None = None) -> None:
        self.engine = engine
        self.enabled = OTEL_AVAILABLE
        self.tracer: Tracer | None = None
        self._unhook: list[Callable[[], None]] = []
        if not self.enabled:
            return
        self.use(tracer_provider)
        self._unhook = [
            engine.hooks.on_creating(self._annotate_new_execution),
            engine.hooks.wrap_handler_calls(self._step_span),
        ]

    def use(self, tracer_provider: TracerProvider | None) -> None:
        """Send spans to `tracer_provider` from now on (None: the global one, which is a proxy
        to whatever provider your app sets, even later)."""
        if self.enabled:
            self.tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)

    def uninstall(self) -> None:
        """Stop making spans for this engine."""
        for unhook in self._unhook:
            unhook()
        self._unhook = []
        if _installed.get(self.engine) is self:
            del _installed[self.engine]

    # -- executions and steps ------------------------------------------------------------------

    def _annotate_new_execution(self, execution: Execution, parent: Execution | None) -> None:
        assert self.tracer is not None
        if parent is not None:  # a child started by a step: its parent's trace
            _save_context(execution, execution_context(parent))
            return
        current = trace.get_current_span()
        if current.get_span_context().is_valid:
            _save_context(execution, otel_context.get_current())
            if _starter.get() is current:
                current.set_attribute("flowmonkey.execution.id", execution.id)
            return
        if _stored_context(execution) is not None:
            return  # given by the caller, or inherited from a replayed execution
        root = self.tracer.start_span(
            f"flowmonkey.execution {execution.flow_id}",
            attributes=_execution_attributes(execution),
        )
        root.end()
        if root.get_span_context().is_valid:  # a no-op provider makes invalid spans
            _save_context(execution, trace.set_span_in_context(root))

    def _step_span(self, params: HandlerParams, call: HandlerCall) -> Invocation:
        assert self.tracer is not None
        execution = params.execution
        parent = execution_context(execution)
        parent_trace = trace.get_current_span(parent).get_span_context().trace_id
        sender = trace.get_current_span().get_span_context()
        links = (
            [Link(sender, {"flowmonkey.link": "sent_by"})]
            if sender.is_valid and sender.trace_id != parent_trace
            else None
        )
        attributes: dict[str, Any] = {
            **_execution_attributes(execution),
            "flowmonkey.step.id": params.step.id,
            "flowmonkey.step.type": params.step.type,
            "flowmonkey.step.attempt": params.attempt,
            "flowmonkey.step.key": params.step_key,
        }
        with self.tracer.start_as_current_span(
            f"flowmonkey.step {params.step.id}",
            context=parent,
            attributes=attributes,
            links=links,
        ) as span:
            invocation = call()
            result = invocation.result
            span.set_attribute("flowmonkey.step.outcome", result.outcome)
            if result.error is not None:
                span.set_attributes(
                    {
                        "flowmonkey.error.code": result.error.code,
                        "flowmonkey.error.message": result.error.message,
                        "error.type": result.error.code,
                    }
                )
                span.set_status(
                    Status(StatusCode.ERROR, f"{result.error.code}: {result.error.message}")
                )
        return invocation

    # -- what starts executions ----------------------------------------------------------------

    @contextlib.contextmanager
    def schedule_fire(self, trigger: ScheduleTrigger, slot: datetime) -> Iterator[None]:
        """A span `flowmonkey.schedule.fire <trigger_id>` around one cron fire: the execution
        it starts is in its trace (`fire_due_schedules(around_fire=...)` takes this)."""
        if self.tracer is None:
            yield
            return
        attributes = {
            "flowmonkey.trigger.id": trigger.id,
            "flowmonkey.flow.id": trigger.flow_id,
            "flowmonkey.schedule": trigger.schedule,
            "flowmonkey.schedule.slot": slot.isoformat(),
        }
        with self.tracer.start_as_current_span(
            f"flowmonkey.schedule.fire {trigger.id}", attributes=attributes
        ) as span:
            token = _starter.set(span)
            try:
                yield
            finally:
                _starter.reset(token)


def install_tracing(target: Any, tracer_provider: TracerProvider | None = None) -> Tracing:
    """Make spans for an engine's executions (a `Runtime` and `FlowMonkeyCelery` do it for
    theirs): a root or inherited trace context saved with each new execution, and a span per
    step attempt. Calling it again for the same engine returns the same `Tracing`, switched to
    `tracer_provider` if one is given.

    Args:
        target: an `Engine`, or what holds one (a `Runtime`, a `FlowMonkeyCelery`).
        tracer_provider: where the spans go (tests pass one with an in-memory exporter);
            None: the global provider, i.e. your app's, or the one `configure_tracing` set.

    Returns:
        The engine's `Tracing` (`enabled` is False without OpenTelemetry).
    """
    engine = _engine_of(target)
    existing = _installed.get(engine)
    if existing is not None:
        if tracer_provider is not None:
            existing.use(tracer_provider)
        return existing
    tracing = Tracing(engine, tracer_provider)
    _installed[engine] = tracing
    return tracing


def tracing_of(target: Any) -> Tracing | None:
    """The `Tracing` installed for an engine (or what holds one), if any."""
    return _installed.get(_engine_of(target))


def execution_context(execution: Execution) -> Context:
    """The trace context an execution's spans belong to: the one saved at its creation, or,
    for an execution created while tracing was off, one derived from its id (so that its
    steps still share a trace)."""
    stored = _stored_context(execution)
    if stored is not None:
        return stored
    digest = hashlib.sha256(execution.id.encode("utf-8")).digest()
    derived = SpanContext(
        trace_id=int.from_bytes(digest[:16], "big") or 1,
        span_id=int.from_bytes(digest[16:24], "big") or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(derived))


def _stored_context(execution: Execution) -> Context | None:
    carrier = {
        key: value
        for key in (TRACEPARENT, TRACESTATE)
        if isinstance(value := execution.metadata.get(key), str)
    }
    if TRACEPARENT not in carrier:
        return None
    context = TraceContextTextMapPropagator().extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def _save_context(execution: Execution, context: Context) -> None:
    """Save `context` in the metadata as W3C headers (whatever propagator is configured for
    the wire, the stored form stays the same)."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=context)
    if TRACEPARENT not in carrier:
        return
    execution.metadata.pop(TRACESTATE, None)  # one inherited from a replayed execution
    execution.metadata.update(carrier)


def _execution_attributes(execution: Execution) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "flowmonkey.execution.id": execution.id,
        "flowmonkey.flow.id": execution.flow_id,
        "flowmonkey.flow.version": execution.flow_version,
    }
    optional = {
        "flowmonkey.tenant.id": execution.tenant_id,
        "flowmonkey.parent_execution.id": execution.parent_execution_id,
        "flowmonkey.trigger.id": execution.metadata.get("trigger_id"),
    }
    attributes.update({k: v for k, v in optional.items() if isinstance(v, str)})
    return attributes


def _engine_of(target: Any) -> Engine:
    from flowmonkey_celery.core.engine import Engine

    for candidate in (target, getattr(target, "engine", None), getattr(target, "runtime", None)):
        if isinstance(candidate, Engine):
            return candidate
        engine = getattr(candidate, "engine", None)
        if isinstance(engine, Engine):
            return engine
    raise TypeError(f"expected an Engine, a Runtime or a FlowMonkeyCelery, not {target!r}")


# -- Celery: the sender's context travels in flowmonkey's message headers ---------------------


def propagate_through_celery() -> None:
    """Carry the current trace context in the headers of flowmonkey's Celery messages (step,
    job, tick) and make it current in the worker while the task runs. Connected once per
    process, for every app; other tasks are left alone."""
    if not OTEL_AVAILABLE:
        return
    from celery import signals

    signals.before_task_publish.connect(
        _inject_into_headers, weak=False, dispatch_uid="flowmonkey-otel-publish"
    )
    signals.task_prerun.connect(_adopt_sender, weak=False, dispatch_uid="flowmonkey-otel-prerun")
    signals.task_postrun.connect(_drop_sender, weak=False, dispatch_uid="flowmonkey-otel-postrun")
    signals.worker_process_shutdown.connect(
        _flush_spans, weak=False, dispatch_uid="flowmonkey-otel-flush"
    )


def _ours(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(TASK_PREFIX)


def _inject_into_headers(
    sender: Any = None, headers: MutableMapping[str, Any] | None = None, **_: Any
) -> None:
    if _ours(sender) and headers is not None:
        propagate.inject(headers)


_TOKEN = "_flowmonkey_trace_token"

if OTEL_AVAILABLE:

    class _RequestGetter(Getter[Any]):
        """Reads propagation headers from a Celery task request (they become attributes)."""

        def get(self, carrier: Any, key: str) -> list[str] | None:
            value = getattr(carrier, key, None)
            return [value] if isinstance(value, str) else None

        def keys(self, carrier: Any) -> list[str]:
            headers = getattr(carrier, "headers", None)
            return list(headers) if isinstance(headers, dict) else []


def _adopt_sender(task: Any = None, **_: Any) -> None:
    if task is None or not _ours(getattr(task, "name", None)):
        return
    request = task.request
    sent_in = propagate.extract(request, getter=_RequestGetter())
    if trace.get_current_span(sent_in).get_span_context().is_valid:
        setattr(request, _TOKEN, otel_context.attach(sent_in))


def _drop_sender(task: Any = None, **_: Any) -> None:
    token = getattr(getattr(task, "request", None), _TOKEN, None)
    if token is not None:
        otel_context.detach(token)
        setattr(task.request, _TOKEN, None)


def _flush_spans(**_: Any) -> None:
    """A prefork child exits without running the SDK's exit hook: send what is buffered."""
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if callable(flush):
        flush(5000)


# -- HTTP: a server span per request, continuing the caller's trace (W3C traceparent) ----------

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_App = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


class TracingMiddleware:
    """ASGI middleware: each request (but health probes, metrics and docs) runs in a SERVER span
    whose parent is the caller's `traceparent` header, so a webhook delivered with one starts
    an execution in the caller's trace. If a span is already current (your app's own
    instrumentation, with this app mounted in it), that span is used as it is."""

    def __init__(self, app: _App, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        tracer = self.tracing.tracer
        path = str(scope.get("path", ""))
        if (
            tracer is None
            or scope.get("type") != "http"
            or path.rstrip("/").endswith(_UNTRACED_SUFFIXES)
            or trace.get_current_span().get_span_context().is_valid
        ):
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", [])
        }
        method = str(scope.get("method", "GET"))
        statuses: list[int] = []

        async def send_noting_status(message: MutableMapping[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                statuses.append(int(message.get("status", 0)))
            await send(message)

        with tracer.start_as_current_span(
            method,
            context=propagate.extract(headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:
            token = _starter.set(span)
            try:
                await self.app(scope, receive, send_noting_status)
            finally:
                _starter.reset(token)
                _name_after_route(span, scope, method)
                if statuses:
                    span.set_attribute("http.response.status_code", statuses[0])
                    if statuses[0] >= 500:
                        span.set_status(Status(StatusCode.ERROR))


def _name_after_route(span: Span, scope: _Scope, method: str) -> None:
    """`POST /webhooks/{trigger_id}`: the route template, not the path (few distinct names)."""
    route = getattr(scope.get("route"), "path", None)
    if isinstance(route, str):
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)


# -- the SDK, at the entry points ----------------------------------------------------------------


def configure_tracing(settings: Settings, *, service_name: str = "flowmonkey") -> Any:
    """Set up the OpenTelemetry SDK as FLOWMONKEY_OTEL_EXPORTER asks (entry points only).

    `none` (the default) sets up nothing. `console` prints spans to stdout; `otlp` sends them
    to an OpenTelemetry collector (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL and
    the other standard variables apply). OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name
    the service (default: `service_name`). If your app already set a TracerProvider, it is
    kept and gets flowmonkey's spans.

    Returns:
        The TracerProvider spans go to, or None for `none`.

    Raises:
        FlowMonkeyError: INVALID_ARGUMENT if what the exporter needs is not installed.
    """
    wanted = settings.otel_exporter
    if wanted == "none":
        return None
    if not OTEL_AVAILABLE:
        raise _missing(f"FLOWMONKEY_OTEL_EXPORTER={wanted} needs OpenTelemetry", _INSTALL_OTEL)
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise _missing(
            f"FLOWMONKEY_OTEL_EXPORTER={wanted} needs the OpenTelemetry SDK", _INSTALL_OTEL
        ) from None
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        log.info("tracing: your app's TracerProvider is kept (FLOWMONKEY_OTEL_EXPORTER ignored)")
        return current
    exporter = ConsoleSpanExporter() if wanted == "console" else _otlp_exporter()
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing: spans of %s go to the %s exporter", service_name, wanted)
    return provider


def _otlp_exporter() -> Any:
    """OTLP over HTTP (the [otel] extra installs it), or over gRPC when the standard variable
    asks for it (its package is not in the extra: grpcio is a large native build)."""
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    grpc = protocol.strip() == "grpc"
    try:
        if grpc:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
    except ImportError:
        raise _missing(
            f"FLOWMONKEY_OTEL_EXPORTER=otlp over {'gRPC' if grpc else 'HTTP'} needs the OTLP "
            "exporter, which is not installed",
            _INSTALL_OTLP_GRPC if grpc else _INSTALL_OTEL,
        ) from None
    return OTLPSpanExporter()


def _missing(what: str, install: str) -> FlowMonkeyError:
    return FlowMonkeyError(
        f"{what}: {install} (or set FLOWMONKEY_OTEL_EXPORTER=none)",
        ErrorCode.INVALID_ARGUMENT,
        {"setting": "FLOWMONKEY_OTEL_EXPORTER", "install": install},
    )
