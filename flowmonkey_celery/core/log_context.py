"""Which step attempt the current code runs for, in a context variable.

The engine binds it around a step attempt (the handler call and the commit that records it),
so anything logged meanwhile, by the engine or by the handler itself, can say which execution,
step and attempt it belongs to: `observability/logs.py` copies it onto every log record, and
the metrics read the flow of the events the commit publishes from it. A context variable, not
a thread-local: an async handler's tasks see it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.flow import Step


@dataclass(frozen=True)
class StepLogContext:
    """The step attempt being run: what a log line inside it carries."""

    execution_id: str
    flow_id: str
    step_id: str
    step_type: str
    attempt: int
    tenant_id: str | None


_current: ContextVar[StepLogContext | None] = ContextVar("flowmonkey_step", default=None)


def current_step() -> StepLogContext | None:
    """The step attempt running in this context, or None outside one."""
    return _current.get()


@contextmanager
def step_log_context(execution: Execution, step: Step, attempt: int) -> Iterator[StepLogContext]:
    """Bind the attempt `attempt` of `step` of `execution` for the duration of the block."""
    bound = StepLogContext(
        execution_id=execution.id,
        flow_id=execution.flow_id,
        step_id=step.id,
        step_type=step.type,
        attempt=attempt,
        tenant_id=execution.tenant_id,
    )
    token = _current.set(bound)
    try:
        yield bound
    finally:
        _current.reset(token)
