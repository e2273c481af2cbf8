"""Input selectors, exactly as the seed README's table describes them: key, keys, path,
template, full, static; handlers always get copies of what they select."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    Step,
    StepResult,
    handler,
)
from flowmonkey_celery.core.selectors import resolve_input

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)

CONTEXT: dict[str, Any] = {
    "user": {"name": "Ada", "address": {"city": "London"}, "vip": True},
    "order": {"id": 7, "total": 19.5, "items": [{"sku": "A-1"}, {"sku": "B-7"}]},
    "api": {"url": "https://api.example.com"},
    "note": None,
}


def select(selector: dict[str, Any], context: dict[str, Any] | None = None) -> Any:
    """Resolve a selector written as in a flow definition against `context`."""
    step = Step.model_validate({"id": "s", "type": "t", "input": selector})
    return resolve_input(step.input, CONTEXT if context is None else context)


# -- key / keys / path ----------------------------------------------------------------------------


def test_key_selects_one_top_level_key() -> None:
    assert select({"type": "key", "key": "user"}) == CONTEXT["user"]


def test_key_that_is_missing_gives_none() -> None:
    assert select({"type": "key", "key": "nobody"}) is None


def test_keys_selects_several_keys_and_leaves_out_missing_ones() -> None:
    selected = select({"type": "keys", "keys": ["user", "nobody", "note"]})

    assert selected == {"user": CONTEXT["user"], "note": None}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("user.address.city", "London"),
        ("order.items.1.sku", "B-7"),
        ("order.total", 19.5),
        ("user.address.country", None),
        ("order.items.5.sku", None),
    ],
)
def test_path_selects_by_dot_path_and_missing_gives_none(path: str, expected: Any) -> None:
    assert select({"type": "path", "path": path}) == expected


# -- template -------------------------------------------------------------------------------------


def test_template_interpolates_the_readme_example() -> None:
    selected = select({"type": "template", "template": {"url": "${api.url}"}})

    assert selected == {"url": "https://api.example.com"}


def test_template_interpolates_inside_nested_objects_and_lists() -> None:
    template = {
        "request": {
            "url": "${api.url}/orders/${order.id}",
            "headers": {"X-User": "${user.name}"},
        },
        "skus": ["${order.items.0.sku}", "${order.items.1.sku}", "fixed"],
    }

    assert select({"type": "template", "template": template}) == {
        "request": {
            "url": "https://api.example.com/orders/7",
            "headers": {"X-User": "Ada"},
        },
        "skus": ["A-1", "B-7", "fixed"],
    }


@pytest.mark.parametrize(
    ("placeholder", "expected"),
    [
        ("${order.id}", 7),
        ("${order.total}", 19.5),
        ("${user.vip}", True),
        ("${user.address}", {"city": "London"}),
        ("${order.items}", [{"sku": "A-1"}, {"sku": "B-7"}]),
        ("${note}", None),
        ("${user.age}", None),
    ],
)
def test_template_that_is_exactly_one_placeholder_keeps_the_value_type(
    placeholder: str, expected: Any
) -> None:
    selected = select({"type": "template", "template": {"value": placeholder}})

    assert selected == {"value": expected}
    assert type(selected["value"]) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hi ${user.nickname}!", "Hi !"),
        ("note: ${note}.", "note: ."),
        ("order ${order.id} of ${order.total}", "order 7 of 19.5"),
        ("vip=${user.vip}", "vip=true"),
        ("at ${user.address}", 'at {"city":"London"}'),
        ("items ${order.items}", 'items [{"sku":"A-1"},{"sku":"B-7"}]'),
    ],
)
def test_template_inside_a_longer_string_renders_missing_as_empty_and_others_as_json(
    template: str, expected: str
) -> None:
    assert select({"type": "template", "template": template}) == expected


def test_template_placeholder_may_have_whitespace_inside_the_braces() -> None:
    template = {"whole": "${ order.id }", "inside": "city: ${  user.address.city }"}

    assert select({"type": "template", "template": template}) == {
        "whole": 7,
        "inside": "city: London",
    }


def test_template_leaves_non_string_values_and_plain_strings_alone() -> None:
    template = {"n": 3, "ok": False, "nothing": None, "text": "no placeholders", "cost": "$5"}

    assert select({"type": "template", "template": template}) == template


# -- full / static / default ------------------------------------------------------------------


def test_full_selects_a_copy_of_the_whole_context() -> None:
    selected = select({"type": "full"})

    assert selected == CONTEXT
    assert selected is not CONTEXT


def test_static_selects_the_value_from_the_flow_definition() -> None:
    value = {"foo": "bar", "limits": [1, 2]}

    assert select({"type": "static", "value": value}) == value


def test_step_without_input_selects_the_full_context() -> None:
    step = Step.model_validate({"id": "s", "type": "t"})

    assert resolve_input(step.input, CONTEXT) == CONTEXT


# -- through the engine -----------------------------------------------------------------------


def echo_engine(selector: dict[str, Any] | None, step_type: str = "echo") -> Engine:
    """One-step flow `f` whose step stores whatever input it received at `received`."""
    step: dict[str, Any] = {"type": step_type, "outputKey": "received"}
    if selector is not None:
        step["input"] = selector
    flows = FlowRegistry([{"id": "f", "initialStepId": "a", "steps": {"a": step}}])
    return Engine(MemoryStore(), HandlerRegistry([echo, vandal]), flows, clock=ManualClock(START))


@handler("echo")
def echo(params: HandlerParams) -> StepResult:
    return Result.success({"input": params.input})


@handler("vandal")
def vandal(params: HandlerParams) -> StepResult:
    """Scribbles over the input it was given, nested levels included."""
    data = params.input
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, dict):
                value["scribbled"] = True
            elif isinstance(value, list):
                value.append("scribbled")
        data["scribbled"] = True
    elif isinstance(data, list):
        data.append("scribbled")
    return Result.success()


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"type": "key", "key": "user"}, CONTEXT["user"]),
        ({"type": "keys", "keys": ["api", "nobody"]}, {"api": CONTEXT["api"]}),
        ({"type": "path", "path": "order.items.0"}, {"sku": "A-1"}),
        (
            {"type": "template", "template": {"to": "${user.name}", "id": "${order.id}"}},
            {"to": "Ada", "id": 7},
        ),
        ({"type": "full"}, CONTEXT),
        ({"type": "static", "value": {"foo": "bar"}}, {"foo": "bar"}),
        (None, CONTEXT),
    ],
)
def test_selected_input_reaches_the_handler_in_an_engine_run(
    selector: dict[str, Any] | None, expected: Any
) -> None:
    engine = echo_engine(selector)
    execution = engine.create("f", copy.deepcopy(CONTEXT)).execution

    finished = engine.run(execution.id)

    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["received"] == {"input": expected}


@pytest.mark.parametrize(
    "selector",
    [
        {"type": "key", "key": "order"},
        {"type": "keys", "keys": ["user", "order"]},
        {"type": "path", "path": "order.items"},
        {"type": "template", "template": {"user": "${user}", "items": "${order.items}"}},
        {"type": "full"},
    ],
)
def test_handler_mutating_its_input_never_changes_the_stored_context(
    selector: dict[str, Any],
) -> None:
    engine = echo_engine(selector, step_type="vandal")
    execution = engine.create("f", copy.deepcopy(CONTEXT)).execution

    finished = engine.run(execution.id)

    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context == CONTEXT
    assert engine.get(execution.id).context == CONTEXT  # type: ignore[union-attr]


def test_handler_mutating_a_static_input_does_not_change_the_next_execution() -> None:
    received: list[Any] = []

    @handler("vandal")
    def record_then_scribble(params: HandlerParams) -> StepResult:
        received.append(copy.deepcopy(params.input))
        params.input["limits"]["max"] = 99
        params.input["tags"].append("scribbled")
        return Result.success()

    static = {"type": "static", "value": {"limits": {"max": 3}, "tags": ["a"]}}
    flows = FlowRegistry(
        [{"id": "f", "initialStepId": "a", "steps": {"a": {"type": "vandal", "input": static}}}]
    )
    engine = Engine(
        MemoryStore(), HandlerRegistry([record_then_scribble]), flows, clock=ManualClock(START)
    )

    for _ in range(2):
        engine.run(engine.create("f", {}).execution.id)

    assert received == [static["value"], static["value"]]


def test_invalid_template_placeholder_fails_the_step_with_input_error() -> None:
    engine = echo_engine({"type": "template", "template": {"x": "${}"}})
    execution = engine.create("f", {}).execution

    finished = engine.run(execution.id)

    assert finished.status is ExecutionStatus.FAILED
    assert finished.error is not None
    assert finished.error.code == ErrorCode.INPUT_ERROR.value
    assert "'a'" in finished.error.message
