"""Registries: handlers by step type, and flows by id and semantic version."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jsonschema import Draft202012Validator

from flowmonkey_celery.core.child_steps import ParallelHandler, SubflowHandler
from flowmonkey_celery.core.delay import DelayHandler
from flowmonkey_celery.core.event_wait import WaitForEventHandler
from flowmonkey_celery.core.flow import Flow, Step
from flowmonkey_celery.core.handler_info import (
    HandlerInfo,
    Issue,
    config_validator,
    step_config_issues,
)
from flowmonkey_celery.core.handlers import (
    FunctionHandler,
    HandlerParams,
    HandlerReturn,
    StepHandler,
)
from flowmonkey_celery.core.routing import ConditionalHandler, SwitchHandler
from flowmonkey_celery.core.signal_wait import WaitForSignalHandler
from flowmonkey_celery.core.validation import build_flow
from flowmonkey_celery.core.versions import version_key
from flowmonkey_celery.errors import (
    ErrorCode,
    FlowMonkeyError,
    FlowNotFoundError,
    FlowValidationError,
    HandlerNotFoundError,
)

# Factories of the handlers every HandlerRegistry starts with besides routing (the built-in
# handlers of `flowmonkey_celery.handlers` add theirs when the package is imported): core
# cannot import them itself, they reach outside (HTTP, SMTP).
_BUILTIN_FACTORIES: list[Callable[[], Iterable[StepHandler]]] = []


def add_builtin_handlers(factory: Callable[[], Iterable[StepHandler]]) -> None:
    """Have every HandlerRegistry created from now on start with `factory()`'s handlers."""
    if factory not in _BUILTIN_FACTORIES:
        _BUILTIN_FACTORIES.append(factory)


class HandlerRegistry:
    """Handlers by step type. The routing handlers (`conditional`, `switch`) and the built-in
    ones (`delay`, `http`, `transform`, ...: see the README) are registered from the start;
    register your own type to add one, or `replace=True` to swap a built-in."""

    def __init__(self, handlers: Iterable[StepHandler | Callable[..., Any]] = ()) -> None:
        self._handlers: dict[str, StepHandler] = {}
        self._validators: dict[str, Draft202012Validator | None] = {}
        # Built-in types a handler of yours may take over without replace=True (until it does).
        self._builtin_types: set[str] = set()
        self._lock = threading.Lock()
        self.register(ConditionalHandler())
        self.register(SwitchHandler())
        builtins: list[StepHandler] = [
            DelayHandler(),
            WaitForSignalHandler(),
            WaitForEventHandler(),
            SubflowHandler(),
            ParallelHandler(),
        ]
        for factory in _BUILTIN_FACTORIES:
            builtins += factory()
        for builtin in builtins:
            self.register(builtin)
            self._builtin_types.add(builtin.type)
        for item in handlers:
            self.register(item)

    def register(self, handler: Any, *, replace: bool = False) -> StepHandler:
        """Register a `@handler` function or any object with `.type` and `.execute(params)`.

        A handler of a built-in type (`http`, `delay`, ...) takes the built-in's place.

        Raises:
            FlowMonkeyError: DUPLICATE_HANDLER if the type is taken (pass `replace=True` to
                swap it deliberately), INVALID_ARGUMENT if `handler` has no type/execute or
                declares an invalid `config_schema`.
        """
        checked = _as_handler(handler)
        validator = config_validator(HandlerInfo.of(checked))
        with self._lock:
            overridable = checked.type in self._builtin_types
            if checked.type in self._handlers and not replace and not overridable:
                raise FlowMonkeyError(
                    f"a handler for step type {checked.type!r} is already registered "
                    f"({self._handlers[checked.type]!r}); pass replace=True to replace it",
                    ErrorCode.DUPLICATE_HANDLER,
                    {"type": checked.type},
                )
            self._handlers[checked.type] = checked
            self._validators[checked.type] = validator
            self._builtin_types.discard(checked.type)
        return checked

    def info(self, handler_type: str) -> HandlerInfo:
        """What the handler for `handler_type` says about itself.

        Raises:
            HandlerNotFoundError: no handler for that type.
        """
        return HandlerInfo.of(self.get(handler_type))

    def infos(self) -> list[HandlerInfo]:
        """Every registered handler's description, by type."""
        return [HandlerInfo.of(self._handlers[t]) for t in self.types()]

    def is_stateful(self, handler_type: str) -> bool:
        """Whether the handler runs as a background job (`stateful: True` in its metadata)."""
        found = self._handlers.get(handler_type)
        return found is not None and HandlerInfo.of(found).stateful

    def config_issues(self, flow: Flow) -> list[Issue]:
        """Every step config of `flow` that breaks its handler's config schema."""
        return step_config_issues(flow, self._validators, self._handlers)

    def step_config_issues(self, steps: Iterable[Step]) -> list[Issue]:
        """The same for steps of a flow still being validated (`build_flow`'s config check)."""
        return step_config_issues(steps, self._validators, self._handlers)

    def unregister(self, handler_type: str) -> None:
        with self._lock:
            self._handlers.pop(handler_type, None)
            self._validators.pop(handler_type, None)

    def get(self, handler_type: str) -> StepHandler:
        """The handler for `handler_type`.

        Raises:
            HandlerNotFoundError: code HANDLER_NOT_FOUND, naming the registered types.
        """
        found = self._handlers.get(handler_type)
        if found is None:
            raise HandlerNotFoundError(
                f"no handler registered for step type {handler_type!r}; registered: "
                f"{', '.join(sorted(self._handlers))}",
                details={"type": handler_type},
            )
        return found

    def has(self, handler_type: str) -> bool:
        return handler_type in self._handlers

    def types(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, handler_type: object) -> bool:
        return handler_type in self._handlers

    def __iter__(self) -> Iterator[StepHandler]:
        return iter(list(self._handlers.values()))

    def __len__(self) -> int:
        return len(self._handlers)


def _as_handler(candidate: Any) -> StepHandler:
    if (
        isinstance(candidate, StepHandler)
        and isinstance(getattr(candidate, "type", None), str)
        and callable(getattr(candidate, "execute", None))
    ):
        return candidate
    handler_type = getattr(candidate, "type", None)
    if callable(candidate) and isinstance(handler_type, str):
        func: Callable[[HandlerParams], HandlerReturn] = candidate
        return FunctionHandler(handler_type, func)
    raise FlowMonkeyError(
        f"{candidate!r} is not a handler: use @handler('type') on a function, or an object "
        "with a string .type and an .execute(params) method",
        ErrorCode.INVALID_ARGUMENT,
    )


REFRESH_SECONDS = 1.0
LATEST_SECONDS = 5.0


class FlowRegistry:
    """Validated flows by id and version. "Latest" is by semantic version (1.10.0 > 1.9.0).

    Executions pin the version they started on, so a registered version never changes:
    registering the same id and version again with a different definition is refused.

    With `handlers` (an `Engine` attaches its own if none is given), each step's `config` is
    checked against its handler's `config_schema` when the flow is registered.
    """

    def __init__(
        self,
        flows: Iterable[Flow | dict[str, Any]] = (),
        *,
        handlers: HandlerRegistry | None = None,
    ) -> None:
        self._flows: dict[str, dict[str, Flow]] = {}
        self._lock = threading.Lock()
        self.handlers = handlers
        # Where versions registered by other processes (through the REST API, a newer
        # deploy) are found: asked on a miss, at most once per REFRESH_SECONDS.
        self.source: Callable[[], Iterable[Flow]] | None = None
        self._refreshed_at = float("-inf")
        for flow in flows:
            self.register(flow)

    def _refresh(self) -> bool:
        """Pick up versions stored since; True if it looked."""
        now = time.monotonic()
        if self.source is None or now - self._refreshed_at < REFRESH_SECONDS:
            return False
        self._refreshed_at = now
        for flow in self.source():
            versions = self._flows.get(flow.id, {})
            if flow.version not in versions:
                self.register(flow, check_configs=False)  # checked when it was stored
        return True

    def register(self, flow: Flow | dict[str, Any], *, check_configs: bool = True) -> Flow:
        """Validate and add a flow (a `Flow` or FlowMonkey JSON/snake_case data).

        `check_configs=False` skips the handler config check: for versions stored by an
        earlier deploy, which executions may be pinned to, checked when they were deployed.

        Raises:
            FlowValidationError: code INVALID_FLOW, with every problem in `.issues` (a step
                config that breaks its handler's schema, at `steps.<id>.config.<path>`); also
                when this id and version are already registered with a different definition.
        """
        handlers = self.handlers if check_configs else None
        checked = build_flow(flow, handlers.step_config_issues if handlers is not None else None)
        with self._lock:
            versions = self._flows.setdefault(checked.id, {})
            existing = versions.get(checked.version)
            # Compare what was written, not pydantic equality: `onResume: null` and an absent
            # onResume compare equal as models but route differently.
            if existing is not None and existing.to_dict() != checked.to_dict():
                raise FlowValidationError(
                    f"flow {checked.id!r} version {checked.version} is already registered with "
                    "a different definition; give the changed flow a new version",
                    [("version", "already registered with a different definition")],
                )
            versions[checked.version] = checked
        return checked

    def get(self, flow_id: str, version: str | None = None) -> Flow:
        """A flow by id: the given version, or the latest.

        Raises:
            FlowNotFoundError: code FLOW_NOT_FOUND, naming what is registered.
        """
        versions = self._flows.get(flow_id)
        missing = not versions or (version is not None and version not in versions)
        # "The latest" may have moved on in another process: looked up again now and then.
        stale = version is None and time.monotonic() - self._refreshed_at > LATEST_SECONDS
        if (missing or stale) and self._refresh():
            versions = self._flows.get(flow_id)
        if not versions:
            known = ", ".join(sorted(self._flows)) or "none"
            raise FlowNotFoundError(
                f"flow {flow_id!r} is not registered (registered flows: {known})",
                details={"flow_id": flow_id},
            )
        if version is None:
            return versions[max(versions, key=version_key)]
        found = versions.get(version)
        if found is None:
            raise FlowNotFoundError(
                f"flow {flow_id!r} has no version {version} (registered: "
                f"{', '.join(sorted(versions, key=version_key))})",
                details={"flow_id": flow_id, "version": version},
            )
        return found

    def find(self, flow_id: str, version: str | None = None) -> Flow | None:
        try:
            return self.get(flow_id, version)
        except FlowNotFoundError:
            return None

    def versions(self, flow_id: str) -> list[str]:
        """Registered versions of a flow, oldest first."""
        return sorted(self._flows.get(flow_id, {}), key=version_key)

    def flow_ids(self) -> list[str]:
        return sorted(self._flows)

    def all(self) -> list[Flow]:
        """Every registered version of every flow."""
        return [
            f for fid in self.flow_ids() for f in (self._flows[fid][v] for v in self.versions(fid))
        ]

    def __contains__(self, flow_id: object) -> bool:
        return flow_id in self._flows

    def __len__(self) -> int:
        return len(self._flows)


def check_step_configs(flow: Flow, handlers: HandlerRegistry) -> None:
    """Raise unless every step config of `flow` matches its handler's config schema.

    Raises:
        FlowValidationError: INVALID_FLOW, one issue per problem, each naming its path.
    """
    issues = handlers.config_issues(flow)
    if issues:
        raise FlowValidationError(
            f"flow {flow.id!r} {flow.version} has step configs its handlers refuse "
            f"({len(issues)} problem{'s' if len(issues) != 1 else ''})",
            issues,
        )
