"""The Celery app of the fan-out benchmark's worker: `celery -A bench.fanout_app worker`.

One worker process serves both sides of the comparison, as in `bench.celery_app`:

- flowmonkey's tasks (`flowmonkey.step`, `flowmonkey.tick`), from
  `FlowMonkeyCelery.from_env()`, exactly as `workers.app` builds them (their results are still
  ignored: `task_ignore_result=True` is flowmonkey's app setting and stays);
- `bench.fanout_noop` and `bench.fanout_join`, plain Celery tasks on the same app (same broker,
  queue, serializer, acks_late, prefetch), which the benchmark sends as
  `chord(group(fanout_noop(i) for i in range(n)), fanout_join)`. A chord needs a result
  backend, which flowmonkey's app does not configure: this app adds Redis (the broker's server)
  as its result backend (`bench.fanout.result_conf`), and only the raw tasks store results.

Completion is reported to Redis on the list `<queue>:bench-done` (the key `bench.celery_steps`'
`Session.wait` reads), as JSON `[tag, time.time(), status]`: the chord's callback pushes its tag;
for flowmonkey, a subscriber to `execution.completed` / `execution.failed` pushes the parent's
execution id once its `parallel` step's transaction has committed. Children (whose only step is
`work`, not the parent's `fan`) are not reported, so they cost no extra Redis write.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from bench.fanout import FAN_STEP, result_conf
from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.core.events import EventType, HistoryEvent

flowmonkey = FlowMonkeyCelery.from_env(app_name="flowmonkey-bench-fanout")
app = flowmonkey.app

_settings = flowmonkey.runtime.settings
assert _settings is not None and _settings.broker_url, "the benchmark needs FLOWMONKEY_BROKER_URL"
app.conf.update(result_conf(_settings.broker_url, flowmonkey.options.queue))
# redis-py's pool notices the fork and reconnects in each pool process.
_redis = redis.Redis.from_url(_settings.broker_url)
_done_key = f"{flowmonkey.options.queue}:bench-done"


def report_done(tag: str, status: str) -> None:
    _redis.rpush(_done_key, json.dumps([tag, time.time(), status]))


@app.task(name="bench.fanout_noop", ignore_result=False)
def fanout_noop(index: int) -> int:
    """One header task of the raw chord: nothing; its result (the index) joins the chord."""
    return index


@app.task(name="bench.fanout_join")
def fanout_join(results: list[Any], tag: str, expected: int) -> None:
    """The chord's callback: all header results are in; report the chord as finished."""
    ok = len(results) == expected and results == list(range(expected))
    report_done(tag, "completed" if ok else f"wrong results ({len(results)} of {expected})")


def _on_finished(event: HistoryEvent) -> None:
    if event.step_id == FAN_STEP:  # the parent; its children end in another step
        report_done(event.execution_id, event.type.value.removeprefix("execution."))


flowmonkey.runtime.engine.on(EventType.EXECUTION_COMPLETED.value, _on_finished)
flowmonkey.runtime.engine.on(EventType.EXECUTION_FAILED.value, _on_finished)
