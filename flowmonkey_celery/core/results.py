"""What a handler returns: `Result.success`, `Result.failure`, `Result.wait`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from flowmonkey_celery.core.children import ChildSpec, JoinPolicy, ParentClose, StartChildren
from flowmonkey_celery.core.clock import as_timedelta, ensure_aware


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class StepError:
    """A failure reported by a handler (or by the engine on its behalf)."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    # False: retrying cannot help (an HTTP 404, say), so a retry policy without `retry_on`
    # skips it; a code listed in `retry_on` is retried regardless. None: the policy decides.
    retryable: bool | None = None
    # The earliest the failed call may be tried again (an HTTP Retry-After): a retry waits at
    # least this long, longer if its backoff says so.
    retry_after: timedelta | None = None


@dataclass(frozen=True)
class EventWaitRequest:
    """What a `wait_for_event` step waits for: an event of `event_type` whose payload has each
    `match` path equal to its value, emitted at most `look_back` before the wait or after it."""

    event_type: str
    match: dict[str, Any]
    look_back: timedelta = timedelta(0)


@dataclass(frozen=True)
class StepResult:
    """The outcome of one handler call. Build it with the `Result` helpers.

    `overrides_transition` is True when the handler chose `next_step` itself (routing
    handlers); then `next_step` replaces the step's transition, None meaning "end the flow".
    """

    outcome: Literal["success", "failure", "wait"]
    output: Any = None
    error: StepError | None = None
    wake_at: datetime | None = None
    delay: timedelta | None = None
    wait_reason: str | None = None
    next_step: str | None = None
    overrides_transition: bool = False
    start_children: StartChildren | None = None
    wait_for_event: EventWaitRequest | None = None


class Result:
    """Constructors for `StepResult`."""

    @staticmethod
    def success(output: Any = None, next_step: str | None = UNSET) -> StepResult:
        """The step succeeded; `output` is stored at the step's `output_key`."""
        overrides = next_step is not UNSET
        return StepResult(
            "success",
            output=output,
            next_step=next_step if overrides else None,
            overrides_transition=overrides,
        )

    @staticmethod
    def failure(
        code: str | dict[str, Any],
        message: str | None = None,
        details: dict[str, Any] | None = None,
        next_step: str | None = UNSET,
        *,
        retryable: bool | None = None,
        retry_after: timedelta | float | int | None = None,
    ) -> StepResult:
        """The step failed. Accepts `(code, message)` or FlowMonkey's `{"code", "message"}`.

        `retryable=False` tells a retry policy without `retry_on` that another attempt cannot
        help; `retry_after` (timedelta or seconds) is the least a retry must wait.
        """
        if isinstance(code, dict):
            payload = code
            code = str(payload.get("code") or "STEP_FAILED")
            message = message or payload.get("message")
            details = details or payload.get("details")
        overrides = next_step is not UNSET
        error = StepError(
            str(code),
            str(message or code),
            dict(details or {}),
            retryable=retryable,
            retry_after=as_timedelta(retry_after, "retry_after")
            if retry_after is not None
            else None,
        )
        return StepResult(
            "failure",
            error=error,
            next_step=next_step if overrides else None,
            overrides_transition=overrides,
        )

    @staticmethod
    def wait(
        wake_at: datetime | None = None,
        delay: timedelta | float | int | None = None,
        reason: str | None = None,
    ) -> StepResult:
        """Pause the execution. With `wake_at` (aware datetime) or `delay` (timedelta or
        seconds) it continues by itself once the time has passed; with neither it waits for
        `resume()`. A timed wait can also be resumed early."""
        if wake_at is not None and delay is not None:
            raise ValueError("Result.wait() takes wake_at or delay, not both")
        return StepResult(
            "wait",
            wake_at=ensure_aware(wake_at, "wake_at") if wake_at is not None else None,
            delay=as_timedelta(delay, "delay") if delay is not None else None,
            wait_reason=reason,
        )

    @staticmethod
    def wait_for_signal(reason: str | None = None) -> StepResult:
        """Pause until `resume()` is called (an approval, a webhook, a person)."""
        return StepResult("wait", wait_reason=reason)

    @staticmethod
    def wait_for_event(
        event_type: str,
        match: dict[str, Any] | None = None,
        *,
        look_back: timedelta | float | int = 0,
        reason: str | None = None,
    ) -> StepResult:
        """Pause until an event of `event_type` is emitted whose payload has each `match` path
        (e.g. `{"order_id": 42}`) equal to its value; the event (id, type, key, payload,
        created_at) lands at the step's output_key. An event emitted up to `look_back` (a
        timedelta or seconds) before the wait matches too: it waits in the inbox."""
        if not isinstance(event_type, str) or not event_type:
            raise ValueError("wait_for_event needs an event type")
        window = as_timedelta(look_back, "look_back")
        if window < timedelta(0):
            raise ValueError("look_back must not be negative")
        request = EventWaitRequest(event_type, dict(match or {}), window)
        return StepResult(
            "wait", wait_reason=reason or f"waiting for event {event_type}", wait_for_event=request
        )

    @staticmethod
    def start_children(
        children: Sequence[ChildSpec | dict[str, Any]],
        *,
        kind: Literal["subflow", "parallel"] = "parallel",
        policy: JoinPolicy | dict[str, Any] | None = None,
        max_concurrency: int | None = None,
        detached: bool = False,
        parent_close: ParentClose = "cancel",
        output: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> StepResult:
        """Start child executions and wait for them (what `subflow` and `parallel` return).

        The step's wait, the join and the children are committed in one transaction. When the
        join `policy` is decided the step continues: a `parallel` step's output lists every
        child in order (`{status, output | error, execution_id}`), a `subflow` step's output is
        its child's output; a failed join fails the step with CHILD_FAILED. With `detached`,
        the step continues at once with the children's ids. `max_concurrency` bounds how many
        children run at a time. `parent_close`: "cancel" (cancelling the parent cancels them)
        or "abandon".
        """
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        request = StartChildren(
            children=[ChildSpec.model_validate(c) for c in children],
            kind=kind,
            policy=JoinPolicy.model_validate(policy or {}),
            max_concurrency=max_concurrency,
            detached=detached,
            parent_close=parent_close,
            output=output,
        )
        return StepResult("wait", wait_reason=reason, start_children=request)
