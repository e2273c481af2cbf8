"""Background jobs (stateful handlers) on real workers, PostgreSQL and Redis: a worker killed
with kill -9 mid-job; the beat reaps the job once its lease runs out, a fresh worker claims it
again and resumes from the last checkpoint, and the execution completes once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from flowmonkey_celery import EventType, ExecutionStatus
from flowmonkey_celery.core.jobs import Job, JobStatus
from tests.e2e.conftest import FlowMonkeyCluster

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("broker", ["redis"])]

CHUNKS = 40  # of 0.1 s each (tests/e2e/flows/job-chunks.yaml): about 4 s of work
KILL_AFTER = 10  # chunks checkpointed before the worker is killed


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def starts(path: Path) -> dict[int, int]:
    """Each claim of the job (its `claims` number) -> the chunk it started from."""
    found: dict[int, int] = {}
    for line in lines(path):
        kind, *values = line.split()
        if kind == "start":
            claim, start = map(int, values)
            assert claim not in found, f"claim {claim} started twice: {lines(path)}"
            found[claim] = start
    return found


def chunks_by_claim(path: Path) -> list[tuple[int, int]]:
    """(chunk, claim) for each processed chunk, in the order they were processed."""
    return [
        (int(chunk), int(claim))
        for kind, chunk, claim in (line.split() for line in lines(path))
        if kind == "chunk"
    ]


def test_a_job_whose_worker_is_killed_resumes_from_its_checkpoint_on_a_fresh_worker(
    cluster: FlowMonkeyCluster, tmp_path: Path
) -> None:
    chunks_file, calls_file = tmp_path / "chunks.txt", tmp_path / "calls.txt"
    # A 2 s lease: the dead runner's job is reaped (and re-sent) within seconds.
    cluster.set_env(FLOWMONKEY_LEASE_SECONDS="2")
    victim = cluster.start_worker(concurrency=2)
    cluster.start_beat()
    store = cluster.client.runtime.store
    context = {"chunks": CHUNKS, "chunks_file": str(chunks_file), "calls_file": str(calls_file)}

    execution_id = cluster.client.start("e2e-job-chunks", context).execution.id

    def the_job() -> Job | None:
        jobs = store.list_jobs(execution_id)
        return jobs[0] if jobs else None

    def checkpointed(at_least: int) -> Job | None:
        job = the_job()
        reached = job is not None and (job.checkpoint or {}).get("next", 0) >= at_least
        return job if reached else None

    job = cluster.wait_for(
        lambda: checkpointed(KILL_AFTER),
        timeout=60,
        what=f"the job to checkpoint {KILL_AFTER} chunks",
    )
    assert job.status is JobStatus.RUNNING and job.claims == 1, job
    victim.kill()  # the whole process group: the pool child running the job too

    # Nothing runs the job now: what it checkpointed last is where the next claim must start.
    killed = store.get_job(job.id)
    assert killed is not None and killed.status is JobStatus.RUNNING and killed.claims == 1
    resume_at = killed.checkpoint["next"]
    assert KILL_AFTER <= resume_at < CHUNKS, killed.checkpoint
    assert killed.checkpoint["results"] == [i * i for i in range(resume_at)]
    first_run = chunks_by_claim(chunks_file)
    assert [chunk for chunk, _ in first_run] in (
        list(range(resume_at)),
        list(range(resume_at + 1)),  # the chunk in flight was processed, not yet checkpointed
    ), first_run

    cluster.start_worker(concurrency=2)
    cluster.wait_finished([execution_id], timeout=120)

    execution = cluster.client.get(execution_id)
    assert execution is not None and execution.status is ExecutionStatus.COMPLETED, execution
    # The step's output holds every chunk's result, in order, from the claim that finished.
    finished = store.get_job(job.id)
    assert finished is not None and finished.status is JobStatus.COMPLETED, finished
    assert finished.claims >= 2
    assert execution.context["processed"] == {
        "results": [i * i for i in range(CHUNKS)],
        "claims": finished.claims,
    }
    assert finished.result == execution.context["processed"]
    assert finished.checkpoint == {"next": CHUNKS, "results": [i * i for i in range(CHUNKS)]}
    assert finished.progress == {"done": CHUNKS, "total": CHUNKS}
    assert [j.id for j in store.list_jobs(execution_id)] == [job.id]  # no retry, no second job

    # The first claim started at 0; the second resumed from the checkpoint saved before the kill.
    started = starts(chunks_file)
    assert started[1] == 0 and started[2] == resume_at, started
    assert set(started) == set(range(1, finished.claims + 1)), started
    # Every chunk ran; chunks before the last checkpoint never ran again: at most the one in
    # flight at the kill (its result was never checkpointed) ran twice. (A third claim, should
    # the second runner ever lose its lease, may repeat the one it had in flight likewise.)
    processed = chunks_by_claim(chunks_file)
    counts = Counter(chunk for chunk, _ in processed)
    assert set(counts) == set(range(CHUNKS)), sorted(counts)
    repeated = {chunk for chunk, n in counts.items() if n > 1}
    assert repeated <= {start for claim, start in started.items() if claim >= 2}, counts
    assert counts[resume_at] <= 2, counts
    assert all(claim == 1 for chunk, claim in processed if chunk < resume_at), processed

    # One handler result recorded, one completion, and the step after the job ran once.
    history = cluster.client.runtime.engine.history(execution_id)
    completed = [
        e for e in history if e.type is EventType.STEP_COMPLETED and e.step_id == "process"
    ]
    assert len(completed) == 1, completed
    assert completed[0].outcome == "success"
    assert completed[0].data == {
        "job_id": job.id,
        "claims": finished.claims,
        "output": execution.context["processed"],  # kept for the dashboard and replays
    }
    assert [e.type for e in history].count(EventType.EXECUTION_COMPLETED) == 1
    assert lines(calls_file) == [f"{execution_id}:after:1"]
