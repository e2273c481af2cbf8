"""Sub-flows and parallel fan-out on real workers, PostgreSQL and Redis: a worker killed mid
fan-out, the last two branches finishing at once on two workers, a tree cancelled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flowmonkey_celery import EventType, ExecutionStatus
from tests.e2e.conftest import FlowMonkeyCluster

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("broker", ["redis"])]


def children_resumes(cluster: FlowMonkeyCluster, execution_id: str) -> int:
    return sum(
        1
        for e in cluster.client.runtime.engine.history(execution_id)
        if e.type is EventType.EXECUTION_RESUMED and e.data.get("trigger") == "children"
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_worker_killed_during_100_branches_still_resumes_the_parent_once_with_100_results(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    cluster.set_env(FLOWMONKEY_LEASE_SECONDS="2")
    victim = cluster.start_worker(concurrency=2)
    cluster.start_beat()
    context = {"items": list(range(100)), "calls_file": str(calls)}

    parent_id = cluster.client.start("e2e-fanout", context).execution.id
    cluster.wait_for(lambda: len(lines(calls)) >= 20, timeout=60, what="20 branches to run")
    victim.kill()
    cluster.start_worker(concurrency=2)
    cluster.wait_finished([parent_id], timeout=180)

    parent = cluster.client.get(parent_id)
    assert parent is not None and parent.status is ExecutionStatus.COMPLETED, parent
    assert parent.context["results"] == [
        {"status": "completed", "output": i * 2, "execution_id": r["execution_id"]}
        for i, r in enumerate(parent.context["results"])
    ]
    assert children_resumes(cluster, parent_id) == 1
    children = cluster.client.runtime.store.list_children(parent_id)
    assert len(children) == 100
    assert all(c.status is ExecutionStatus.COMPLETED for c in children)
    # Each branch ran; one whose worker was killed mid-call may have run twice, none more.
    assert set(lines(calls)) == {c.id for c in children}
    assert len(lines(calls)) <= 100 + 2


def test_two_workers_finishing_the_last_two_branches_at_once_resume_the_parent_once(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    calls, release = tmp_path / "calls.txt", tmp_path / "release"
    cluster.start_worker(concurrency=1)
    cluster.start_worker(concurrency=1)
    cluster.start_beat()
    context = {"items": [1, 2], "calls_file": str(calls), "release_file": str(release)}
    parent_ids = [cluster.client.start("e2e-fanout", context).execution.id for _ in range(5)]

    # Both branches of the first parent are held on the two workers, then released together.
    cluster.wait_for(lambda: len(lines(calls)) >= 2, timeout=60, what="two branches to start")
    release.touch()
    cluster.wait_finished(parent_ids, timeout=120)

    for parent_id in parent_ids:
        parent = cluster.client.get(parent_id)
        assert parent is not None and parent.status is ExecutionStatus.COMPLETED
        assert [r["output"] for r in parent.context["results"]] == [2, 4]
        assert children_resumes(cluster, parent_id) == 1


def test_cancelling_a_parent_cancels_its_children_and_grandchildren_for_good(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    cluster.start_worker()
    cluster.start_beat()
    parent_id = cluster.client.start(
        "e2e-tree", {"items": [1, 2, 3], "calls_file": str(calls)}
    ).execution.id
    store = cluster.client.runtime.store

    def leaves_waiting() -> list[str]:
        middles = store.list_children(parent_id)
        leaves = [leaf for m in middles for leaf in store.list_children(m.id)]
        waiting = [leaf.id for leaf in leaves if leaf.status is ExecutionStatus.WAITING]
        return waiting if len(waiting) == 3 else []

    leaves = cluster.wait_for(leaves_waiting, timeout=60, what="three waiting leaves")
    result = cluster.client.cancel(parent_id, reason="test")
    (middle,) = store.list_children(parent_id)

    assert result.cancelled
    assert sorted(result.children_cancelled) == sorted([middle.id, *leaves])
    time.sleep(1.5)  # three ticks: nothing may wake or step a cancelled execution
    for execution_id in [parent_id, middle.id, *leaves]:
        execution = cluster.client.get(execution_id)
        assert execution is not None and execution.status is ExecutionStatus.CANCELLED
    assert len(lines(calls)) == 3  # each leaf recorded once, before it waited


def test_a_foreach_of_1000_items_completes_on_postgresql_with_two_workers(
    cluster: FlowMonkeyCluster,
) -> None:
    cluster.start_worker(concurrency=2)
    cluster.start_worker(concurrency=2)
    cluster.start_beat()

    parent_id = cluster.client.start("e2e-fanout-wide", {"items": list(range(1000))}).execution.id
    cluster.wait_finished([parent_id], timeout=400)

    parent = cluster.client.get(parent_id)
    assert parent is not None and parent.status is ExecutionStatus.COMPLETED, parent
    results = parent.context["results"]
    assert [r["output"] for r in results] == list(range(1000))
    assert {r["status"] for r in results} == {"completed"}
    assert children_resumes(cluster, parent_id) == 1
