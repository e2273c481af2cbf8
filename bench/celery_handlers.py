"""Step handlers of the Celery benchmark's flows (FLOWMONKEY_HANDLERS=bench.celery_handlers).

Loaded by the benchmark's worker and by its client (which checks, when creating an execution,
that every step type of the flow has a handler).
"""

from __future__ import annotations

import time

from flowmonkey_celery import HandlerParams, Result, StepResult, handler

# The "work" of one step of the 40-step flow: a 10 ms blocking call (an HTTP request or a
# query, say) that holds the worker process but not the CPU.
WORK_SECONDS = 0.010


@handler("bench-noop")
def noop(params: HandlerParams) -> StepResult:
    """Does nothing: what is left is flowmonkey's and Celery's cost per step."""
    return Result.success()


@handler("bench-work")
def work(params: HandlerParams) -> StepResult:
    """10 ms of blocking work."""
    time.sleep(WORK_SECONDS)
    return Result.success()
