"""Handlers: the code that runs a step type. `@handler("type")` or any object with `.type` and
`.execute(params)`; `execute` may be sync or async."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, overload, runtime_checkable

from flowmonkey_celery.core.clock import Clock
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.flow import Step
from flowmonkey_celery.core.jobs import JobControl
from flowmonkey_celery.core.results import StepResult


@dataclass(frozen=True)
class HandlerParams:
    """Everything a handler gets for one call.

    Attributes:
        input: the step's input, resolved from the context by its selector.
        context: a read-only view of the execution context (changes go through the output).
        step: the step definition (`step.config` holds its configuration).
        execution: a snapshot of the execution.
        attempt: 1 for the first call, 2 for the first retry, ...
        step_key: `"<execution_id>:<step_id>:<attempt>"`, stable across redeliveries of the
            same attempt; pass it to external APIs as an idempotency key.
        clock: the engine's clock; use it instead of reading the wall clock.
        issue_token: set by the engine; use `resume_token()`.
        job: for a stateful handler (run as a background job): `heartbeat()`,
            `report_progress(value)`, `save_checkpoint(value)` and the last `checkpoint`.
    """

    input: Any
    context: Mapping[str, Any]
    step: Step
    execution: Execution
    attempt: int
    step_key: str
    clock: Clock
    issue_token: Callable[[timedelta | None, list[str] | None], str] | None = None
    # Set for a stateful handler running as a job: heartbeats, progress, checkpoints.
    job: JobControl | None = None

    def resume_token(
        self, expires_in: timedelta | None = None, outcomes: list[str] | None = None
    ) -> str:
        """Issue a resume token for the wait this call is about to return, and get the raw
        token to hand to whoever should end the wait (only its hash is stored). It is single
        use, expires after `expires_in` (if given) and, with `outcomes`, only accepts those.
        `engine.resume_with_token(token, data)` resumes the execution with it.

        Raises:
            RuntimeError: the handler was not called by an engine.
        """
        if self.issue_token is None:
            raise RuntimeError("resume tokens can only be issued during an engine's step")
        return self.issue_token(expires_in, outcomes)

    @property
    def call_key(self) -> str:
        """`"<step_key>#<n>"`, n counting the execution's handler calls: unlike `step_key`, it
        differs each time a loop comes back to the same step, and stays the same when one call
        is delivered again. The built-in http, webhook, llm and email steps send it as their
        Idempotency-Key / Message-ID."""
        return f"{self.step_key}#{self.execution.step_count + 1}"

    @property
    def config(self) -> dict[str, Any]:
        """Shortcut for `step.config`."""
        return self.step.config


HandlerReturn = StepResult | Awaitable[StepResult]


@runtime_checkable
class StepHandler(Protocol):
    """A handler object: a `type` name and an `execute(params)` method (sync or async).

    Subclass it or just match its shape. Optional `metadata` (name, description, category,
    config_schema...) describes the handler for tooling.
    """

    type: str

    def execute(self, params: HandlerParams) -> HandlerReturn: ...


class FunctionHandler:
    """A plain function registered as a handler by `@handler`."""

    def __init__(
        self,
        handler_type: str,
        func: Callable[[HandlerParams], HandlerReturn],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not handler_type or not isinstance(handler_type, str):
            raise ValueError("a handler type must be a non-empty string")
        self.type = handler_type
        self.func = func
        self.metadata: dict[str, Any] = {"type": handler_type, **(metadata or {})}
        functools.update_wrapper(self, func)

    def execute(self, params: HandlerParams) -> HandlerReturn:
        return self.func(params)

    def __call__(self, params: HandlerParams) -> HandlerReturn:
        return self.func(params)

    def __repr__(self) -> str:
        return f"<handler {self.type!r} {getattr(self.func, '__qualname__', self.func)!r}>"


@overload
def handler(
    handler_type: str, **metadata: Any
) -> Callable[[Callable[[HandlerParams], HandlerReturn]], FunctionHandler]: ...
@overload
def handler(
    handler_type: Callable[[HandlerParams], HandlerReturn], **metadata: Any
) -> FunctionHandler: ...
def handler(handler_type: Any, **metadata: Any) -> Any:
    """Turn a function into a handler for steps of `handler_type`.

    `@handler("greet")` names the type; bare `@handler` uses the function's name. Extra
    keyword arguments (name, description, category, config_schema...) become `.metadata`.
    """
    if callable(handler_type):
        return FunctionHandler(handler_type.__name__, handler_type, metadata)

    def decorate(func: Callable[[HandlerParams], HandlerReturn]) -> FunctionHandler:
        return FunctionHandler(handler_type, func, metadata)

    return decorate
