"""Hooks for cross-cutting behaviour (tracing, audit) at two moments the event bus cannot show.

History events are published after a commit, so a subscriber cannot add to what is saved, nor
run code around a handler while it runs. `EngineHooks` (an engine's `hooks`) lets an observer
annotate each new execution before it is saved, and wrap each handler call (to run it inside a
span, say, so that what the handler does is nested under it). Core stays free of any tracing
library: the observer brings its own. A hook that raises is logged and never breaks a flow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.handlers import HandlerParams, StepHandler
from flowmonkey_celery.core.invoke import Invocation, invoke_handler

log = logging.getLogger("flowmonkey_celery.hooks")
_Hook = TypeVar("_Hook")

# `callback(execution, parent)`: parent is the execution whose step started it, else None.
CreationCallback = Callable[[Execution, Execution | None], None]
HandlerCall = Callable[[], Invocation]
# `wrapper(params, call)` calls `call()` once and returns what it returned.
HandlerWrapper = Callable[[HandlerParams, HandlerCall], Invocation]


class EngineHooks:
    """The engine's hooks: `on_creating` and `wrap_handler_calls` (see the module docstring)."""

    def __init__(self) -> None:
        self._creating: list[CreationCallback] = []
        self._wrappers: list[HandlerWrapper] = []
        self._lock = threading.Lock()

    def on_creating(self, callback: CreationCallback) -> Callable[[], None]:
        """Call `callback(execution, parent)` with each new execution just before it is saved:
        created by `create()` (a trigger, an event, a replay, any caller) or, with `parent`,
        started as a child by a step. It may add entries to `execution.metadata` (plain JSON),
        which are saved with the execution. Returns the function that unsubscribes."""
        return self._add(self._creating, callback)

    def wrap_handler_calls(self, wrapper: HandlerWrapper) -> Callable[[], None]:
        """Run every handler call (a step attempt, a background job) as `wrapper(params,
        call)`: the wrapper calls `call()`, which never raises, and returns its `Invocation`.
        Wrappers nest, the first registered outermost. If a wrapper raises, that is logged and
        the handler still runs exactly once. Returns the function that unsubscribes."""
        return self._add(self._wrappers, wrapper)

    def creating(self, execution: Execution, parent: Execution | None) -> None:
        """Let the `on_creating` callbacks annotate a new execution (the engine calls this)."""
        for callback in list(self._creating):
            try:
                callback(execution, parent)
            except Exception:
                log.exception("creation hook %r failed for %s; ignored", callback, execution.id)

    def invoke(
        self,
        handler: StepHandler,
        params: HandlerParams,
        timeout_ms: int | None,
        timeout_exceptions: tuple[type[BaseException], ...] = (),
    ) -> Invocation:
        """Call the handler (see `invoke_handler`) through the wrappers."""

        def call() -> Invocation:
            return invoke_handler(handler, params, timeout_ms, timeout_exceptions)

        for wrapper in reversed(list(self._wrappers)):
            call = _guarded(wrapper, params, call)
        return call()

    def _add(self, hooks: list[_Hook], hook: _Hook) -> Callable[[], None]:
        with self._lock:
            hooks.append(hook)

        def remove() -> None:
            with self._lock:
                if hook in hooks:
                    hooks.remove(hook)

        return remove


def _guarded(wrapper: HandlerWrapper, params: HandlerParams, inner: HandlerCall) -> HandlerCall:
    """`inner` through `wrapper`, such that a failing wrapper neither breaks the step nor runs
    the handler twice (or not at all)."""

    def call() -> Invocation:
        made: list[Invocation] = []

        def once() -> Invocation:
            if not made:
                made.append(inner())
            return made[0]

        try:
            return wrapper(params, once)
        except Exception:
            log.exception(
                "handler wrapper %r failed on step %r of %s; ignored",
                wrapper,
                params.step.id,
                params.execution.id,
            )
            return once()

    return call
