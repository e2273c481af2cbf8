"""Stateful handlers run as background jobs: claimed with a lease, reporting progress and
checkpoints, reaped when their runner is lost, bounded by max_step_duration, and unable to
write once superseded. MemoryStore and SQLite."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    EventType,
    ExecutionError,
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    Store,
)
from flowmonkey_celery.core.jobs import JobStatus, JobSuperseded
from flowmonkey_celery.stores.sql import SqlStore

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


class Export:
    """A stateful handler: exports `rows` rows in chunks, checkpointing after each."""

    type = "export"
    metadata = {"stateful": True, "description": "a long export"}

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.fail_times = 0

    def execute(self, params: HandlerParams) -> StepResult:
        job = params.job
        assert job is not None, "a stateful handler is always run as a job"
        self.calls.append(job.checkpoint)
        if self.fail_times:
            self.fail_times -= 1
            return Result.failure("EXPORT_FAILED", "the warehouse was busy")
        done = (job.checkpoint or {}).get("done", 0)
        total = params.input["rows"]
        while done < total:
            done += 10
            job.report_progress({"done": done, "total": total})
            job.save_checkpoint({"done": done})
        return Result.success({"exported": done, "claims": job.claims})


def flow(**step: Any) -> dict[str, Any]:
    return {
        "id": "report",
        "initialStepId": "export",
        "steps": {"export": {"type": "export", "outputKey": "export", **step}},
    }


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    sql = SqlStore(f"sqlite:///{tmp_path}/jobs.db")
    sql.migrate()
    yield sql
    sql.dispose()


def make(store: Store, **step: Any) -> tuple[Engine, Export, ManualClock]:
    export = Export()
    clock = ManualClock(START)
    engine = Engine(
        store,
        HandlerRegistry([export]),
        FlowRegistry([flow(**step)]),
        clock=clock,
        rng=random.Random(0),
        lease=LEASE,
        max_step_duration=timedelta(minutes=10),
    )
    return engine, export, clock


def waiting_job(engine: Engine, rows: int = 30) -> tuple[str, str]:
    execution_id = engine.create("report", {"rows": rows}).execution.id
    outcome = engine.step(execution_id)
    assert outcome.status is ExecutionStatus.WAITING and len(outcome.jobs) == 1
    return execution_id, outcome.jobs[0]


def test_a_stateful_step_commits_a_job_with_its_wait_and_runs_it_in_process(store: Store) -> None:
    engine, export, _ = make(store)
    execution_id, job_id = waiting_job(engine)
    waiting = engine.get(execution_id)
    assert waiting is not None and waiting.wait_kind == "job"
    assert export.calls == []  # not called inside the step
    pending = store.get_job(job_id)
    assert pending is not None and pending.status is JobStatus.PENDING

    finished = engine.run(execution_id)

    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["export"] == {"exported": 30, "claims": 1}
    done = store.get_job(job_id)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert done.progress == {"done": 30, "total": 30} and done.checkpoint == {"done": 30}
    (completed,) = [e for e in engine.history(execution_id) if e.type is EventType.STEP_COMPLETED]
    assert completed.data["job_id"] == job_id and completed.outcome == "success"


def test_resume_is_refused_while_a_job_runs(store: Store) -> None:
    engine, _, _ = make(store)
    execution_id, _ = waiting_job(engine)

    with pytest.raises(ExecutionError) as raised:
        engine.resume(execution_id, {"x": 1})

    assert raised.value.code == ErrorCode.EXECUTION_NOT_WAITING
    assert "background job" in raised.value.message


def test_a_job_held_by_a_live_runner_is_not_claimed_twice(store: Store) -> None:
    engine, export, clock = make(store)
    _, job_id = waiting_job(engine)
    assert store.claim_job(job_id, "runner-a", clock.now(), clock.now() + LEASE) is not None

    assert engine.run_job(job_id) is None
    assert export.calls == []


def test_a_lost_runner_is_reaped_and_the_next_claim_resumes_from_its_checkpoint(
    store: Store,
) -> None:
    engine, export, clock = make(store)
    execution_id, job_id = waiting_job(engine, rows=50)
    lost = store.claim_job(job_id, "runner-a", clock.now(), clock.now() + LEASE)
    assert lost is not None
    assert store.touch_job(
        job_id, "runner-a", clock.now(), clock.now() + LEASE, {"checkpoint": {"done": 20}}
    )
    clock.advance(29)
    assert engine.reap_jobs() == []  # the lease still runs
    clock.advance(2)

    assert engine.reap_jobs() == [job_id]
    assert engine.reap_jobs() == []  # re-sent once per lease, not every tick
    outcome = engine.run_job(job_id)

    assert outcome is not None and outcome.status is ExecutionStatus.COMPLETED
    assert export.calls == [{"done": 20}]
    assert engine.get(execution_id).context["export"] == {"exported": 50, "claims": 2}  # type: ignore[union-attr]
    # The first instance is superseded: its heartbeat stops, its result is dropped.
    assert not store.touch_job(job_id, "runner-a", clock.now(), clock.now() + LEASE)


def test_a_superseded_instance_cannot_write_its_result(store: Store) -> None:
    engine, _, clock = make(store)
    execution_id, job_id = waiting_job(engine)
    store.claim_job(job_id, "runner-a", clock.now(), clock.now() + LEASE)
    clock.advance(31)
    store.claim_job(job_id, "runner-b", clock.now(), clock.now() + LEASE)
    before = engine.get(execution_id)

    with store.transaction() as tx:
        assert not tx.finish_job(
            job_id, "runner-a", JobStatus.COMPLETED, {"late": 1}, None, clock.now()
        )

    assert engine.get(execution_id) == before
    job = store.get_job(job_id)
    assert job is not None and job.runner_id == "runner-b" and job.result is None


def test_a_failing_job_is_retried_per_the_steps_policy_as_a_new_job(store: Store) -> None:
    engine, export, _ = make(store, retry={"maxAttempts": 1, "backoffMs": 1000})
    export.fail_times = 1
    execution_id, first = waiting_job(engine)

    finished = engine.run(execution_id, simulate_time=True)

    assert finished.status is ExecutionStatus.COMPLETED
    jobs = store.list_jobs(execution_id)
    assert [(j.status, j.attempt) for j in jobs] == [
        (JobStatus.FAILED, 1),
        (JobStatus.COMPLETED, 2),
    ]
    assert jobs[0].id == first and jobs[0].error is not None
    assert jobs[0].error["code"] == "EXPORT_FAILED"


def test_cancelling_the_execution_cancels_its_job_and_its_runner_is_let_go(store: Store) -> None:
    engine, _, clock = make(store)
    execution_id, job_id = waiting_job(engine)
    store.claim_job(job_id, "runner-a", clock.now(), clock.now() + LEASE)

    engine.cancel(execution_id, reason="not needed")

    job = store.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    assert not store.touch_job(job_id, "runner-a", clock.now(), clock.now() + LEASE)


def test_a_job_running_past_max_step_duration_fails_with_handler_timeout(store: Store) -> None:
    engine, _, clock = make(store)
    execution_id, job_id = waiting_job(engine)
    store.claim_job(job_id, "hung", clock.now(), clock.now() + LEASE)
    for _ in range(21):  # heartbeats keep the lease alive for 10.5 minutes
        clock.advance(30)
        assert store.touch_job(job_id, "hung", clock.now(), clock.now() + LEASE)

    assert engine.reap_jobs() == []

    failed = engine.get(execution_id)
    assert failed is not None and failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.HANDLER_TIMEOUT
    assert "maximum step duration" in failed.error.message
    assert not store.touch_job(job_id, "hung", clock.now(), clock.now() + LEASE)


def test_job_control_raises_once_superseded(store: Store) -> None:
    seen: list[str] = []

    class Stubborn:
        type = "export"
        metadata = {"stateful": True}

        def execute(self, params: HandlerParams) -> StepResult:
            assert params.job is not None
            # Someone else takes the job over meanwhile (this runner's lease ran out).
            engine.clock.advance(31)  # type: ignore[attr-defined]
            store.claim_job(
                params.job.job.id, "thief", engine.clock.now(), engine.clock.now() + LEASE
            )
            try:
                params.job.report_progress(0.5)
            except JobSuperseded as exc:
                seen.append(str(exc))
                raise
            return Result.success()

    engine = Engine(
        store,
        HandlerRegistry([Stubborn()]),
        FlowRegistry([flow()]),
        clock=ManualClock(START),
        lease=LEASE,
    )
    execution_id = engine.create("report", {"rows": 1}).execution.id
    engine.step(execution_id)

    assert engine.run(execution_id).status is ExecutionStatus.WAITING  # its result was dropped
    assert seen and "taken over" in seen[0]


def test_a_stateful_handler_cannot_start_children(store: Store) -> None:
    class Spawner:
        type = "export"
        metadata = {"stateful": True}

        def execute(self, params: HandlerParams) -> StepResult:
            return Result.start_children([{"flow_id": "report"}])

    engine = Engine(store, HandlerRegistry([Spawner()]), FlowRegistry([flow()]), lease=LEASE)
    execution_id = engine.create("report", {"rows": 1}).execution.id

    failed = engine.run(execution_id)

    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.INVALID_ARGUMENT


def test_a_job_failed_for_its_duration_hands_its_on_failure_step_off(store: Store) -> None:
    engine, _, clock = make(store)
    engine.flows.register(
        {
            **flow(),
            "version": "1.0.1",
            "steps": {
                "export": {
                    "type": "export",
                    "outputKey": "export",
                    "transitions": {"onFailure": "alert"},
                },
                "alert": {"type": "export"},
            },
        }
    )
    handed: list[tuple[str, str | None]] = []
    engine.on_hand_off(lambda moving: handed.extend((e.id, e.current_step_id) for e in moving))
    execution_id, job_id = waiting_job(engine)
    store.claim_job(job_id, "hung", clock.now(), clock.now() + LEASE)
    clock.advance(timedelta(minutes=11))
    assert store.touch_job(job_id, "hung", clock.now(), clock.now() + LEASE)

    engine.reap_jobs()

    assert handed == [(execution_id, "alert")]


def test_a_job_that_loses_its_runner_again_and_again_fails_through_its_retry_policy(
    store: Store,
) -> None:
    engine, export, clock = make(store, retry={"maxAttempts": 1, "backoffMs": 1000})
    execution_id, job_id = waiting_job(engine)
    first_claim = clock.now()
    for claim in range(5):  # each runner dies without a word (kill -9, out of memory)
        assert store.claim_job(job_id, f"runner-{claim}", clock.now(), clock.now() + LEASE)
        clock.advance(31)
        engine.reap_jobs()

    waiting = engine.get(execution_id)
    assert waiting is not None and waiting.status is ExecutionStatus.WAITING  # the retry's backoff
    [failed] = [e for e in engine.history(execution_id) if e.type is EventType.STEP_COMPLETED]
    assert failed.error is not None and failed.error.code == ErrorCode.HANDLER_ERROR
    assert "lost its runner 5 times" in failed.error.message
    assert failed.started_at == first_claim  # the job's whole run, not just its last claim
    assert export.calls == []
