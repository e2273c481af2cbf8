"""What happens after a step: transitions, overrides, outputs, errors, loop guard, async and
per-step timeouts, and what a handler is given."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    Execution,
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

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


class Visits:
    """A `visit` handler that succeeds and remembers the steps it ran, in order."""

    type = "visit"

    def __init__(self) -> None:
        self.steps: list[str] = []

    def execute(self, params: HandlerParams) -> StepResult:
        self.steps.append(params.step.id)
        return Result.success({"visited": params.step.id})


@handler("decline")
def decline(params: HandlerParams) -> StepResult:
    return Result.failure("DECLINED", "card declined", {"amount": 5})


def make_engine(
    steps: dict[str, Any],
    *handlers: Any,
    initial: str = "a",
    clock: ManualClock | None = None,
    **options: Any,
) -> Engine:
    flows = FlowRegistry([{"id": "f", "initialStepId": initial, "steps": steps}])
    return Engine(
        MemoryStore(),
        HandlerRegistry(handlers),
        flows,
        clock=clock or ManualClock(START),
        **options,
    )


def run_flow(engine: Engine, context: dict[str, Any] | None = None) -> Execution:
    execution_id = engine.create("f", context or {}).execution.id
    return engine.run(execution_id)


def step_returning(result: StepResult | Any, step_type: str = "custom") -> Any:
    @handler(step_type)
    def returns(params: HandlerParams) -> Any:
        return result

    return returns


# -- on_success / on_failure -------------------------------------------------------------------


def test_on_success_chain_runs_steps_in_order_and_completes() -> None:
    visits = Visits()
    steps = {
        "a": {"type": "visit", "transitions": {"onSuccess": "c"}},
        "b": {"type": "visit"},
        "c": {"type": "visit", "transitions": {"onSuccess": "b"}},
    }
    engine = make_engine(steps, visits)

    execution = run_flow(engine)

    assert visits.steps == ["a", "c", "b"]
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.error is None


def test_failure_follows_on_failure_and_the_flow_can_still_complete() -> None:
    visits = Visits()
    steps = {
        "a": {"type": "decline", "transitions": {"onSuccess": "ship", "onFailure": "refund"}},
        "ship": {"type": "visit"},
        "refund": {"type": "visit"},
    }
    engine = make_engine(steps, visits, decline)

    execution = run_flow(engine)

    assert visits.steps == ["refund"]
    assert execution.status is ExecutionStatus.COMPLETED


def test_failure_without_on_failure_fails_the_execution() -> None:
    visits = Visits()
    steps = {"a": {"type": "decline", "transitions": {"onSuccess": "b"}}, "b": {"type": "visit"}}
    engine = make_engine(steps, visits, decline)

    execution = run_flow(engine)

    assert visits.steps == []
    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == "DECLINED"


# -- routing overrides -------------------------------------------------------------------------


def test_success_with_next_step_overrides_on_success() -> None:
    visits = Visits()
    steps = {
        "a": {"type": "custom", "transitions": {"onSuccess": "b"}},
        "b": {"type": "visit"},
        "c": {"type": "visit"},
    }
    engine = make_engine(steps, visits, step_returning(Result.success(None, next_step="c")))

    execution = run_flow(engine)

    assert visits.steps == ["c"]
    assert execution.status is ExecutionStatus.COMPLETED


def test_success_with_next_step_none_ends_the_flow_early() -> None:
    visits = Visits()
    steps = {"a": {"type": "custom", "transitions": {"onSuccess": "b"}}, "b": {"type": "visit"}}
    engine = make_engine(steps, visits, step_returning(Result.success({"x": 1}, next_step=None)))

    execution = run_flow(engine)

    assert visits.steps == []
    assert execution.status is ExecutionStatus.COMPLETED


def test_failure_with_next_step_routes_even_without_on_failure() -> None:
    visits = Visits()
    steps = {"a": {"type": "custom"}, "recover": {"type": "visit"}}
    failing = step_returning(Result.failure("DECLINED", "card declined", next_step="recover"))
    engine = make_engine(steps, visits, failing)

    execution = run_flow(engine)

    assert visits.steps == ["recover"]
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context["_error"]["code"] == "DECLINED"


def test_failure_with_next_step_none_fails_despite_on_failure() -> None:
    visits = Visits()
    steps = {"a": {"type": "custom", "transitions": {"onFailure": "b"}}, "b": {"type": "visit"}}
    engine = make_engine(
        steps, visits, step_returning(Result.failure("FATAL", "no", next_step=None))
    )

    execution = run_flow(engine)

    assert visits.steps == []
    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == "FATAL"


@pytest.mark.parametrize(
    "result",
    [Result.success({"x": 1}, next_step="nowhere"), Result.failure("E", "m", next_step="nowhere")],
    ids=["success", "failure"],
)
def test_override_to_an_unknown_step_fails_with_invalid_transition(result: StepResult) -> None:
    engine = make_engine({"a": {"type": "custom"}}, step_returning(result))

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == ErrorCode.INVALID_TRANSITION
    assert execution.error.step_id == "a"
    assert "nowhere" in execution.error.message


# -- outputs -----------------------------------------------------------------------------------


def test_output_key_dot_path_creates_intermediate_objects() -> None:
    engine = make_engine(
        {"a": {"type": "custom", "outputKey": "order.payment.receipt"}},
        step_returning(Result.success({"id": "r-1"})),
    )

    execution = run_flow(engine, {"order": {"id": 7}})

    assert execution.context == {"order": {"id": 7, "payment": {"receipt": {"id": "r-1"}}}}


def test_output_none_is_not_stored() -> None:
    engine = make_engine(
        {"a": {"type": "custom", "outputKey": "result"}}, step_returning(Result.success(None))
    )

    execution = run_flow(engine, {"keep": 1})

    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context == {"keep": 1}


def test_output_without_output_key_leaves_the_context_alone() -> None:
    engine = make_engine({"a": {"type": "custom"}}, step_returning(Result.success({"x": 1})))

    execution = run_flow(engine, {"keep": 1})

    assert execution.context == {"keep": 1}


def test_output_key_through_a_non_object_fails_the_execution_instead_of_raising() -> None:
    engine = make_engine(
        {"a": {"type": "custom", "outputKey": "user.name"}}, step_returning(Result.success("Ann"))
    )
    execution_id = engine.create("f", {"user": "ann"}).execution.id

    execution = engine.run(execution_id)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.step_id == "a"
    assert execution.context["user"] == "ann"


class Receipt(pydantic.BaseModel):
    id: str
    issued: datetime


@dataclasses.dataclass
class Parcel:
    weight: float
    tags: list[str]


@pytest.mark.parametrize(
    ("output", "stored"),
    [
        (Receipt(id="r-1", issued=START), {"id": "r-1", "issued": "2024-05-01T09:30:00Z"}),
        (Parcel(weight=1.5, tags=["fragile"]), {"weight": 1.5, "tags": ["fragile"]}),
        (START, "2024-05-01T09:30:00+00:00"),
        ({"when": START, "pair": (1, 2)}, {"when": "2024-05-01T09:30:00+00:00", "pair": [1, 2]}),
    ],
    ids=["pydantic", "dataclass", "datetime", "nested"],
)
def test_outputs_are_stored_as_plain_json(output: Any, stored: Any) -> None:
    engine = make_engine(
        {"a": {"type": "custom", "outputKey": "out"}}, step_returning(Result.success(output))
    )

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context["out"] == stored


@pytest.mark.parametrize("output", [object(), {"ratio": float("inf")}], ids=["object", "inf"])
def test_output_that_is_not_json_fails_with_handler_error(output: Any) -> None:
    engine = make_engine(
        {"a": {"type": "custom", "outputKey": "out"}}, step_returning(Result.success(output))
    )

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == ErrorCode.HANDLER_ERROR
    assert "'a'" in execution.error.message
    assert "out" not in execution.context


# -- handler errors ----------------------------------------------------------------------------


@handler("charge")
def charge_raises(params: HandlerParams) -> StepResult:
    raise KeyError("card_number")


def test_handler_raising_fails_with_handler_error_naming_type_step_and_exception() -> None:
    engine = make_engine({"pay": {"type": "charge"}}, charge_raises, initial="pay")

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == ErrorCode.HANDLER_ERROR
    assert execution.error.step_id == "pay"
    for fragment in ("charge", "pay", "KeyError", "card_number"):
        assert fragment in execution.error.message


def test_handler_raising_is_routed_to_on_failure() -> None:
    visits = Visits()
    steps = {
        "pay": {"type": "charge", "transitions": {"onFailure": "alert"}},
        "alert": {"type": "visit"},
    }
    engine = make_engine(steps, charge_raises, visits, initial="pay")

    execution = run_flow(engine)

    assert visits.steps == ["alert"]
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context["_error"]["code"] == ErrorCode.HANDLER_ERROR
    assert execution.context["_error"]["step_id"] == "pay"


def test_handler_raising_a_builtin_timeout_error_is_a_handler_error() -> None:
    # socket.timeout is TimeoutError: a network call timing out inside a handler (no step
    # timeout_ms set) is the handler's error, not a timeout the engine enforced.
    @handler("fetch")
    def fetch(params: HandlerParams) -> StepResult:
        raise TimeoutError("connect timed out")

    engine = make_engine({"a": {"type": "fetch"}}, fetch)

    execution = run_flow(engine)

    assert execution.error is not None
    assert execution.error.code == ErrorCode.HANDLER_ERROR
    assert "TimeoutError" in execution.error.message
    assert "connect timed out" in execution.error.message


@pytest.mark.parametrize("returned", [None, {"ok": True}], ids=["none", "dict"])
def test_handler_returning_a_non_step_result_fails_with_handler_error(returned: Any) -> None:
    engine = make_engine({"a": {"type": "custom"}}, step_returning(returned))

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == ErrorCode.HANDLER_ERROR
    assert type(returned).__name__ in execution.error.message


def test_routed_failure_leaves_the_error_in_the_context() -> None:
    seen: list[Any] = []

    @handler("inspect")
    def inspect_error(params: HandlerParams) -> StepResult:
        seen.append(params.input)
        return Result.success()

    steps = {
        "a": {"type": "decline", "transitions": {"onFailure": "b"}},
        "b": {"type": "inspect", "input": {"type": "key", "key": "_error"}},
    }
    engine = make_engine(steps, decline, inspect_error)

    execution = run_flow(engine)

    expected = {
        "code": "DECLINED",
        "message": "card declined",
        "step_id": "a",
        "details": {"amount": 5},
    }
    assert execution.context["_error"] == expected
    assert seen == [expected]


def test_fatal_failure_sets_execution_error() -> None:
    engine = make_engine({"a": {"type": "decline"}}, decline)

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.model_dump() == {
        "code": "DECLINED",
        "message": "card declined",
        "step_id": "a",
        "details": {"amount": 5},
    }
    assert "_error" not in execution.context


def test_failure_accepts_a_code_and_message_dict() -> None:
    failing = step_returning(Result.failure({"code": "OUT_OF_STOCK", "message": "sku 9 sold out"}))
    engine = make_engine({"a": {"type": "custom"}}, failing)

    execution = run_flow(engine)

    assert execution.error is not None
    assert execution.error.code == "OUT_OF_STOCK"
    assert execution.error.message == "sku 9 sold out"


# -- max_steps ---------------------------------------------------------------------------------


def test_flow_looping_forever_fails_with_max_steps() -> None:
    visits = Visits()
    engine = make_engine(
        {"a": {"type": "visit", "transitions": {"onSuccess": "a"}}}, visits, max_steps=5
    )

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == ErrorCode.MAX_STEPS
    assert execution.step_count == 5
    assert len(visits.steps) == 5


def test_flow_needing_exactly_max_steps_completes() -> None:
    visits = Visits()
    steps = {
        "a": {"type": "visit", "transitions": {"onSuccess": "b"}},
        "b": {"type": "visit", "transitions": {"onSuccess": "c"}},
        "c": {"type": "visit"},
    }
    engine = make_engine(steps, visits, max_steps=3)

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.step_count == 3


# -- async handlers and per-step timeouts ------------------------------------------------------


def test_async_handler_is_awaited() -> None:
    @handler("lookup")
    async def lookup(params: HandlerParams) -> StepResult:
        await asyncio.sleep(0)
        return Result.success({"found": params.input["sku"]})

    engine = make_engine({"a": {"type": "lookup", "outputKey": "item"}}, lookup)

    execution = run_flow(engine, {"sku": "X-1"})

    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context["item"] == {"found": "X-1"}


def test_async_handler_raising_fails_with_handler_error() -> None:
    @handler("lookup")
    async def lookup(params: HandlerParams) -> StepResult:
        raise LookupError("sku missing")

    engine = make_engine({"a": {"type": "lookup"}}, lookup)

    execution = run_flow(engine)

    assert execution.error is not None
    assert execution.error.code == ErrorCode.HANDLER_ERROR
    assert "sku missing" in execution.error.message


@handler("hang")
async def hang(params: HandlerParams) -> StepResult:
    await asyncio.Event().wait()  # never set: only the step's timeout ends this
    return Result.success({"late": True})


def test_async_handler_past_timeout_ms_is_cancelled_with_handler_timeout() -> None:
    engine = make_engine({"a": {"type": "hang", "outputKey": "out", "timeoutMs": 20}}, hang)

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == ErrorCode.HANDLER_TIMEOUT
    assert execution.error.step_id == "a"
    assert "out" not in execution.context


@handler("grind")
def grind(params: HandlerParams) -> StepResult:
    deadline = time.perf_counter() + 0.02  # busy for 20 ms: the overrun under test
    while time.perf_counter() < deadline:
        pass
    return Result.success({"late": True})


def test_sync_handler_overrunning_timeout_ms_fails_with_handler_timeout() -> None:
    engine = make_engine({"a": {"type": "grind", "outputKey": "out", "timeoutMs": 5}}, grind)

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == ErrorCode.HANDLER_TIMEOUT
    assert "out" not in execution.context


@pytest.mark.parametrize(
    ("step_type", "timeout_ms"), [("hang", 20), ("grind", 5)], ids=["async", "sync"]
)
def test_handler_timeout_is_routed_to_on_failure(step_type: str, timeout_ms: int) -> None:
    visits = Visits()
    steps = {
        "a": {"type": step_type, "timeoutMs": timeout_ms, "transitions": {"onFailure": "b"}},
        "b": {"type": "visit"},
    }
    engine = make_engine(steps, hang, grind, visits)

    execution = run_flow(engine)

    assert visits.steps == ["b"]
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context["_error"]["code"] == ErrorCode.HANDLER_TIMEOUT


def test_fast_handler_within_timeout_ms_succeeds() -> None:
    engine = make_engine(
        {"a": {"type": "custom", "outputKey": "out", "timeoutMs": 5000}},
        step_returning(Result.success({"ok": True})),
    )

    execution = run_flow(engine)

    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context["out"] == {"ok": True}


# -- HandlerParams -----------------------------------------------------------------------------


class Capture:
    """A `capture` handler that keeps the params of each call."""

    type = "capture"

    def __init__(self) -> None:
        self.params: list[HandlerParams] = []

    def execute(self, params: HandlerParams) -> StepResult:
        self.params.append(params)
        return Result.success()


def capture_run(context: dict[str, Any]) -> tuple[Engine, Execution, HandlerParams]:
    capture = Capture()
    steps = {
        "a": {
            "type": "capture",
            "config": {"currency": "EUR", "limit": 3},
            "input": {"type": "path", "path": "order.id"},
        }
    }
    engine = make_engine(steps, capture)
    execution = run_flow(engine, context)
    return engine, execution, capture.params[0]


def test_handler_params_first_call_is_attempt_one_with_stable_step_key() -> None:
    _, execution, params = capture_run({"order": {"id": 7}})

    assert params.attempt == 1
    assert params.step_key == f"{execution.id}:a:1"


def test_handler_params_input_is_the_resolved_selector() -> None:
    _, _, params = capture_run({"order": {"id": 7}})

    assert params.input == 7


def test_handler_params_clock_is_the_engines_clock() -> None:
    engine, _, params = capture_run({})

    assert params.clock is engine.clock
    assert params.clock.now() == START


def test_handler_params_context_is_read_only() -> None:
    _, _, params = capture_run({"order": {"id": 7}})

    assert params.context["order"] == {"id": 7}
    with pytest.raises(TypeError):
        params.context["order"] = {"id": 8}  # type: ignore[index]


def test_handler_params_execution_is_a_snapshot_of_the_running_execution() -> None:
    engine, execution, params = capture_run({"order": {"id": 7}})

    assert params.execution.id == execution.id
    assert params.execution.flow_id == "f"
    assert params.execution.current_step_id == "a"
    assert params.execution.status is ExecutionStatus.RUNNING
    params.execution.context["order"]["id"] = 99
    assert engine.get(execution.id).context == {"order": {"id": 7}}  # type: ignore[union-attr]


def test_handler_params_config_is_the_step_config() -> None:
    _, _, params = capture_run({})

    assert params.config == {"currency": "EUR", "limit": 3}
    assert params.config == params.step.config
    assert params.step.id == "a"
