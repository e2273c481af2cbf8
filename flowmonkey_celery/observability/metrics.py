"""Prometheus metrics (prometheus_client): what the engine's events, the tick and the triggers
add up to, and the waiting executions a store holds.

Where each number is counted:

- Counters and histograms of executions and steps come from the engine's history events
  (`engine.on("*")`), in whichever process commits them: the workers for steps, the API or
  the beat for what they create or cancel. Summed across every scraped process, each event is
  counted once.
- Trigger fires are counted where the store records them in the trigger's history
  (`observe_trigger_fires`), the one place webhook deliveries, matched events, manual fires and
  cron slots all pass.
- The store gauges (`StoreGauges`: waiting count, oldest wait, due-but-not-woken lag) are read
  from the database at scrape time, by the API's `/metrics` only: every process would report
  the same fleet-wide numbers, and a sum over several would count each wait several times.

Prefork workers: prometheus_client decides once per process, when it is first imported,
whether values live in memory or in per-process files under PROMETHEUS_MULTIPROC_DIR. This
module therefore never imports it at import time: `use_metrics_dir` (called by the entry points
with FLOWMONKEY_METRICS_DIR) sets the variable first, and the metrics are built on first use.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowmonkey_celery.core.clock import Clock, SystemClock
from flowmonkey_celery.core.events import ANY_EVENT, EventType, HistoryEvent
from flowmonkey_celery.core.log_context import current_step
from flowmonkey_celery.core.triggers import TriggerFireRecord
from flowmonkey_celery.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from flowmonkey_celery.core.engine import Engine

log = logging.getLogger("flowmonkey_celery.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Step durations run from milliseconds (a transform) to minutes (an LLM call, a slow API).
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A label takes at most this many distinct values per process; later ones are counted as
# OTHER, so that a handler inventing error codes cannot grow the series without bound.
MAX_LABEL_VALUES = 200
MAX_LABEL_LENGTH = 100
OTHER = "other"
UNKNOWN = "unknown"
_CACHED_EXECUTIONS = 10_000


def use_metrics_dir(directory: Path | None) -> None:
    """Put this process's metrics in files under `directory` (FLOWMONKEY_METRICS_DIR), so the
    main process of a prefork worker can serve the counts of all its children. Call it at the
    entry point, before anything builds a metric; None leaves the metrics in memory.

    If prometheus_client was imported earlier without PROMETHEUS_MULTIPROC_DIR, it chose
    in-memory values for good; it is switched to files here so that flowmonkey's metrics, built
    later, still reach the directory (metrics someone built before stay in memory).
    """
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    from prometheus_client import values  # imported first here, it chooses files at once

    if not getattr(values.ValueClass, "_multiprocess", False):
        log.warning(
            "prometheus_client was imported before %s was set; switching it to %s now",
            MULTIPROC_ENV,
            directory,
        )
        file_values: Callable[[], object] = values.MultiProcessValue  # untyped upstream
        values.ValueClass = file_values()


def multiprocess_dir() -> Path | None:
    """The multiprocess directory this process writes to, if any."""
    found = os.environ.get(MULTIPROC_ENV)
    return Path(found) if found else None


class _BoundedLabel:
    """A label's values, capped at MAX_LABEL_VALUES distinct ones per process."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if not value:
            return UNKNOWN
        value = value[:MAX_LABEL_LENGTH]
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= MAX_LABEL_VALUES:
                return OTHER
            self._seen.add(value)
            return value


class FlowMonkeyMetrics:
    """Every flowmonkey counter and histogram, on one registry (the default one in a process;
    tests pass their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        reg = registry or REGISTRY
        flow = ["flow"]
        step = ["flow", "step_type"]

        def counter(name: str, text: str, labels: list[str]) -> Any:
            return Counter(name, text, labels, registry=reg)

        self.executions_created = counter(
            "flowmonkey_executions_created",
            "Executions created (a start, a trigger, a child)",
            flow,
        )
        self.executions_started = counter(
            "flowmonkey_executions_started", "Executions whose first step began", flow
        )
        self.executions_completed = counter(
            "flowmonkey_executions_completed", "Executions that completed", flow
        )
        self.executions_failed = counter(
            "flowmonkey_executions_failed", "Executions that failed", flow
        )
        self.executions_cancelled = counter(
            "flowmonkey_executions_cancelled",
            "Executions cancelled, by source (user, timeout, parent, join...)",
            ["flow", "source"],
        )
        self.steps = counter(
            "flowmonkey_steps",
            "Handler calls (step attempts), by outcome (success, failure, wait)",
            ["flow", "step_type", "outcome"],
        )
        self.step_duration = Histogram(
            "flowmonkey_step_duration_seconds",
            "Wall time of one handler call",
            step,
            buckets=STEP_BUCKETS,
            registry=reg,
        )
        self.retries = counter(
            "flowmonkey_step_retries", "Step retries scheduled after a failed attempt", step
        )
        self.handler_errors = counter(
            "flowmonkey_handler_errors",
            "Failed handler calls, by error code (retried or not)",
            ["flow", "step_type", "code"],
        )
        self.trigger_fires = counter(
            "flowmonkey_trigger_fires",
            "Trigger fires, by trigger type and status (accepted, duplicate, rejected, failed)",
            ["trigger_type", "status"],
        )
        self.tick_duration = Histogram(
            "flowmonkey_tick_duration_seconds",
            "Wall time of one beat tick (all its sweeps)",
            buckets=TICK_BUCKETS,
            registry=reg,
        )
        self.tick_swept = counter(
            "flowmonkey_tick_swept",
            "What the tick's sweeps handled: woken, timed_out, stalled, fired, ...",
            ["kind"],
        )
        self.flow = _BoundedLabel()
        self.step_type = _BoundedLabel()
        self.code = _BoundedLabel()
        self.source = _BoundedLabel()

    @contextmanager
    def timed_tick(self) -> Iterator[dict[str, int]]:
        """Time a tick; the block fills the yielded dict with what the sweeps handled."""
        swept: dict[str, int] = {}
        started = time.perf_counter()
        try:
            yield swept
        finally:
            self.tick_duration.observe(time.perf_counter() - started)
            for kind, count in swept.items():
                if count:
                    self.tick_swept.labels(kind).inc(count)

    def trigger_fired(self, trigger_type: str, status: str) -> None:
        self.trigger_fires.labels(trigger_type, status).inc()


_default: FlowMonkeyMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> FlowMonkeyMetrics:
    """This process's metrics, on prometheus_client's default registry (built once)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = FlowMonkeyMetrics()
        return _default


# -- the engine's events --------------------------------------------------------------------------


class EngineMetrics:
    """Counts an engine's history events. Events name their execution, not its flow: the flow
    comes from the step attempt the commit ran in (`core/log_context.py`), from the
    `execution.created` event, or, for a command outside any step (a cancel, a timeout), from
    the store, remembered for the next events of the same execution."""

    def __init__(self, engine: Engine, metrics: FlowMonkeyMetrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self._flows: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, event: HistoryEvent) -> None:
        m = self.metrics
        kind = event.type
        if kind is EventType.EXECUTION_CREATED:
            flow_id = str(event.data.get("flow_id") or "")
            version = event.data.get("flow_version")
            self._remember(event.execution_id, flow_id, str(version) if version else None)
            m.executions_created.labels(m.flow(flow_id)).inc()
        elif kind is EventType.EXECUTION_STARTED:
            m.executions_started.labels(self._flow_label(event)).inc()
        elif kind is EventType.STEP_COMPLETED:
            flow, step_type = self._flow_label(event), m.step_type(event.handler_type)
            m.steps.labels(flow, step_type, event.outcome or UNKNOWN).inc()
            if event.duration_ms is not None:
                m.step_duration.labels(flow, step_type).observe(event.duration_ms / 1000.0)
            if event.outcome == "failure":
                code = event.error.code if event.error is not None else None
                m.handler_errors.labels(flow, step_type, m.code(code)).inc()
        elif kind is EventType.STEP_RETRY:
            m.retries.labels(self._flow_label(event), m.step_type(self._step_type(event))).inc()
        elif kind is EventType.EXECUTION_COMPLETED:
            m.executions_completed.labels(self._flow_label(event, finished=True)).inc()
        elif kind is EventType.EXECUTION_FAILED:
            m.executions_failed.labels(self._flow_label(event, finished=True)).inc()
        elif kind is EventType.EXECUTION_CANCELLED:
            source = m.source(str(event.data.get("source") or ""))
            m.executions_cancelled.labels(self._flow_label(event, finished=True), source).inc()

    def _flow_label(self, event: HistoryEvent, *, finished: bool = False) -> str:
        flow_id, _ = self._flow_of(event.execution_id)
        if finished:
            with self._lock:
                self._flows.pop(event.execution_id, None)
        return self.metrics.flow(flow_id)

    def _step_type(self, event: HistoryEvent) -> str | None:
        bound = current_step()
        if bound is not None and (bound.execution_id, bound.step_id) == (
            event.execution_id,
            event.step_id,
        ):
            return bound.step_type
        flow_id, version = self._flow_of(event.execution_id)
        flow = self.engine.flows.find(flow_id, version) if flow_id else None
        step = flow.steps.get(event.step_id) if flow is not None and event.step_id else None
        return step.type if step is not None else None

    def _flow_of(self, execution_id: str) -> tuple[str, str | None]:
        bound = current_step()
        if bound is not None and bound.execution_id == execution_id:
            return bound.flow_id, None
        with self._lock:
            known = self._flows.get(execution_id)
            if known is not None:
                self._flows.move_to_end(execution_id)
                return known
        try:
            execution = self.engine.store.get_execution(execution_id)
        except Exception as exc:  # a metric is not worth failing anything for
            log.debug("metrics: cannot look up the flow of %s: %s", execution_id, exc)
            return "", None
        if execution is None:
            return "", None
        self._remember(execution_id, execution.flow_id, execution.flow_version)
        return execution.flow_id, execution.flow_version

    def _remember(self, execution_id: str, flow_id: str, version: str | None) -> None:
        with self._lock:
            self._flows[execution_id] = (flow_id, version)
            if len(self._flows) > _CACHED_EXECUTIONS:
                self._flows.popitem(last=False)


_observed: weakref.WeakSet[Any] = weakref.WeakSet()  # engines counted already
_observed_lock = threading.Lock()


def observe_engine(engine: Engine, metrics: FlowMonkeyMetrics | None = None) -> None:
    """Count `engine`'s events (once per engine, however often this is called), and the
    trigger fires of its store."""
    with _observed_lock:
        if engine in _observed:
            return
        chosen = metrics or default_metrics()
        engine.on(ANY_EVENT, EngineMetrics(engine, chosen))
        _observed.add(engine)
    observe_trigger_fires(engine.store, chosen)


# -- trigger fires --------------------------------------------------------------------------------

_FIRES_OBSERVED = "_flowmonkey_fires_observed"


def observe_trigger_fires(store: Any, metrics: FlowMonkeyMetrics | None = None) -> None:
    """Count every fire `store` records. Webhook deliveries, matched events, cron slots and
    manual fires all end in the trigger's history, `record_trigger_fire`: that method of this
    store object is wrapped (once) to count what it records, so no caller has to."""
    if getattr(store, _FIRES_OBSERVED, False) or not hasattr(store, "record_trigger_fire"):
        return
    chosen = metrics or default_metrics()
    record_history = store.record_trigger_fire
    types: OrderedDict[str, str] = OrderedDict()

    def trigger_type(record: TriggerFireRecord) -> str:
        if record.event_id is not None:
            return "event"
        if record.trigger_id not in types:
            try:
                trigger = store.get_trigger(record.trigger_id)
            except Exception:
                return UNKNOWN
            types[record.trigger_id] = trigger.type if trigger is not None else UNKNOWN
            if len(types) > MAX_LABEL_VALUES:
                types.popitem(last=False)
        return types[record.trigger_id]

    def record_trigger_fire(record: TriggerFireRecord) -> None:
        record_history(record)
        chosen.trigger_fired(trigger_type(record), record.status)

    store.record_trigger_fire = record_trigger_fire
    setattr(store, _FIRES_OBSERVED, True)


# -- the store's gauges (the API's /metrics) ------------------------------------------------------


class StoreGauges:
    """A prometheus_client collector reading `store.waiting_stats(now)` at every scrape."""

    def __init__(self, store: Any, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        now: datetime = self.clock.now()
        up = GaugeMetricFamily(
            "flowmonkey_store_up", "1 if the store answered the waiting-stats query, else 0"
        )
        try:
            stats = self.store.waiting_stats(now)
        except Exception as exc:
            log.warning("metrics: the store did not answer the waiting stats: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, text, value in (
            ("flowmonkey_waiting_executions", "Executions waiting", stats.waiting_count),
            (
                "flowmonkey_oldest_waiting_seconds",
                "How long the longest current wait has lasted (0: none)",
                stats.oldest_waiting_seconds(now),
            ),
            (
                "flowmonkey_due_executions",
                "Waiting executions whose wake time has passed, not yet woken",
                stats.due_count,
            ),
            (
                "flowmonkey_due_lag_seconds",
                "How long the oldest due wake has gone unwoken (0: none): the tick's lag",
                stats.due_lag_seconds(now),
            ),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], float(value))
            yield gauge


class _ProcessMetrics:
    """This process's metrics as one collector: the multiprocess directory's, summed over its
    processes, when there is one, else the default registry's (this process alone)."""

    def __init__(self) -> None:
        from prometheus_client import REGISTRY, CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        default_metrics()  # every family is listed from the first scrape, zero or not
        directory = multiprocess_dir()
        self._source: Any = REGISTRY
        if directory is not None:
            self._source = CollectorRegistry()
            collector: Callable[..., object] = MultiProcessCollector  # untyped upstream
            collector(self._source, path=str(directory))

    def collect(self) -> Iterator[Metric]:
        yield from self._source.collect()


def exposition_registry(store: Any = None, clock: Clock | None = None) -> CollectorRegistry:
    """A registry to serve: this process's metrics (its pool's, with a multiprocess directory)
    and, given a `store`, the store gauges."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics())
    if store is not None:
        registry.register(StoreGauges(store, clock))
    return registry


def render(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The registry in the format the scraper's `Accept` header asks for (Prometheus text, or
    OpenMetrics); the body and its content type."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


# -- serving a worker's or beat's metrics ---------------------------------------------------------


def clear_stale_files(directory: Path) -> int:
    """Delete the files of processes that are gone (an earlier run of this worker) from the
    multiprocess directory; how many. Files of live processes stay: their counts are current."""
    removed = 0
    for path in directory.glob("*.db"):
        pid = _pid_in(path.name)
        if pid is not None and pid != os.getpid() and not _alive(pid):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def mark_process_dead(pid: int) -> None:
    """Drop a finished pool process's live gauges (its counters stay: they count on)."""
    directory = multiprocess_dir()
    if directory is not None:
        from prometheus_client import multiprocess

        mark: Callable[..., None] = multiprocess.mark_process_dead  # untyped upstream
        mark(pid, str(directory))


def serve_metrics(port: int, addr: str = "0.0.0.0") -> None:
    """Serve `/metrics` on `port` from a thread of this process: the multiprocess directory's
    metrics (every pool process of this worker) if there is one, else this process's own."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=exposition_registry())
    log.info("flowmonkey metrics on http://%s:%d/metrics", addr, port)


_serving: dict[str, Any] = {}


def serve_celery_metrics(settings: Settings) -> None:
    """In a Celery worker or beat built with `settings`: at its start (the main process, before
    the pool forks), delete the stale files of FLOWMONKEY_METRICS_DIR and serve `/metrics` on
    FLOWMONKEY_METRICS_PORT; as each pool process exits, mark it dead. Connected once per
    process; the latest settings apply. Nothing happens with neither setting."""
    if settings.metrics_dir is None and settings.metrics_port is None:
        return
    from celery import signals

    _serving["settings"] = settings
    signals.worker_init.connect(_at_start, weak=False, dispatch_uid="flowmonkey.metrics")
    signals.beat_init.connect(_at_start, weak=False, dispatch_uid="flowmonkey.metrics")
    signals.worker_process_shutdown.connect(
        _at_pool_process_exit, weak=False, dispatch_uid="flowmonkey.metrics"
    )


def _at_start(**_: Any) -> None:
    settings: Settings = _serving["settings"]
    directory = multiprocess_dir()
    if directory is not None:
        removed = clear_stale_files(directory)
        if removed:
            log.info("flowmonkey metrics: %d stale files removed from %s", removed, directory)
    port = settings.metrics_port
    if port is None or _serving.get("port") is not None:
        return  # no server, or serving already (`celery worker -B` starts both)
    if directory is None:
        log.warning(
            "FLOWMONKEY_METRICS_PORT without FLOWMONKEY_METRICS_DIR: a prefork worker's pool "
            "processes count in memory, and only this main process's counts are served"
        )
    try:
        serve_metrics(port)
    except OSError as exc:
        log.error("flowmonkey metrics: cannot serve on port %d: %s", port, exc)
        return
    _serving["port"] = port


def _at_pool_process_exit(pid: int | None = None, **_: Any) -> None:
    mark_process_dead(pid or os.getpid())


def _pid_in(name: str) -> int | None:
    # prometheus_client names its files <kind>_<pid>.db (gauges: gauge_<mode>_<pid>.db).
    stem = name.removesuffix(".db")
    _, _, pid = stem.rpartition("_")
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
