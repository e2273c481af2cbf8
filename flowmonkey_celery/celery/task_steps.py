"""`celery_task` steps: a flow step that sends an existing Celery task by name and continues
with its result (or fails with its exception), without blocking a worker while it waits.

How a step goes:

1. The handler sends the task with `link=flowmonkey.task_succeeded` and
   `link_error=flowmonkey.task_errback`, then returns a signal wait; the step's wait is
   committed like any other.
2. On success, Celery's worker sends `flowmonkey.task_succeeded(result, ...)` as a message (link
   callbacks are published by the worker itself, with or without a result backend). It resumes
   the execution with the result: `fm.resume()` commits, then enqueues the next step.
3. On failure, Celery calls the errback synchronously, inside the worker that ran the failing
   task (new-style errbacks: `errback(request, exc, traceback)`, fired by
   `Backend.mark_as_failure`, which the disabled backend inherits, so no result backend is
   needed). The errback only enqueues `flowmonkey.task_failed`, which fails the waiting step
   through its retry policy and `on_failure`.

The task is sent before the step's wait is committed, so its callback can arrive first. Each
callback carries the execution's `step_count` at the time the task was sent (its `sequence`):
while the stored `step_count` still equals it, the step that sent the task has not committed,
and the callback retries itself shortly; once it is one more and the execution waits at that
step for a signal, the wait is the one this task ends; anything else means the execution moved
on (or finished) and the callback is dropped.
"""

from __future__ import annotations

import logging
import weakref
from enum import StrEnum
from typing import Any, Protocol

from celery import Celery, Task
from celery.utils.serialization import UnpickleableExceptionWrapper

from flowmonkey_celery.core.execution import Execution, ExecutionStatus, WaitKind
from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.errors import (
    ErrorCode,
    ExecutionError,
    FlowMonkeyError,
    StoreUnavailableError,
    VersionConflictError,
)
from flowmonkey_celery.runtime import Runtime


class TaskStepHost(Protocol):
    """What `celery_task` steps need of the Celery runtime (`FlowMonkeyCelery` is one): its
    app, its runtime, and the commit-then-enqueue operations. Narrow, so that this module does
    not depend on `app.py`, which installs it."""

    app: Celery
    runtime: Runtime

    @property
    def step_queue(self) -> str: ...

    def get(self, execution_id: str) -> Execution | None: ...

    def resume(
        self, execution_id: str, data: Any = None, *, expected_version: int | None = None
    ) -> Execution: ...

    def dispatch(self, execution: Execution, *, countdown: float | None = None) -> None: ...

    def send_wake(self, execution: Execution) -> None: ...


log = logging.getLogger("flowmonkey_celery.celery.task_steps")

CELERY_TASK_TYPE = "celery_task"
TASK_SUCCEEDED = "flowmonkey.task_succeeded"
TASK_ERRBACK = "flowmonkey.task_errback"
TASK_FAILED = "flowmonkey.task_failed"
# The error code of a step whose Celery task raised.
CELERY_TASK_FAILED = "CELERY_TASK_FAILED"
# A callback that beats the commit of its step's wait retries itself this often, waiting
# min(0.1 * 2**n, 2) seconds: about 25 s in all, far longer than a step's commit takes. A step
# whose worker died before committing is re-run by the tick, and sends its task again.
NOT_YET_RETRIES = 16
NOT_YET_MAX_DELAY = 2.0
MESSAGE_LIMIT = 2000

_installed: weakref.WeakSet[Any] = weakref.WeakSet()


class Delivery(StrEnum):
    """What a task's callback found when it came to resume (or fail) its step."""

    APPLY = "apply"  # the execution waits at the step that sent the task: resume / fail it
    NOT_YET = "not_yet"  # that step has not committed its wait yet: try again shortly
    STALE = "stale"  # the execution moved on, finished, or waits for something else: drop
    UNKNOWN = "unknown"  # no such execution: drop


# -- pure parts ----------------------------------------------------------------------------------


def task_arguments(step_input: Any) -> tuple[list[Any], dict[str, Any]]:
    """The task's `(args, kwargs)` from the step's resolved input: a dict becomes keyword
    arguments, a list positional ones, None no arguments, any other value the one argument."""
    if step_input is None:
        return [], {}
    if isinstance(step_input, dict):
        return [], dict(step_input)
    if isinstance(step_input, list | tuple):
        return list(step_input), {}
    return [step_input], {}


def parse_step_key(step_key: str, execution_id: str) -> tuple[str, int]:
    """Split `"<execution_id>:<step_id>:<attempt>"` into `(step_id, attempt)`. The execution id
    is given, so ids and step ids containing ":" still parse.

    Raises:
        ValueError: the key does not belong to `execution_id` or has no attempt number.
    """
    prefix = f"{execution_id}:"
    if not step_key.startswith(prefix):
        raise ValueError(f"step_key {step_key!r} is not a step key of execution {execution_id}")
    step_id, _, attempt = step_key[len(prefix) :].rpartition(":")
    if not step_id or not attempt.isdigit():
        raise ValueError(f"step_key {step_key!r} is not <execution_id>:<step_id>:<attempt>")
    return step_id, int(attempt)


def classify_delivery(execution: Execution | None, step_id: str, sequence: int) -> Delivery:
    """Whether a callback for the task sent by step `step_id` when the execution's `step_count`
    was `sequence` may resume the execution now (see the module docstring)."""
    if execution is None:
        return Delivery.UNKNOWN
    if execution.is_terminal:
        return Delivery.STALE
    if execution.step_count == sequence:
        # No handler call committed since the task was sent: its step is still on its way.
        return Delivery.NOT_YET
    if (
        execution.step_count == sequence + 1
        and execution.status is ExecutionStatus.WAITING
        and execution.wait_kind is WaitKind.SIGNAL
        and execution.current_step_id == step_id
    ):
        return Delivery.APPLY
    return Delivery.STALE


def describe_exception(exc: BaseException | None) -> tuple[str, str]:
    """`(type name, message)` of a task's exception; Celery wraps exceptions it cannot pickle."""
    if exc is None:
        return "UnknownError", (
            "the task failed in a worker without flowmonkey's errback registered, so its "
            "exception is unknown (install flowmonkey on that worker's Celery app to see it)"
        )
    if isinstance(exc, UnpickleableExceptionWrapper):
        name = str(exc.exc_cls_name)
        message = str(exc.text or ", ".join(map(str, exc.exc_args)))
    else:
        name, message = type(exc).__name__, str(exc)
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + "..."
    return name, message


def not_yet_delay(deferrals: int) -> float:
    """Seconds before a callback that arrived before its step's commit looks again."""
    return float(min(0.1 * 2**deferrals, NOT_YET_MAX_DELAY))


# -- the handler ---------------------------------------------------------------------------------


class CeleryTaskHandler:
    """Runs `celery_task` steps: `config: {task: <registered task name>, queue?, countdown?}`.

    The step's resolved input becomes the task's arguments (see `task_arguments`). The step
    waits (without holding a worker) until the task's callback resumes it with the task's
    return value (stored at `output_key`, or merged into the context if it is a dict) or fails
    it with CELERY_TASK_FAILED (retry and `on_failure` apply).

    Celery reports neither a revoked or expired task nor one whose name no worker knows
    (the message is discarded): give such executions a wait timeout (`TimeoutConfig`) to
    bound the wait. The task is sent at least once per attempt (a worker that dies before
    committing the step's wait sends it again on the re-run): make it idempotent.
    """

    type = CELERY_TASK_TYPE
    metadata: dict[str, Any] = {
        "type": CELERY_TASK_TYPE,
        "name": "Celery task",
        "description": "Send an existing Celery task by name and continue with its result",
        "category": "integration",
    }

    def __init__(self, app: Celery, callback_queue: str) -> None:
        self.app = app
        self.callback_queue = callback_queue

    def execute(self, params: HandlerParams) -> StepResult:
        step = params.step
        name = params.config.get("task")
        if not isinstance(name, str) or not name.strip():
            return Result.failure(
                ErrorCode.INPUT_ERROR.value,
                f"step {step.id!r} of type {CELERY_TASK_TYPE!r} needs config.task, the name of "
                "a registered Celery task (e.g. task: proj.tasks.add)",
            )
        try:
            options = self._send_options(params.config)
        except ValueError as exc:
            return Result.failure(
                ErrorCode.INPUT_ERROR.value, f"step {step.id!r}: {exc}", {"task": name}
            )
        args, kwargs = task_arguments(params.input)
        tracking = {
            "execution_id": params.execution.id,
            "step_key": params.step_key,
            "sequence": params.execution.step_count,
        }
        route = {"queue": self.callback_queue}
        link = self.app.signature(TASK_SUCCEEDED, kwargs=tracking, options=route)
        link_error = self.app.signature(
            TASK_ERRBACK, kwargs={**tracking, "task": name}, options=route
        )
        sent = self.app.send_task(
            name, args=args, kwargs=kwargs, link=link, link_error=link_error, **options
        )
        return Result.wait_for_signal(f"waiting for Celery task {name} (task id {sent.id})")

    @staticmethod
    def _send_options(config: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {}
        queue = config.get("queue")
        if queue is not None:
            if not isinstance(queue, str) or not queue:
                raise ValueError(f"config.queue must be a queue name, not {queue!r}")
            options["queue"] = queue
        countdown = config.get("countdown")
        if countdown is not None:
            if isinstance(countdown, bool) or not isinstance(countdown, int | float):
                raise ValueError(f"config.countdown must be a number of seconds, not {countdown!r}")
            if countdown < 0:
                raise ValueError(f"config.countdown must not be negative, got {countdown}")
            options["countdown"] = countdown
        return options


# -- what the callbacks do -----------------------------------------------------------------------


def deliver_result(
    fm: TaskStepHost, result: Any, execution_id: str, step_key: str, sequence: int
) -> Delivery:
    """Resume the execution with a task's return value if it still waits for that task.

    A value the step cannot store (no output_key and not a dict) fails the step with
    STEP_FAILED instead, so the flow's failure path runs rather than a silent drop.
    """
    verdict, seen = _verdict(fm, execution_id, step_key, sequence, "result")
    if verdict is not Delivery.APPLY:
        return verdict
    assert seen is not None
    try:
        # Only the wait we just looked at: a duplicate callback racing this one must not resume
        # whatever the execution waits for next.
        fm.resume(execution_id, result, expected_version=seen.version)
    except ExecutionError as exc:
        if exc.code is ErrorCode.INVALID_ARGUMENT:
            return _fail_step(
                fm,
                seen,
                step_key,
                ErrorCode.STEP_FAILED.value,
                f"the Celery task of step_key {step_key} succeeded but its result cannot be "
                f"stored: {exc.message}",
                {"step_key": step_key},
            )
        return _moved_on(exc, step_key)
    return Delivery.APPLY


def deliver_failure(
    fm: TaskStepHost,
    execution_id: str,
    step_key: str,
    sequence: int,
    *,
    task: str,
    exception: str,
    message: str,
    task_id: str | None = None,
) -> Delivery:
    """Fail the waiting step with CELERY_TASK_FAILED if it still waits for that task."""
    verdict, seen = _verdict(fm, execution_id, step_key, sequence, "failure")
    if verdict is not Delivery.APPLY:
        return verdict
    assert seen is not None
    details: dict[str, Any] = {"task": task, "exception": exception}
    if task_id:
        details["task_id"] = task_id
    return _fail_step(fm, seen, step_key, CELERY_TASK_FAILED, f"{exception}: {message}", details)


def _verdict(
    fm: TaskStepHost, execution_id: str, step_key: str, sequence: int, what: str
) -> tuple[Delivery, Execution | None]:
    """Whether the outcome applies, and the execution as it was looked at."""
    try:
        step_id, _attempt = parse_step_key(step_key, execution_id)
    except ValueError as exc:
        log.error("Celery task %s for execution %s dropped: %s", what, execution_id, exc)
        return Delivery.STALE, None
    execution = fm.get(execution_id)
    verdict = classify_delivery(execution, step_id, sequence)
    if verdict is Delivery.UNKNOWN:
        log.warning("Celery task %s for %s dropped: no such execution", what, step_key)
    elif verdict is Delivery.STALE:
        log.info(
            "Celery task %s for %s dropped: the execution no longer waits for it", what, step_key
        )
    return verdict, execution


def _fail_step(
    fm: TaskStepHost,
    seen: Execution,
    step_key: str,
    code: str,
    message: str,
    details: dict[str, Any],
) -> Delivery:
    try:
        fm.runtime.engine.fail_waiting(
            seen.id, code, message, details, expected_version=seen.version
        )
    except ExecutionError as exc:
        return _moved_on(exc, step_key)
    # Where the failure leads (on_failure, a retry backoff) is enqueued by the engine's
    # hand-off, which the runtime subscribes to.
    return Delivery.APPLY


def _moved_on(exc: ExecutionError, step_key: str) -> Delivery:
    # Someone (a cancel, a timeout, a duplicate callback) got there between our look and our
    # commit; the engine refused, nothing was written.
    if isinstance(exc, VersionConflictError) or exc.code in (
        ErrorCode.EXECUTION_NOT_WAITING,
        ErrorCode.EXECUTION_NOT_FOUND,
        ErrorCode.EXECUTION_TIMEOUT,
        ErrorCode.WAIT_TIMEOUT,
    ):
        log.info("Celery task outcome for %s dropped: %s", step_key, exc)
        return Delivery.STALE
    raise exc


# -- installing ------------------------------------------------------------------------------


def install_celery_task_steps(fm: TaskStepHost) -> None:
    """Add `celery_task` steps to a TaskStepHost: the handler (unless a `celery_task`
    handler is registered already) and the `flowmonkey.task_succeeded`,
    `flowmonkey.task_errback` and `flowmonkey.task_failed` tasks. Calling it again is a no-op.

    The worker that runs the external task needs these tasks registered too (it is where
    Celery calls the errback); on a worker without them, the failure still arrives, but
    without the exception's type and message.
    """
    if fm in _installed:
        return
    _installed.add(fm)
    try:
        fm.runtime.handlers.register(CeleryTaskHandler(fm.app, fm.step_queue))
    except FlowMonkeyError as exc:
        if exc.code is not ErrorCode.DUPLICATE_HANDLER:
            raise
    _register_tasks(fm)


def _register_tasks(fm: TaskStepHost) -> None:
    app, queue = fm.app, fm.step_queue
    reliable: dict[str, Any] = {
        "acks_late": True,
        "reject_on_worker_lost": True,
        "ignore_result": True,
        "autoretry_for": (StoreUnavailableError,),
        "retry_backoff": True,
        "retry_backoff_max": 60,
        "max_retries": None,
    }
    # Every message names its queue (link options, apply_async below) and retries keep the
    # delivery's routing, so no task-level `queue` (deprecated in Celery 5.x) is needed.

    # Plain functions, not bound methods: Celery inspects the signature to bind the task.
    def task_succeeded(
        task: Task,
        result: Any,
        execution_id: str,
        step_key: str,
        sequence: int,
        deferrals: int = 0,
    ) -> str:
        verdict = deliver_result(fm, result, execution_id, step_key, sequence)
        return _retry_if_early(task, verdict, deferrals, step_key)

    def task_failed(
        task: Task,
        execution_id: str,
        step_key: str,
        sequence: int,
        task_name: str,
        exception: str,
        message: str,
        task_id: str | None = None,
        deferrals: int = 0,
    ) -> str:
        verdict = deliver_failure(
            fm,
            execution_id,
            step_key,
            sequence,
            task=task_name,
            exception=exception,
            message=message,
            task_id=task_id,
        )
        return _retry_if_early(task, verdict, deferrals, step_key)

    # Celery calls an errback new-style, `errback(request, exc, traceback, **kwargs)` inline in
    # the failing task's worker, only if its task is registered there, is not bound and takes
    # more than one positional parameter besides the signature's own (backends/base.py
    # `_call_task_errbacks`). Otherwise it sends it as a message with the task id alone: the
    # exception is then unknown, but the step is still failed.
    def task_errback(
        request: Any,
        exc: BaseException | None = None,
        traceback: Any = None,
        execution_id: str = "",
        step_key: str = "",
        sequence: int = -1,
        task: str = "",
    ) -> None:
        exception, message = describe_exception(exc)
        task_id = request if isinstance(request, str) else getattr(request, "id", None)
        failed.apply_async(
            kwargs={
                "execution_id": execution_id,
                "step_key": step_key,
                "sequence": sequence,
                "task_name": task or str(getattr(request, "task", "") or "unknown"),
                "exception": exception,
                "message": message,
                "task_id": task_id,
            },
            queue=queue,
        )

    # shared=False: a shared task is added to every app created later, bound to THIS fm.
    app.task(name=TASK_SUCCEEDED, bind=True, shared=False, **reliable)(task_succeeded)
    failed: Task = app.task(name=TASK_FAILED, bind=True, shared=False, **reliable)(task_failed)
    app.task(name=TASK_ERRBACK, shared=False, ignore_result=True)(task_errback)


def _retry_if_early(task: Task, verdict: Delivery, deferrals: int, step_key: str) -> str:
    if verdict is not Delivery.NOT_YET:
        return verdict.value
    if deferrals >= NOT_YET_RETRIES:
        # The step that sent the task never committed (its worker died): the tick re-runs
        # it, and it sends the task again, whose callback will find the wait.
        log.warning("Celery task outcome for %s dropped: its step never committed", step_key)
        return "gave_up"
    kwargs = {**(task.request.kwargs or {}), "deferrals": deferrals + 1}
    raise task.retry(
        args=task.request.args, kwargs=kwargs, countdown=not_yet_delay(deferrals), max_retries=None
    )
