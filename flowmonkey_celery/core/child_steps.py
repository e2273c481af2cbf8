"""The built-in `subflow` and `parallel` steps: start child executions and wait for their join.

Both only describe the children (`Result.start_children`); the engine commits the step's wait,
the join and the children together, and the join resumes the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter

from flowmonkey_celery.core.children import ChildSpec
from flowmonkey_celery.core.flow import InputSelector
from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.paths import MISSING, get_path
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.selectors import resolve_input, template_context
from flowmonkey_celery.errors import ErrorCode

_SELECTOR_ADAPTER: TypeAdapter[Any] = TypeAdapter(InputSelector)

SUBFLOW = "subflow"
PARALLEL = "parallel"

_SELECTOR = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
_PARENT_CLOSE = {"enum": ["cancel", "abandon"], "description": "cancelling the parent cancels "
                 "the children (cancel, the default) or leaves them running (abandon)"}  # fmt: skip
_OUTPUT = {**_SELECTOR, "description": "which part of a child's final context is its output"}
_BRANCH = {
    "type": "object",
    "properties": {
        "flow": {"type": "string", "minLength": 1},
        "version": {"type": "string"},
        "start": {"type": "string", "minLength": 1},
        "input": _SELECTOR,
    },
    "additionalProperties": False,
    "oneOf": [{"required": ["flow"]}, {"required": ["start"]}],
}


class SubflowHandler:
    """`subflow` steps start one child execution of `flow` (latest or `version`), its context
    the step's input, and wait for it without holding a worker; its output lands at the step's
    `output_key`. A failed child fails the step with CHILD_FAILED (retry and on_failure apply).
    `mode: detached` starts it and continues at once with `{"execution_id"}`."""

    type = SUBFLOW
    metadata: dict[str, Any] = {
        "type": SUBFLOW,
        "name": "Sub-flow",
        "description": "Run another flow as a child execution and wait for its result",
        "category": "control",
        "stateful": False,
        "config_schema": {
            "type": "object",
            "required": ["flow"],
            "properties": {
                "flow": {"type": "string", "minLength": 1},
                "version": {"type": "string"},
                "mode": {"enum": ["wait", "detached"]},
                "output": _OUTPUT,
                "parent_close": _PARENT_CLOSE,
            },
            "additionalProperties": False,
        },
    }

    def execute(self, params: HandlerParams) -> StepResult:
        config = params.config
        child = ChildSpec(
            flow_id=config["flow"],
            flow_version=config.get("version"),
            context=template_context(params.input),
        )
        return Result.start_children(
            [child],
            kind="subflow",
            detached=config.get("mode") == "detached",
            parent_close=config.get("parent_close", "cancel"),
            output=config.get("output"),
        )


class ParallelHandler:
    """`parallel` steps run branches at once and join them.

    Static `branches`: each `{flow: id}` (a sub-flow) or `{start: step_id}` (a chain of this
    flow's steps from that step until one ends the flow), with an optional `input` selector over
    the step's input. Or `foreach: <path of a list in the input>` with `flow` or `start`: one child
    per item, context `{"item": <item>, "index": <i>}` plus the input keys listed in `share`, at
    most `max_concurrency` at a time.

    The output lists one entry per branch, in order: `{status, output | error, execution_id}`.
    Join policy: `join: all` (default; `tolerated_failures: N | "10%"`), `join: any`, or
    `min_success: N`; `cancel_rest: true` cancels what still runs once the join is decided.
    """

    type = PARALLEL
    metadata: dict[str, Any] = {
        "type": PARALLEL,
        "name": "Parallel",
        "description": "Run branches or a foreach at once and join them by a policy",
        "category": "control",
        "stateful": False,
        "config_schema": {
            "type": "object",
            "properties": {
                "branches": {"type": "array", "items": _BRANCH, "minItems": 1},
                "foreach": {"type": "string", "minLength": 1},
                "flow": {"type": "string", "minLength": 1},
                "version": {"type": "string"},
                "start": {"type": "string", "minLength": 1},
                "share": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "description": "keys of the step input copied into each foreach child",
                },
                "max_concurrency": {"type": "integer", "minimum": 1},
                "join": {"enum": ["all", "any", "min_success"]},
                "min_success": {"type": "integer", "minimum": 1},
                "tolerated_failures": {
                    "anyOf": [
                        {"type": "integer", "minimum": 0},
                        {"type": "string", "pattern": r"^\d+(\.\d+)?%$"},
                    ]
                },
                "cancel_rest": {"type": "boolean"},
                "output": _OUTPUT,
                "parent_close": _PARENT_CLOSE,
            },
            "additionalProperties": False,
            "oneOf": [
                {
                    "required": ["branches"],
                    "not": {
                        "anyOf": [
                            {"required": ["foreach"]},
                            {"required": ["flow"]},
                            {"required": ["start"]},
                        ]
                    },
                },
                {
                    "required": ["foreach"],
                    "oneOf": [{"required": ["flow"]}, {"required": ["start"]}],
                    "not": {"required": ["branches"]},
                },
            ],
            "dependentRequired": {"min_success": ["join"]},
        },
    }

    def execute(self, params: HandlerParams) -> StepResult:
        config = params.config
        if "foreach" in config:
            items = get_path(template_context(params.input), config["foreach"])
            if items is MISSING or not isinstance(items, list):
                found = "nothing" if items is MISSING else type(items).__name__
                return Result.failure(
                    ErrorCode.INPUT_ERROR.value,
                    f"parallel step {params.step.id!r}: foreach {config['foreach']!r} must be a "
                    f"list in the step's input, found {found}",
                    retryable=False,
                )
            step_input = template_context(params.input)
            shared = {k: step_input[k] for k in config.get("share", ()) if k in step_input}
            children = [
                self._child(config, params, {**shared, "item": item, "index": index})
                for index, item in enumerate(items)
            ]
        else:
            children = [
                self._child(branch, params, self._branch_input(branch, params.input))
                for branch in config["branches"]
            ]
        mode = config.get("join", "all")
        policy: dict[str, Any] = {"mode": mode, "cancel_rest": config.get("cancel_rest", False)}
        if mode == "min_success":
            policy["min_success"] = config.get("min_success", 1)
        if "tolerated_failures" in config:
            policy["tolerated_failures"] = config["tolerated_failures"]
        return Result.start_children(
            children,
            kind="parallel",
            policy=policy,
            max_concurrency=config.get("max_concurrency"),
            parent_close=config.get("parent_close", "cancel"),
            output=config.get("output"),
        )

    @staticmethod
    def _branch_input(branch: Mapping[str, Any], step_input: Any) -> dict[str, Any]:
        selector = branch.get("input")
        if selector is None:
            return template_context(step_input)
        chosen = resolve_input(
            _SELECTOR_ADAPTER.validate_python(selector), template_context(step_input)
        )
        return template_context(chosen)

    @staticmethod
    def _child(
        where: Mapping[str, Any], params: HandlerParams, context: dict[str, Any]
    ) -> ChildSpec:
        if "start" in where:
            execution = params.execution
            return ChildSpec(
                flow_id=execution.flow_id,
                flow_version=execution.flow_version,
                start_step_id=where["start"],
                context=context,
            )
        return ChildSpec(flow_id=where["flow"], flow_version=where.get("version"), context=context)


def parallel_config_issues(
    config: Mapping[str, Any], where: str, step_ids: set[str]
) -> list[tuple[str, str]]:
    """`start` step ids of a parallel step that are not steps of its flow."""
    issues: list[tuple[str, str]] = []
    listing = ", ".join(sorted(step_ids))
    starts: list[tuple[str, Any]] = [(f"{where}.start", config.get("start"))]
    branches = config.get("branches")
    if isinstance(branches, list):
        starts += [
            (f"{where}.branches.{i}.start", b.get("start"))
            for i, b in enumerate(branches)
            if isinstance(b, Mapping)
        ]
    for path, start in starts:
        if isinstance(start, str) and start not in step_ids:
            issues.append((path, f"{start!r} is not a step of this flow (steps: {listing})"))
    return issues
