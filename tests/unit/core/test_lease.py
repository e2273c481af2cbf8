"""The lease heartbeat: a step that runs longer than the lease keeps its execution leased, so
the tick does not presume it stalled and start it again alongside itself."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flowmonkey_celery import (
    Engine,
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    handler,
)

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=0.3)  # the heartbeat runs in real time: every 0.1 s here
FLOW = {"id": "long", "initialStepId": "work", "steps": {"work": {"type": "long"}}}


def wait_for_heartbeat(store: MemoryStore, execution_id: str, clock: ManualClock) -> None:
    # The heartbeat thread works in real time, by design (a worker's process is alive or
    # not): poll for it, bounded.
    deadline = time.monotonic() + 5
    while True:
        execution = store.get_execution(execution_id)
        assert execution is not None and execution.lease_expires_at is not None
        if execution.lease_expires_at > clock.now():
            return
        assert time.monotonic() < deadline, "the lease was never extended"
        time.sleep(0.01)


def test_a_step_outliving_its_lease_is_not_presumed_stalled_while_it_runs() -> None:
    store, clock = MemoryStore(), ManualClock(START)
    seen: dict[str, Any] = {}

    @handler("long")
    def long(params: HandlerParams) -> StepResult:
        clock.advance(LEASE * 4)  # by the engine's clock, this step has outlived its lease
        wait_for_heartbeat(store, params.execution.id, clock)
        seen["stalled"] = store.claim_stalled(clock.now(), 10, clock.now() + LEASE)
        return Result.success()

    engine = Engine(store, HandlerRegistry([long]), FlowRegistry([FLOW]), clock=clock, lease=LEASE)
    execution_id = engine.create("long").execution.id

    outcome = engine.step(execution_id, expected_version=0)

    assert seen["stalled"] == []  # the tick would have found nothing to re-send
    assert outcome.status is ExecutionStatus.COMPLETED
