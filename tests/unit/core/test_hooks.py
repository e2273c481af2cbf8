"""`engine.hooks`: what an observer (tracing) may add to new executions and around handler
calls, and that a broken observer never breaks a flow."""

from __future__ import annotations

from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    Execution,
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    MemoryStore,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.core.hooks import HandlerCall
from flowmonkey_celery.core.invoke import Invocation

calls: list[str] = []


@handler("count")
def count(params: HandlerParams) -> StepResult:
    calls.append(params.step.id)
    return Result.success({})


FLOWS = [
    {
        "id": "two",
        "initialStepId": "a",
        "steps": {
            "a": {"type": "count", "transitions": {"onSuccess": "b"}},
            "b": {"type": "count"},
        },
    },
    {
        "id": "parent",
        "initialStepId": "sub",
        "steps": {"sub": {"type": "subflow", "config": {"flow": "two"}}},
    },
]


@pytest.fixture
def engine() -> Engine:
    calls.clear()
    return Engine(MemoryStore(), HandlerRegistry([count]), FlowRegistry(FLOWS))


def test_wrappers_run_around_each_handler_call_first_registered_outermost(engine: Engine) -> None:
    seen: list[str] = []

    def outer(params: HandlerParams, call: HandlerCall) -> Invocation:
        seen.append(f"outer>{params.step.id}")
        invocation = call()
        seen.append(f"outer<{invocation.result.outcome}")
        return invocation

    def inner(params: HandlerParams, call: HandlerCall) -> Invocation:
        seen.append(f"inner>{params.attempt}")
        return call()

    engine.hooks.wrap_handler_calls(outer)
    remove_inner = engine.hooks.wrap_handler_calls(inner)
    engine.run(engine.create("two").execution.id)
    assert seen == [
        "outer>a",
        "inner>1",
        "outer<success",
        "outer>b",
        "inner>1",
        "outer<success",
    ]
    remove_inner()
    seen.clear()
    engine.run(engine.create("two").execution.id)
    assert seen == ["outer>a", "outer<success", "outer>b", "outer<success"]


@pytest.mark.parametrize("fails", ["before calling", "after calling"])
def test_a_failing_wrapper_leaves_each_handler_called_exactly_once(
    engine: Engine, fails: str
) -> None:
    def broken(params: HandlerParams, call: HandlerCall) -> Invocation:
        if fails == "after calling":
            call()
        raise RuntimeError("the tracing backend is down")

    engine.hooks.wrap_handler_calls(broken)
    done = engine.run(engine.create("two").execution.id)
    assert done.status is ExecutionStatus.COMPLETED
    assert calls == ["a", "b"]


def test_creation_callbacks_annotate_what_is_saved_and_see_a_childs_parent(engine: Engine) -> None:
    seen: list[tuple[str, str | None]] = []

    def tag(execution: Execution, parent: Execution | None) -> None:
        seen.append((execution.flow_id, parent.id if parent else None))
        execution.metadata["region"] = parent.metadata["region"] if parent else "eu-west"

    engine.hooks.on_creating(tag)
    parent_id = engine.create("parent").execution.id
    engine.run(parent_id)
    (child,) = engine.store.list_children(parent_id)
    assert seen == [("parent", None), ("two", parent_id)]
    assert engine.get(parent_id).metadata == {"region": "eu-west"}  # type: ignore[union-attr]
    assert child.metadata == {"region": "eu-west"}


def test_a_failing_creation_callback_never_stops_a_create(engine: Engine) -> None:
    def broken(execution: Execution, parent: Any) -> None:
        raise RuntimeError("boom")

    engine.hooks.on_creating(broken)
    created = engine.create("two")
    assert created.created
    assert engine.run(created.execution.id).status is ExecutionStatus.COMPLETED
