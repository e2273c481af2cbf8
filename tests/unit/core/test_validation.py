"""Flow validation reports every problem, each with its snake_case path and a helpful message."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from flowmonkey_celery import ErrorCode, Flow, FlowMonkeyError, FlowValidationError


def _issues(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(FlowValidationError) as caught:
        Flow.from_dict(data)
    return caught.value.issues


def _flow(steps: Any, **fields: Any) -> dict[str, Any]:
    return {"id": "f", "initialStepId": "a", "steps": steps, **fields}


def _messages_at(issues: list[tuple[str, str]], path: str) -> list[str]:
    return [message for where, message in issues if where == path]


def _only(issues: list[tuple[str, str]], path: str) -> str:
    """The single message reported at `path` (fails if there is none or several)."""
    messages = _messages_at(issues, path)
    assert len(messages) == 1, f"expected one issue at {path!r}, got {issues}"
    return messages[0]


@pytest.mark.parametrize("steps", [None, {}, []], ids=["missing", "empty-object", "empty-list"])
def test_flow_without_steps_is_refused(steps: Any) -> None:
    data = _flow(steps)
    if steps is None:
        del data["steps"]

    assert "at least one step" in _only(_issues(data), "steps")


def test_unknown_initial_step_names_the_real_steps() -> None:
    message = _only(
        _issues(_flow({"first": {"type": "t"}, "second": {"type": "t"}})), "initial_step_id"
    )

    assert "'a'" in message
    assert "first, second" in message


def test_step_id_differing_from_its_key_is_refused() -> None:
    message = _only(_issues(_flow({"a": {"id": "b", "type": "t"}})), "steps.a.id")

    assert "'b'" in message and "'a'" in message


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("onSuccess", "steps.a.transitions.on_success"),
        ("onFailure", "steps.a.transitions.on_failure"),
        ("onResume", "steps.a.transitions.on_resume"),
        ("on_failure", "steps.a.transitions.on_failure"),
    ],
)
def test_transition_to_unknown_step_is_reported_at_its_snake_case_path(
    name: str, path: str
) -> None:
    issues = _issues(_flow({"a": {"type": "t", "transitions": {name: "nowhere"}}}))

    message = _only(issues, path)
    assert "'nowhere'" in message and "is not a step" in message


def test_unknown_selector_type_lists_the_known_types() -> None:
    message = _only(
        _issues(_flow({"a": {"type": "t", "input": {"type": "jsonpath"}}})), "steps.a.input"
    )

    assert "'jsonpath'" in message
    for known in ("key", "keys", "path", "template", "full", "static"):
        assert known in message


def test_selector_without_type_is_refused() -> None:
    message = _only(_issues(_flow({"a": {"type": "t", "input": {"key": "user"}}})), "steps.a.input")

    assert "needs a type" in message


def test_selector_missing_its_own_field_is_reported_at_that_field() -> None:
    issues = _issues(_flow({"a": {"type": "t", "input": {"type": "path"}}}))

    assert "missing" in _only(issues, "steps.a.input.path")


@pytest.mark.parametrize(
    ("step", "path", "suggestion"),
    [
        ({"type": "t", "outptKey": "x"}, "steps.a.outptKey", "outputKey"),
        ({"type": "t", "output_kee": "x"}, "steps.a.output_kee", "output_key"),
        ({"type": "t", "trasitions": {}}, "steps.a.trasitions", "transitions"),
        (
            {"type": "t", "transitions": {"onSucess": None}},
            "steps.a.transitions.onSucess",
            "onSuccess",
        ),
        (
            {"type": "t", "retry": {"max_attempt": 2}},
            "steps.a.retry.max_attempt",
            "max_attempts",
        ),
        ({"type": "t", "input": {"type": "path", "pth": "a.b"}}, "steps.a.input.pth", "path"),
        ({"type": "t", "input": {"type": "keys", "kyes": ["a"]}}, "steps.a.input.kyes", "keys"),
        ({"type": "t", "input": {"type": "keys", "key": ["a"]}}, "steps.a.input.key", "keys"),
    ],
    ids=[
        "camel",
        "snake",
        "step-field",
        "transition",
        "retry",
        "path-selector",
        "keys-selector",
        "keys-selector-singular",
    ],
)
def test_unknown_field_suggests_the_closest_known_one(
    step: dict[str, Any], path: str, suggestion: str
) -> None:
    message = _only(_issues(_flow({"a": step})), path)

    assert "unknown field" in message
    assert f"did you mean {suggestion!r}" in message


def test_unknown_flow_level_field_suggests_the_right_name() -> None:
    issues = _issues({"id": "f", "initalStepId": "a", "steps": {"a": {"type": "t"}}})

    assert "did you mean 'initialStepId'" in _only(issues, "initalStepId")
    assert "missing" in _only(issues, "initial_step_id")


def test_unknown_field_with_nothing_close_has_no_misleading_suggestion() -> None:
    message = _only(_issues(_flow({"a": {"type": "t", "zzzzqqq": 1}})), "steps.a.zzzzqqq")

    assert message == "unknown field"


@pytest.mark.parametrize("version", ["abc", "", "1.2.3.4", "1.0.0-"])
def test_invalid_version_string_is_refused(version: str) -> None:
    message = _only(_issues(_flow({"a": {"type": "t"}}, version=version)), "version")

    assert repr(version) in message
    assert "1.0.0" in message  # shows what a version looks like


@pytest.mark.parametrize("data", [None, [1, 2], "greeting", 42], ids=["none", "list", "str", "int"])
def test_non_dict_input_is_refused_with_a_message_naming_the_type(data: Any) -> None:
    with pytest.raises(FlowValidationError) as caught:
        Flow.from_dict(data)

    assert isinstance(caught.value, FlowMonkeyError)
    assert caught.value.code == ErrorCode.INVALID_FLOW == "INVALID_FLOW"
    assert type(data).__name__ in caught.value.message
    assert caught.value.issues == [("", "not an object")]
    assert "  - <flow>: not an object" in str(caught.value)


def test_steps_that_are_not_an_object_or_list_are_refused() -> None:
    assert "not str" in _only(_issues(_flow("a, b")), "steps")


def test_list_steps_need_unique_ids() -> None:
    issues = _issues(_flow([{"type": "t"}, {"id": "a", "type": "t"}, {"id": "a", "type": "t"}]))

    assert "needs an id" in _only(issues, "steps.0.id")
    assert "duplicate step id 'a'" in _only(issues, "steps.2.id")


def test_output_key_with_empty_segment_is_refused() -> None:
    assert "empty segment" in _only(
        _issues(_flow({"a": {"type": "t", "outputKey": "order..total"}})), "steps.a.output_key"
    )


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"retry": {"maxAttempts": -1}}, "steps.a.retry.max_attempts"),
        ({"retry": {"backoffMs": -5}}, "steps.a.retry.backoff_ms"),
        ({"retry": {"backoffMultiplier": 0.5}}, "steps.a.retry.backoff_multiplier"),
        ({"timeoutMs": 0}, "steps.a.timeout_ms"),
    ],
)
def test_out_of_range_retry_and_timeout_settings_are_refused(
    fields: dict[str, Any], path: str
) -> None:
    assert _messages_at(_issues(_flow({"a": {"type": "t", **fields}})), path)


# --- routing configs -----------------------------------------------------------------------------


def _conditional(*conditions: Any, **config: Any) -> dict[str, Any]:
    return _flow(
        {
            "a": {"type": "conditional", "config": {"conditions": list(conditions), **config}},
            "yes": {"type": "t"},
            "no": {"type": "t"},
        }
    )


def test_conditional_unknown_operator_lists_the_known_ones() -> None:
    issues = _issues(_conditional({"path": "x", "op": "equals", "value": 1, "target": "yes"}))

    message = _only(issues, "steps.a.config.conditions.0.op")
    assert "unknown operator 'equals'" in message
    assert "eq" in message and "matches" in message


def test_conditional_invalid_regex_is_reported_at_its_value() -> None:
    issues = _issues(
        _conditional({"path": "x", "op": "matches", "value": "([a-z", "target": "yes"})
    )

    assert "invalid regular expression" in _only(issues, "steps.a.config.conditions.0.value")


def test_conditional_target_naming_no_step_is_refused() -> None:
    issues = _issues(
        _conditional({"path": "x", "op": "eq", "value": 1, "target": "maybe"}, default="never")
    )

    assert "'maybe'" in _only(issues, "steps.a.config.conditions.0.target")
    assert "'never'" in _only(issues, "steps.a.config.default")


def test_conditional_null_target_is_allowed_because_it_ends_the_flow() -> None:
    flow = Flow.from_dict(_conditional({"path": "x", "op": "exists", "target": None}, default="no"))

    assert flow.steps["a"].config["conditions"][0]["target"] is None


def test_conditional_condition_without_target_is_refused() -> None:
    issues = _issues(_conditional({"path": "x", "op": "eq", "value": 1}))

    assert "missing target" in _only(issues, "steps.a.config.conditions.0.target")


@pytest.mark.parametrize("config", [{}, {"conditions": []}], ids=["absent", "empty"])
def test_conditional_without_conditions_is_refused(config: dict[str, Any]) -> None:
    issues = _issues(_flow({"a": {"type": "conditional", "config": config}}))

    assert "non-empty list" in _only(issues, "steps.a.config.conditions")


def test_nested_condition_problems_have_nested_paths() -> None:
    issues = _issues(
        _conditional(
            {
                "all": [
                    {"path": "x", "op": "eq", "value": 1},
                    {"any": [{"path": "y", "op": "bogus"}]},
                ],
                "target": "yes",
            },
            {"not": {"path": "z", "op": "matches", "value": "["}, "target": "no"},
        )
    )

    assert "'bogus'" in _only(issues, "steps.a.config.conditions.0.all.1.any.0.op")
    assert "regular expression" in _only(issues, "steps.a.config.conditions.1.not.value")


def test_switch_without_cases_is_refused() -> None:
    issues = _issues(_flow({"a": {"type": "switch", "config": {"path": "status"}}}))

    assert "non-empty" in _only(issues, "steps.a.config.cases")


def test_switch_case_and_default_targets_must_be_steps() -> None:
    issues = _issues(
        _flow(
            {
                "a": {
                    "type": "switch",
                    "config": {
                        "path": "status",
                        "cases": {"ok": "a", "bad": "ghost"},
                        "default": "x",
                    },
                }
            }
        )
    )

    assert "'ghost'" in _only(issues, "steps.a.config.cases.bad")
    assert "'x'" in _only(issues, "steps.a.config.default")
    assert _messages_at(issues, "steps.a.config.cases.ok") == []


# --- all problems at once ------------------------------------------------------------------------


def test_a_flow_with_many_problems_reports_every_one_of_them() -> None:
    data = {
        "id": "broken",
        "version": "one",  # 1: invalid version
        "initialStepId": "start",  # 2: no such step
        "steps": {
            "a": {
                "id": "b",  # 3: id differs from key
                "type": "t",
                "input": {"type": "bogus"},  # 4: unknown selector type
                "outptKey": "x",  # 5: unknown field
                "transitions": {"onSuccess": "nowhere"},  # 6: unknown target
            },
            "c": {
                "type": "conditional",
                "config": {
                    "conditions": [
                        {"path": "x", "op": "nope", "target": "a"},  # 7: unknown op
                        {"path": "y", "op": "matches", "value": "(", "target": "zz"},  # 8, 9
                    ]
                },
            },
            "d": {"type": "switch", "config": {"path": "s"}},  # 10: no cases
            "e": {},  # 11: no type
        },
    }

    with pytest.raises(FlowValidationError) as caught:
        Flow.from_dict(data)

    paths = sorted(path for path, _ in caught.value.issues)
    assert paths == sorted(
        [
            "version",
            "initial_step_id",
            "steps.a.id",
            "steps.a.input",
            "steps.a.outptKey",
            "steps.a.transitions.on_success",
            "steps.c.config.conditions.0.op",
            "steps.c.config.conditions.1.value",
            "steps.c.config.conditions.1.target",
            "steps.d.config.cases",
            "steps.e.type",
        ]
    )
    assert "(11 problems)" in caught.value.message
    assert "'broken'" in caught.value.message


def test_routing_problems_are_reported_even_when_the_step_has_other_problems() -> None:
    issues = _issues(
        _flow(
            {
                "a": {
                    "type": "conditional",
                    "outptKey": "route",  # a typo elsewhere in the same step
                    "config": {"conditions": [{"path": "x", "op": "nope", "target": "ghost"}]},
                }
            }
        )
    )

    assert _messages_at(issues, "steps.a.outptKey")
    assert _messages_at(issues, "steps.a.config.conditions.0.op")
    assert _messages_at(issues, "steps.a.config.conditions.0.target")


def test_str_of_the_error_lists_every_issue_with_its_path() -> None:
    with pytest.raises(FlowValidationError) as caught:
        Flow.from_dict(
            _flow(
                {"a": {"type": "t", "transitions": {"onSuccess": "x", "onFailure": "y"}}},
                version="?",
            )
        )

    text = str(caught.value)
    lines = text.splitlines()
    assert lines[0].startswith("[INVALID_FLOW] flow 'f' is invalid (3 problems)")
    assert "  - steps.a.transitions.on_success: 'x' is not a step" in text
    assert "  - steps.a.transitions.on_failure: 'y' is not a step" in text
    assert "  - version: '?' is not a version" in text
    assert len(lines) == 4


def test_issues_are_also_in_details_and_survive_pickling() -> None:
    with pytest.raises(FlowValidationError) as caught:
        Flow.from_dict(_flow({"a": {"type": "t", "transitions": {"onSuccess": "x"}}}))
    error = caught.value

    assert error.details["issues"] == [
        {"path": path, "message": message} for path, message in error.issues
    ]
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is FlowValidationError
    assert (copy.code, copy.message, copy.issues) == (error.code, error.message, error.issues)
