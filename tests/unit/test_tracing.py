"""OpenTelemetry traces, in process: spans collected by the SDK's in-memory exporter from a
TracerProvider of each test's own (passed to `install_tracing`; the global provider is never
set here, it can be set only once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError

from flowmonkey_celery import (
    Engine,
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.api import create_app
from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.errors import FlowMonkeyError
from flowmonkey_celery.observability.tracing import configure_tracing, install_tracing, tracing_of
from flowmonkey_celery.runtime import Runtime, RuntimeOptions
from flowmonkey_celery.settings import Settings

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Spans:
    """A TracerProvider for one test and what it has exported."""

    provider: TracerProvider
    exporter: InMemorySpanExporter

    @property
    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer("test")

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]

    def steps(self, execution_id: str | None = None) -> list[ReadableSpan]:
        return [
            s
            for s in self.named("flowmonkey.step ")
            if execution_id is None or attr(s, "flowmonkey.execution.id") == execution_id
        ]


def attr(span: ReadableSpan, name: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(name)


def ids(traceparent: str) -> tuple[int, int]:
    """(trace id, span id) of a W3C traceparent."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


@pytest.fixture
def spans() -> Iterator[Spans]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Spans(provider, exporter)
    provider.shutdown()


@handler("ok")
def ok(params: HandlerParams) -> StepResult:
    return Result.success({"step": params.step.id})


@handler("flaky")
def flaky(params: HandlerParams) -> StepResult:
    """Fails its first attempt, succeeds at the second."""
    if params.attempt == 1:
        return Result.failure("CARD_DECLINED", "the card was declined")
    return Result.success({"charged": True})


@handler("broken")
def broken(params: HandlerParams) -> StepResult:
    raise ValueError("no such customer")


@handler("signal")
def signal(params: HandlerParams) -> StepResult:
    return Result.wait_for_signal("approval")


def linear(flow_id: str, *types: str, **step_options: dict[str, Any]) -> dict[str, Any]:
    names = [f"s{i}" for i in range(1, len(types) + 1)]
    steps = {
        name: {
            "type": step_type,
            "transitions": {"onSuccess": names[i + 1] if i + 1 < len(names) else None},
            **step_options.get(name, {}),
        }
        for i, (name, step_type) in enumerate(zip(names, types, strict=True))
    }
    return {"id": flow_id, "version": "3", "initialStepId": "s1", "steps": steps}


ORDER = linear("order", "ok", "flaky", "ok", s2={"retry": {"maxAttempts": 2, "backoffMs": 10}})
FAILING = linear("failing", "ok", "broken")
APPROVAL = linear("approval", "signal", "ok", s1={"outputKey": "decision"})
PARENT = linear("parent", "subflow", s1={"config": {"flow": "order"}})
FLOWS = [ORDER, FAILING, APPROVAL, PARENT]


def make_engine(spans: Spans | None, store: MemoryStore | None = None) -> Engine:
    engine = Engine(
        store or MemoryStore(),
        HandlerRegistry([ok, flaky, broken, signal]),
        FlowRegistry(FLOWS),
        clock=ManualClock(START),
    )
    if spans is not None:
        install_tracing(engine, spans.provider)
    return engine


def test_each_attempt_of_each_step_is_one_span_in_the_executions_trace(spans: Spans) -> None:
    engine = make_engine(spans)
    created = engine.create("order", {}, tenant_id="acme").execution
    done = engine.run(created.id, simulate_time=True)
    assert done.status is ExecutionStatus.COMPLETED

    steps = spans.steps(created.id)
    assert [(s.name, attr(s, "flowmonkey.step.attempt")) for s in steps] == [
        ("flowmonkey.step s1", 1),
        ("flowmonkey.step s2", 1),  # declined: retried
        ("flowmonkey.step s2", 2),
        ("flowmonkey.step s3", 1),
    ]
    # Nobody was tracing the caller: the execution got a root span of its own, and every step
    # span is its child, saved with the execution as its traceparent.
    (root,) = spans.named("flowmonkey.execution ")
    assert done.metadata["traceparent"].split("-")[1:3] == [
        f"{root.context.trace_id:032x}",
        f"{root.context.span_id:016x}",
    ]
    for span in steps:
        assert span.context.trace_id == root.context.trace_id
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert attr(span, "flowmonkey.execution.id") == created.id
        assert attr(span, "flowmonkey.flow.id") == "order"
        assert attr(span, "flowmonkey.flow.version") == "3"
        assert attr(span, "flowmonkey.tenant.id") == "acme"
    declined, charged = steps[1], steps[2]
    assert attr(declined, "flowmonkey.step.type") == "flaky"
    assert attr(declined, "flowmonkey.step.outcome") == "failure"
    assert attr(declined, "flowmonkey.error.code") == "CARD_DECLINED"
    assert attr(declined, "flowmonkey.error.message") == "the card was declined"
    assert declined.status.status_code is StatusCode.ERROR
    assert attr(charged, "flowmonkey.step.outcome") == "success"
    assert attr(charged, "flowmonkey.step.key") == f"{created.id}:s2:2"
    assert charged.status.status_code is StatusCode.UNSET


def test_a_step_that_fails_the_execution_ends_its_span_with_error_status(spans: Spans) -> None:
    engine = make_engine(spans)
    execution_id = engine.create("failing", {}).execution.id
    assert engine.run(execution_id).status is ExecutionStatus.FAILED
    first, failed = spans.steps(execution_id)
    assert first.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert attr(failed, "flowmonkey.error.code") == "HANDLER_ERROR"
    assert "ValueError: no such customer" in attr(failed, "flowmonkey.error.message")
    assert failed.status.description is not None
    assert failed.status.description.startswith("HANDLER_ERROR: ")


def test_spans_a_handler_makes_nest_under_its_step_span(spans: Spans) -> None:
    @handler("charge")
    def charge(params: HandlerParams) -> StepResult:
        with spans.tracer.start_as_current_span("POST payments.example/charges"):
            return Result.success({"ok": True})

    engine = make_engine(spans)
    engine.handlers.register(charge)
    engine.flows.register(linear("pay", "charge"))
    engine.run(engine.create("pay", {}).execution.id)
    (step,) = spans.steps()
    (call,) = spans.named("POST payments.example")
    assert call.parent is not None and call.parent.span_id == step.context.span_id


class Export:
    """A stateful handler: run as a background job, not inside the step."""

    type = "export"
    metadata = {"stateful": True}

    def execute(self, params: HandlerParams) -> StepResult:
        assert params.job is not None
        return Result.success({"rows": 10})


def test_a_stateful_steps_background_job_is_a_step_span_too(spans: Spans) -> None:
    engine = make_engine(spans)
    engine.handlers.register(Export())
    engine.flows.register(linear("export", "export", "ok"))
    execution_id = engine.create("export", {}).execution.id
    assert engine.run(execution_id).status is ExecutionStatus.COMPLETED
    job, after = spans.steps(execution_id)
    assert (job.name, attr(job, "flowmonkey.step.type")) == ("flowmonkey.step s1", "export")
    assert attr(job, "flowmonkey.step.outcome") == "success"
    assert job.context.trace_id == after.context.trace_id


def test_a_resume_days_later_in_another_process_continues_the_callers_trace(
    spans: Spans,
) -> None:
    store = MemoryStore()
    with spans.tracer.start_as_current_span("checkout") as checkout:
        execution_id = make_engine(spans, store).create("approval", {}).execution.id
    first_process = make_engine(spans, store)
    assert first_process.run(execution_id).status is ExecutionStatus.WAITING

    # Three days on, another process (its own engine over the same store) resumes it while
    # handling a request that belongs to a trace of its own.
    later = make_engine(spans, store)
    assert isinstance(later.clock, ManualClock)
    later.clock.advance(timedelta(days=3))
    with spans.tracer.start_as_current_span("approve request") as approve:
        later.resume(execution_id, {"approved": True})
        assert later.run(execution_id).status is ExecutionStatus.COMPLETED

    waited, recorded = spans.steps(execution_id)
    caller = checkout.get_span_context()
    for span in (waited, recorded):
        assert span.context.trace_id == caller.trace_id
        assert span.parent is not None and span.parent.span_id == caller.span_id
    assert waited.links == ()
    (link,) = recorded.links  # the request that resumed it: another trace, linked
    assert link.context.span_id == approve.get_span_context().span_id
    assert link.context.trace_id != caller.trace_id


def test_a_child_execution_joins_its_parents_trace(spans: Spans) -> None:
    engine = make_engine(spans)
    parent_id = engine.create("parent", {}).execution.id
    assert engine.run(parent_id, simulate_time=True).status is ExecutionStatus.COMPLETED
    (parent_step, *_) = spans.steps(parent_id)
    children = [s for s in spans.steps() if attr(s, "flowmonkey.parent_execution.id") == parent_id]
    assert len(children) == 4  # s1, s2 twice, s3 of the child order
    assert {s.context.trace_id for s in children} == {parent_step.context.trace_id}


def test_an_execution_created_while_tracing_was_off_still_gets_one_trace(spans: Spans) -> None:
    store = MemoryStore()
    execution_id = make_engine(None, store).create("order", {}).execution.id
    assert "traceparent" not in store.get_execution(execution_id).metadata  # type: ignore[union-attr]
    make_engine(spans, store).run(execution_id, simulate_time=True)
    steps = spans.steps(execution_id)
    assert len(steps) == 4
    assert len({s.context.trace_id for s in steps}) == 1
    assert len({s.parent.span_id for s in steps if s.parent is not None}) == 1


def test_a_webhook_delivered_with_traceparent_runs_its_steps_in_the_callers_trace(
    spans: Spans,
) -> None:
    runtime = Runtime(
        MemoryStore(),
        HandlerRegistry([ok, flaky, broken, signal]),
        FlowRegistry(FLOWS),
        clock=ManualClock(START),
    )
    install_tracing(runtime, spans.provider)
    runtime.register_trigger({"id": "orders-in", "type": "http", "flowId": "order"})
    client = TestClient(create_app(runtime, auth=False))
    answer = client.post(
        "/webhooks/orders-in",
        json={"order": 1},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert answer.status_code == 202, answer.text
    execution_id = answer.json()["execution_id"]
    runtime.engine.run(execution_id, simulate_time=True)

    (server,) = spans.named("POST /webhooks/")
    assert server.name == "POST /webhooks/{trigger_id}"
    assert server.kind is SpanKind.SERVER
    assert server.context.trace_id == int(CALLER_TRACE, 16)
    assert server.parent is not None and server.parent.span_id == int(CALLER_SPAN, 16)
    assert attr(server, "flowmonkey.execution.id") == execution_id
    assert attr(server, "http.response.status_code") == 202
    steps = spans.steps(execution_id)
    assert len(steps) == 4
    for step in steps:
        assert step.context.trace_id == int(CALLER_TRACE, 16)
        assert step.parent is not None and step.parent.span_id == server.context.span_id
        assert attr(step, "flowmonkey.trigger.id") == "orders-in"
    # Probes are not traced.
    assert client.get("/health").status_code == 200
    assert spans.named("GET") == []


def make_fm(spans: Spans, clock: ManualClock) -> FlowMonkeyCelery:
    app = Celery("tracing-test", broker="memory://")
    runtime = Runtime(
        MemoryStore(),
        HandlerRegistry([ok, flaky, broken, signal]),
        FlowRegistry(FLOWS),
        options=RuntimeOptions(queue="fm-tracing"),
        clock=clock,
    )
    fm = FlowMonkeyCelery(app, runtime)
    install_tracing(fm, spans.provider)
    drain(fm)
    return fm


def drain(fm: FlowMonkeyCelery) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The messages waiting on the step queue, consumed: (args, headers) of each."""
    messages = []
    with fm.app.connection_for_write() as connection:
        queue = connection.SimpleQueue(fm.step_queue)
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                break
            messages.append((tuple(message.payload[0]), dict(message.headers)))
            message.ack()
        queue.close()
    return messages


def test_a_cron_fire_is_a_span_and_the_execution_it_starts_is_in_its_trace(
    spans: Spans,
) -> None:
    clock = ManualClock(START)
    fm = make_fm(spans, clock)
    fm.register_trigger(
        {"id": "nightly", "type": "schedule", "flowId": "order", "schedule": "0 2 * * *"}
    )
    clock.advance(timedelta(days=1))
    assert fm.tick()["fired"] == 1
    assert fm.tick()["fired"] == 0  # the slot is taken: no second fire, no second span
    (fire,) = spans.named("flowmonkey.schedule.fire")
    assert fire.name == "flowmonkey.schedule.fire nightly"
    assert attr(fire, "flowmonkey.schedule.slot") == "2026-03-03T02:00:00+00:00"
    execution_id = attr(fire, "flowmonkey.execution.id")
    # The step message left the tick carrying the fire's context; the worker runs it.
    ((args, headers),) = drain(fm)
    assert args == (execution_id, 0)
    assert ids(headers["traceparent"]) == (fire.context.trace_id, fire.context.span_id)
    assert fm.run_steps(execution_id, 0, fm.step_queue) in ("waiting", "dispatched")
    for step in spans.steps(execution_id):
        assert step.context.trace_id == fire.context.trace_id
        assert step.parent is not None and step.parent.span_id == fire.context.span_id


def test_only_flowmonkeys_own_celery_messages_carry_the_trace_context(spans: Spans) -> None:
    fm = make_fm(spans, ManualClock(START))

    def send_receipt() -> None:
        """One of the app's own tasks."""

    theirs = fm.app.task(name="shop.send_receipt", shared=False)(send_receipt)
    with spans.tracer.start_as_current_span("checkout") as checkout:
        started = fm.start("order", {})
        theirs.apply_async(queue=fm.step_queue)
    (ours, receipt) = drain(fm)
    assert ours[0] == (started.execution.id, 0)
    caller = checkout.get_span_context()
    assert ids(ours[1]["traceparent"]) == (caller.trace_id, caller.span_id)
    assert "traceparent" not in receipt[1]


def test_installing_again_switches_the_provider_and_keeps_one_set_of_hooks(
    spans: Spans,
) -> None:
    engine = make_engine(None)
    first = install_tracing(engine)
    assert install_tracing(engine, spans.provider) is first is tracing_of(engine)
    engine.run(engine.create("failing", {}).execution.id)
    assert len(spans.steps()) == 2  # one span per attempt, not one per install
    first.uninstall()
    engine.run(engine.create("failing", {}).execution.id)
    assert len(spans.steps()) == 2


def test_the_exporter_setting_is_checked_and_otlp_over_grpc_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match="otel_exporter"):
        Settings.from_env({"FLOWMONKEY_OTEL_EXPORTER": "jaeger"})
    assert configure_tracing(Settings()) is None  # "none": the SDK is left alone
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")  # not in the [otel] extra
    with pytest.raises(FlowMonkeyError, match="pip install opentelemetry-exporter-otlp-proto-grpc"):
        configure_tracing(Settings(otel_exporter="otlp"))
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


class OtlpCollector(ThreadingHTTPServer):
    """A local OpenTelemetry collector: keeps the spans POSTed to /v1/traces (OTLP/HTTP)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _OtlpRequest)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _OtlpRequest(BaseHTTPRequestHandler):
    server: OtlpCollector

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        self.server.paths.append(self.path)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    trace_id = span.trace_id.hex()
                    self.server.spans.append(
                        {"name": span.name, "service": service["service.name"], "trace": trace_id}
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def otlp_collector() -> Iterator[OtlpCollector]:
    collector = OtlpCollector()
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    yield collector
    collector.shutdown()
    collector.server_close()


def test_the_otlp_exporter_of_the_otel_extra_sends_the_step_spans_to_a_collector(
    tmp_path: Path, otlp_collector: OtlpCollector
) -> None:
    done = run_python(
        """
        from opentelemetry import trace
        from flowmonkey_celery import Result, handler
        from flowmonkey_celery.celery import FlowMonkeyCelery

        @handler("ok")
        def ok(params):
            return Result.success({})

        fm = FlowMonkeyCelery.from_env()
        fm.runtime.handlers.register(ok)
        steps = {"a": {"type": "ok", "transitions": {"onSuccess": "b"}}, "b": {"type": "ok"}}
        flow = {"id": "hello", "initialStepId": "a", "steps": steps}
        fm.runtime.flows.register(flow)
        created = fm.start("hello", {})
        assert fm.run_steps(created.execution.id, 0, fm.step_queue) == "completed"
        trace.get_tracer_provider().shutdown()  # flushes the batch, as at a worker's exit
        print(fm.get(created.execution.id).metadata["traceparent"].split("-")[1])
        """,
        tmp_path,
        FLOWMONKEY_OTEL_EXPORTER="otlp",
        FLOWMONKEY_BROKER_URL="memory://",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_collector.endpoint,
        OTEL_SERVICE_NAME="shop-worker",
    )
    assert done.returncode == 0, done.stderr
    trace_id = done.stdout.strip()
    assert set(otlp_collector.paths) == {"/v1/traces"}
    steps = [span for span in otlp_collector.spans if span["name"].startswith("flowmonkey.step")]
    assert sorted(span["name"] for span in steps) == ["flowmonkey.step a", "flowmonkey.step b"]
    assert {(span["service"], span["trace"]) for span in steps} == {("shop-worker", trace_id)}


def run_python(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_console_exporter_set_up_at_the_entry_point_prints_the_step_spans(
    tmp_path: Path,
) -> None:
    done = run_python(
        """
        from flowmonkey_celery import Result, handler
        from flowmonkey_celery.celery import FlowMonkeyCelery

        @handler("ok")
        def ok(params):
            return Result.success({})

        fm = FlowMonkeyCelery.from_env()
        fm.runtime.handlers.register(ok)
        flow = {"id": "hello", "initialStepId": "a", "steps": {"a": {"type": "ok"}}}
        fm.runtime.flows.register(flow)
        created = fm.start("hello", {})
        assert fm.run_steps(created.execution.id, 0, fm.step_queue) == "completed"
        """,
        tmp_path,
        FLOWMONKEY_OTEL_EXPORTER="console",
        FLOWMONKEY_BROKER_URL="memory://",
        OTEL_SERVICE_NAME="shop-worker",
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads("[" + done.stdout.replace("}\n{", "},\n{") + "]")
    names = [span["name"] for span in printed]
    assert "flowmonkey.step a" in names
    assert {span["resource"]["attributes"]["service.name"] for span in printed} == {"shop-worker"}


def test_without_opentelemetry_installed_everything_works_untraced(tmp_path: Path) -> None:
    # The installed FastAPI itself needs opentelemetry-api, so the webhook is delivered to the
    # receiver the route calls, without the web framework.
    done = run_python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the [otel] extra were not installed

        from celery import Celery
        from flowmonkey_celery import FlowRegistry, HandlerRegistry, MemoryStore, Result, handler
        from flowmonkey_celery.celery import FlowMonkeyCelery
        from flowmonkey_celery.errors import FlowMonkeyError
        from flowmonkey_celery.observability import tracing
        from flowmonkey_celery.runtime import Runtime
        from flowmonkey_celery.settings import Settings
        from flowmonkey_celery.triggers.webhooks import WebhookReceiver

        assert not tracing.OTEL_AVAILABLE

        @handler("ok")
        def ok(params):
            return Result.success({})

        flow = {"id": "hello", "initialStepId": "a", "steps": {"a": {"type": "ok"}}}
        runtime = Runtime(MemoryStore(), HandlerRegistry([ok]), FlowRegistry([flow]))
        fm = FlowMonkeyCelery(Celery("plain", broker="memory://"), runtime)
        assert not tracing.install_tracing(fm).enabled
        runtime.register_trigger({"id": "in", "type": "http", "flowId": "hello"})
        receiver = WebhookReceiver(runtime.engine, runtime.store, dispatch=fm.dispatch)
        traceparent = "00-%s-%s-01" % ("a" * 32, "b" * 16)
        answer = receiver.receive("in", {"traceparent": traceparent}, b"{}")
        assert answer.status == 202, answer.body
        execution_id = answer.body["execution_id"]
        assert fm.run_steps(execution_id, 0, fm.step_queue) == "completed"
        assert "traceparent" not in fm.get(execution_id).metadata
        try:
            tracing.configure_tracing(Settings(otel_exporter="console"))
        except FlowMonkeyError as exc:
            print(exc.message)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'flowmonkey-celery[otel]'" in done.stdout


def test_flowmonkey_run_traces_the_steps_it_runs_in_process(
    tmp_path: Path, otlp_collector: OtlpCollector
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "pick.yaml").write_text(
        "id: pick\ninitial_step_id: route\nsteps:\n  route:\n    type: conditional\n"
        "    input: { type: full }\n"
        "    config: { conditions: [{ path: colour, op: eq, value: red, target: null }] }\n",
        encoding="utf-8",
    )
    settings = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMONKEY_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowmonkey_celery.cli",
            "run",
            "pick",
            "--context",
            '{"colour": "red"}',
        ],
        cwd=tmp_path,
        env={
            **settings,
            "PYTHONPATH": str(REPO),
            "FLOWMONKEY_HOME": str(tmp_path / "home"),
            "FLOWMONKEY_FLOWS": str(flows),
            "FLOWMONKEY_OTEL_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_collector.endpoint,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (step,) = [span for span in otlp_collector.spans if span["name"] == "flowmonkey.step route"]
    assert step["service"] == "flowmonkey-cli"
