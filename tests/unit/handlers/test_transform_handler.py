"""The built-in `transform` step: JMESPath and pick/omit/rename/set/map/jmespath operations,
run through an engine, plus its config checks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flowmonkey_celery import (
    EventType,
    ExecutionStatus,
    FlowRegistry,
    FlowValidationError,
    HandlerRegistry,
)
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.handlers.transform import (
    TRANSFORM_ERROR,
    TransformHandler,
    transform_config_issues,
)
from flowmonkey_celery.testing import TestHarness

ORDER: dict[str, Any] = {
    "order": {
        "id": "A-17",
        "customer": {"name": "Ada", "email": "ada@example.com", "internal_score": 7},
        "items": [
            {"sku": "pen", "price": 2, "qty": 3, "internal": {"bin": 4}},
            {"sku": "ink", "price": 5, "qty": 1, "internal": {"bin": 9}},
        ],
    },
    "debug": True,
}


def transform_flow(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "reshaping",
        "initialStepId": "reshape",
        "steps": {"reshape": {"type": "transform", "config": config, "outputKey": "out"}},
    }


def run(config: dict[str, Any], context: dict[str, Any] | None = None) -> Execution:
    harness = TestHarness(handlers=[TransformHandler()], flows=[transform_flow(config)])
    return harness.run("reshaping", copy.deepcopy(ORDER if context is None else context)).execution


def output(config: dict[str, Any], context: dict[str, Any] | None = None) -> Any:
    execution = run(config, context)
    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    return execution.context["out"]


def failure(config: dict[str, Any], context: dict[str, Any] | None = None) -> Any:
    execution = run(config, context)
    assert execution.error is not None, execution
    assert execution.error.code == TRANSFORM_ERROR
    return execution.error


# -- expression shorthand and the jmespath op ---------------------------------------------


def test_an_expression_alone_outputs_its_jmespath_result_over_the_input() -> None:
    assert output({"expression": "order.items[?price > `3`].sku"}) == ["ink"]


def test_jmespath_functions_are_available() -> None:
    config = {
        "expression": "{skus: join(', ', order.items[].sku), total: sum(order.items[].price), "
        "dearest: max_by(order.items, &price).sku, n: length(order.items)}"
    }
    assert output(config) == {"skus": "pen, ink", "total": 7, "dearest": "ink", "n": 2}


def test_a_jmespath_op_stores_its_result_at_a_nested_path() -> None:
    op = {"jmespath": {"path": "summary.skus", "expression": "order.items[].sku"}}
    out = output({"ops": [op]})
    assert out["summary"] == {"skus": ["pen", "ink"]}
    assert out["order"] == ORDER["order"]  # everything else kept


def test_a_jmespath_op_without_path_replaces_the_whole_value() -> None:
    ops = [{"jmespath": {"expression": "order.customer"}}, {"omit": ["internal_score"]}]
    assert output({"ops": ops}) == {"name": "Ada", "email": "ada@example.com"}


# -- pick / omit / rename / set -----------------------------------------------------------


def test_pick_keeps_only_the_given_nested_paths_and_skips_missing_ones() -> None:
    out = output({"ops": [{"pick": ["order.id", "order.customer.name", "order.nope", "debug"]}]})
    assert out == {"order": {"id": "A-17", "customer": {"name": "Ada"}}, "debug": True}


def test_omit_removes_nested_paths_and_ignores_missing_ones() -> None:
    out = output({"ops": [{"omit": ["debug", "order.customer.internal_score", "no.such.path"]}]})
    assert "debug" not in out
    assert out["order"]["customer"] == {"name": "Ada", "email": "ada@example.com"}
    assert out["order"]["items"] == ORDER["order"]["items"]


def test_rename_moves_values_between_nested_paths() -> None:
    out = output(
        {"ops": [{"rename": {"order.customer.email": "contact.email", "order.id": "ref"}}]}
    )
    assert out["contact"] == {"email": "ada@example.com"}
    assert out["ref"] == "A-17"
    assert "email" not in out["order"]["customer"]
    assert "id" not in out["order"]


def test_set_fills_templates_from_the_current_data_keeping_types() -> None:
    ops = [
        {"rename": {"order.customer.name": "name"}},
        {
            "set": {
                "greeting": "Hello ${name}, order ${order.id}",
                "copy_of_items": "${order.items}",
                "meta.source": "web",
                "meta.flags": [1, "${debug}"],
            }
        },
    ]
    out = output({"ops": ops})
    assert out["greeting"] == "Hello Ada, order A-17"  # sees the rename before it
    assert out["copy_of_items"] == ORDER["order"]["items"]  # a whole placeholder keeps the list
    assert out["meta"] == {"source": "web", "flags": [1, True]}


def test_ops_apply_in_order() -> None:
    ops = [
        {"pick": ["order.customer"]},
        {"rename": {"order.customer": "customer"}},
        {"omit": ["order", "customer.internal_score"]},
        {"set": {"label": "${customer.name} <${customer.email}>"}},
    ]
    assert output({"ops": ops}) == {
        "customer": {"name": "Ada", "email": "ada@example.com"},
        "label": "Ada <ada@example.com>",
    }


# -- map --------------------------------------------------------------------------------


def test_map_applies_nested_ops_to_every_item() -> None:
    ops = [
        {
            "map": {
                "path": "order.items",
                "ops": [
                    {"omit": ["internal"]},
                    {"jmespath": {"path": "price_text", "expression": "to_string(price)"}},
                    {"set": {"label": "${qty} x ${sku}"}},
                ],
            }
        }
    ]
    items = output({"ops": ops})["order"]["items"]
    assert items == [
        {"sku": "pen", "price": 2, "qty": 3, "price_text": "2", "label": "3 x pen"},
        {"sku": "ink", "price": 5, "qty": 1, "price_text": "5", "label": "1 x ink"},
    ]


def test_map_with_an_expression_per_item() -> None:
    ops = [{"map": {"path": "order.items", "expression": "{sku: sku, bin: internal.bin}"}}]
    assert output({"ops": ops})["order"]["items"] == [
        {"sku": "pen", "bin": 4},
        {"sku": "ink", "bin": 9},
    ]


def test_map_nests_inside_map_and_works_on_a_whole_list_without_a_path() -> None:
    context = {"groups": [{"members": [{"n": "a", "x": 1}]}, {"members": [{"n": "b", "x": 2}]}]}
    ops = [
        {"jmespath": {"expression": "groups"}},
        {"map": {"ops": [{"map": {"path": "members", "ops": [{"pick": ["n"]}]}}]}},
    ]
    assert output({"ops": ops}, context) == [{"members": [{"n": "a"}]}, {"members": [{"n": "b"}]}]


# -- the input is left alone ------------------------------------------------------------


def test_the_input_and_the_context_are_not_changed() -> None:
    ops = [
        {"omit": ["order.customer"]},
        {"rename": {"debug": "verbose"}},
        {"map": {"path": "order.items", "ops": [{"omit": ["internal"]}, {"set": {"x": 1}}]}},
    ]
    execution = run({"ops": ops})
    assert {k: v for k, v in execution.context.items() if k != "out"} == ORDER

    # Called directly too: the handler works on a copy of what it is given.
    given = copy.deepcopy(ORDER)
    harness = TestHarness(handlers=[TransformHandler()], flows=[transform_flow({"ops": ops})])
    harness.run("reshaping", given)
    assert given == ORDER


# -- runtime errors ---------------------------------------------------------------------


def test_pick_from_a_non_object_fails_naming_the_op() -> None:
    error = failure({"ops": [{"jmespath": {"expression": "order.items"}}, {"pick": ["sku"]}]})
    assert "ops.1.pick" in error.message
    assert "needs an object, got a list" in error.message
    assert error.details["op"] == "ops.1.pick"


def test_map_over_a_non_list_fails_naming_the_op_and_path() -> None:
    error = failure({"ops": [{"omit": ["debug"]}, {"map": {"path": "order.id", "ops": []}}]})
    assert "ops.1.map" in error.message
    assert "'order.id' must hold a list, found a string" in error.message
    assert error.details["path"] == "order.id"


def test_map_over_a_missing_path_fails() -> None:
    error = failure({"ops": [{"map": {"path": "order.lines", "expression": "sku"}}]})
    assert "'order.lines' must hold a list, found nothing" in error.message


def test_a_failure_inside_map_names_the_nested_op_and_the_item() -> None:
    context = {"rows": [{"a": 1}, 5]}
    error = failure({"ops": [{"map": {"path": "rows", "ops": [{"omit": ["a"]}]}}]}, context)
    assert "ops.0.map.ops.0.omit" in error.message
    assert "item 1" in error.message
    assert error.details["item"] == 1


def test_set_through_a_non_object_fails() -> None:
    error = failure({"ops": [{"set": {"order.id.suffix": "x"}}]})
    assert "ops.0.set" in error.message
    assert "'order.id' holds a str" in error.message


def test_a_jmespath_type_error_at_runtime_fails() -> None:
    error = failure({"expression": "abs(order.id)"})
    assert "expression" in error.message
    assert "abs(order.id)" in error.message


def test_transform_errors_are_not_retried() -> None:
    flow = transform_flow({"ops": [{"jmespath": {"expression": "debug"}}, {"pick": ["a"]}]})
    flow["steps"]["reshape"]["retry"] = {"maxAttempts": 3, "backoffMs": 10}
    harness = TestHarness(handlers=[TransformHandler()], flows=[flow])
    execution = harness.run("reshaping", copy.deepcopy(ORDER)).execution
    harness.assert_failed(execution, TRANSFORM_ERROR)
    started = [e for e in harness.history(execution) if e.type is EventType.STEP_STARTED]
    assert len(started) == 1


# -- config checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "path", "problem"),
    [
        ({"expression": "order.items[?"}, "expression", "invalid JMESPath"),
        ({"ops": [{"jmespath": {"expression": "a.", "path": "x"}}]}, "ops.0.jmespath.expression",
         "invalid JMESPath"),
        ({"ops": [{"pick": ["a"]}, {"map": {"path": "a", "ops": [
            {"jmespath": {"expression": "foo bar"}}]}}]},
         "ops.1.map.ops.0.jmespath.expression", "Unexpected token: bar"),
        ({"ops": [{"map": {"path": "a", "expression": "[?x==]"}}]}, "ops.0.map.expression",
         "invalid JMESPath"),
        ({"expression": "lenght(items)"}, "expression", "unknown function lenght()"),
        ({"expression": "length(a, b)"}, "expression", "length() takes 1 argument(s), got 2"),
        ({"expression": "merge()"}, "expression", "merge() takes at least 1 argument(s), got 0"),
    ],
)  # fmt: skip
def test_transform_config_issues_reports_bad_jmespath_by_path(
    config: dict[str, Any], path: str, problem: str
) -> None:
    issues = transform_config_issues(config)
    assert [p for p, _ in issues] == [path]
    assert problem in issues[0][1]


def test_valid_jmespath_has_no_issues() -> None:
    config = {
        "ops": [
            {"jmespath": {"expression": "not_null(a, b, `1`)"}},
            {"map": {"path": "xs", "expression": "sort_by(@, &n)[0]"}},
        ]
    }
    assert transform_config_issues(config) == []
    assert TransformHandler().config_issues(config) == []


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"expression": "a", "ops": []},
        {"ops": [{"pick": "a"}]},
        {"ops": [{"pick": ["a"], "omit": ["b"]}]},
        {"ops": [{"explode": ["a"]}]},
        {"ops": [{"rename": {"a": 1}}]},
        {"ops": [{"omit": ["a..b"]}]},
        {"ops": [{"map": {"path": "a"}}]},
        {"ops": [{"map": {"path": "a", "ops": [{"pick": []}]}}]},
        {"ops": [{"jmespath": {"path": "a"}}]},
        {"ops": [{"jmespath": {"expression": "a", "target": "b"}}]},
    ],
)
def test_a_config_the_schema_refuses_is_refused_at_registration(config: dict[str, Any]) -> None:
    flows = FlowRegistry(handlers=HandlerRegistry([TransformHandler()]))
    with pytest.raises(FlowValidationError) as caught:
        flows.register(transform_flow(config))
    assert caught.value.issues
    assert all(path.startswith("steps.reshape.config") for path, _ in caught.value.issues)
    assert "reshaping" not in flows


@pytest.mark.parametrize(
    ("ops", "path", "problem"),
    [
        ([{"jmespath": {"expression": "a[", "path": "b"}}], "ops.0.jmespath.expression",
         "invalid JMESPath 'a['"),
        ([{"pick": ["xs"]}, {"map": {"path": "xs", "expression": "avg()"}}],
         "ops.1.map.expression", "avg() takes 1 argument(s), got 0"),
    ],
)  # fmt: skip
def test_invalid_jmespath_is_refused_at_registration(
    ops: list[dict[str, Any]], path: str, problem: str
) -> None:
    flows = FlowRegistry(handlers=HandlerRegistry([TransformHandler()]))
    with pytest.raises(FlowValidationError) as caught:
        flows.register(transform_flow({"ops": ops}))
    [(where, message)] = caught.value.issues
    assert where == f"steps.reshape.config.{path}"
    assert problem in message
    assert "reshaping" not in flows
