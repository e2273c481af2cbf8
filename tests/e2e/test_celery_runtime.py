"""The Celery runtime end to end: real `celery worker` and `celery beat` processes, PostgreSQL,
and the Redis and RabbitMQ brokers (DESIGN.md §3 invariants, issue 4's end-to-end list)."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowmonkey_celery import EventType, ExecutionStatus
from flowmonkey_celery.core.events import HistoryEvent
from tests.e2e.conftest import TICK_SECONDS, FlowMonkeyCluster

pytestmark = pytest.mark.slow

FIVE_STEPS = ["s1", "s2", "s3", "s4", "s5"]
LEASE_SECONDS = 3
# Process scheduling on a 2-core machine running PostgreSQL, a broker, a worker, a beat and
# the test: the slack allowed beyond what the design promises (a broker hop, a poll, a commit).
SCHEDULING_MARGIN_SECONDS = 0.5


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def history(cluster: FlowMonkeyCluster, execution_id: str) -> list[HistoryEvent]:
    return cluster.client.runtime.engine.history(execution_id)


def completions(events: list[HistoryEvent]) -> list[HistoryEvent]:
    return [e for e in events if e.type is EventType.STEP_COMPLETED]


def transitions(events: list[HistoryEvent]) -> list[tuple[str, str]]:
    return [(e.data["from"], e.data["to"]) for e in events if e.type is EventType.TRANSITION]


def shape(events: list[HistoryEvent]) -> list[tuple[Any, ...]]:
    """A history without ids and times: what happened, in which order."""
    return [
        (e.type.value, e.step_id, e.outcome, e.attempt, e.data.get("from"), e.data.get("to"))
        for e in events
    ]


def assert_completed_five_steps(cluster: FlowMonkeyCluster, execution_id: str) -> None:
    execution = cluster.client.get(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.COMPLETED, (execution.status, execution.error)
    done = completions(history(cluster, execution_id))
    assert [(e.step_id, e.outcome) for e in done] == [(s, "success") for s in FIVE_STEPS]


def step_messages_received(log: str) -> int:
    """How many `flowmonkey.step` messages a worker's log says it received."""
    return len(re.findall(r"Task flowmonkey\.step\[[^\]]+\] received", log))


def test_200_concurrent_executions_all_complete_with_exactly_five_steps_each(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    cluster.start_worker()
    cluster.start_beat()

    ids = [
        cluster.client.start("e2e-five", {"calls_file": str(calls), "n": n}).execution.id
        for n in range(200)
    ]
    cluster.wait_finished(ids, timeout=180)

    for execution_id in ids:
        assert_completed_five_steps(cluster, execution_id)
    recorded = lines(calls)
    assert len(recorded) == 1000
    assert Counter(recorded) == Counter(f"{i}:{s}:1" for i in ids for s in FIVE_STEPS)


def test_a_worker_killed_mid_step_is_replaced_and_no_transition_is_applied_twice(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    # The default lease (30 s): what a user who never touched FLOWMONKEY_LEASE_SECONDS gets.
    assert "FLOWMONKEY_LEASE_SECONDS" not in cluster.settings_env
    calls, started, release = tmp_path / "calls.txt", tmp_path / "started.txt", tmp_path / "go"
    first_worker = cluster.start_worker()
    cluster.start_beat()
    context = {"calls_file": str(calls), "started_file": str(started), "release_file": str(release)}
    execution_id = cluster.client.start("e2e-block", context).execution.id

    cluster.wait_for(lambda: lines(started), timeout=30, what="the blocking step to start")
    first_worker.kill()
    killed_at = time.monotonic()
    interrupted = cluster.client.get(execution_id)
    assert interrupted is not None
    assert interrupted.status is ExecutionStatus.RUNNING
    assert interrupted.current_step_id == "block"
    assert interrupted.lease_expires_at is not None
    assert interrupted.lease_expires_at - datetime.now(UTC) <= timedelta(seconds=30)

    release.touch()
    cluster.start_worker()
    cluster.wait_finished([execution_id], timeout=60)
    print(f"recovered {time.monotonic() - killed_at:.1f} s after kill -9 ({cluster.broker})")

    execution = cluster.client.get(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    assert execution.step_count == 3  # the killed call committed nothing
    events = history(cluster, execution_id)
    assert transitions(events) == [("before", "block"), ("block", "after")]
    assert [(e.step_id, e.outcome) for e in completions(events)] == [
        ("before", "success"),
        ("block", "success"),
        ("after", "success"),
    ]
    # At least once: the killed call and the one that completed, with one stable step_key.
    block_calls = lines(started)
    assert len(block_calls) >= 2
    assert set(block_calls) == {f"{execution_id}:block:1"}
    assert lines(calls) == [f"{execution_id}:before:1", f"{execution_id}:after:1"]


def test_a_step_running_three_leases_long_is_never_started_twice(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    cluster.set_env(FLOWMONKEY_LEASE_SECONDS="2")
    started, release = tmp_path / "started.txt", tmp_path / "go"
    cluster.start_worker()  # two pool processes: one is free to run a duplicate
    cluster.start_beat()  # ticking every 0.5 s, re-sending whatever it finds stalled
    context = {
        "calls_file": str(tmp_path / "calls.txt"),
        "started_file": str(started),
        "release_file": str(release),
    }
    execution_id = cluster.client.start("e2e-block", context).execution.id
    cluster.wait_for(lambda: lines(started), timeout=30, what="the blocking step to start")

    time.sleep(3 * 2)  # the behaviour under test is real time passing: three leases
    release.touch()
    cluster.wait_finished([execution_id], timeout=30)

    # Its worker renewed the lease while the handler ran: never presumed stalled, never
    # started a second time alongside itself.
    assert lines(started) == [f"{execution_id}:block:1"]
    execution = cluster.client.get(execution_id)
    assert execution is not None and execution.status is ExecutionStatus.COMPLETED


def test_a_two_second_wait_resumes_within_two_seconds_plus_one_tick(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    cluster.start_worker()
    cluster.start_beat()

    execution_id = cluster.client.start(
        "e2e-short-wait", {"calls_file": str(tmp_path / "calls.txt")}
    ).execution.id
    cluster.wait_finished([execution_id], timeout=60)

    execution = cluster.client.get(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    events = history(cluster, execution_id)
    (waiting,) = [e for e in events if e.type is EventType.EXECUTION_WAITING]
    (resumed,) = [e for e in events if e.type is EventType.EXECUTION_RESUMED]
    wake_at = datetime.fromisoformat(waiting.data["wake_at"])
    assert wake_at - waiting.at == timedelta(seconds=2)
    # Never early; late by at most one tick period (the sweep is the guarantee) plus the
    # scheduling margin: 2 s + 0.5 s + 0.5 s = 3 s after the wait began.
    assert resumed.at >= wake_at
    bound = 2 + TICK_SECONDS + SCHEDULING_MARGIN_SECONDS
    assert (resumed.at - waiting.at).total_seconds() <= bound
    assert resumed.data["trigger"] == "timer"
    assert [e.step_id for e in completions(events)] == ["before", "pause", "after"]


def test_a_backlog_of_steps_does_not_hold_up_the_tick(cluster: FlowMonkeyCluster) -> None:
    # The tick has a queue of its own, which every flowmonkey worker also consumes. Queued
    # behind the steps, each tick would wait for the whole backlog and expire unrun (a tick
    # nobody ran in time is dropped): no wait would wake, no deadline be enforced and no cron
    # fire until the backlog drained.
    cluster.start_worker()
    cluster.start_beat()
    # 300 steps of 50 ms on two processes: about 7.5 s of work queued in front of anything
    # sent after them.
    backlog = [cluster.client.start("e2e-slow").execution.id for _ in range(300)]
    late = cluster.client.start("e2e-slow", timeout={"execution_timeout_ms": 1000}).execution
    cluster.wait_finished([late.id, *backlog], timeout=120)

    # Its step message was still behind the backlog when its deadline passed: only the tick
    # could cancel it, and did so on time.
    execution = cluster.client.get(late.id)
    assert execution is not None
    assert execution.status is ExecutionStatus.CANCELLED
    assert execution.error is not None and execution.error.code == "EXECUTION_TIMEOUT"
    (cancelled,) = [e for e in history(cluster, late.id) if e.type is EventType.EXECUTION_CANCELLED]
    deadline = late.created_at + timedelta(seconds=1)
    assert cancelled.at <= deadline + timedelta(seconds=TICK_SECONDS + SCHEDULING_MARGIN_SECONDS)
    # ...while the backlog was still being worked through.
    last_done = max(
        e.at
        for backlog_id in backlog
        for e in history(cluster, backlog_id)
        if e.type is EventType.EXECUTION_COMPLETED
    )
    assert last_done > cancelled.at + timedelta(seconds=1)


def test_a_one_hour_wait_survives_a_restart_of_worker_and_beat(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    worker, beat = cluster.start_worker(), cluster.start_beat()
    execution_id = cluster.client.start("e2e-hour-wait", {"calls_file": str(calls)}).execution.id

    def waiting() -> Any:
        execution = cluster.client.get(execution_id)
        return execution if execution and execution.status is ExecutionStatus.WAITING else None

    execution = cluster.wait_for(waiting, timeout=30, what="the execution to wait")
    assert execution.wake_at is not None
    ahead = (execution.wake_at - datetime.now(UTC)).total_seconds()
    assert 3600 - 30 <= ahead <= 3600
    worker.stop()
    beat.stop()
    # The hour lives in the database, not in a broker countdown (which Redis would redeliver
    # after its visibility timeout): the worker only ever got the message that started it.
    assert step_messages_received(worker.log()) == 1
    still = cluster.client.get(execution_id)
    assert still is not None
    assert still.status is ExecutionStatus.WAITING

    an_hour_later = {"FLOWMONKEY_CLOCK_OFFSET_SECONDS": "3601"}
    cluster.start_worker(**an_hour_later)
    cluster.start_beat(**an_hour_later)
    cluster.wait_finished([execution_id], timeout=60)

    finished = cluster.client.get(execution_id)
    assert finished is not None
    assert finished.status is ExecutionStatus.COMPLETED, finished.error
    events = history(cluster, execution_id)
    assert [e.data["trigger"] for e in events if e.type is EventType.EXECUTION_RESUMED] == ["timer"]
    assert lines(calls) == [f"{execution_id}:before:1", f"{execution_id}:after:1"]


def test_inline_continuation_on_and_off_give_the_same_histories(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"

    def run_five(count: int, **worker_env: str) -> tuple[list[list[tuple[Any, ...]]], int]:
        worker = cluster.start_worker(**worker_env)
        ids = [
            cluster.client.start("e2e-five", {"calls_file": str(calls)}).execution.id
            for _ in range(count)
        ]
        cluster.wait_finished(ids, timeout=60)
        worker.stop()
        for execution_id in ids:
            assert_completed_five_steps(cluster, execution_id)
        return [shape(history(cluster, i)) for i in ids], step_messages_received(worker.log())

    shapes_off, messages_off = run_five(5, FLOWMONKEY_INLINE_STEPS="0")
    shapes_on, messages_on = run_five(5)

    assert all(s == shapes_off[0] for s in shapes_off + shapes_on)
    # Off: every step is its own message. On: one message carries the whole flow.
    assert messages_off == 5 * 5
    assert messages_on == 5


def test_executions_committed_but_never_enqueued_are_dispatched_after_their_lease(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    cluster.set_env(FLOWMONKEY_LEASE_SECONDS=str(LEASE_SECONDS))
    cluster.start_worker()
    cluster.start_beat()
    context = {"calls_file": str(tmp_path / "calls.txt")}

    # The "message lost after commit" case: created (committed) by the engine, never sent.
    created = [cluster.client.runtime.engine.create("e2e-five", context) for _ in range(5)]
    ids = [c.execution.id for c in created]
    cluster.wait_finished(ids, timeout=60)

    for result in created:
        assert_completed_five_steps(cluster, result.execution.id)
        first_step = next(
            e for e in history(cluster, result.execution.id) if e.type is EventType.STEP_STARTED
        )
        # Picked up by the tick once the lease ran out (not before), within a tick or two.
        waited = (first_step.at - result.execution.created_at).total_seconds()
        assert LEASE_SECONDS <= waited <= LEASE_SECONDS + 2 * TICK_SECONDS + 1


def test_the_embedded_default_runs_a_flow_with_worker_and_beat_and_no_servers(
    embedded_cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    embedded_cluster.start_worker()
    embedded_cluster.start_beat()

    ids = [
        embedded_cluster.client.start("e2e-five", {"calls_file": str(calls)}).execution.id
        for _ in range(3)
    ]
    # A deadline only the beat's tick enforces: ticks reach the worker on this broker too.
    timed = embedded_cluster.client.start(
        "e2e-hour-wait",
        {"calls_file": str(tmp_path / "waits.txt")},
        timeout={"execution_timeout_ms": 1000},
    ).execution.id
    embedded_cluster.wait_finished([*ids, timed], timeout=90)

    for execution_id in ids:
        assert_completed_five_steps(embedded_cluster, execution_id)
    assert len(lines(calls)) == 15
    cancelled = embedded_cluster.client.get(timed)
    assert cancelled is not None and cancelled.status is ExecutionStatus.CANCELLED
    assert cancelled.error is not None and cancelled.error.code == "EXECUTION_TIMEOUT"
    home = embedded_cluster.home
    assert (home / "flowmonkey.db").exists()
    assert (home / "broker.db").exists()
