"""Engine basics: create, get, step and run, and the errors a caller can meet."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    ExecutionError,
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    SystemClock,
    VersionConflictError,
    handler,
)

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def three_step_flow(flow_id: str = "chain", version: str = "1.0.0") -> dict[str, Any]:
    return {
        "id": flow_id,
        "version": version,
        "initialStepId": "a",
        "steps": {
            "a": {"type": "record", "outputKey": "a", "transitions": {"onSuccess": "b"}},
            "b": {"type": "record", "outputKey": "b", "transitions": {"onSuccess": "c"}},
            "c": {"type": "record", "outputKey": "c"},
        },
    }


class Recorder:
    """A `record` handler that remembers which steps it ran, in order."""

    type = "record"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.statuses: list[ExecutionStatus] = []

    def execute(self, params: HandlerParams) -> StepResult:
        self.calls.append(params.step.id)
        self.statuses.append(params.execution.status)
        return Result.success({"step": params.step.id})


def make_engine(
    *handlers: Any,
    flows: tuple[dict[str, Any], ...] | None = None,
    clock: Any = None,
    store: MemoryStore | None = None,
) -> Engine:
    registry = FlowRegistry(flows if flows is not None else (three_step_flow(),))
    return Engine(
        store or MemoryStore(),
        HandlerRegistry(handlers),
        registry,
        clock=clock or ManualClock(START),
    )


def single_step_flow(step_type: str, flow_id: str = "single") -> dict[str, Any]:
    return {"id": flow_id, "initialStepId": "only", "steps": {"only": {"type": step_type}}}


@handler("boom")
def boom(params: HandlerParams) -> StepResult:
    raise RuntimeError("card reader on fire")


# -- create ------------------------------------------------------------------------------------


def test_create_returns_a_pending_execution_at_the_initial_step() -> None:
    engine = make_engine(Recorder())

    result = engine.create("chain", {"order": 7})

    assert result.created is True
    assert result.idempotency_hit is False
    execution = result.execution
    assert execution.status is ExecutionStatus.PENDING
    assert execution.flow_id == "chain"
    assert execution.current_step_id == "a"
    assert execution.context == {"order": 7}
    assert execution.step_count == 0
    assert execution.error is None


def test_create_pins_the_latest_flow_version_by_semver() -> None:
    flows = (three_step_flow(version="1.9.0"), three_step_flow(version="1.10.0"))
    engine = make_engine(Recorder(), flows=flows)

    execution = engine.create("chain").execution

    assert execution.flow_version == "1.10.0"


def test_create_with_flow_version_pins_that_version() -> None:
    flows = (three_step_flow(version="1.0.0"), three_step_flow(version="2.0.0"))
    engine = make_engine(Recorder(), flows=flows)

    execution = engine.create("chain", flow_version="1.0.0").execution

    assert execution.flow_version == "1.0.0"
    assert engine.get(execution.id).flow_version == "1.0.0"  # type: ignore[union-attr]


def test_create_stamps_timezone_aware_utc_times_from_the_clock() -> None:
    local = timezone(timedelta(hours=2))
    clock = ManualClock(datetime(2024, 5, 1, 11, 30, tzinfo=local))
    engine = make_engine(Recorder(), clock=clock)

    execution = engine.create("chain").execution

    for moment in (execution.created_at, execution.updated_at):
        assert moment.utcoffset() == timedelta(0)
        assert moment == START


def test_create_with_the_system_clock_stamps_utc_now() -> None:
    engine = make_engine(Recorder(), clock=SystemClock())
    before = datetime.now(UTC)

    execution = engine.create("chain").execution

    assert execution.created_at.utcoffset() == timedelta(0)
    assert before <= execution.created_at <= datetime.now(UTC)


def test_create_starts_at_version_zero_and_first_step_bumps_it() -> None:
    engine = make_engine(Recorder())
    execution = engine.create("chain").execution

    assert execution.version == 0
    engine.step(execution.id)
    assert engine.get(execution.id).version == 1  # type: ignore[union-attr]


def test_create_stores_tenant_and_metadata() -> None:
    engine = make_engine(Recorder())

    created = engine.create("chain", tenant_id="acme", metadata={"source": "api", "n": 1})

    stored = engine.get(created.execution.id)
    assert stored is not None
    assert stored.tenant_id == "acme"
    assert stored.metadata == {"source": "api", "n": 1}


def test_create_uses_the_given_execution_id() -> None:
    engine = make_engine(Recorder())

    execution = engine.create("chain", execution_id="order-42").execution

    assert execution.id == "order-42"
    assert engine.get("order-42") is not None


def test_create_copies_the_context_so_later_caller_changes_do_not_leak() -> None:
    engine = make_engine(Recorder())
    context: dict[str, Any] = {"items": [1, 2]}

    execution = engine.create("chain", context).execution
    context["items"].append(3)

    assert engine.get(execution.id).context == {"items": [1, 2]}  # type: ignore[union-attr]


def test_create_converts_datetimes_in_the_context_to_iso_strings() -> None:
    engine = make_engine(Recorder())

    execution = engine.create("chain", {"due": START}).execution

    assert engine.get(execution.id).context == {"due": START.isoformat()}  # type: ignore[union-attr]


def test_create_records_a_known_parent() -> None:
    engine = make_engine(Recorder())
    parent = engine.create("chain").execution

    child = engine.create("chain", parent_execution_id=parent.id).execution

    assert engine.get(child.id).parent_execution_id == parent.id  # type: ignore[union-attr]


# -- create errors -----------------------------------------------------------------------------


def test_create_unknown_flow_raises_flow_not_found() -> None:
    engine = make_engine(Recorder())

    with pytest.raises(ExecutionError) as info:
        engine.create("no-such-flow")

    assert info.value.code is ErrorCode.FLOW_NOT_FOUND
    assert "no-such-flow" in info.value.message


def test_create_unknown_flow_version_raises_flow_not_found() -> None:
    engine = make_engine(Recorder())

    with pytest.raises(ExecutionError) as info:
        engine.create("chain", flow_version="9.9.9")

    assert info.value.code is ErrorCode.FLOW_NOT_FOUND


def test_create_with_a_step_type_without_handler_fails_and_stores_nothing() -> None:
    store = MemoryStore()
    engine = make_engine(flows=(three_step_flow(),), store=store)  # no "record" handler

    with pytest.raises(ExecutionError) as info:
        engine.create("chain", execution_id="x1")

    assert info.value.code is ErrorCode.HANDLER_NOT_FOUND
    assert "record" in info.value.message
    assert engine.get("x1") is None
    assert store.list_executions() == []


@pytest.mark.parametrize("context", [["a", "b"], "text", 5])
def test_create_rejects_a_context_that_is_not_a_dict(context: Any) -> None:
    store = MemoryStore()
    engine = make_engine(Recorder(), store=store)

    with pytest.raises(ExecutionError) as info:
        engine.create("chain", context)

    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert store.list_executions() == []


@pytest.mark.parametrize(
    "context",
    [{"handle": object()}, {"ratio": float("nan")}],
    ids=["object", "nan"],
)
def test_create_rejects_a_context_that_is_not_json(context: dict[str, Any]) -> None:
    store = MemoryStore()
    engine = make_engine(Recorder(), store=store)

    with pytest.raises(ExecutionError) as info:
        engine.create("chain", context)

    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert store.list_executions() == []


def test_create_with_unknown_parent_raises_execution_not_found() -> None:
    store = MemoryStore()
    engine = make_engine(Recorder(), store=store)

    with pytest.raises(ExecutionError) as info:
        engine.create("chain", parent_execution_id="ghost")

    assert info.value.code is ErrorCode.EXECUTION_NOT_FOUND
    assert "ghost" in info.value.message
    assert store.list_executions() == []


def test_create_with_a_taken_execution_id_raises_execution_exists() -> None:
    engine = make_engine(Recorder())
    engine.create("chain", {"first": True}, execution_id="dup")

    with pytest.raises(ExecutionError) as info:
        engine.create("chain", {"first": False}, execution_id="dup")

    assert info.value.code is ErrorCode.EXECUTION_EXISTS
    assert engine.get("dup").context == {"first": True}  # type: ignore[union-attr]


# -- unknown ids -------------------------------------------------------------------------------


def test_get_unknown_id_returns_none() -> None:
    engine = make_engine(Recorder())

    assert engine.get("nope") is None


@pytest.mark.parametrize(
    "operation",
    [
        lambda e: e.run("nope"),
        lambda e: e.step("nope"),
        lambda e: e.history("nope"),
        lambda e: e.resume("nope"),
        lambda e: e.cancel("nope"),
    ],
    ids=["run", "step", "history", "resume", "cancel"],
)
def test_operations_on_an_unknown_id_raise_execution_not_found(
    operation: Callable[[Engine], Any],
) -> None:
    engine = make_engine(Recorder())

    with pytest.raises(ExecutionError) as info:
        operation(engine)

    assert info.value.code is ErrorCode.EXECUTION_NOT_FOUND
    assert "nope" in info.value.message


# -- step --------------------------------------------------------------------------------------


def test_step_calls_one_handler_at_a_time() -> None:
    recorder = Recorder()
    engine = make_engine(recorder)
    execution_id = engine.create("chain").execution.id

    engine.step(execution_id)
    assert recorder.calls == ["a"]
    engine.step(execution_id)
    assert recorder.calls == ["a", "b"]
    engine.step(execution_id)
    assert recorder.calls == ["a", "b", "c"]


def test_step_reports_the_step_run_and_the_next_one() -> None:
    engine = make_engine(Recorder())
    execution_id = engine.create("chain").execution.id

    outcome = engine.step(execution_id)

    assert outcome.execution_id == execution_id
    assert outcome.done is False
    assert outcome.status is ExecutionStatus.RUNNING
    assert outcome.step_id == "a"
    assert outcome.outcome == "success"
    assert outcome.next_step_id == "b"
    assert outcome.error is None


def test_step_of_the_last_step_reports_done_and_completed() -> None:
    engine = make_engine(Recorder())
    execution_id = engine.create("chain").execution.id
    engine.step(execution_id)
    engine.step(execution_id)

    outcome = engine.step(execution_id)

    assert outcome.done is True
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.step_id == "c"
    assert outcome.outcome == "success"
    assert outcome.next_step_id is None


def test_step_of_a_failing_step_reports_done_with_the_error() -> None:
    engine = make_engine(boom, flows=(single_step_flow("boom"),))
    execution_id = engine.create("single").execution.id

    outcome = engine.step(execution_id)

    assert outcome.done is True
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.step_id == "only"
    assert outcome.outcome == "failure"
    assert outcome.error is not None
    assert outcome.error.code == ErrorCode.HANDLER_ERROR


def test_step_on_a_completed_execution_returns_done_without_calling_the_handler() -> None:
    recorder = Recorder()
    engine = make_engine(recorder)
    execution_id = engine.create("chain").execution.id
    engine.run(execution_id)
    version = engine.get(execution_id).version  # type: ignore[union-attr]

    outcome = engine.step(execution_id)

    assert recorder.calls == ["a", "b", "c"]
    assert outcome.done is True
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.outcome is None
    assert engine.get(execution_id).version == version  # type: ignore[union-attr]


def test_step_on_a_failed_execution_does_not_call_the_handler_again() -> None:
    calls: list[int] = []

    @handler("flaky")
    def flaky(params: HandlerParams) -> StepResult:
        calls.append(1)
        return Result.failure("NOPE", "no")

    engine = make_engine(flaky, flows=(single_step_flow("flaky"),))
    execution_id = engine.create("single").execution.id
    engine.step(execution_id)

    outcome = engine.step(execution_id)

    assert calls == [1]
    assert outcome.done is True
    assert outcome.status is ExecutionStatus.FAILED


def test_status_is_running_between_steps() -> None:
    recorder = Recorder()
    engine = make_engine(recorder)
    execution_id = engine.create("chain").execution.id

    engine.step(execution_id)
    assert engine.get(execution_id).status is ExecutionStatus.RUNNING  # type: ignore[union-attr]
    engine.step(execution_id)
    assert engine.get(execution_id).status is ExecutionStatus.RUNNING  # type: ignore[union-attr]
    engine.step(execution_id)

    assert engine.get(execution_id).status is ExecutionStatus.COMPLETED  # type: ignore[union-attr]
    assert recorder.statuses == [ExecutionStatus.RUNNING] * 3


def test_updated_at_follows_the_clock_on_each_step() -> None:
    clock = ManualClock(START)
    engine = make_engine(Recorder(), clock=clock)
    execution_id = engine.create("chain").execution.id

    clock.advance(timedelta(minutes=5))
    engine.step(execution_id)

    stored = engine.get(execution_id)
    assert stored is not None
    assert stored.created_at == START
    assert stored.updated_at == START + timedelta(minutes=5)


# -- run ---------------------------------------------------------------------------------------


def test_run_runs_every_step_and_returns_the_completed_execution() -> None:
    recorder = Recorder()
    engine = make_engine(recorder)
    execution_id = engine.create("chain", {"order": 1}).execution.id

    execution = engine.run(execution_id)

    assert recorder.calls == ["a", "b", "c"]
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context == {
        "order": 1,
        "a": {"step": "a"},
        "b": {"step": "b"},
        "c": {"step": "c"},
    }
    assert execution.step_count == 3
    assert engine.get(execution_id) == execution


def test_run_never_raises_for_a_failing_flow() -> None:
    engine = make_engine(boom, flows=(single_step_flow("boom"),))
    execution_id = engine.create("single").execution.id

    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == ErrorCode.HANDLER_ERROR
    assert "card reader on fire" in execution.error.message


def test_run_on_a_finished_execution_returns_it_unchanged() -> None:
    recorder = Recorder()
    engine = make_engine(recorder)
    execution_id = engine.create("chain").execution.id
    first = engine.run(execution_id)

    again = engine.run(execution_id)

    assert again == first
    assert recorder.calls == ["a", "b", "c"]


def test_engine_refuses_max_steps_below_one() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        Engine(MemoryStore(), HandlerRegistry(), FlowRegistry(), max_steps=0)


# -- stepping from the execution this process just committed ------------------------------------


class CountingStore(MemoryStore):
    """A MemoryStore that counts loads."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def get_execution(self, execution_id: str) -> Any:
        self.loads += 1
        return super().get_execution(execution_id)


def test_step_with_the_known_execution_skips_the_load_and_gives_the_same_result() -> None:
    store = CountingStore()
    recorder = Recorder()
    engine = make_engine(recorder, store=store)
    execution_id = engine.create("chain").execution.id
    outcome = engine.step(execution_id, expected_version=0)
    loads = store.loads

    while not outcome.done:
        assert outcome.execution is not None and outcome.execution.version == outcome.version
        outcome = engine.step(
            execution_id, expected_version=outcome.version, known=outcome.execution
        )

    assert store.loads == loads, "no step after the first loaded the execution"
    assert recorder.calls == ["a", "b", "c"]
    final = engine.get(execution_id)
    assert final is not None and final.status is ExecutionStatus.COMPLETED
    assert final.context == {"a": {"step": "a"}, "b": {"step": "b"}, "c": {"step": "c"}}
    assert [e.step_id for e in engine.history(execution_id) if e.type == "step.completed"] == [
        "a",
        "b",
        "c",
    ]


def test_a_known_execution_changed_meanwhile_is_refused_at_save_and_nothing_is_written() -> None:
    recorder = Recorder()
    engine = make_engine(recorder)
    execution_id = engine.create("chain").execution.id
    first = engine.step(execution_id, expected_version=0)
    engine.cancel(execution_id, reason="customer called")  # lands between two steps
    history_before = engine.history(execution_id)

    with pytest.raises(VersionConflictError):
        engine.step(execution_id, expected_version=first.version, known=first.execution)

    after = engine.get(execution_id)
    assert after is not None and after.status is ExecutionStatus.CANCELLED
    assert "b" not in after.context
    assert engine.history(execution_id) == history_before


def test_the_caller_s_known_execution_is_left_untouched() -> None:
    engine = make_engine(Recorder())
    execution_id = engine.create("chain").execution.id
    first = engine.step(execution_id, expected_version=0)
    assert first.execution is not None
    snapshot = first.execution.model_copy(deep=True)

    engine.step(execution_id, expected_version=first.version, known=first.execution)

    assert first.execution == snapshot


def test_a_known_execution_of_another_id_is_refused() -> None:
    engine = make_engine(Recorder())
    one = engine.create("chain").execution
    other = engine.create("chain").execution.id
    with pytest.raises(ValueError, match="is not"):
        engine.step(other, known=one)
