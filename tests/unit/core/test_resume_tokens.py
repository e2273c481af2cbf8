"""Resume tokens: `wait_for_signal` (and any handler) issues one; `resume_with_token` ends the
wait once. Bad tokens get their code and change nothing. Run on MemoryStore and SQLite."""

from __future__ import annotations

import random
import threading
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
    VersionConflictError,
)
from flowmonkey_celery.core.tokens import IssuedResumeToken, hash_token
from flowmonkey_celery.stores.sql import SqlStore

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def approval_flow(config: dict[str, Any] | None = None, **step: Any) -> dict[str, Any]:
    return {
        "id": "approval",
        "initialStepId": "approve",
        "steps": {
            "approve": {
                "type": "wait_for_signal",
                "config": {"reason": "approve order ${order.id}", **(config or {})},
                "outputKey": "decision",
                "transitions": {"onSuccess": "ship"},
                **step,
            },
            "ship": {"type": "ship", "outputKey": "shipped"},
        },
    }


class Ship:
    type = "ship"

    def __init__(self) -> None:
        self.calls = 0

    def execute(self, params: HandlerParams) -> StepResult:
        self.calls += 1
        return Result.success({"decision": params.context.get("decision")})


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    sql = SqlStore(f"sqlite:///{tmp_path}/tokens.db")
    sql.migrate()
    yield sql
    sql.dispose()


class Approvals:
    """An engine running the approval flow, keeping the tokens it issues (as a mailer would)."""

    def __init__(self, store: Store, flow: dict[str, Any], *extra: Any) -> None:
        self.clock = ManualClock(START)
        self.ship = Ship()
        self.engine = Engine(
            store,
            HandlerRegistry([self.ship, *extra]),
            FlowRegistry([flow]),
            clock=self.clock,
            rng=random.Random(0),
        )
        self.issued: list[IssuedResumeToken] = []
        self.engine.on_resume_token(self.issued.append)

    def start(self) -> tuple[str, str]:
        execution = self.engine.create("approval", {"order": {"id": "A-7"}}).execution
        waiting = self.engine.run(execution.id)
        assert waiting.status is ExecutionStatus.WAITING
        return execution.id, self.issued[-1].token

    def version(self, execution_id: str) -> int:
        return self.engine.get(execution_id).version


def assert_refused(code: ErrorCode, call: Any, *args: Any, **kwargs: Any) -> ExecutionError:
    with pytest.raises(ExecutionError) as raised:
        call(*args, **kwargs)
    assert raised.value.code == code, raised.value
    return raised.value


def test_wait_for_signal_issues_a_token_bound_to_its_execution_and_step(store: Store) -> None:
    app = Approvals(store, approval_flow({"outcomes": ["approved", "rejected"]}))
    execution_id, token = app.start()

    issued = app.issued[0]
    assert token.startswith("fmrt_") and len(token) > 40
    assert (issued.execution_id, issued.step_id) == (execution_id, "approve")
    assert issued.outcomes == ["approved", "rejected"]
    assert app.engine.get(execution_id).wait_reason == "approve order A-7"
    # Only the hash is stored: the raw token appears nowhere in the store.
    with store.transaction() as tx:
        record = tx.get_resume_token(hash_token(token))
    assert record is not None and token not in record.model_dump_json()


def test_resume_with_token_resumes_once_with_the_data_at_output_key(store: Store) -> None:
    app = Approvals(store, approval_flow())
    execution_id, token = app.start()

    resumed = app.engine.resume_with_token(token, {"by": "ana"})
    finished = app.engine.run(execution_id)

    assert resumed.status is ExecutionStatus.RUNNING
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["decision"] == {"by": "ana"}
    assert app.ship.calls == 1
    events = [e for e in app.engine.history(execution_id) if e.type is EventType.EXECUTION_RESUMED]
    assert [e.data["trigger"] for e in events] == ["token"]


def test_a_reused_token_is_refused_and_changes_nothing(store: Store) -> None:
    app = Approvals(store, approval_flow())
    execution_id, token = app.start()
    app.engine.resume_with_token(token, {"by": "ana"})
    before = app.engine.get(execution_id)

    error = assert_refused(ErrorCode.INVALID_RESUME_TOKEN, app.engine.resume_with_token, token)

    assert "already used" in error.message
    assert app.engine.get(execution_id) == before


def test_a_malformed_token_is_refused(store: Store) -> None:
    app = Approvals(store, approval_flow())
    execution_id, _ = app.start()
    version = app.version(execution_id)

    for bad in ["", "nope", "fmrt_" + "x" * 300, None, 42]:
        error = assert_refused(ErrorCode.INVALID_RESUME_TOKEN, app.engine.resume_with_token, bad)
        assert "malformed" in error.message
    assert app.version(execution_id) == version


def test_an_unknown_token_is_refused(store: Store) -> None:
    app = Approvals(store, approval_flow())
    execution_id, token = app.start()
    version = app.version(execution_id)

    error = assert_refused(
        ErrorCode.INVALID_RESUME_TOKEN, app.engine.resume_with_token, token[:-4] + "abcd"
    )

    assert "not recognised" in error.message
    assert app.version(execution_id) == version


def test_an_expired_token_is_refused_and_the_wait_goes_on(store: Store) -> None:
    app = Approvals(store, approval_flow({"token_expires_ms": 60_000}))
    execution_id, token = app.start()
    app.clock.advance(60)
    version = app.version(execution_id)

    error = assert_refused(ErrorCode.RESUME_TOKEN_EXPIRED, app.engine.resume_with_token, token)

    assert error.details["expires_at"] == (START + timedelta(seconds=60)).isoformat()
    assert app.version(execution_id) == version
    # A new token for the same wait works.
    fresh = app.engine.issue_resume_token(execution_id, expires_in=30)
    assert app.engine.resume_with_token(fresh).status is ExecutionStatus.RUNNING


def test_outcomes_limit_what_a_token_may_report(store: Store) -> None:
    app = Approvals(store, approval_flow({"outcomes": ["approved", "rejected"]}))
    execution_id, token = app.start()
    version = app.version(execution_id)

    error = assert_refused(
        ErrorCode.INVALID_ARGUMENT, app.engine.resume_with_token, token, outcome="maybe"
    )
    assert "approved, rejected" in error.message
    assert_refused(ErrorCode.INVALID_ARGUMENT, app.engine.resume_with_token, token)
    assert app.version(execution_id) == version

    app.engine.resume_with_token(token, {"note": "ok"}, outcome="approved")
    assert app.engine.run(execution_id).context["decision"] == {
        "note": "ok",
        "outcome": "approved",
    }


def test_cancelling_revokes_the_token(store: Store) -> None:
    app = Approvals(store, approval_flow())
    execution_id, token = app.start()
    app.engine.cancel(execution_id, reason="order withdrawn")
    before = app.engine.get(execution_id)

    error = assert_refused(ErrorCode.INVALID_RESUME_TOKEN, app.engine.resume_with_token, token)

    assert "revoked" in error.message and "order withdrawn" in error.message
    assert app.engine.get(execution_id) == before


def test_a_token_of_a_wait_already_resumed_otherwise_is_refused(store: Store) -> None:
    app = Approvals(store, approval_flow())
    execution_id, token = app.start()
    app.engine.resume(execution_id, {"by": "api"})
    app.engine.run(execution_id)

    error = assert_refused(ErrorCode.INVALID_RESUME_TOKEN, app.engine.resume_with_token, token)

    assert "is over" in error.message and "completed" in error.message


def test_a_token_used_before_its_wait_is_committed_says_try_again(store: Store) -> None:
    tried: list[ExecutionError] = []

    class Eager:
        """Issues a token and, as a fast webhook receiver might, uses it before returning."""

        type = "eager"

        def execute(self, params: HandlerParams) -> StepResult:
            token = params.resume_token()
            with pytest.raises(ExecutionError) as raised:
                engine.resume_with_token(token)
            tried.append(raised.value)
            return Result.wait_for_signal("eager")

    flow = approval_flow()
    flow["steps"]["approve"]["type"] = "eager"
    flow["steps"]["approve"]["config"] = {}
    app = Approvals(store, flow, Eager())
    engine = app.engine
    execution_id, token = app.start()

    assert tried[0].code == ErrorCode.EXECUTION_NOT_WAITING
    assert tried[0].details["not_yet"] is True
    # Once committed, the same token works.
    assert app.engine.resume_with_token(token).status is ExecutionStatus.RUNNING
    assert app.engine.run(execution_id).status is ExecutionStatus.COMPLETED


def test_token_false_issues_none(store: Store) -> None:
    app = Approvals(store, approval_flow({"token": False}))
    execution = app.engine.create("approval", {"order": {"id": "A-1"}}).execution

    assert app.engine.run(execution.id).status is ExecutionStatus.WAITING
    assert app.issued == []


def test_issue_resume_token_needs_a_waiting_execution(store: Store) -> None:
    app = Approvals(store, approval_flow())
    execution_id, token = app.start()
    app.engine.resume_with_token(token)
    app.engine.run(execution_id)

    assert_refused(ErrorCode.EXECUTION_NOT_WAITING, app.engine.issue_resume_token, execution_id)
    assert_refused(ErrorCode.EXECUTION_NOT_FOUND, app.engine.issue_resume_token, "missing")


def test_two_threads_with_one_token_resume_once(store: Store) -> None:
    app = Approvals(store, approval_flow())
    execution_id, token = app.start()
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def use() -> None:
        barrier.wait()
        try:
            app.engine.resume_with_token(token, {"at": "same time"})
            outcomes.append("resumed")
        except ExecutionError as exc:
            outcomes.append(exc.code.value)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["INVALID_RESUME_TOKEN"] * 3 + ["resumed"]
    resumed = [e for e in app.engine.history(execution_id) if e.type is EventType.EXECUTION_RESUMED]
    assert len(resumed) == 1


def test_a_wait_that_times_out_revokes_its_token_and_takes_on_timeout(store: Store) -> None:
    flow = approval_flow(waitTimeoutMs=3_600_000)
    flow["steps"]["approve"]["transitions"]["onTimeout"] = "escalate"
    flow["steps"]["escalate"] = {"type": "ship", "outputKey": "escalated"}
    app = Approvals(store, flow)
    execution_id, token = app.start()
    assert app.engine.get(execution_id).wake_at == START + timedelta(hours=1)

    app.clock.advance(3600)
    woken = app.engine.wake_due()
    finished = app.engine.run(execution_id)

    assert woken == [execution_id]
    assert finished.status is ExecutionStatus.COMPLETED
    assert "escalated" in finished.context and "shipped" not in finished.context
    assert finished.context["_error"]["code"] == ErrorCode.WAIT_TIMEOUT
    error = assert_refused(ErrorCode.INVALID_RESUME_TOKEN, app.engine.resume_with_token, token)
    assert "timed out" in error.message


def test_a_token_used_after_the_step_deadline_gets_wait_timeout(store: Store) -> None:
    flow = approval_flow(waitTimeoutMs=60_000)
    app = Approvals(store, flow)
    execution_id, token = app.start()
    app.clock.advance(61)  # due, but no sweep has run yet

    assert_refused(ErrorCode.WAIT_TIMEOUT, app.engine.resume_with_token, token)

    failed = app.engine.get(execution_id)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.WAIT_TIMEOUT
    assert_refused(ErrorCode.INVALID_RESUME_TOKEN, app.engine.resume_with_token, token)


class DuplicateAttempt:
    """A signal step whose first call is overtaken: while it runs, a duplicate message of the
    same step runs to completion and commits its own wait (and token) first."""

    type = "racy_signal"

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.calls = 0

    def execute(self, params: HandlerParams) -> StepResult:
        self.calls += 1
        token = params.resume_token()
        if self.calls == 1:
            assert self.engine is not None
            self.engine.step(params.execution.id, expected_version=params.execution.version)
        return Result.wait_for_signal(f"token {token[:9]}")


def test_a_token_issued_by_a_losing_duplicate_attempt_is_revoked(store: Store) -> None:
    racy = DuplicateAttempt()
    app = Approvals(store, approval_flow(type="racy_signal", config=None), racy)
    racy.engine = app.engine
    execution = app.engine.create("approval", {"order": {"id": "A-7"}}).execution
    with pytest.raises(VersionConflictError):
        app.engine.step(execution.id)
    lost, won = app.issued[0].token, app.issued[1].token  # the outer call issued first

    assert_refused(ErrorCode.INVALID_RESUME_TOKEN, app.engine.resume_with_token, lost, {})
    resumed = app.engine.resume_with_token(won, {"by": "ana"})
    assert resumed.status is ExecutionStatus.RUNNING and resumed.context["decision"] == {
        "by": "ana"
    }


def test_a_reason_whose_template_finds_nothing_falls_back_to_the_default(store: Store) -> None:
    app = Approvals(store, approval_flow({"reason": "${order.missing}"}))
    execution_id, _ = app.start()
    assert app.engine.get(execution_id).wait_reason == "waiting for a signal at 'approve'"
