"""Registries: handlers by step type, and flows by id and semantic version."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.handlers import (
    FunctionHandler,
    HandlerParams,
    HandlerReturn,
    StepHandler,
)
from flowmonkey_celery.core.routing import ConditionalHandler, SwitchHandler
from flowmonkey_celery.core.validation import build_flow
from flowmonkey_celery.core.versions import version_key
from flowmonkey_celery.errors import (
    ErrorCode,
    FlowMonkeyError,
    FlowNotFoundError,
    FlowValidationError,
    HandlerNotFoundError,
)


class HandlerRegistry:
    """Handlers by step type. `conditional` and `switch` are registered from the start."""

    def __init__(self, handlers: Iterable[StepHandler | Callable[..., Any]] = ()) -> None:
        self._handlers: dict[str, StepHandler] = {}
        self._lock = threading.Lock()
        self.register(ConditionalHandler())
        self.register(SwitchHandler())
        for item in handlers:
            self.register(item)

    def register(self, handler: Any, *, replace: bool = False) -> StepHandler:
        """Register a `@handler` function or any object with `.type` and `.execute(params)`.

        Raises:
            FlowMonkeyError: DUPLICATE_HANDLER if the type is taken (pass `replace=True` to
                swap it deliberately), INVALID_ARGUMENT if `handler` has no type/execute.
        """
        checked = _as_handler(handler)
        with self._lock:
            if checked.type in self._handlers and not replace:
                raise FlowMonkeyError(
                    f"a handler for step type {checked.type!r} is already registered "
                    f"({self._handlers[checked.type]!r}); pass replace=True to replace it",
                    ErrorCode.DUPLICATE_HANDLER,
                    {"type": checked.type},
                )
            self._handlers[checked.type] = checked
        return checked

    def unregister(self, handler_type: str) -> None:
        with self._lock:
            self._handlers.pop(handler_type, None)

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


class FlowRegistry:
    """Validated flows by id and version. "Latest" is by semantic version (1.10.0 > 1.9.0).

    Executions pin the version they started on, so a registered version never changes:
    registering the same id and version again with a different definition is refused.
    """

    def __init__(self, flows: Iterable[Flow | dict[str, Any]] = ()) -> None:
        self._flows: dict[str, dict[str, Flow]] = {}
        self._lock = threading.Lock()
        for flow in flows:
            self.register(flow)

    def register(self, flow: Flow | dict[str, Any]) -> Flow:
        """Validate and add a flow (a `Flow` or FlowMonkey JSON/snake_case data).

        Raises:
            FlowValidationError: code INVALID_FLOW, with every problem in `.issues`; also when
                this id and version are already registered with a different definition.
        """
        checked = build_flow(flow)
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
