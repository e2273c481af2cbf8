"""The StoreTransaction contract (`store.transaction()`): several writes commit together or not
at all, and a resume token is used at most once. Run against every backend."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from flowmonkey_celery import (
    ErrorCode,
    EventType,
    ExecutionError,
    ExecutionStatus,
    HistoryEvent,
    Store,
    VersionConflictError,
)
from flowmonkey_celery.core import tokens
from flowmonkey_celery.core.children import Branch, BranchStatus, ChildSpec, Join, JoinPolicy
from flowmonkey_celery.core.jobs import Job, JobStatus
from flowmonkey_celery.core.tokens import ResumeToken
from tests.contract.test_store_contract import T0, at, make_execution


def make_token(execution_id: str, **fields: object) -> ResumeToken:
    issued = tokens.issue(execution_id, "approve", 3, T0, expires_at=at(3600), outcomes=["yes"])
    return issued.record.model_copy(update=fields)


class Boom(Exception):
    pass


def test_writes_in_a_transaction_are_visible_once_it_ends(store: Store) -> None:
    execution, _ = store.create_execution(make_execution(), now=T0)
    token = make_token(execution.id)
    with store.transaction() as tx:
        tx.insert_resume_token(token)
        changed = execution.model_copy(update={"status": ExecutionStatus.WAITING})
        saved = tx.save_execution(changed, expected_version=execution.version)
    assert saved.version == execution.version + 1
    stored = store.get_execution(execution.id)
    assert stored is not None and stored.status is ExecutionStatus.WAITING
    with store.transaction() as tx:
        assert tx.get_resume_token(token.token_hash) == token


def test_a_transaction_that_raises_writes_nothing(store: Store) -> None:
    execution, _ = store.create_execution(make_execution(), now=T0)
    newcomer = make_execution()
    token = make_token(execution.id)
    event = HistoryEvent(execution_id=execution.id, type=EventType.EXECUTION_RESUMED, at=at(1))
    with pytest.raises(Boom), store.transaction() as tx:
        tx.insert_resume_token(token)
        tx.insert_execution(newcomer)
        tx.save_execution(
            execution.model_copy(update={"status": ExecutionStatus.FAILED}),
            expected_version=execution.version,
            events=[event],
        )
        raise Boom
    assert store.get_execution(execution.id) == execution
    assert store.get_execution(newcomer.id) is None
    assert store.list_events(execution.id) == []
    with store.transaction() as tx:
        assert tx.get_resume_token(token.token_hash) is None


def test_a_stale_save_in_a_transaction_raises_and_rolls_back_the_rest(store: Store) -> None:
    execution, _ = store.create_execution(make_execution(), now=T0)
    token = make_token(execution.id)
    with pytest.raises(VersionConflictError), store.transaction() as tx:
        tx.insert_resume_token(token)
        tx.save_execution(execution, expected_version=execution.version + 5)
    with store.transaction() as tx:
        assert tx.get_resume_token(token.token_hash) is None


def test_inserting_a_taken_id_raises_execution_exists_and_the_transaction_can_go_on(
    store: Store,
) -> None:
    execution, _ = store.create_execution(make_execution(), now=T0)
    token = make_token(execution.id)
    with store.transaction() as tx:
        with pytest.raises(ExecutionError) as raised:
            tx.insert_execution(execution.model_copy(update={"flow_id": "other"}))
        assert raised.value.code == ErrorCode.EXECUTION_EXISTS
        tx.insert_resume_token(token)
    stored = store.get_execution(execution.id)
    assert stored is not None and stored.flow_id == "orders"
    with store.transaction() as tx:
        assert tx.get_resume_token(token.token_hash) is not None


def test_inserted_executions_and_their_events_are_stored(store: Store) -> None:
    execution = make_execution()
    event = HistoryEvent(execution_id=execution.id, type=EventType.EXECUTION_CREATED, at=T0)
    with store.transaction() as tx:
        tx.insert_execution(execution, [event])
        assert tx.get_execution(execution.id, lock=True) == execution
    assert store.get_execution(execution.id) == execution
    assert [e.type for e in store.list_events(execution.id)] == [EventType.EXECUTION_CREATED]


def test_a_token_is_used_once(store: Store) -> None:
    execution, _ = store.create_execution(make_execution(), now=T0)
    token = make_token(execution.id)
    with store.transaction() as tx:
        tx.insert_resume_token(token)
    with store.transaction() as tx:
        assert tx.use_resume_token(token.token_hash, at(5)) is True
    with store.transaction() as tx:
        assert tx.use_resume_token(token.token_hash, at(6)) is False
        used = tx.get_resume_token(token.token_hash)
    assert used is not None and used.used_at == at(5)


def test_an_unknown_token_cannot_be_used(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.use_resume_token(tokens.hash_token("fmrt_nope"), T0) is False
        assert tx.get_resume_token(tokens.hash_token("fmrt_nope")) is None


def test_eight_concurrent_uses_of_one_token_have_exactly_one_winner(store: Store) -> None:
    execution, _ = store.create_execution(make_execution(), now=T0)
    token = make_token(execution.id)
    with store.transaction() as tx:
        tx.insert_resume_token(token)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        with store.transaction() as tx:
            results.append(tx.use_resume_token(token.token_hash, at(1)))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_revoking_touches_only_that_executions_unused_tokens(store: Store) -> None:
    execution, _ = store.create_execution(make_execution(), now=T0)
    other, _ = store.create_execution(make_execution(), now=T0)
    live, used, elsewhere = make_token(execution.id), make_token(execution.id), make_token(other.id)
    with store.transaction() as tx:
        for token in (live, used, elsewhere):
            tx.insert_resume_token(token)
        tx.use_resume_token(used.token_hash, at(1))
    with store.transaction() as tx:
        assert tx.revoke_resume_tokens(execution.id, at(2), "the execution was cancelled") == 1
        assert tx.revoke_resume_tokens(execution.id, at(3), "again") == 0
    with store.transaction() as tx:
        revoked = tx.get_resume_token(live.token_hash)
        assert revoked is not None
        assert revoked.revoked_at == at(2)
        assert revoked.revoked_reason == "the execution was cancelled"
        assert tx.use_resume_token(live.token_hash, at(4)) is False
        still_used = tx.get_resume_token(used.token_hash)
        assert still_used is not None and still_used.revoked_at is None
        untouched = tx.get_resume_token(elsewhere.token_hash)
        assert untouched is not None and untouched.revoked_at is None


def test_revoking_by_hash_touches_only_those_tokens(store: Store) -> None:
    execution, _ = store.create_execution(make_execution(), now=T0)
    lost, kept = make_token(execution.id), make_token(execution.id)
    with store.transaction() as tx:
        tx.insert_resume_token(lost)
        tx.insert_resume_token(kept)
    with store.transaction() as tx:
        revoked = tx.revoke_resume_tokens(
            execution.id, at(1), "its attempt lost", token_hashes=[lost.token_hash]
        )
        assert revoked == 1
    with store.transaction() as tx:
        assert tx.use_resume_token(lost.token_hash, at(2)) is False
        assert tx.use_resume_token(kept.token_hash, at(2)) is True


def test_purging_an_execution_removes_its_tokens(store: Store) -> None:
    execution, _ = store.create_execution(
        make_execution(status=ExecutionStatus.COMPLETED, finished_at=T0), now=T0
    )
    token = make_token(execution.id)
    with store.transaction() as tx:
        tx.insert_resume_token(token)
    assert store.delete_finished_before(T0 + timedelta(days=1)) == 1
    with store.transaction() as tx:
        assert tx.get_resume_token(token.token_hash) is None


# -- joins ---------------------------------------------------------------------------------------


def make_join(parent_id: str, total: int = 3, **fields: object) -> tuple[Join, list[Branch]]:
    join = Join(
        id=f"join-{parent_id}",
        parent_execution_id=parent_id,
        step_id="fan-out",
        sequence=2,
        kind="parallel",
        policy=JoinPolicy(mode="min_success", min_success=2, cancel_rest=True),
        total=total,
        max_concurrency=2,
        created_at=T0,
        **fields,  # type: ignore[arg-type]
    )
    branches = [
        Branch(join_id=join.id, index=i, spec=ChildSpec(flow_id="item", context={"n": i}))
        for i in range(total)
    ]
    return join, branches


def test_a_join_and_its_branches_round_trip(store: Store) -> None:
    parent, _ = store.create_execution(make_execution(), now=T0)
    join, branches = make_join(parent.id)
    with store.transaction() as tx:
        tx.insert_join(join, branches)
        assert tx.get_join(join.id, lock=True) == join
        assert tx.open_joins(parent.id) == [join]

    assert store.get_join(join.id) == join
    assert store.list_joins(parent.id) == [join]
    assert store.list_branches(join.id) == branches
    assert store.get_join("nope") is None and store.list_branches("nope") == []


def test_a_branch_starts_once_and_finishes_once(store: Store) -> None:
    parent, _ = store.create_execution(make_execution(), now=T0)
    join, branches = make_join(parent.id)
    with store.transaction() as tx:
        tx.insert_join(join, branches)
    with store.transaction() as tx:
        assert tx.finish_branch(join.id, 0, BranchStatus.COMPLETED, 1, None, at(1)) is False
        assert tx.start_branch(join.id, 0, "child-0") is True
        assert tx.start_branch(join.id, 0, "child-0-again") is False
        assert tx.finish_branch(join.id, 0, BranchStatus.COMPLETED, {"x": 1}, None, at(2)) is True
        assert (
            tx.finish_branch(join.id, 0, BranchStatus.FAILED, None, {"code": "X"}, at(3)) is False
        )
        assert [b.index for b in tx.list_branches(join.id, status=BranchStatus.PENDING)] == [1, 2]
        assert len(tx.list_branches(join.id, status=BranchStatus.PENDING, limit=1)) == 1
    first = store.list_branches(join.id)[0]
    assert (first.status, first.execution_id, first.output) == (
        BranchStatus.COMPLETED,
        "child-0",
        {"x": 1},
    )
    assert first.finished_at == at(2)


def test_deciding_a_join_skips_its_pending_branches_and_closes_it(store: Store) -> None:
    parent, _ = store.create_execution(make_execution(), now=T0)
    join, branches = make_join(parent.id)
    with store.transaction() as tx:
        tx.insert_join(join, branches)
        tx.start_branch(join.id, 0, "child-0")
    with store.transaction() as tx:
        assert tx.skip_pending_branches(join.id, at(5)) == 2
        decided = join.model_copy(
            update={"succeeded": 1, "resolved_at": at(5), "outcome": "success"}
        )
        tx.update_join(decided)
        assert tx.open_joins(parent.id) == []
    assert store.get_join(join.id) == decided
    statuses = [b.status for b in store.list_branches(join.id)]
    assert statuses == [BranchStatus.RUNNING, BranchStatus.SKIPPED, BranchStatus.SKIPPED]


def test_a_failing_transaction_leaves_no_join(store: Store) -> None:
    parent, _ = store.create_execution(make_execution(), now=T0)
    join, branches = make_join(parent.id)
    with pytest.raises(Boom), store.transaction() as tx:
        tx.insert_join(join, branches)
        raise Boom
    assert store.get_join(join.id) is None and store.list_branches(join.id) == []


def test_children_to_cancel_are_those_of_cancelled_parents_and_of_joins_cancelling(
    store: Store,
) -> None:
    cancelled_parent, _ = store.create_execution(
        make_execution(status=ExecutionStatus.CANCELLED, finished_at=T0), now=T0
    )
    live_parent, _ = store.create_execution(make_execution(), now=T0)
    join, branches = make_join(live_parent.id, cancel_running=True)
    quiet_join, quiet_branches = make_join(cancelled_parent.id)
    with store.transaction() as tx:
        tx.insert_join(join, branches)
        tx.insert_join(quiet_join, quiet_branches)

    def child(parent_id: str, **fields: object) -> str:
        made, _ = store.create_execution(
            make_execution(parent_execution_id=parent_id, **fields), now=T0
        )
        return made.id

    orphan = child(cancelled_parent.id, parent_close="cancel")
    child(cancelled_parent.id, parent_close="abandon")
    child(cancelled_parent.id, parent_close="cancel", status=ExecutionStatus.COMPLETED)
    unwanted = child(live_parent.id, parent_close="abandon", join_id=join.id, branch_index=0)
    child(live_parent.id, parent_close="cancel")  # its parent lives, no join: keeps running

    found = store.find_children_to_cancel(limit=10)

    assert sorted(e.id for e in found) == sorted([orphan, unwanted])
    assert len(store.find_children_to_cancel(limit=1)) == 1


def test_purging_a_parent_removes_its_joins(store: Store) -> None:
    parent, _ = store.create_execution(
        make_execution(status=ExecutionStatus.COMPLETED, finished_at=T0), now=T0
    )
    join, branches = make_join(parent.id)
    with store.transaction() as tx:
        tx.insert_join(join, branches)
    store.delete_finished_before(T0 + timedelta(days=1))
    assert store.get_join(join.id) is None and store.list_branches(join.id) == []


# -- jobs ----------------------------------------------------------------------------------------


def make_job(execution_id: str, **fields: object) -> Job:
    values: dict[str, object] = {
        "id": f"job-{execution_id}",
        "execution_id": execution_id,
        "step_id": "export",
        "handler_type": "export",
        "sequence": 1,
        "attempt": 1,
        "input": {"rows": 10},
        "lease_expires_at": at(30),
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return Job.model_validate(values)


def stored_job(store: Store, **fields: object) -> Job:
    execution, _ = store.create_execution(make_execution(), now=T0)
    job = make_job(execution.id, **fields)
    with store.transaction() as tx:
        tx.insert_job(job)
    return job


def test_a_job_round_trips(store: Store) -> None:
    job = stored_job(store)
    assert store.get_job(job.id) == job
    assert store.list_jobs(job.execution_id) == [job]
    assert store.get_job("nope") is None


def test_a_pending_job_is_claimed_once(store: Store) -> None:
    job = stored_job(store)
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def claim(n: int) -> None:
        barrier.wait()
        results.append(store.claim_job(job.id, f"runner-{n}", at(1), at(31)) is not None)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 5 + [True]
    claimed = store.get_job(job.id)
    assert claimed is not None and claimed.status is JobStatus.RUNNING and claimed.claims == 1


def test_only_the_holder_renews_and_finishes_a_job(store: Store) -> None:
    job = stored_job(store)
    store.claim_job(job.id, "a", at(1), at(31))

    assert store.touch_job(job.id, "a", at(2), at(32), {"progress": 0.5, "checkpoint": {"n": 5}})
    assert not store.touch_job(job.id, "b", at(2), at(32))
    with store.transaction() as tx:
        assert not tx.finish_job(job.id, "b", JobStatus.COMPLETED, 1, None, at(3))
        assert tx.finish_job(job.id, "a", JobStatus.COMPLETED, {"rows": 10}, None, at(3))
        assert not tx.finish_job(job.id, "a", JobStatus.FAILED, None, {"code": "X"}, at(4))
    done = store.get_job(job.id)
    assert done is not None
    assert (done.status, done.result, done.progress, done.checkpoint) == (
        JobStatus.COMPLETED,
        {"rows": 10},
        0.5,
        {"n": 5},
    )
    assert not store.touch_job(job.id, "a", at(5), at(35))


def test_an_expired_job_is_found_released_and_claimed_by_a_new_runner(store: Store) -> None:
    job = stored_job(store)
    store.claim_job(job.id, "a", at(1), at(31))
    assert store.claim_job(job.id, "b", at(10), at(40)) is None  # a's lease runs
    assert store.find_jobs_to_reap(at(20)) == []

    (expired,) = store.find_jobs_to_reap(at(32))
    assert expired.id == job.id
    assert store.defer_job(job.id, at(32), at(62))
    assert not store.defer_job(job.id, at(32), at(62))  # released once
    assert store.find_jobs_to_reap(at(40)) == []
    assert not store.touch_job(job.id, "a", at(33), at(63))  # the lost runner is let go

    reclaimed = store.claim_job(job.id, "b", at(33), at(63))
    assert reclaimed is not None and reclaimed.claims == 2 and reclaimed.runner_id == "b"


def test_running_jobs_started_too_long_ago_are_found(store: Store) -> None:
    job = stored_job(store)
    store.claim_job(job.id, "a", at(1), at(31))
    store.touch_job(job.id, "a", at(25), at(55))

    assert store.find_jobs_to_reap(at(30), started_before=at(0)) == []
    assert [j.id for j in store.find_jobs_to_reap(at(30), started_before=at(2))] == [job.id]


def test_cancelling_an_executions_jobs_lets_their_runners_go(store: Store) -> None:
    job = stored_job(store)
    store.claim_job(job.id, "a", at(1), at(31))
    with store.transaction() as tx:
        assert tx.cancel_jobs(job.execution_id, at(2)) == 1
        assert tx.cancel_jobs(job.execution_id, at(3)) == 0
    cancelled = store.get_job(job.id)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    assert not store.touch_job(job.id, "a", at(4), at(34))
    assert store.find_jobs_to_reap(at(100)) == []
