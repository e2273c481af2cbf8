"""The Celery app of the benchmark's worker: `celery -A bench.celery_app worker`.

The same worker process serves both sides of the comparison:

- flowmonkey's tasks (`flowmonkey.step`, `flowmonkey.tick`), from
  `FlowMonkeyCelery.from_env()`, exactly as `workers.app` builds them;
- `bench.raw_step`, a plain Celery task on the same app (same broker, queue, serializer,
  acks_late, prefetch), which the benchmark sends as a chain of links.

Completion is reported to Redis, on the list `done_key(queue)`, as JSON `[tag, time.time(),
status]`: the last link of a raw chain pushes its tag from its task body; for flowmonkey, a
subscriber to `execution.completed` / `execution.failed` pushes the execution id once the final
step's transaction has committed.
"""

from __future__ import annotations

import json
import time

import redis

from bench.celery_handlers import WORK_SECONDS
from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.core.events import EventType, HistoryEvent

flowmonkey = FlowMonkeyCelery.from_env(app_name="flowmonkey-bench")
app = flowmonkey.app

_settings = flowmonkey.runtime.settings
assert _settings is not None and _settings.broker_url, "the benchmark needs FLOWMONKEY_BROKER_URL"
# redis-py's pool notices the fork and reconnects in each pool process.
_redis = redis.Redis.from_url(_settings.broker_url)


def done_key(queue: str) -> str:
    """The Redis list on which finished executions and chains are reported."""
    return f"{queue}:bench-done"


def report_done(tag: str, status: str) -> None:
    _redis.rpush(done_key(flowmonkey.options.queue), json.dumps([tag, time.time(), status]))


@app.task(name="bench.raw_step")
def raw_step(tag: str, last: bool, work: bool = False) -> None:
    """One link of a raw Celery chain: nothing (or 10 ms of blocking work, as the
    `bench-work` handler), and the last link reports the chain as finished."""
    if work:
        time.sleep(WORK_SECONDS)
    if last:
        report_done(tag, "completed")


def _on_finished(event: HistoryEvent) -> None:
    report_done(event.execution_id, event.type.value.removeprefix("execution."))


flowmonkey.runtime.engine.on(EventType.EXECUTION_COMPLETED.value, _on_finished)
flowmonkey.runtime.engine.on(EventType.EXECUTION_FAILED.value, _on_finished)
