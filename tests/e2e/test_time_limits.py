"""Per-step timeout_ms under Celery: the soft limit interrupts the handler; a handler that
ignores it is killed at the hard limit. Both are HANDLER_TIMEOUT failures of the step (then
retry / on_failure apply), never a step stuck in `running` and re-sent every lease period."""

from __future__ import annotations

import pytest

from flowmonkey_celery import EventType, ExecutionStatus
from tests.e2e.conftest import FlowMonkeyCluster

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_a_step_over_its_time_limit_fails_with_handler_timeout_and_follows_on_failure(
    cluster: FlowMonkeyCluster, mode: str
) -> None:
    cluster.set_env(FLOWMONKEY_HARD_LIMIT_GRACE_SECONDS="2")
    cluster.start_worker()
    cluster.start_beat()
    execution_id = cluster.client.start("e2e-time-limit", {"mode": mode}).execution.id
    cluster.wait_finished([execution_id], timeout=25)

    execution = cluster.client.get(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    assert execution.current_step_id == "recover"
    assert execution.context["_error"]["code"] == "HANDLER_TIMEOUT"
    history = cluster.client.runtime.engine.history(execution_id)
    slow = [e for e in history if e.type is EventType.STEP_COMPLETED and e.step_id == "slow"]
    assert [(e.outcome, e.error.code if e.error else None) for e in slow] == [
        ("failure", "HANDLER_TIMEOUT")
    ]
    if mode == "hard":
        assert slow[0].error is not None and slow[0].error.details.get("killed") is True


def test_the_step_after_a_time_limited_one_is_not_held_to_that_limit(
    cluster: FlowMonkeyCluster,
) -> None:
    # `quick` (300 ms, timeout_ms 1000) is followed by `long` (1.2 s, no timeout). Run inline
    # in quick's message, long would be interrupted by quick's 1 s soft limit and recorded as
    # a HANDLER_TIMEOUT of a step that has no timeout.
    cluster.start_worker()
    cluster.start_beat()
    execution_id = cluster.client.start("e2e-limited-then-slow").execution.id
    cluster.wait_finished([execution_id], timeout=25)

    execution = cluster.client.get(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    history = cluster.client.runtime.engine.history(execution_id)
    assert [(e.step_id, e.outcome) for e in history if e.type is EventType.STEP_COMPLETED] == [
        ("quick", "success"),
        ("long", "success"),
    ]
