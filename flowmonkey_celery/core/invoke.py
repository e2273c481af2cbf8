"""Calling one handler: sync or async, with the step's `timeout_ms`, never raising."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from flowmonkey_celery.core.handlers import HandlerParams, StepHandler
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.errors import ErrorCode


class _DeadlinePassed(Exception):
    """The step's timeout_ms cancelled an async handler (distinct from a TimeoutError the
    handler itself raises, e.g. a socket timeout, which is an ordinary HANDLER_ERROR)."""


@dataclass(frozen=True)
class Invocation:
    """A handler call's result and how long it took (wall time, for the audit log)."""

    result: StepResult
    duration_ms: float


def invoke_handler(
    handler: StepHandler,
    params: HandlerParams,
    timeout_ms: int | None,
    timeout_exceptions: tuple[type[BaseException], ...] = (),
) -> Invocation:
    """Run `handler.execute(params)` and turn every way it can go wrong into a failure result.

    An async handler is cancelled at `timeout_ms`. A synchronous one cannot be interrupted in
    process, so if it overruns, its result is discarded and recorded as HANDLER_TIMEOUT (the
    Celery runtime enforces hard limits with task time limits).
    """
    started = time.perf_counter()
    result = _call(handler, params, timeout_ms, timeout_exceptions)
    duration_ms = (time.perf_counter() - started) * 1000.0
    if timeout_ms is not None and duration_ms > timeout_ms and result.outcome != "failure":
        result = Result.failure(
            ErrorCode.HANDLER_TIMEOUT.value,
            f"handler {handler.type!r} of step {params.step.id!r} ran {duration_ms:.0f} ms, "
            f"over the step's timeout_ms={timeout_ms}",
            {"timeout_ms": timeout_ms, "duration_ms": round(duration_ms, 3)},
        )
    return Invocation(result, duration_ms)


def _call(
    handler: StepHandler,
    params: HandlerParams,
    timeout_ms: int | None,
    timeout_exceptions: tuple[type[BaseException], ...],
) -> StepResult:
    deadline_errors: tuple[type[BaseException], ...] = (_DeadlinePassed, *timeout_exceptions)
    try:
        returned: Any = handler.execute(params)
        if inspect.isawaitable(returned):
            returned = _run_awaitable(returned, timeout_ms)
    except deadline_errors:
        return Result.failure(
            ErrorCode.HANDLER_TIMEOUT.value,
            f"handler {handler.type!r} of step {params.step.id!r} was cancelled after "
            f"timeout_ms={timeout_ms}",
            {"timeout_ms": timeout_ms},
        )
    except Exception as exc:
        return Result.failure(
            ErrorCode.HANDLER_ERROR.value,
            f"handler {handler.type!r} of step {params.step.id!r} raised "
            f"{type(exc).__name__}: {exc}",
            {"exception": type(exc).__name__},
        )
    if not isinstance(returned, StepResult):
        return Result.failure(
            ErrorCode.HANDLER_ERROR.value,
            f"handler {handler.type!r} of step {params.step.id!r} returned "
            f"{type(returned).__name__}; return Result.success(...), Result.failure(...) "
            "or Result.wait(...)",
            {"returned": type(returned).__name__},
        )
    return returned


def _run_awaitable(awaitable: Awaitable[Any], timeout_ms: int | None) -> Any:
    async def bounded() -> Any:
        if timeout_ms is None:
            return await awaitable
        task = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({task}, timeout=timeout_ms / 1000.0)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise _DeadlinePassed
        return task.result()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded())
    # Called from inside a running event loop (e.g. a notebook): the engine is synchronous,
    # so run the coroutine on a private loop in a helper thread rather than nesting loops.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, bounded()).result()
