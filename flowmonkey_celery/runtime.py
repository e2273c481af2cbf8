"""Composition: settings -> concrete store, handlers, flows and engine."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flowmonkey_celery.coordination.redis import RedisLockManager
from flowmonkey_celery.core.clock import Clock, OffsetClock, SystemClock
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.handler_info import check_input_schema
from flowmonkey_celery.core.inbox import EmitResult
from flowmonkey_celery.core.ports import AnyTrigger, LockManager, OperatorStore
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.core.triggers import (
    HttpTrigger,
    ScheduleTrigger,
    flow_triggers,
    parse_trigger,
)
from flowmonkey_celery.core.validation import build_flow
from flowmonkey_celery.core.versions import version_key
from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError
from flowmonkey_celery.handlers import configured_handlers
from flowmonkey_celery.loading import flows_in_folder, handlers_in_modules
from flowmonkey_celery.observability.tracing import install_tracing
from flowmonkey_celery.settings import Settings
from flowmonkey_celery.stores.sql import SqlStore
from flowmonkey_celery.triggers.schedule import validate_cron

log = logging.getLogger("flowmonkey_celery.runtime")


def build_store(settings: Settings) -> SqlStore:
    """The store the settings name.

    The embedded default (no database URL) creates its SQLite file under `settings.home` and
    migrates it on the spot. A configured database must already be migrated: migrations run
    once per deploy (`flowmonkey db migrate`), so a process refuses to start on an outdated
    schema with a message saying what to run.

    Raises:
        SchemaOutdatedError: a configured database is not at the latest schema revision.
    """
    if settings.embedded:
        settings.home.mkdir(parents=True, exist_ok=True)
        store = SqlStore(settings.resolved_database_url())
        store.migrate()
        return store
    store = SqlStore(
        settings.resolved_database_url(), prepared_statements=settings.prepared_statements
    )
    store.check_schema()
    return store


@dataclass(frozen=True)
class RuntimeOptions:
    """How a distributed runtime schedules steps.

    Attributes:
        queue: the default queue for step messages (flows and steps may name their own).
        tick_queue: the queue of the beat's tick messages (None: "<queue>.tick"); a worker
            that consumes `queue` consumes it too (see `tick_queue_name`).
        tick_seconds: period of the beat's tick (wakes, timeouts, stalled executions, cron).
        lease: a pending or running execution with no committed progress and no heartbeat
            for this long is presumed stalled (its worker died, its message was lost) and
            re-sent. A running handler's worker renews it every third of a lease, so it bounds
            how long a dead worker's step goes unnoticed, not how long a step may run.
        inline_steps / inline_ms: how far a worker may carry one execution itself, step after
            committed step, before handing it back to the broker (0 turns inline continuation
            off); bounded so one long flow cannot starve others.
        short_wait: waits this short also get a countdown message, so they resume without
            waiting for a tick; longer waits rely on the database sweep alone (brokers such as
            Redis redeliver long ETAs after their visibility timeout).
    """

    queue: str = "flowmonkey"
    tick_queue: str | None = None
    tick_seconds: float = 1.0
    lease: timedelta = timedelta(seconds=30)
    inline_steps: int = 50
    inline_ms: int = 2000
    short_wait: timedelta = timedelta(seconds=30)
    sweep_batch: int = 500
    # Seconds between a step's soft time limit (raised inside the handler: HANDLER_TIMEOUT)
    # and the hard limit (the worker process running it is killed).
    hard_limit_grace_seconds: float = 10.0

    @property
    def tick_queue_name(self) -> str:
        """Where ticks go. Not the step queue by default: a tick queued behind a backlog of
        steps would wait for all of them, and expire unrun if that takes ten tick periods."""
        return self.tick_queue or f"{self.queue}.tick"

    @classmethod
    def from_settings(cls, settings: Settings) -> RuntimeOptions:
        return cls(
            queue=settings.queue,
            tick_queue=settings.tick_queue,
            tick_seconds=settings.tick_seconds,
            lease=timedelta(seconds=settings.lease_seconds),
            inline_steps=settings.inline_steps,
            inline_ms=settings.inline_ms,
            hard_limit_grace_seconds=settings.hard_limit_grace_seconds,
        )


class Runtime:
    """A store, handlers, flows and an engine wired together for one process."""

    def __init__(
        self,
        store: SqlStore | Any,
        handlers: HandlerRegistry,
        flows: FlowRegistry,
        *,
        options: RuntimeOptions | None = None,
        clock: Clock | None = None,
        settings: Settings | None = None,
        locks: LockManager | None = None,
    ) -> None:
        self.store = store
        # Coordination (FLOWMONKEY_REDIS_URL): lets one tick per period do the sweep when
        # several beats run. An optimisation only; the store decides everything.
        self.locks = locks
        self.handlers = handlers
        self.flows = flows
        self.options = options or RuntimeOptions()
        self.clock = clock or SystemClock()
        self.settings = settings
        # Set by the REST API serving this runtime (`flowmonkey_celery.api.create_app`).
        self.http_adapter = False
        longest = settings.max_step_seconds if settings is not None else None
        self.engine = Engine(
            store,
            handlers,
            flows,
            clock=self.clock,
            lease=self.options.lease,
            max_step_duration=timedelta(seconds=longest) if longest else None,
        )
        # Spans go to the global TracerProvider: yours, or the one FLOWMONKEY_OTEL_EXPORTER set
        # up; without either (or without OpenTelemetry) they cost next to nothing.
        install_tracing(self.engine)

    def register_trigger(
        self, trigger: AnyTrigger | dict[str, Any], *, create_only: bool = False
    ) -> AnyTrigger:
        """Save a trigger of any type (schedule, http, event; the seed README's shape, camelCase
        or snake_case). It starts its flow from then on.

        Raises:
            pydantic.ValidationError: the trigger is malformed (every problem listed).
            FlowNotFoundError: FLOW_NOT_FOUND, its flow is not registered.
            FlowMonkeyError: INVALID_ARGUMENT for a bad cron expression or input schema.
        """
        checked = parse_trigger(trigger)
        self.flows.get(checked.flow_id)  # FLOW_NOT_FOUND now, not at the first fire
        saved = register_trigger(self.store, checked, self.clock.now(), create_only=create_only)
        self._warn_if_nothing_fires(saved)
        return saved

    def _warn_if_nothing_fires(self, trigger: AnyTrigger) -> None:
        """The seed's warnings: a trigger nothing here will fire is saved, but said so."""
        if isinstance(trigger, HttpTrigger) and not self.http_adapter and not self._seen("api"):
            log.warning(
                "HTTP trigger '%s' registered but no HTTP adapter configured. Trigger will not "
                "be accessible. Run `flowmonkey api`, or mount "
                "flowmonkey_celery.api.create_app(...) in your web app.",
                trigger.id,
            )
        if isinstance(trigger, ScheduleTrigger) and not self._seen("tick"):
            log.warning(
                "Schedule trigger '%s' registered but scheduler not enabled. Trigger will not "
                "fire. Run `flowmonkey beat` (or `celery -A beat.app beat`).",
                trigger.id,
            )

    def _seen(self, heartbeat: str) -> bool:
        """Whether `heartbeat` ("api", "tick") was recorded in the last two minutes."""
        store = self.store
        if not isinstance(store, OperatorStore):
            return False
        try:
            last = store.last_heartbeat(heartbeat)
        except Exception:  # a store without the table yet: say nothing rather than fail
            return True
        return last is not None and self.clock.now() - last <= timedelta(minutes=2)

    def emit(
        self, event_type: str, payload: Any = None, key: str | None = None, **options: Any
    ) -> EmitResult:
        """Store an event and start / resume what it matches (see `Engine.emit`)."""
        return self.engine.emit(event_type, payload, key, **options)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        handlers: Iterable[Any] = (),
        flows: Iterable[Flow | dict[str, Any]] = (),
        options: RuntimeOptions | None = None,
        clock: Clock | None = None,
    ) -> Runtime:
        """Build the store (see `build_store`), register the handlers found in
        `FLOWMONKEY_HANDLERS` modules plus `handlers`, and the flows of `FLOWMONKEY_FLOWS` plus
        `flows`. Flow versions are saved to the database, and versions stored there by earlier
        deploys are registered too, so executions pinned to them keep running."""
        store = build_store(settings)
        yours = [*handlers, *handlers_in_modules(settings.handlers)]
        taken = {h.type for h in yours}
        # The built-in integrations configured by the settings, unless yours replace them.
        configured = [h for h in configured_handlers(settings) if h.type not in taken]
        handler_registry = HandlerRegistry([*configured, *yours])
        flow_registry = FlowRegistry(handlers=handler_registry)
        # Every flow is checked, step configs included, before anything is stored.
        check = handler_registry.step_config_issues
        local = [
            *(build_flow(f, check) for f in flows),
            *flows_in_folder(settings.flows, check),
        ]
        now = datetime.now(UTC)
        deployed = {
            (flow.id, flow.version) for flow in local if store.save_flow_definition(flow, now=now)
        }
        for flow in store.list_flow_definitions():
            # Checked when deployed; executions may be pinned to versions a newer handler
            # schema would refuse, and they must keep running.
            flow_registry.register(flow, check_configs=False)
        # Versions registered later by other processes (the REST API) are found on a miss.
        flow_registry.source = store.list_flow_definitions
        # Triggers declared in flow files: the newest local version of each flow declares them.
        # They are saved when that version is deployed (or when missing), not at every start: a
        # trigger disabled or changed through the API stays so until the next version ships.
        latest = {flow.id: flow for flow in sorted(local, key=lambda f: version_key(f.version))}
        for flow in latest.values():
            for trigger in flow_triggers(flow):
                if (flow.id, flow.version) in deployed or store.get_trigger(trigger.id) is None:
                    register_trigger(store, trigger, now)
        return cls(
            store,
            handler_registry,
            flow_registry,
            options=options or RuntimeOptions.from_settings(settings),
            clock=clock
            or (
                OffsetClock(settings.clock_offset_seconds)
                if settings.clock_offset_seconds
                else None
            ),
            settings=settings,
            locks=RedisLockManager.from_url(settings.redis_url) if settings.redis_url else None,
        )


def register_trigger(
    store: Any, trigger: AnyTrigger, now: datetime, *, create_only: bool = False
) -> AnyTrigger:
    """Check what the trigger's model cannot (a schedule's cron expression, an HTTP trigger's
    input_schema) and save (upsert) it; with `create_only`, only if its id is free.

    Raises:
        FlowMonkeyError: INVALID_ARGUMENT for an invalid cron expression or input schema, or
            (`create_only`) a taken id.
    """
    if isinstance(trigger, ScheduleTrigger):
        validate_cron(trigger.schedule)
    if isinstance(trigger, HttpTrigger) and trigger.input_schema is not None:
        check_input_schema(trigger.input_schema)
    if create_only:
        if not store.create_trigger(trigger, now):
            raise FlowMonkeyError(
                f"trigger id {trigger.id!r} is taken",
                ErrorCode.INVALID_ARGUMENT,
                {"trigger_id": trigger.id, "taken": True},
            )
        found: AnyTrigger = store.get_trigger(trigger.id)
        return found
    saved: AnyTrigger = store.save_trigger(trigger, now)
    return saved
