"""The built-in routing handlers, `conditional` and `switch`, driven through real flows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from flowmonkey_celery import (
    EventType,
    ExecutionStatus,
    HandlerParams,
    ManualClock,
    Result,
    StepResult,
    TestHarness,
    handler,
)

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


@handler("mark")
def mark(params: HandlerParams) -> StepResult:
    """Records which step ran at `reached` (later steps overwrite earlier ones)."""
    return Result.success(params.step.id)


LEAF_STEPS = ("sales", "nurture", "review", "after")


def routing_flow(route: dict[str, Any], flow_id: str = "route") -> dict[str, Any]:
    """Flow whose first step is `route`; every other step just marks that it ran and ends."""
    steps: dict[str, Any] = {"route": route}
    for step_id in LEAF_STEPS:
        steps[step_id] = {"type": "mark", "outputKey": "reached"}
    return {"id": flow_id, "initialStepId": "route", "steps": steps}


def harness(*flows: dict[str, Any]) -> TestHarness:
    return TestHarness(handlers=[mark], flows=list(flows), clock=ManualClock(START))


_NO_DEFAULT = object()


def conditional(
    conditions: list[dict[str, Any]], default: Any = _NO_DEFAULT, **step: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {"conditions": conditions}
    if default is not _NO_DEFAULT:
        config["default"] = default
    return {"type": "conditional", "config": config, **step}


def reached(h: TestHarness, context: dict[str, Any], flow_id: str = "route") -> Any:
    """Run the flow to completion and return the leaf step that ran (None if none did)."""
    execution = h.run(flow_id, context).execution
    h.assert_completed(execution)
    return execution.context.get("reached")


# -- conditional ------------------------------------------------------------------------------


def test_conditional_first_matching_condition_wins() -> None:
    h = harness(
        routing_flow(
            conditional(
                [
                    {"path": "score", "op": "gte", "value": 90, "target": "sales"},
                    {"path": "score", "op": "gte", "value": 50, "target": "review"},
                    {"path": "score", "op": "gte", "value": 0, "target": "nurture"},
                ]
            )
        )
    )

    assert reached(h, {"score": 95}) == "sales"
    assert reached(h, {"score": 60}) == "review"
    assert reached(h, {"score": 10}) == "nurture"


def test_conditional_uses_default_when_nothing_matches() -> None:
    route = conditional([{"path": "vip", "op": "eq", "value": True, "target": "sales"}])
    route["config"]["default"] = "nurture"
    h = harness(routing_flow(route))

    assert reached(h, {"vip": True}) == "sales"
    assert reached(h, {"vip": False}) == "nurture"
    assert reached(h, {}) == "nurture"


def test_conditional_null_target_completes_the_flow_even_with_on_success() -> None:
    route = conditional(
        [{"path": "spam", "op": "eq", "value": True, "target": None}],
        default="after",
        transitions={"onSuccess": "after"},
    )
    h = harness(routing_flow(route))

    assert reached(h, {"spam": True}) is None
    assert reached(h, {"spam": False}) == "after"


def test_conditional_null_default_completes_the_flow() -> None:
    route = conditional(
        [{"path": "vip", "op": "eq", "value": True, "target": "sales"}],
        transitions={"onSuccess": "after"},
    )
    route["config"]["default"] = None
    h = harness(routing_flow(route))

    assert reached(h, {"vip": False}) is None


def test_conditional_matches_nested_all_any_not() -> None:
    h = harness(
        routing_flow(
            conditional(
                [
                    {
                        "all": [
                            {"path": "amount", "op": "gt", "value": 1000},
                            {
                                "any": [
                                    {"path": "country", "op": "nin", "value": ["UK", "IE"]},
                                    {"not": {"path": "verified", "op": "eq", "value": True}},
                                ]
                            },
                        ],
                        "target": "review",
                    },
                    {"not": {"path": "amount", "op": "exists"}, "target": "nurture"},
                ],
                default="sales",
            )
        )
    )

    assert reached(h, {"amount": 5000, "country": "US", "verified": True}) == "review"
    assert reached(h, {"amount": 5000, "country": "UK", "verified": False}) == "review"
    assert reached(h, {"amount": 5000, "country": "UK", "verified": True}) == "sales"
    assert reached(h, {"amount": 50, "country": "US"}) == "sales"
    assert reached(h, {"country": "US"}) == "nurture"


def test_conditional_reads_the_resolved_input_so_paths_are_relative_to_it() -> None:
    route = conditional(
        [{"path": "score", "op": "gte", "value": 80, "target": "sales"}],
        input={"type": "key", "key": "lead"},
        default="nurture",
    )
    h = harness(routing_flow(route))

    # the top-level score is not the input; the lead's score is
    assert reached(h, {"lead": {"score": 90}, "score": 10}) == "sales"
    assert reached(h, {"lead": {"score": 10}, "score": 90}) == "nurture"


def test_conditional_on_a_template_input_tests_the_rendered_values() -> None:
    route = conditional(
        [{"path": "label", "op": "eq", "value": "gold-UK", "target": "sales"}],
        input={"type": "template", "template": {"label": "${tier}-${address.country}"}},
        default="nurture",
    )
    h = harness(routing_flow(route))

    assert reached(h, {"tier": "gold", "address": {"country": "UK"}}) == "sales"
    assert reached(h, {"tier": "gold", "address": {"country": "FR"}}) == "nurture"


def test_conditional_stores_which_branch_matched_at_output_key() -> None:
    route = conditional(
        [
            {"path": "score", "op": "gte", "value": 90, "target": "sales"},
            {"path": "score", "op": "gte", "value": 50, "target": "review"},
        ],
        outputKey="routing.decision",
    )
    route["config"]["default"] = "nurture"
    h = harness(routing_flow(route))

    matched = h.run("route", {"score": 60}).execution
    unmatched = h.run("route", {"score": 5}).execution

    assert matched.context["routing"] == {"decision": {"matched": 1, "target": "review"}}
    assert unmatched.context["routing"] == {"decision": {"matched": None, "target": "nurture"}}


def test_conditional_records_the_transition_it_chose() -> None:
    route = conditional([{"path": "score", "op": "gte", "value": 80, "target": "sales"}])
    h = harness(routing_flow(route))

    run = h.run("route", {"score": 99})

    transitions = [e.data for e in run.events if e.type == EventType.TRANSITION]
    assert transitions == [{"from": "route", "to": "sales"}]


def test_conditional_with_mismatched_types_falls_through_instead_of_raising() -> None:
    route = conditional(
        [
            {"path": "score", "op": "gt", "value": "80", "target": "sales"},
            {"path": "prefs", "op": "contains", "value": ["email"], "target": "sales"},
        ],
    )
    route["config"]["default"] = "nurture"
    h = harness(routing_flow(route))

    assert reached(h, {"score": 99, "prefs": {"email": True}}) == "nurture"


def test_conditional_with_no_match_and_no_default_fails_with_no_match() -> None:
    route = conditional(
        [{"path": "score", "op": "gte", "value": 80, "target": "sales"}],
        transitions={"onSuccess": "nurture"},  # not taken: no branch was chosen
    )
    h = harness(routing_flow(route))

    execution = h.run("route", {"score": 10}).execution

    h.assert_failed(execution, code="NO_MATCH")
    assert execution.error is not None
    assert execution.error.message == "No condition matched and no default defined"
    assert execution.error.step_id == "route"
    assert "reached" not in execution.context


def test_a_no_match_failure_follows_on_failure() -> None:
    route = conditional(
        [{"path": "score", "op": "gte", "value": 80, "target": "sales"}],
        transitions={"onFailure": "review"},
    )
    h = harness(routing_flow(route))

    execution = h.run("route", {"score": 10}).execution

    h.assert_completed(execution)
    assert execution.context["reached"] == "review"
    assert execution.context["_error"]["code"] == "NO_MATCH"


def test_conditional_with_explicit_null_default_completes() -> None:
    route = conditional([{"path": "score", "op": "gte", "value": 80, "target": "sales"}])
    route["config"]["default"] = None
    h = harness(routing_flow(route))

    assert reached(h, {"score": 10}) is None


@pytest.mark.parametrize(
    ("context", "shown"),
    [
        ({"plan": "enterprise"}, "enterprise"),
        ({"plan": 42}, "42"),
        ({"plan": {"tier": 1}}, '{"tier": 1}'),
        ({}, "undefined"),
    ],
)
def test_switch_with_no_case_and_no_default_fails_with_no_match(
    context: dict[str, Any], shown: str
) -> None:
    route = {"type": "switch", "config": {"path": "plan", "cases": {"free": "sales"}}}
    h = harness(routing_flow(route))

    execution = h.run("route", context).execution

    h.assert_failed(execution, code="NO_MATCH")
    assert execution.error is not None
    assert execution.error.message == f'No case matched value "{shown}" and no default defined'


def test_switch_with_explicit_null_default_completes() -> None:
    route = {
        "type": "switch",
        "config": {"path": "plan", "cases": {"free": "sales"}, "default": None},
    }
    h = harness(routing_flow(route))

    assert reached(h, {"plan": "enterprise"}) is None


# -- business rule ----------------------------------------------------------------------------

LEAD_ROUTING: dict[str, Any] = {
    "id": "lead-routing",
    "version": "1.0.0",
    "initialStepId": "qualify",
    "steps": {
        "qualify": {
            "type": "conditional",
            "input": {"type": "key", "key": "lead"},
            "outputKey": "qualification",
            "config": {
                "conditions": [
                    {
                        "all": [
                            {"path": "score", "op": "gte", "value": 80},
                            {"path": "country", "op": "in", "value": ["US", "CA", "UK"]},
                        ],
                        "target": "sales",
                    }
                ],
                "default": "nurture",
            },
        },
        "sales": {"type": "mark", "outputKey": "reached"},
        "nurture": {"type": "mark", "outputKey": "reached"},
    },
}


@pytest.mark.parametrize(
    ("lead", "team"),
    [
        ({"score": 80, "country": "US"}, "sales"),
        ({"score": 97.5, "country": "UK"}, "sales"),
        ({"score": 79, "country": "US"}, "nurture"),
        ({"score": 95, "country": "FR"}, "nurture"),
        ({"score": "95", "country": "US"}, "nurture"),
        ({"country": "US"}, "nurture"),
    ],
)
def test_lead_with_high_score_in_a_sales_country_goes_to_sales_else_nurture(
    lead: dict[str, Any], team: str
) -> None:
    h = harness(LEAD_ROUTING)

    assert reached(h, {"lead": lead}, "lead-routing") == team


# -- switch -----------------------------------------------------------------------------------


def switch(cases: dict[str, Any], path: str | None = "kind", **step: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"cases": cases}
    if path is not None:
        config["path"] = path
    return {"type": "switch", "config": config, **step}


def test_switch_routes_on_a_string_value() -> None:
    h = harness(routing_flow(switch({"enterprise": "sales", "self-serve": "nurture"})))

    assert reached(h, {"kind": "enterprise"}) == "sales"
    assert reached(h, {"kind": "self-serve"}) == "nurture"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, "sales"), (2, "nurture"), ("1", "sales"), (True, "review"), (False, "after")],
)
def test_switch_matches_numbers_and_booleans_to_their_json_case_keys(
    value: Any, expected: str
) -> None:
    cases = {"1": "sales", "2": "nurture", "true": "review", "false": "after"}
    h = harness(routing_flow(switch(cases)))

    assert reached(h, {"kind": value}) == expected


def test_switch_uses_default_for_an_unknown_or_missing_value() -> None:
    route = switch({"enterprise": "sales"})
    route["config"]["default"] = "nurture"
    h = harness(routing_flow(route))

    assert reached(h, {"kind": "hobby"}) == "nurture"
    assert reached(h, {}) == "nurture"


def test_switch_case_with_null_target_completes_the_flow() -> None:
    route = switch({"spam": None, "lead": "sales"}, transitions={"onSuccess": "after"})
    h = harness(routing_flow(route))

    assert reached(h, {"kind": "spam"}) is None


def test_switch_reads_the_resolved_input() -> None:
    route = switch({"gold": "sales"}, path="tier", input={"type": "key", "key": "account"})
    route["config"]["default"] = "nurture"
    h = harness(routing_flow(route))

    assert reached(h, {"account": {"tier": "gold"}, "tier": "bronze"}) == "sales"
    assert reached(h, {"account": {"tier": "bronze"}, "tier": "gold"}) == "nurture"


def test_switch_without_path_switches_on_the_whole_input() -> None:
    route = switch({"gold": "sales"}, path=None, input={"type": "path", "path": "account.tier"})
    h = harness(routing_flow(route))

    assert reached(h, {"account": {"tier": "gold"}}) == "sales"


def test_switch_stores_the_value_and_target_at_output_key() -> None:
    route = switch({"1": "sales"}, outputKey="decision")
    route["config"]["default"] = "nurture"
    h = harness(routing_flow(route))

    hit = h.run("route", {"kind": 1}).execution
    miss = h.run("route", {}).execution

    assert hit.context["decision"] == {"value": 1, "target": "sales"}
    assert miss.context["decision"] == {"value": None, "target": "nurture"}
    assert hit.status is ExecutionStatus.COMPLETED
