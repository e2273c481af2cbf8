"""Trace context through a real broker: a Celery worker (in a thread of this process, so that
its spans reach the test's in-memory exporter) consumes flowmonkey's messages from Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowmonkey_celery import (
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    MemoryStore,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.observability.tracing import install_tracing
from flowmonkey_celery.runtime import Runtime, RuntimeOptions
from tests.services import REDIS_URL


@handler("approve")
def approve(params: HandlerParams) -> StepResult:
    return Result.wait_for_signal("a manager approves the refund")


@handler("refund")
def refund(params: HandlerParams) -> StepResult:
    return Result.success({"refunded": True})


REFUND = {
    "id": "refund",
    "initialStepId": "approve",
    "steps": {
        "approve": {
            "type": "approve",
            "outputKey": "decision",
            "transitions": {"onSuccess": "pay"},
        },
        "pay": {"type": "refund"},
    },
}


def eventually(check: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def worker(redis_client: Any) -> Iterator[tuple[FlowMonkeyCelery, InMemorySpanExporter]]:
    """A FlowMonkeyCelery on Redis (a queue of this test's own) with a worker consuming it."""
    queue = f"fmtest-tracing-{uuid.uuid4().hex[:8]}"
    app = Celery("tracing", broker=REDIS_URL)
    app.conf.update(task_default_queue=queue, broker_connection_retry_on_startup=True)
    runtime = Runtime(
        MemoryStore(),
        HandlerRegistry([approve, refund]),
        FlowRegistry([REFUND]),
        options=RuntimeOptions(queue=queue),
    )
    fm = FlowMonkeyCelery(app, runtime)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    install_tracing(fm, provider)
    with start_worker(
        app, pool="solo", queues=[queue], perform_ping_check=False, shutdown_timeout=10
    ):
        yield fm, exporter
    provider.shutdown()
    redis_client.delete(queue, f"_kombu.binding.{queue}")


def step_span(exporter: InMemorySpanExporter, step_id: str) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.name == f"flowmonkey.step {step_id}"]
    return span


@pytest.mark.slow
def test_the_worker_continues_the_senders_trace_from_the_message_headers(
    worker: tuple[FlowMonkeyCelery, InMemorySpanExporter],
) -> None:
    fm, exporter = worker
    tracer = TracerProvider().get_tracer("test")  # spans of "another service": the caller
    with tracer.start_as_current_span("POST /refunds") as request:
        execution_id = fm.start("refund", {"order": 7}).execution.id
    eventually(
        lambda: fm.get(execution_id).status is ExecutionStatus.WAITING,  # type: ignore[union-attr]
        "the worker to run the first step",
    )
    caller = request.get_span_context()
    asked = step_span(exporter, "approve")
    assert asked.context.trace_id == caller.trace_id
    assert asked.parent is not None and asked.parent.span_id == caller.span_id

    # The manager approves from another service, in a trace of its own: its context can reach
    # the worker only in the resumed step's message headers, through Redis.
    with tracer.start_as_current_span("POST /approvals") as approval:
        fm.resume(execution_id, {"approved": True})
    eventually(
        lambda: fm.get(execution_id).status is ExecutionStatus.COMPLETED,  # type: ignore[union-attr]
        "the worker to finish the refund",
    )
    paid = step_span(exporter, "pay")
    assert paid.context.trace_id == caller.trace_id  # still the execution's trace
    (link,) = paid.links
    assert link.context.trace_id == approval.get_span_context().trace_id
    assert link.context.span_id == approval.get_span_context().span_id
