"""The flow definition model: FlowMonkey JSON loads unchanged, snake_case works, round-trips."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from flowmonkey_celery import Flow, RetryPolicy, Transitions
from flowmonkey_celery.core.flow import (
    FullSelector,
    KeySelector,
    KeysSelector,
    PathSelector,
    StaticSelector,
    TemplateSelector,
)

# The seed README's "Basic Example" flow, verbatim (TypeScript object -> Python dict).
GREETING_FLOW: dict[str, Any] = {
    "id": "greeting",
    "version": "1.0.0",
    "name": "Greeting Flow",
    "initialStepId": "say-hello",
    "steps": {
        "say-hello": {
            "id": "say-hello",
            "type": "greet",
            "config": {},
            "input": {"type": "key", "key": "user"},
            "outputKey": "greeting",
            "transitions": {"onSuccess": None},  # null = complete
        },
    },
}

# The seed README's "Flows" section (orderFlow), verbatim.
ORDER_FLOW: dict[str, Any] = {
    "id": "process-order",
    "version": "1.0.0",
    "initialStepId": "validate",
    "steps": {
        "validate": {
            "id": "validate",
            "type": "validate-order",
            "config": {},
            "input": {"type": "key", "key": "order"},
            "outputKey": "validated",
            "transitions": {
                "onSuccess": "charge-payment",
                "onFailure": "notify-invalid",
            },
        },
        "charge-payment": {
            "id": "charge-payment",
            "type": "http",
            "config": {},
            "input": {
                "type": "template",
                "template": {
                    "url": "https://api.stripe.com/v1/charges",
                    "method": "POST",
                    "body": {"amount": "${validated.total}"},
                },
            },
            "outputKey": "payment",
            "transitions": {"onSuccess": "send-confirmation"},
        },
        "send-confirmation": {
            "id": "send-confirmation",
            "type": "email",
            "config": {},
            "input": {"type": "full"},  # entire context
            "transitions": {"onSuccess": None},
        },
        "notify-invalid": {
            "id": "notify-invalid",
            "type": "log",
            "config": {},
            "input": {"type": "static", "value": {"error": "Invalid order"}},
            "transitions": {"onSuccess": None},
        },
    },
}


def _one_step_flow(step: dict[str, Any], **flow_fields: Any) -> Flow:
    return Flow.from_dict({"id": "f", "initialStepId": "s", "steps": {"s": step}, **flow_fields})


def test_readme_greeting_flow_loads_unchanged() -> None:
    flow = Flow.from_dict(copy.deepcopy(GREETING_FLOW))

    assert (flow.id, flow.version, flow.name) == ("greeting", "1.0.0", "Greeting Flow")
    assert flow.initial_step_id == "say-hello"
    step = flow.steps["say-hello"]
    assert step.type == "greet"
    assert step.input == KeySelector(key="user")
    assert step.output_key == "greeting"
    assert step.transitions.on_success is None


def test_readme_order_flow_loads_with_every_transition_and_selector() -> None:
    flow = Flow.from_dict(copy.deepcopy(ORDER_FLOW))

    assert list(flow.steps) == ["validate", "charge-payment", "send-confirmation", "notify-invalid"]
    validate = flow.steps["validate"]
    assert validate.transitions.on_success == "charge-payment"
    assert validate.transitions.on_failure == "notify-invalid"
    charge = flow.steps["charge-payment"]
    assert isinstance(charge.input, TemplateSelector)
    assert charge.input.template["body"] == {"amount": "${validated.total}"}
    assert charge.output_key == "payment"
    assert isinstance(flow.steps["send-confirmation"].input, FullSelector)
    assert flow.steps["notify-invalid"].input == StaticSelector(value={"error": "Invalid order"})


@pytest.mark.parametrize("data", [GREETING_FLOW, ORDER_FLOW], ids=["greeting", "order"])
def test_readme_flows_round_trip_to_the_same_json(data: dict[str, Any]) -> None:
    flow = Flow.from_dict(copy.deepcopy(data))

    assert flow.to_dict() == data
    assert Flow.from_dict(flow.to_dict()) == flow


def test_snake_case_flow_loads_like_camel_case() -> None:
    snake = {
        "id": "greeting",
        "version": "1.0.0",
        "name": "Greeting Flow",
        "initial_step_id": "say-hello",
        "steps": {
            "say-hello": {
                "id": "say-hello",
                "type": "greet",
                "config": {},
                "input": {"type": "key", "key": "user"},
                "output_key": "greeting",
                "transitions": {"on_success": None},
            },
        },
    }

    assert Flow.from_dict(snake) == Flow.from_dict(copy.deepcopy(GREETING_FLOW))


def test_to_dict_writes_camel_case_even_for_snake_case_input() -> None:
    flow = _one_step_flow(
        {"type": "t", "output_key": "out.value", "timeout_ms": 500, "retry": {"max_attempts": 1}}
    )

    step = flow.to_dict()["steps"]["s"]
    assert step["outputKey"] == "out.value"
    assert step["timeoutMs"] == 500
    assert step["retry"] == {"maxAttempts": 1}
    assert "output_key" not in step


def test_explicit_on_resume_null_survives_a_round_trip() -> None:
    flow = _one_step_flow({"type": "t", "transitions": {"onResume": None}})

    assert flow.to_dict()["steps"]["s"]["transitions"] == {"onResume": None}
    reloaded = Flow.from_dict(flow.to_dict())
    assert reloaded.steps["s"].transitions.resume_target() is None
    assert "on_resume" in reloaded.steps["s"].transitions.model_fields_set


def test_absent_on_resume_stays_absent_after_a_round_trip() -> None:
    flow = _one_step_flow({"type": "t", "transitions": {"onSuccess": None}})

    assert flow.to_dict()["steps"]["s"]["transitions"] == {"onSuccess": None}
    assert "onResume" not in Flow.from_dict(flow.to_dict()).to_dict()["steps"]["s"]["transitions"]


def test_a_flow_object_passed_back_to_from_dict_keeps_explicit_on_resume_null() -> None:
    flow = _one_step_flow({"type": "t", "transitions": {"onResume": None}})

    again = Flow.from_dict(flow)

    assert again.to_dict() == flow.to_dict()


@pytest.mark.parametrize(
    ("transitions", "expected"),
    [
        ({"on_success": "next"}, "next"),  # on_resume never given: on_success applies
        ({"on_success": "next", "on_resume": "after-wait"}, "after-wait"),
        ({"on_success": "next", "on_resume": None}, None),  # explicit null completes
        ({}, None),
    ],
)
def test_resume_target_follows_on_resume_else_on_success(
    transitions: dict[str, Any], expected: str | None
) -> None:
    assert Transitions.model_validate(transitions).resume_target() == expected


def test_step_id_defaults_to_its_key() -> None:
    flow = Flow.from_dict(
        {"id": "f", "initialStepId": "first", "steps": {"first": {"type": "t"}, "x": {"type": "t"}}}
    )

    assert flow.steps["first"].id == "first"
    assert flow.steps["x"].id == "x"


def test_steps_may_be_given_as_a_list_with_ids() -> None:
    flow = Flow.from_dict(
        {
            "id": "f",
            "initial_step_id": "a",
            "steps": [
                {"id": "a", "type": "t", "transitions": {"on_success": "b"}},
                {"id": "b", "type": "t"},
            ],
        }
    )

    assert list(flow.steps) == ["a", "b"]
    assert flow.steps["a"].transitions.on_success == "b"
    assert flow.step("b") is flow.steps["b"]
    assert flow.step("missing") is None


def test_minimal_step_gets_documented_defaults() -> None:
    flow = _one_step_flow({"type": "t"})

    assert flow.version == "1.0.0"
    step = flow.steps["s"]
    assert step.input == FullSelector()  # default selector: the whole context
    assert step.config == {}
    assert step.output_key is None
    assert step.transitions == Transitions(on_success=None, on_failure=None, on_resume=None)
    assert step.retry is None
    assert step.timeout_ms is None


def test_empty_retry_block_gets_flowmonkey_defaults() -> None:
    retry = _one_step_flow({"type": "t", "retry": {}}).steps["s"].retry

    assert retry == RetryPolicy(
        max_attempts=3,
        backoff_ms=1000,
        backoff_multiplier=2.0,
        max_backoff_ms=None,
        retry_on=None,
        jitter=False,
    )


def test_retry_policy_accepts_camel_case_keys() -> None:
    retry = (
        _one_step_flow(
            {
                "type": "t",
                "retry": {
                    "maxAttempts": 5,
                    "backoffMs": 200,
                    "backoffMultiplier": 3,
                    "maxBackoffMs": 1500,
                    "retryOn": ["HTTP_ERROR"],
                    "jitter": 0.25,
                },
            }
        )
        .steps["s"]
        .retry
    )

    assert retry is not None
    assert (retry.max_attempts, retry.backoff_ms, retry.backoff_multiplier) == (5, 200, 3.0)
    assert retry.max_backoff_ms == 1500
    assert retry.retry_on == ["HTTP_ERROR"]
    assert retry.jitter_fraction() == 0.25


@pytest.mark.parametrize(
    ("jitter", "fraction"), [(False, 0.0), (True, 0.5), (0.2, 0.2), (1.0, 1.0)]
)
def test_retry_jitter_true_means_half_and_a_number_is_a_fraction(
    jitter: bool | float, fraction: float
) -> None:
    assert RetryPolicy(jitter=jitter).jitter_fraction() == fraction


@pytest.mark.parametrize(
    ("retry_on", "code", "retried"),
    [
        (None, "ANYTHING", True),
        ([], "ANYTHING", True),
        (["HTTP_ERROR"], "HTTP_ERROR", True),
        (["HTTP_ERROR"], "OTHER", False),
    ],
)
def test_retry_on_limits_retries_to_listed_codes(
    retry_on: list[str] | None, code: str, retried: bool
) -> None:
    assert RetryPolicy(retry_on=retry_on).retries_code(code) is retried


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"type": "key", "key": "user"}, KeySelector(key="user")),
        ({"type": "keys", "keys": ["user", "order"]}, KeysSelector(keys=["user", "order"])),
        ({"type": "path", "path": "user.address.city"}, PathSelector(path="user.address.city")),
        (
            {"type": "template", "template": {"url": "${api.url}"}},
            TemplateSelector(template={"url": "${api.url}"}),
        ),
        ({"type": "full"}, FullSelector()),
        ({"type": "static", "value": {"foo": "bar"}}, StaticSelector(value={"foo": "bar"})),
    ],
    ids=["key", "keys", "path", "template", "full", "static"],
)
def test_every_readme_selector_loads(selector: dict[str, Any], expected: object) -> None:
    assert _one_step_flow({"type": "t", "input": selector}).steps["s"].input == expected


def test_loaded_flows_are_immutable() -> None:
    flow = Flow.from_dict(copy.deepcopy(GREETING_FLOW))

    with pytest.raises(ValidationError):
        flow.initial_step_id = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        flow.steps["say-hello"].type = "other"  # type: ignore[misc]
