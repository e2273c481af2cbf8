"""The engine: pure, synchronous orchestration of executions over a Store.

One `step()` = load -> guard -> resolve input -> call handler -> apply result -> one
compare-and-set save of the execution and its history events -> report what comes next.
The engine keeps no state of its own between calls; any number of engines (threads, processes,
Celery workers) can share one store.
"""

from __future__ import annotations

from flowmonkey_celery.core.commands import Commands
from flowmonkey_celery.core.event_commands import EventCommands
from flowmonkey_celery.core.replay import Replays
from flowmonkey_celery.core.stepping import Stepping
from flowmonkey_celery.core.sweeps import Sweeps
from flowmonkey_celery.core.token_commands import TokenCommands


class Engine(Stepping, EventCommands, Replays, Commands, TokenCommands, Sweeps):
    """Creates, steps, runs, resumes and cancels executions.

    Args:
        store: where executions and history live (MemoryStore, SqlStore...).
        handlers: step type -> handler.
        flows: flow id/version -> Flow.
        max_steps: handler calls allowed per execution before it fails with MAX_STEPS.
        record_history: store history events (subscribers get them either way).
        clock: source of time (default SystemClock); tests pass a ManualClock.
        rng: randomness for retry jitter (seed it for repeatable tests).
        history_snapshot_bytes: the largest context (before a step) and output (of a step)
            the history keeps, as JSON bytes (default 64 KiB; 0: none). `replay` starts from
            these contexts.
    """


__all__ = ["Engine"]
