"""Retries: the pure backoff/decision functions, and retries as durable waits in the engine."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
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
    RetryPolicy,
    StepResult,
    WaitKind,
)
from flowmonkey_celery.core.retry import compute_backoff, should_retry

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


class Flaky:
    """A `flaky` handler that fails `failures` times, then succeeds; records every call."""

    type = "flaky"

    def __init__(self, failures: int, code: str = "TEMPORARY", raises: bool = False) -> None:
        self.failures = failures
        self.code = code
        self.raises = raises
        self.attempts: list[int] = []
        self.step_keys: list[str] = []

    def execute(self, params: HandlerParams) -> StepResult:
        self.attempts.append(params.attempt)
        self.step_keys.append(params.step_key)
        if len(self.attempts) <= self.failures:
            if self.raises:
                raise ConnectionError("upstream reset the connection")
            return Result.failure(self.code, f"attempt {params.attempt} failed")
        return Result.success({"attempt": params.attempt})


class Record:
    """A `record` handler for the steps after the flaky one."""

    type = "record"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def execute(self, params: HandlerParams) -> StepResult:
        self.calls.append((params.step.id, params.attempt))
        return Result.success({"seen_error": params.context.get("_error")})


def retry_flow(
    retry: dict[str, Any] | None,
    *,
    on_failure: str | None = None,
    on_success: str | None = "after",
) -> dict[str, Any]:
    call: dict[str, Any] = {
        "type": "flaky",
        "outputKey": "call",
        "transitions": {"onSuccess": on_success, "onFailure": on_failure},
    }
    if retry is not None:
        call["retry"] = retry
    return {
        "id": "retrying",
        "initialStepId": "call",
        "steps": {
            "call": call,
            "after": {"type": "record", "outputKey": "after"},
            "recover": {"type": "record", "outputKey": "recovered"},
        },
    }


def make_engine(
    flaky: Flaky | Refusing, flow: dict[str, Any], clock: ManualClock | None = None
) -> tuple[Engine, ManualClock, Record]:
    clock = clock or ManualClock(START)
    record = Record()
    engine = Engine(
        MemoryStore(),
        HandlerRegistry([flaky, record]),
        FlowRegistry([flow]),
        clock=clock,
        rng=random.Random(0),
    )
    return engine, clock, record


# -- compute_backoff -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_number", "expected_ms"),
    [(1, 1000), (2, 2000), (3, 4000), (4, 8000), (5, 16000)],
)
def test_backoff_grows_by_the_multiplier_per_retry(retry_number: int, expected_ms: int) -> None:
    policy = RetryPolicy(backoff_ms=1000, backoff_multiplier=2)

    assert compute_backoff(policy, retry_number) == timedelta(milliseconds=expected_ms)


def test_backoff_uses_a_fractional_multiplier() -> None:
    policy = RetryPolicy(backoff_ms=200, backoff_multiplier=1.5)

    delays = [compute_backoff(policy, n) for n in (1, 2, 3)]

    assert delays == [timedelta(milliseconds=ms) for ms in (200, 300, 450)]


def test_backoff_doubles_until_capped_at_max_backoff() -> None:
    policy = RetryPolicy(backoff_ms=1000, backoff_multiplier=2, max_backoff_ms=5000)

    delays = [compute_backoff(policy, n) / timedelta(milliseconds=1) for n in range(1, 7)]

    assert delays == [1000, 2000, 4000, 5000, 5000, 5000]


@pytest.mark.parametrize("jitter", [0.2, 0.5, 1.0])
def test_jitter_shortens_each_delay_by_at_most_the_fraction(jitter: float) -> None:
    policy = RetryPolicy(backoff_ms=1000, backoff_multiplier=2, jitter=jitter)
    rng = random.Random(42)

    for retry_number in (1, 2, 3):
        full = 1000 * 2 ** (retry_number - 1)
        for _ in range(200):
            delay_ms = compute_backoff(policy, retry_number, rng) / timedelta(milliseconds=1)
            assert full * (1 - jitter) <= delay_ms <= full


def test_jitter_true_means_up_to_half_of_the_delay() -> None:
    policy = RetryPolicy(backoff_ms=1000, jitter=True)
    expected_draw = random.Random(3).random()

    delay = compute_backoff(policy, 1, random.Random(3))

    assert delay == timedelta(milliseconds=1000 * (1 - 0.5 * expected_draw))


def test_jitter_is_applied_after_the_cap() -> None:
    policy = RetryPolicy(backoff_ms=1000, max_backoff_ms=3000, jitter=0.5)
    rng = random.Random(5)

    delays = [compute_backoff(policy, 10, rng) / timedelta(milliseconds=1) for _ in range(100)]

    assert all(1500 <= d <= 3000 for d in delays)


# -- should_retry ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retries_done", "expected"), [(0, True), (1, True), (2, False), (5, False)]
)
def test_max_attempts_counts_retries_after_the_first_call(
    retries_done: int, expected: bool
) -> None:
    policy = RetryPolicy(max_attempts=2)

    assert should_retry(policy, retries_done, "TEMPORARY") is expected


def test_max_attempts_zero_never_retries() -> None:
    assert should_retry(RetryPolicy(max_attempts=0), 0, "TEMPORARY") is False


def test_retry_on_limits_retries_to_the_listed_codes() -> None:
    policy = RetryPolicy(retry_on=["TIMEOUT", "RATE_LIMITED"])

    assert should_retry(policy, 0, "RATE_LIMITED") is True
    assert should_retry(policy, 0, "CARD_DECLINED") is False


@pytest.mark.parametrize("retry_on", [None, []])
def test_empty_or_absent_retry_on_retries_any_code(retry_on: list[str] | None) -> None:
    policy = RetryPolicy(retry_on=retry_on)

    assert should_retry(policy, 0, "ANYTHING_AT_ALL") is True


def test_input_error_is_never_retried_even_when_listed() -> None:
    policy = RetryPolicy(max_attempts=5, retry_on=["INPUT_ERROR"])

    assert should_retry(policy, 0, ErrorCode.INPUT_ERROR.value) is False


def test_no_policy_means_no_retry() -> None:
    assert should_retry(None, 0, "TEMPORARY") is False


# -- retries through the engine --------------------------------------------------------------


def test_retry_backoff_is_a_durable_wait_not_a_sleep() -> None:
    flaky = Flaky(failures=1)
    engine, clock, _ = make_engine(flaky, retry_flow({"maxAttempts": 3, "backoffMs": 1500}))
    execution_id = engine.create("retrying").execution.id

    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.WAITING
    assert execution.wait_kind is WaitKind.RETRY
    assert execution.wake_at == START + timedelta(milliseconds=1500)
    assert execution.retry_attempts == 1
    assert execution.current_step_id == "call"
    assert clock.now() == START  # run() returned instead of sleeping
    assert flaky.attempts == [1]
    stored = engine.get(execution_id)
    assert stored is not None and stored.wake_at == execution.wake_at


def test_retry_records_a_step_retry_event_with_the_error_and_wake_time() -> None:
    engine, _, _ = make_engine(Flaky(failures=1), retry_flow({"backoffMs": 1000}))
    execution_id = engine.create("retrying").execution.id

    engine.run(execution_id)

    retries = [e for e in engine.history(execution_id) if e.type is EventType.STEP_RETRY]
    assert len(retries) == 1
    assert retries[0].step_id == "call"
    assert retries[0].error is not None and retries[0].error.code == "TEMPORARY"
    assert retries[0].data["wake_at"] == (START + timedelta(seconds=1)).isoformat()


def test_run_before_the_backoff_passes_does_not_call_the_handler_again() -> None:
    flaky = Flaky(failures=1)
    engine, clock, _ = make_engine(flaky, retry_flow({"backoffMs": 1000}))
    execution_id = engine.create("retrying").execution.id
    engine.run(execution_id)

    clock.advance(timedelta(milliseconds=999))
    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.WAITING
    assert flaky.attempts == [1]


def test_advancing_the_clock_past_wake_at_and_running_retries_the_step() -> None:
    flaky = Flaky(failures=1)
    engine, clock, record = make_engine(flaky, retry_flow({"backoffMs": 1000}))
    execution_id = engine.create("retrying").execution.id
    engine.run(execution_id)

    clock.advance(timedelta(seconds=1))
    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.COMPLETED
    assert flaky.attempts == [1, 2]
    assert execution.context["call"] == {"attempt": 2}
    assert record.calls == [("after", 1)]


def test_each_attempt_gets_the_next_attempt_number_and_its_own_step_key() -> None:
    flaky = Flaky(failures=3)
    engine, _, _ = make_engine(flaky, retry_flow({"maxAttempts": 3, "backoffMs": 10}))
    execution_id = engine.create("retrying").execution.id

    engine.run(execution_id, simulate_time=True)

    assert flaky.attempts == [1, 2, 3, 4]
    assert flaky.step_keys == [f"{execution_id}:call:{n}" for n in (1, 2, 3, 4)]


def test_backoff_doubles_between_successive_engine_retries_until_capped() -> None:
    flaky = Flaky(failures=4)
    policy = {"maxAttempts": 5, "backoffMs": 1000, "backoffMultiplier": 2, "maxBackoffMs": 3000}
    engine, clock, _ = make_engine(flaky, retry_flow(policy))
    execution_id = engine.create("retrying").execution.id

    gaps = []
    execution = engine.run(execution_id)
    while execution.status is ExecutionStatus.WAITING:
        assert execution.wake_at is not None
        gaps.append(execution.wake_at - clock.now())
        clock.set(execution.wake_at)
        execution = engine.run(execution_id)

    assert gaps == [timedelta(seconds=s) for s in (1, 2, 3, 3)]
    assert execution.status is ExecutionStatus.COMPLETED


def test_step_succeeds_after_n_failures_with_simulated_time() -> None:
    flaky = Flaky(failures=2)
    engine, clock, _ = make_engine(flaky, retry_flow({"maxAttempts": 3, "backoffMs": 1000}))
    execution_id = engine.create("retrying").execution.id

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context["call"] == {"attempt": 3}
    # the ManualClock moved through both backoffs: 1 s then 2 s
    assert clock.now() == START + timedelta(seconds=3)
    retries = [e for e in engine.history(execution_id) if e.type is EventType.STEP_RETRY]
    assert len(retries) == 2


def test_exhausted_retries_follow_on_failure() -> None:
    flaky = Flaky(failures=10, code="UPSTREAM_DOWN")
    flow = retry_flow({"maxAttempts": 2, "backoffMs": 100}, on_failure="recover")
    engine, _, record = make_engine(flaky, flow)
    execution_id = engine.create("retrying").execution.id

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.COMPLETED
    assert flaky.attempts == [1, 2, 3]
    assert record.calls == [("recover", 1)]
    assert execution.context["_error"]["code"] == "UPSTREAM_DOWN"
    assert execution.context["_error"]["step_id"] == "call"


def test_exhausted_retries_without_on_failure_fail_with_the_handlers_code() -> None:
    flaky = Flaky(failures=10, code="UPSTREAM_DOWN")
    engine, _, record = make_engine(flaky, retry_flow({"maxAttempts": 2, "backoffMs": 100}))
    execution_id = engine.create("retrying").execution.id

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == "UPSTREAM_DOWN"
    assert execution.error.step_id == "call"
    assert execution.error.message == "attempt 3 failed"
    assert len(flaky.attempts) == 3
    assert record.calls == []


def test_retry_attempts_reset_to_zero_when_the_step_succeeds() -> None:
    flaky = Flaky(failures=2)
    engine, clock, record = make_engine(flaky, retry_flow({"backoffMs": 1000}))
    execution_id = engine.create("retrying").execution.id
    engine.run(execution_id)
    clock.advance(1)
    engine.run(execution_id)
    assert engine.get(execution_id).retry_attempts == 2  # type: ignore[union-attr]

    clock.advance(2)
    woken = engine.step(execution_id)  # the due wake is committed on its own
    assert woken.status is ExecutionStatus.RUNNING and woken.outcome is None
    assert flaky.attempts == [1, 2]
    outcome = engine.step(execution_id)

    assert outcome.outcome == "success"
    after_success = engine.get(execution_id)
    assert after_success is not None
    assert after_success.retry_attempts == 0
    assert after_success.current_step_id == "after"
    engine.run(execution_id)
    assert record.calls == [("after", 1)]  # the next step starts again at attempt 1


def test_retry_on_does_not_retry_other_codes() -> None:
    flaky = Flaky(failures=1, code="CARD_DECLINED")
    flow = retry_flow({"maxAttempts": 3, "retryOn": ["TEMPORARY"]})
    engine, _, _ = make_engine(flaky, flow)
    execution_id = engine.create("retrying").execution.id

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None and execution.error.code == "CARD_DECLINED"
    assert flaky.attempts == [1]


def test_a_handler_that_raises_is_retried_as_handler_error() -> None:
    flaky = Flaky(failures=1, raises=True)
    engine, _, _ = make_engine(flaky, retry_flow({"maxAttempts": 1, "backoffMs": 500}))
    execution_id = engine.create("retrying").execution.id

    first = engine.run(execution_id)
    retry_events = [e for e in engine.history(execution_id) if e.type is EventType.STEP_RETRY]
    final = engine.run(execution_id, simulate_time=True)

    assert first.status is ExecutionStatus.WAITING
    assert retry_events[0].error is not None
    assert retry_events[0].error.code == ErrorCode.HANDLER_ERROR.value
    assert "ConnectionError" in retry_events[0].error.message
    assert final.status is ExecutionStatus.COMPLETED
    assert flaky.attempts == [1, 2]


def test_a_step_without_retry_policy_fails_on_the_first_failure() -> None:
    flaky = Flaky(failures=1)
    engine, _, _ = make_engine(flaky, retry_flow(None))
    execution_id = engine.create("retrying").execution.id

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.FAILED
    assert flaky.attempts == [1]


def test_input_error_reported_by_a_handler_is_not_retried() -> None:
    flaky = Flaky(failures=1, code=ErrorCode.INPUT_ERROR.value)
    engine, _, _ = make_engine(flaky, retry_flow({"maxAttempts": 3}))
    execution_id = engine.create("retrying").execution.id

    execution = engine.run(execution_id, simulate_time=True)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None and execution.error.code == "INPUT_ERROR"
    assert flaky.attempts == [1]


def test_resume_during_a_retry_backoff_is_refused() -> None:
    flaky = Flaky(failures=1)
    engine, _, _ = make_engine(flaky, retry_flow({"backoffMs": 60_000}))
    execution_id = engine.create("retrying").execution.id
    engine.run(execution_id)

    with pytest.raises(ExecutionError) as raised:
        engine.resume(execution_id, {"approved": True})

    assert raised.value.code is ErrorCode.EXECUTION_NOT_WAITING
    assert "retry" in raised.value.message
    still = engine.get(execution_id)
    assert still is not None
    assert still.status is ExecutionStatus.WAITING
    assert still.wait_kind is WaitKind.RETRY
    assert "approved" not in still.context


# -- retryable and retry_after (what the http handler reports) -----------------------------


class Refusing:
    """A `flaky` handler failing with a given retryable flag and Retry-After."""

    type = "flaky"

    def __init__(self, retryable: bool | None, retry_after: float | None = None) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = 0

    def execute(self, params: HandlerParams) -> StepResult:
        self.attempts += 1
        return Result.failure(
            "HTTP_404" if self.retryable is False else "HTTP_503",
            "upstream said no",
            retryable=self.retryable,
            retry_after=self.retry_after,
        )


def test_an_error_marked_not_retryable_is_not_retried_by_a_policy_without_retry_on() -> None:
    handler = Refusing(retryable=False)
    engine, _, _ = make_engine(handler, retry_flow({"maxAttempts": 3}))
    execution = engine.run(engine.create("retrying").execution.id, simulate_time=True)
    assert handler.attempts == 1
    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None and execution.error.code == "HTTP_404"


def test_a_code_listed_in_retry_on_is_retried_even_when_marked_not_retryable() -> None:
    handler = Refusing(retryable=False)
    flow = retry_flow({"maxAttempts": 2, "retryOn": ["HTTP_404"]})
    engine, _, _ = make_engine(handler, flow)
    engine.run(engine.create("retrying").execution.id, simulate_time=True)
    assert handler.attempts == 3


def test_retry_after_longer_than_the_backoff_sets_the_wait() -> None:
    handler = Refusing(retryable=True, retry_after=120)
    engine, _, _ = make_engine(handler, retry_flow({"maxAttempts": 1, "backoffMs": 1000}))
    execution = engine.run(engine.create("retrying").execution.id)
    assert execution.wait_kind is WaitKind.RETRY
    assert execution.wake_at == START + timedelta(seconds=120)


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    handler = Refusing(retryable=True, retry_after=0.5)
    engine, _, _ = make_engine(handler, retry_flow({"maxAttempts": 1, "backoffMs": 3000}))
    execution = engine.run(engine.create("retrying").execution.id)
    assert execution.wake_at == START + timedelta(seconds=3)
