"""Routing handlers, registered in every HandlerRegistry: `conditional` and `switch`.

Both read the step's resolved input and choose the next step through `Result.success(...,
next_step=...)`. With no matching branch, `default` picks the next step; with no `default`
key either, the step fails with NO_MATCH, as in FlowMonkey (its retry policy and `on_failure`
apply). A target of null (`default: null` included) ends the flow, completed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowmonkey_celery.core.conditions import condition_issues, evaluate
from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.paths import MISSING, get_path
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.errors import ErrorCode

CONDITIONAL = "conditional"
SWITCH = "switch"


class ConditionalHandler:
    """`{conditions: [{path, op, value, target} | {all|any: [...], target} | {not: {...},
    target}], default}`: the first condition that holds picks the next step."""

    type = CONDITIONAL
    metadata = {
        "type": CONDITIONAL,
        "name": "Conditional",
        "description": "Route to the first branch whose condition holds",
        "category": "control",
        # The detailed checks (operators, targets, regexes) are `routing_config_issues`.
        "config_schema": {
            "type": "object",
            "required": ["conditions"],
            "properties": {
                "conditions": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                "default": {"type": ["string", "null"]},
            },
        },
    }

    def execute(self, params: HandlerParams) -> StepResult:
        config = params.step.config
        for index, condition in enumerate(config.get("conditions", [])):
            if evaluate(condition, params.input):
                target = condition.get("target")
                return Result.success({"matched": index, "target": target}, next_step=target)
        if "default" in config:
            target = config["default"]
            return Result.success({"matched": None, "target": target}, next_step=target)
        return Result.failure(
            ErrorCode.NO_MATCH.value, "No condition matched and no default defined"
        )


class SwitchHandler:
    """`{path, cases: {value: step}, default}`: route on the value at `path` of the input."""

    type = SWITCH
    metadata = {
        "type": SWITCH,
        "name": "Switch",
        "description": "Route on one value",
        "category": "control",
        "config_schema": {
            "type": "object",
            "required": ["cases"],
            "properties": {
                "path": {"type": "string"},
                "cases": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                "default": {"type": ["string", "null"]},
            },
        },
    }

    def execute(self, params: HandlerParams) -> StepResult:
        config = params.step.config
        path = config.get("path")
        value = get_path(params.input, path) if path else params.input
        cases: Mapping[Any, Any] = config.get("cases", {})
        if value is not MISSING:
            for key in (value, _case_key(value)):
                if _hashable(key) and key in cases:
                    target = cases[key]
                    return Result.success({"value": value, "target": target}, next_step=target)
        shown = None if value is MISSING else value
        if "default" in config:
            target = config["default"]
            return Result.success({"value": shown, "target": target}, next_step=target)
        return Result.failure(
            ErrorCode.NO_MATCH.value,
            f'No case matched value "{_shown(value)}" and no default defined',
            {"value": shown, "path": path},
        )


def _shown(value: Any) -> str:
    # As FlowMonkey prints it: strings as they are, a missing value as `undefined`.
    if value is MISSING:
        return "undefined"
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def _case_key(value: Any) -> Any:
    # JSON object keys are strings: a case written as `"1":` or `true:` must match 1 or True.
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def routing_config_issues(
    step_type: str, config: Mapping[str, Any], path: str, step_ids: set[str]
) -> list[tuple[str, str]]:
    """Problems in a routing step's config, including targets that name no step."""

    def target_issue(target: Any, where: str) -> list[tuple[str, str]]:
        if target is None or (isinstance(target, str) and target in step_ids):
            return []
        return [(where, f"target {target!r} is not a step of this flow")]

    issues: list[tuple[str, str]] = []
    if "default" in config:
        issues += target_issue(config["default"], f"{path}.default")
    if step_type == CONDITIONAL:
        conditions = config.get("conditions")
        if not isinstance(conditions, list) or not conditions:
            return [*issues, (f"{path}.conditions", "must be a non-empty list of conditions")]
        for index, condition in enumerate(conditions):
            where = f"{path}.conditions.{index}"
            issues += condition_issues(condition, where)
            if isinstance(condition, Mapping):
                if "target" not in condition:
                    issues.append((f"{where}.target", "missing target step (null ends the flow)"))
                else:
                    issues += target_issue(condition["target"], f"{where}.target")
    elif step_type == SWITCH:
        if "path" in config and not (isinstance(config["path"], str) and config["path"]):
            issues.append((f"{path}.path", "must be a non-empty dot path"))
        cases = config.get("cases")
        if not isinstance(cases, Mapping) or not cases:
            issues.append((f"{path}.cases", "must be a non-empty object of value: step"))
        else:
            for value, target in cases.items():
                issues += target_issue(target, f"{path}.cases.{value}")
    return issues
