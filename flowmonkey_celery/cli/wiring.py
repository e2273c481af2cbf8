"""What commands work on, built from the FLOWMONKEY_* settings when a command runs (never at
import): the settings, the store, the runtime, and the Celery client."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from pydantic import ValidationError

from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.celery.app import make_app
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError
from flowmonkey_celery.observability.tracing import configure_tracing
from flowmonkey_celery.runtime import Runtime, build_store
from flowmonkey_celery.settings import Settings
from flowmonkey_celery.stores.sql import SqlStore


def load_settings() -> Settings:
    """`Settings.from_env()`, with a bad value reported as the variable it came from.

    Raises:
        FlowMonkeyError: INVALID_ARGUMENT naming each bad FLOWMONKEY_* variable.
    """
    try:
        return Settings.from_env()
    except ValidationError as exc:
        problems = "; ".join(
            f"FLOWMONKEY_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise FlowMonkeyError(f"invalid setting: {problems}", ErrorCode.INVALID_ARGUMENT) from None


@contextmanager
def opened_store(settings: Settings) -> Iterator[SqlStore]:
    """The configured store (`build_store`: the embedded default is created and migrated, a
    configured database must be migrated already), disposed of afterwards."""
    store = build_store(settings)
    try:
        yield store
    finally:
        store.dispose()


def history_engine(store: SqlStore) -> Engine:
    """An engine that only reads (history, get): no handler modules or flows are loaded, so
    reading an execution never depends on the code that runs it."""
    return Engine(store, HandlerRegistry(), FlowRegistry())


@contextmanager
def opened_runtime(settings: Settings) -> Iterator[Runtime]:
    """`Runtime.from_settings`: the store, the FLOWMONKEY_HANDLERS handlers, the
    FLOWMONKEY_FLOWS flows (saved to the store) and every flow version stored before; runs
    everything in this process, its steps traced as FLOWMONKEY_OTEL_EXPORTER asks."""
    configure_tracing(settings, service_name="flowmonkey-cli")
    runtime = Runtime.from_settings(settings)
    try:
        yield runtime
    finally:
        runtime.store.dispose()


def save_flows(settings: Settings, flows: Iterable[Flow]) -> None:
    """Save flow versions to the store, and register the triggers the newest version of each
    declares: what `Runtime.from_settings` does with FLOWMONKEY_FLOWS at a process's start.

    Raises:
        FlowValidationError: a flow is invalid, or its version is stored with another
            definition.
    """
    Runtime.from_settings(settings, flows=flows).store.dispose()


@contextmanager
def opened_client(settings: Settings) -> Iterator[FlowMonkeyCelery]:
    """The runtime wrapped in `FlowMonkeyCelery`: every command commits, then enqueues what it
    made runnable on FLOWMONKEY_BROKER_URL (the embedded broker under FLOWMONKEY_HOME if none
    is set), for the workers (`flowmonkey worker`) to run. With FLOWMONKEY_OTEL_EXPORTER, an
    execution it creates gets its root span here, and the workers' step spans join it."""
    configure_tracing(settings, service_name="flowmonkey-cli")
    runtime = Runtime.from_settings(settings)
    client = FlowMonkeyCelery(make_app(settings, "flowmonkey-cli"), runtime)
    try:
        yield client
    finally:
        client.app.close()
        runtime.store.dispose()
