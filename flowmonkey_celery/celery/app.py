"""FlowMonkeyCelery: registers flowmonkey's tasks on a Celery app and drives the engine.

Invariants (DESIGN.md §3): every state change is committed before anything is enqueued; step
messages carry the version they expect, so duplicates and stale messages are dropped; timers
live in the database (`wake_at`), broker countdowns are only a latency shortcut for short waits.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from celery import Celery, Task, signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from kombu.entity import Exchange, Queue
from redis.exceptions import RedisError

from flowmonkey_celery.celery.task_steps import install_celery_task_steps
from flowmonkey_celery.core.execution import CancelResult, CreateResult, Execution, ExecutionStatus
from flowmonkey_celery.core.flow import Step
from flowmonkey_celery.core.inbox import EmitResult
from flowmonkey_celery.core.lease import resend_lease
from flowmonkey_celery.core.ports import AnyTrigger, OperatorStore
from flowmonkey_celery.errors import (
    ErrorCode,
    ExecutionError,
    StoreUnavailableError,
    VersionConflictError,
)
from flowmonkey_celery.observability.logs import log_celery_through_flowmonkey
from flowmonkey_celery.observability.metrics import (
    default_metrics,
    observe_engine,
    serve_celery_metrics,
    use_metrics_dir,
)
from flowmonkey_celery.observability.tracing import (
    configure_tracing,
    propagate_through_celery,
    tracing_of,
)
from flowmonkey_celery.runtime import Runtime, RuntimeOptions
from flowmonkey_celery.settings import Settings
from flowmonkey_celery.triggers.schedule import fire_due_schedules

log = logging.getLogger("flowmonkey_celery.celery")
TICK_HEARTBEAT = "tick"
# Each worker process records `worker:<node name>` this often (the dashboard's fleet view).
WORKER_HEARTBEAT_PREFIX = "worker:"
WORKER_HEARTBEAT_SECONDS = 5.0
# A worker not heard from for this long is gone (a pod's random name never comes back): the
# tick forgets its heartbeat, at most once per WORKER_HEARTBEAT_PRUNE_EVERY.
WORKER_HEARTBEAT_KEPT = timedelta(days=7)
WORKER_HEARTBEAT_PRUNE_EVERY = timedelta(hours=1)

# What one tick reports (and flowmonkey_tick_swept_total counts by `kind`).
TICK_SWEEPS = (
    "timed_out",
    "woken",
    "stalled",
    "fired",
    "orphans_cancelled",
    "events",
    "event_waits",
)

STEP_TASK = "flowmonkey.step"
STEP_KILLED_TASK = "flowmonkey.step_killed"
TICK_TASK = "flowmonkey.tick"
JOB_TASK = "flowmonkey.job"


class FlowMonkeyCelery:
    """Adds flowmonkey to a Celery app: `flowmonkey.step` and `flowmonkey.tick` tasks, the tick
    in the beat schedule, and `start / resume / cancel / get` that commit, then enqueue.

    Args:
        app: your Celery app (or one from `from_env()`).
        runtime: the store, handlers, flows and engine this process uses.
    """

    def __init__(self, app: Celery, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.options = runtime.options
        engine = runtime.engine
        engine.timeout_exceptions = (*engine.timeout_exceptions, SoftTimeLimitExceeded)
        # Queues this worker consumes, learnt at worker start: a step routed elsewhere is
        # never run inline here.
        self.consumed_queues: set[str] = set()

        # Plain functions, not bound methods: Celery inspects the signature to bind the task.
        def step(task: Task, execution_id: str, version: int) -> str:
            return self._step_task(task, execution_id, version)

        def tick() -> dict[str, int]:
            with default_metrics().timed_tick() as swept:  # flowmonkey_tick_duration_seconds
                swept.update(self.tick())
            return swept

        self.step_task: Task = app.task(
            name=STEP_TASK,
            bind=True,
            shared=False,  # bound to this instance's runtime, not to every app in the process
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
            autoretry_for=(StoreUnavailableError,),
            retry_backoff=True,
            retry_backoff_max=60,
            max_retries=None,
        )(step)
        self.tick_task: Task = app.task(
            name=TICK_TASK,
            shared=False,
            acks_late=True,
            ignore_result=True,
        )(tick)

        # Celery calls this errback in the worker's main process when a step message with time
        # limits fails; it only acts on the hard limit (the handler ignored the soft one and its
        # process was killed), which would otherwise leave the step to be re-sent and killed
        # again every lease period.
        def step_killed(
            request: Any, exc: BaseException, traceback: Any, execution_id: str, version: int
        ) -> None:
            if isinstance(exc, TimeLimitExceeded):
                self._record_kill(execution_id, version, exc)

        self.step_killed_task: Task = app.task(name=STEP_KILLED_TASK, shared=False)(step_killed)

        # A stateful handler's job: claimed with a lease in the store, so a redelivered or
        # duplicate message finds it taken (or finished) and does nothing.
        def job(job_id: str) -> str:
            return self.run_job(job_id)

        self.job_task: Task = app.task(
            name=JOB_TASK,
            shared=False,
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
            autoretry_for=(StoreUnavailableError,),
            retry_backoff=True,
            retry_backoff_max=60,
            max_retries=None,
        )(job)
        schedule = dict(app.conf.beat_schedule or {})
        schedule["flowmonkey-tick"] = {
            "task": TICK_TASK,
            "schedule": timedelta(seconds=self.options.tick_seconds),
            # A tick nobody ran in time is worthless: the next one does the same work.
            "options": {
                "queue": self.options.tick_queue_name,
                "expires": self.options.tick_seconds * 10,
            },
        }
        app.conf.beat_schedule = schedule
        _route_first(app, TICK_TASK, self.options.tick_queue_name)
        # Weak references: the receivers go with this instance (kept alive by its tasks,
        # registered on the app) instead of piling up in Celery's process-wide signals.
        signals.celeryd_after_setup.connect(self._remember_queues)
        signals.worker_process_init.connect(self._after_fork)
        signals.worker_ready.connect(self._start_worker_heartbeat)
        signals.worker_shutdown.connect(self._stop_worker_heartbeat)
        self._worker_heartbeat_stop: threading.Event | None = None
        self._worker_heartbeats_pruned_at: datetime | None = None
        install_celery_task_steps(self)
        # The sender's trace context rides in flowmonkey's message headers (no-op without otel).
        propagate_through_celery()
        observe_engine(engine)  # flowmonkey_* counters from its events (observability/metrics)
        # Every command and sweep of the engine (resume, resume_with_token, cancel, wake_due,
        # the reapers) hands what it made runnable here, to be enqueued at once.
        self._unsubscribe_hand_off = engine.on_hand_off(self._move_on)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, app_name: str = "flowmonkey"
    ) -> FlowMonkeyCelery:
        """Build the Celery app and runtime from FLOWMONKEY_* variables (see Settings).

        With no FLOWMONKEY_BROKER_URL the broker is the embedded one (a SQLite file under
        FLOWMONKEY_HOME), and with no FLOWMONKEY_DATABASE_URL the store is too: no servers.
        """
        settings = Settings.from_env(environ)
        # Before any metric exists: prometheus_client picks memory or files once per process.
        use_metrics_dir(settings.metrics_dir)
        serve_celery_metrics(settings)  # FLOWMONKEY_METRICS_PORT, at a worker's or beat's start
        log_celery_through_flowmonkey(settings)  # FLOWMONKEY_LOG_FORMAT / FLOWMONKEY_LOG_LEVEL
        configure_tracing(settings, service_name=app_name)  # FLOWMONKEY_OTEL_EXPORTER
        runtime = Runtime.from_settings(settings)
        return cls(make_app(settings, app_name), runtime)

    @property
    def step_queue(self) -> str:
        """The default queue of step messages (flows and steps may name their own)."""
        return self.options.queue

    # -- client API: commit first, then enqueue -----------------------------------------------

    def start(
        self, flow_id: str, context: dict[str, Any] | None = None, **create_options: Any
    ) -> CreateResult:
        """Create an execution (committed), then enqueue its first step. An idempotency hit
        enqueues nothing: the existing execution is already on its way."""
        result = self.runtime.engine.create(flow_id, context, **create_options)
        if result.created:
            self.dispatch(result.execution)
        return result

    def resume(
        self, execution_id: str, data: Any = None, *, expected_version: int | None = None
    ) -> Execution:
        """Resume a waiting execution (committed), then enqueue its next step. With
        `expected_version`, only if it has not changed since (see `Engine.resume`).

        The engine's own commands do the same: this runtime subscribes to `on_hand_off`, so
        `engine.resume`, `resume_with_token`, `cancel` and the rest enqueue what they made
        runnable too."""
        return self.runtime.engine.resume(execution_id, data, expected_version=expected_version)

    def cancel(
        self, execution_id: str, *, source: str = "user", reason: str | None = None
    ) -> CancelResult:
        """Cancel (committed). A step message already in flight finds it cancelled and drops."""
        return self.runtime.engine.cancel(execution_id, source=source, reason=reason)

    def replay(
        self,
        execution_id: str,
        from_step: str,
        context_patch: dict[str, Any] | None = None,
        **options: Any,
    ) -> CreateResult:
        """Start a new execution from a step of an old one (see `Engine.replay`), committed,
        then enqueued (through the engine's hand-off)."""
        return self.runtime.engine.replay(execution_id, from_step, context_patch, **options)

    def get(self, execution_id: str) -> Execution | None:
        return self.runtime.engine.get(execution_id)

    # -- dispatch -------------------------------------------------------------------------------

    def dispatch(self, execution: Execution, *, countdown: float | None = None) -> None:
        """Enqueue the step message for an execution's committed version."""
        step = self._step_of(execution.flow_id, execution.flow_version, execution.current_step_id)
        self._send(execution.id, execution.version, step, countdown=countdown)

    def _send(
        self,
        execution_id: str,
        version: int,
        step: Step | None,
        *,
        countdown: float | None = None,
        time_limits: bool = True,
    ) -> None:
        """Send the step message for `version`, to `step`'s queue, with `step`'s time limits
        unless the message will only wake the execution (`time_limits=False`)."""
        options: dict[str, Any] = {"queue": self._queue_for(step)}
        if time_limits and step is not None and step.timeout_ms:
            soft = step.timeout_ms / 1000.0
            options.update(
                soft_time_limit=soft,
                time_limit=soft + self.options.hard_limit_grace_seconds,
                link_error=self.step_killed_task.s(execution_id, version),
            )
        if countdown is not None and countdown > 0:
            options["countdown"] = countdown
        self.step_task.apply_async((execution_id, version), **options)

    def _queue_for(self, step: Step | None, flow_queue: str | None = None) -> str:
        if step is not None and step.queue:
            return step.queue
        return flow_queue or self.options.queue

    def _step_of(self, flow_id: str, flow_version: str, step_id: str | None) -> Step | None:
        flow = self.runtime.flows.find(flow_id, flow_version)
        if flow is None or step_id is None:
            return None
        step = flow.steps.get(step_id)
        if step is not None and step.queue is None and flow.queue:
            return step.model_copy(update={"queue": flow.queue})
        return step

    # -- the step task --------------------------------------------------------------------------

    def _step_task(self, task: Task, execution_id: str, version: int) -> str:
        delivery = getattr(task.request, "delivery_info", None) or {}
        current_queue = delivery.get("routing_key") or self.options.queue
        time_limited = any(getattr(task.request, "timelimit", None) or ())
        return self.run_steps(
            execution_id,
            version,
            current_queue,
            time_limited=time_limited,
            retried=bool(getattr(task.request, "retries", 0)),
        )

    def run_steps(
        self,
        execution_id: str,
        version: int,
        current_queue: str,
        *,
        time_limited: bool = False,
        retried: bool = False,
    ) -> str:
        """Run the step `version` expects, then, while the next step is ready now, routed to a
        queue this worker consumes and within the inline bounds, the ones after it. Each step
        is its own committed transaction, so a crash anywhere leaves a recoverable state.

        A message with time limits (`time_limited`: a step with timeout_ms) runs its own step
        only: Celery's limits cover the whole message, so a step inlined after it would be
        interrupted by a limit that was never its own.

        `retried`: this message failed before with the store unavailable, possibly after its
        save reached the database. If the step now turns out taken, it may have been taken by
        that very attempt, whose next message was never sent: a runnable execution is sent on
        (a duplicate message is harmless, it is dropped as stale)."""
        engine = self.runtime.engine
        deadline = time.monotonic() + self.options.inline_ms / 1000.0
        steps_run = 0
        known: Execution | None = None  # what this worker just committed: no need to reload
        while True:
            try:
                outcome = engine.step(execution_id, expected_version=version, known=known)
            except VersionConflictError:
                if retried and steps_run == 0:
                    self._send_on_if_runnable(execution_id)
                return "stale"  # a duplicate or late message: someone already took this step
            except ExecutionError as exc:
                if exc.code is ErrorCode.EXECUTION_NOT_FOUND:
                    log.warning("step message for unknown execution %s dropped", execution_id)
                    return "unknown"
                raise
            steps_run += 1
            for job_id in outcome.jobs:
                self.send_job(job_id, outcome.flow_id, outcome.flow_version, outcome.step_id)
            for runnable in outcome.runnable_executions:
                # Children it started, a parent the last child resumed: committed already (if
                # this process dies before sending, the stalled-lease sweep sends them).
                self.dispatch(runnable)
            if outcome.done:
                return outcome.status.value
            if outcome.status is ExecutionStatus.WAITING:
                if outcome.outcome is not None and outcome.execution is not None:
                    self.send_wake(outcome.execution)
                return "waiting"
            step = self._step_of(outcome.flow_id, outcome.flow_version, outcome.next_step_id)
            if not time_limited and self._may_inline(step, current_queue, steps_run, deadline):
                version, known = outcome.version, outcome.execution
                continue
            self._send(execution_id, outcome.version, step)
            return "dispatched"

    def send_job(self, job_id: str, flow_id: str, flow_version: str, step_id: str | None) -> None:
        """Enqueue a job for a runner, on its step's queue (committed already; a lost message
        is re-sent by the tick once the job's lease runs out)."""
        step = self._step_of(flow_id, flow_version, step_id)
        self.job_task.apply_async((job_id,), queue=self._queue_for(step))

    def run_job(self, job_id: str) -> str:
        """The job task: run it here, then enqueue what its result made runnable."""
        outcome = self.runtime.engine.run_job(job_id)
        if outcome is None:
            return "skipped"  # finished, held by a live runner, or superseded
        for job in outcome.jobs:
            self.send_job(job, outcome.flow_id, outcome.flow_version, outcome.step_id)
        for runnable in outcome.runnable_executions:
            self.dispatch(runnable)
        if outcome.execution is not None:
            self.send_wake(outcome.execution)  # a short retry backoff after a failed job
        return outcome.status.value

    def _move_on(self, executions: list[Execution]) -> None:
        """Enqueue what a command or sweep committed: a step message for a runnable execution,
        a wake message for a short timed wait (see `send_wake`)."""
        for execution in executions:
            if execution.status is ExecutionStatus.WAITING:
                self.send_wake(execution)
            else:
                self.dispatch(execution)

    def _send_on_if_runnable(self, execution_id: str) -> None:
        execution = self.runtime.engine.get(execution_id)
        if execution is not None and execution.status in (
            ExecutionStatus.PENDING,
            ExecutionStatus.RUNNING,
        ):
            self.dispatch(execution)

    def _may_inline(
        self, step: Step | None, current_queue: str, steps_run: int, deadline: float
    ) -> bool:
        if step is None or step.timeout_ms:  # time limits are per message: give it its own
            return False
        queue = self._queue_for(step)
        if queue != current_queue and queue not in self.consumed_queues:
            return False
        return steps_run < self.options.inline_steps and time.monotonic() < deadline

    def send_wake(self, execution: Execution) -> None:
        """For a committed timed wait (a timer, a retry backoff) shorter than `short_wait`, a
        latency shortcut: a message due at `wake_at`, to the waiting step's queue, that commits
        the wake (the step it leads to then runs inline or gets its own message, time limits
        and all). Longer waits get nothing: the tick's sweep is the guarantee for every wait."""
        if execution.status is not ExecutionStatus.WAITING or execution.wake_at is None:
            return
        delay = (execution.wake_at - self.runtime.clock.now()).total_seconds()
        if delay <= self.options.short_wait.total_seconds():
            step = self._step_of(
                execution.flow_id, execution.flow_version, execution.current_step_id
            )
            self._send(
                execution.id, execution.version, step, countdown=max(delay, 0.0), time_limits=False
            )

    def _record_kill(self, execution_id: str, version: int, exc: BaseException) -> None:
        step = None
        execution = self.runtime.engine.get(execution_id)
        if execution is not None:
            step = self._step_of(
                execution.flow_id, execution.flow_version, execution.current_step_id
            )
        limit = step.timeout_ms if step else None
        updated = self.runtime.engine.fail_running_step(
            execution_id,
            expected_version=version,
            code=ErrorCode.HANDLER_TIMEOUT.value,
            message=f"the handler ignored its soft time limit (timeout_ms={limit}) and its worker "
            f"process was killed at the hard limit ({exc})",
            details={"timeout_ms": limit, "killed": True},
        )
        if updated is None:
            log.info("killed step of %s had moved on already; nothing recorded", execution_id)
        # What it leads to (a retry, on_failure) is enqueued by the engine's hand-off.

    # -- the tick -------------------------------------------------------------------------------

    def tick(self) -> dict[str, int]:
        """One sweep: cancel timed-out executions, wake due ones, re-send stalled ones, fire
        due cron triggers. Safe to run from several beats at once (claims, compare-and-set and
        unique constraints decide)."""
        if not self._first_tick_of_period():
            return dict.fromkeys(TICK_SWEEPS, 0)
        engine, store = self.runtime.engine, self.runtime.store
        batch = self.options.sweep_batch
        now = self.runtime.clock.now()
        if isinstance(store, OperatorStore):  # /ready and the trigger warnings look at it
            store.record_heartbeat(TICK_HEARTBEAT, now)
            self._prune_worker_heartbeats(store, now)
        timed_out = engine.cancel_timed_out(now, limit=batch)
        orphans = engine.cancel_orphaned_children(limit=batch)
        for job_id in engine.reap_jobs(now, limit=batch):
            job = store.get_job(job_id)
            owner = store.get_execution(job.execution_id) if job is not None else None
            if owner is not None:
                self.send_job(job_id, owner.flow_id, owner.flow_version, owner.current_step_id)
        woken = engine.wake_due(now, limit=batch)  # enqueued by the engine's hand-off
        lease = self.options.lease
        stalled = store.claim_stalled(now, batch, now + lease)
        for execution in stalled:
            spacing = resend_lease(execution.updated_at, now, lease)
            if spacing >= 2 * lease:  # re-sent before: space the next re-send further out
                store.extend_lease(
                    execution.id, expected_version=execution.version, until=now + spacing
                )
            self.dispatch(execution)
        tracing = tracing_of(engine)
        fired = fire_due_schedules(
            engine,
            store,
            now,
            dispatch=self.dispatch,
            around_fire=tracing.schedule_fire if tracing is not None else None,
        )
        events = engine.redispatch_events(now, limit=batch)  # an emitter died mid-dispatch
        waits = engine.recheck_event_waits(now, limit=batch)  # a waiter died before its search
        # PostgreSQL keeps status counts by appending +1/-1 rows; fold them here too, so they
        # never pile up on a deployment where nobody looks at the counts.
        fold_counts = getattr(store, "fold_execution_counts", None)
        if fold_counts is not None:
            fold_counts(max_batches=1)
        return {
            "timed_out": len(timed_out),
            "woken": len(woken),
            "stalled": len(stalled),
            "fired": len(fired),
            "orphans_cancelled": len(orphans),
            "events": len(events),
            "event_waits": len(waits),
        }

    def _prune_worker_heartbeats(self, store: OperatorStore, now: datetime) -> None:
        last = self._worker_heartbeats_pruned_at
        if last is not None and now - last < WORKER_HEARTBEAT_PRUNE_EVERY:
            return
        self._worker_heartbeats_pruned_at = now
        gone = store.delete_heartbeats(WORKER_HEARTBEAT_PREFIX, before=now - WORKER_HEARTBEAT_KEPT)
        if gone:
            log.info("forgot %d worker(s) not seen for %s", gone, WORKER_HEARTBEAT_KEPT)

    def _first_tick_of_period(self) -> bool:
        """With a lock manager (FLOWMONKEY_REDIS_URL), only the first tick of each period
        sweeps: with two beats, the second one's tick has nothing to add. Without one, or with
        Redis unreachable, every tick sweeps (safe: claims and compare-and-set decide)."""
        locks = self.runtime.locks
        if locks is None:
            return True
        try:
            taken = locks.acquire(f"tick:{self.options.queue}", ttl=self.options.tick_seconds * 0.8)
        except RedisError as exc:
            log.warning("flowmonkey tick: Redis unreachable (%s); sweeping anyway", exc)
            return True
        if taken is None:
            log.debug("flowmonkey tick skipped: another tick swept in this period")
        return taken is not None

    def register_trigger(self, trigger: AnyTrigger | dict[str, Any]) -> AnyTrigger:
        """Save a trigger (schedule, http or event; seed README shape). The tick fires a
        schedule from then on, `/webhooks/{id}` an HTTP trigger, `emit` an event trigger.

        Raises:
            FlowMonkeyError: INVALID_ARGUMENT for an invalid cron expression or timezone.
        """
        return self.runtime.register_trigger(trigger)

    def emit(
        self, event_type: str, payload: Any = None, key: str | None = None, **options: Any
    ) -> EmitResult:
        """Store an event (committed), then enqueue the executions it started or resumed
        (see `Engine.emit`)."""
        return self.runtime.emit(event_type, payload, key, **options)

    # -- worker lifecycle -----------------------------------------------------------------------

    def _remember_queues(self, sender: Any = None, instance: Any = None, **_: Any) -> None:
        """At worker start: a worker that consumes the step queue consumes the tick queue too
        (so `-Q celery,flowmonkey` is enough), and the queues it consumes are remembered."""
        if getattr(instance, "app", None) is not self.app:
            return  # another app's worker in this process
        queues = instance.app.amqp.queues
        tick_queue = self.options.tick_queue_name
        if self.options.queue in queues.consume_from and tick_queue not in queues.consume_from:
            queues.select_add(tick_queue)
            log.info("flowmonkey: this worker also consumes the tick queue %r", tick_queue)
        self.consumed_queues = set(queues.consume_from)

    def _start_worker_heartbeat(self, sender: Any = None, **_: Any) -> None:
        """Once the worker is ready (its pool already forked, so no child inherits the thread
        mid-write): record `worker:<node name>` every few seconds from the main process."""
        store = self.runtime.store
        if getattr(sender, "app", None) is not self.app or not isinstance(store, OperatorStore):
            return
        if self._worker_heartbeat_stop is not None:
            return
        name = WORKER_HEARTBEAT_PREFIX + (getattr(sender, "hostname", None) or socket.gethostname())
        stop = self._worker_heartbeat_stop = threading.Event()

        def beat() -> None:
            while True:
                try:
                    store.record_heartbeat(name, self.runtime.clock.now())
                except Exception as exc:  # a database blip: the next beat tries again
                    log.warning("cannot record the heartbeat of %s: %s", name, exc)
                if stop.wait(WORKER_HEARTBEAT_SECONDS):
                    return

        threading.Thread(target=beat, name="flowmonkey-worker-heartbeat", daemon=True).start()

    def _stop_worker_heartbeat(self, **_: Any) -> None:
        if self._worker_heartbeat_stop is not None:
            self._worker_heartbeat_stop.set()

    def _after_fork(self, **_: Any) -> None:
        # Pooled database connections must not be shared with the parent process.
        dispose = getattr(self.runtime.store, "engine", None)
        if dispose is not None:
            dispose.dispose(close=False)


def _route_first(app: Celery, task_name: str, queue: str) -> None:
    """Route `task_name` to `queue` ahead of the app's own `task_routes`, which are kept."""
    routes = app.conf.task_routes
    existing = tuple(routes) if isinstance(routes, list | tuple) else (routes,) if routes else ()
    app.conf.task_routes = ({task_name: {"queue": queue}}, *existing)


def _queue(name: str) -> Queue:
    # kombu's constructors are untyped today; a call through a typed reference checks cleanly
    # whether or not a kombu release adds types (a `type: ignore` would then be unused).
    make_queue: Callable[..., Queue] = Queue
    make_exchange: Callable[..., Exchange] = Exchange
    return make_queue(name, make_exchange(name), routing_key=name)


def make_app(settings: Settings, name: str = "flowmonkey") -> Celery:
    """A Celery app configured for flowmonkey from settings."""
    from flowmonkey_celery.celery.embedded import embedded_broker_url

    app = Celery(name)
    broker = settings.broker_url or embedded_broker_url(settings.home)
    own_queues = dict.fromkeys(
        (settings.queue, RuntimeOptions.from_settings(settings).tick_queue_name)
    )
    app.conf.update(
        broker_url=broker,
        # What `celery -A workers.app worker` consumes without -Q. Celery's default queue
        # (`celery`) stays the default: a `celery_task` step sending one of your tasks without
        # a queue sends it where your own workers look, not to flowmonkey's queue.
        task_queues=[_queue(q) for q in own_queues],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        enable_utc=True,
        beat_schedule_filename=str(settings.home / "celerybeat-schedule"),
        worker_hijack_root_logger=False,
    )
    if broker.startswith(("redis://", "rediss://")):
        # Countdown messages are only used for waits under a minute; the visibility timeout
        # must exceed the slowest step so that unacked (acks_late) messages are not redelivered.
        app.conf.broker_transport_options = {"visibility_timeout": 3600}
    return app
