"""The built-in `transform` step: reshape JSON data with JMESPath or a list of operations.

Pure computation, no `eval`: a `transform` step either evaluates one JMESPath `expression` over
its input, or applies `ops` in order to a copy of it:

    {"ops": [{"pick": ["user.name", "user.email", "items"]},
             {"rename": {"user.email": "contact"}},
             {"set": {"greeting": "Hello ${user.name}"}},
             {"map": {"path": "items", "ops": [{"omit": ["internal"]}]}},
             {"jmespath": {"path": "total", "expression": "sum(items[].price)"}}]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError, ParseError
from jmespath.functions import Functions

from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.json_values import copy_json
from flowmonkey_celery.core.paths import MISSING, get_path, set_path, split_path
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.selectors import render_template
from flowmonkey_celery.errors import ErrorCode

TRANSFORM = "transform"
TRANSFORM_ERROR = ErrorCode.TRANSFORM_ERROR.value

Issue = tuple[str, str]

_PATH = {"type": "string", "pattern": r"^[^.]+(\.[^.]+)*$"}
_PATHS = {"type": "array", "items": _PATH, "minItems": 1}
_EXPRESSION = {"type": "string", "minLength": 1}


_OPS: dict[str, Any] = {
    "pick": _PATHS,
    "omit": _PATHS,
    "rename": {
        "type": "object",
        "minProperties": 1,
        "propertyNames": _PATH,
        "additionalProperties": _PATH,
    },
    "set": {"type": "object", "minProperties": 1, "propertyNames": _PATH},
    "map": {
        "type": "object",
        "properties": {"path": _PATH, "ops": {"$ref": "#/$defs/ops"}, "expression": _EXPRESSION},
        "additionalProperties": False,
        "oneOf": [{"required": ["ops"]}, {"required": ["expression"]}],
    },
    "jmespath": {
        "type": "object",
        "required": ["expression"],
        "properties": {"path": _PATH, "expression": _EXPRESSION},
        "additionalProperties": False,
    },
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"expression": _EXPRESSION, "ops": {"$ref": "#/$defs/ops"}},
    "additionalProperties": False,
    "oneOf": [{"required": ["expression"]}, {"required": ["ops"]}],
    "$defs": {
        "ops": {"type": "array", "items": {"$ref": "#/$defs/op"}},
        # Exactly one known key per op. Equivalent to a oneOf of one closed schema per op, but
        # a oneOf only says "not valid under any of the given schemas"; this names the op key
        # at fault, or the unknown one.
        "op": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "propertyNames": {"enum": list(_OPS)},
            "properties": _OPS,
        },
    },
}


class TransformError(Exception):
    """An operation could not be applied to the data it met (internal to this module)."""

    def __init__(self, where: str, problem: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem
        self.details = {"op": where, **(details or {})}


class TransformHandler:
    """`transform` steps: `{expression}` (JMESPath over the input) or `{ops: [...]}` applied in
    order to a copy of the input: `pick`, `omit`, `rename`, `set` (values are `${path}`
    templates over the current data), `map` (nested ops or an expression per list item) and
    `jmespath` (a JMESPath result stored at `path`, or replacing the whole value). The step's
    output is the result; the input is never changed.

    Data the ops cannot apply to (pick from a non-object, map over a non-list) fails the step
    with TRANSFORM_ERROR, not retried: the same data would fail again.
    """

    type = TRANSFORM
    metadata: dict[str, Any] = {
        "type": TRANSFORM,
        "name": "Transform",
        "description": "Reshape data with JMESPath or pick/omit/rename/set/map operations",
        "category": "data",
        "stateful": False,
        "config_schema": CONFIG_SCHEMA,
    }

    def execute(self, params: HandlerParams) -> StepResult:
        config = params.config
        try:
            if "expression" in config:
                output = _search(config["expression"], params.input, "expression")
            else:
                output = apply_ops(config.get("ops", []), params.input)
        except TransformError as exc:
            return Result.failure(
                TRANSFORM_ERROR,
                f"transform step {params.step.id!r} failed at {exc}",
                exc.details,
                retryable=False,
            )
        return Result.success(output)

    def config_issues(self, config: Mapping[str, Any]) -> list[Issue]:
        """Problems the config schema cannot see (see `transform_config_issues`); the
        registry asks when a flow is registered, once the schema accepts the config."""
        return transform_config_issues(config)


def apply_ops(ops: list[dict[str, Any]], data: Any, where: str = "ops") -> Any:
    """`ops` applied in order to a copy of `data` (which is left as it was).

    Raises:
        TransformError: an operation does not fit the data, naming the op and the path.
    """
    current = copy_json(data)
    for index, op in enumerate(ops):
        current = _apply(op, current, f"{where}.{index}")
    return current


def _apply(op: Mapping[str, Any], data: Any, where: str) -> Any:
    (name, arg), *_ = op.items()
    at = f"{where}.{name}"
    # Without a path, jmespath and map work on the whole value, whatever its type.
    if name == "jmespath" and "path" not in arg:
        return _search(arg["expression"], data, f"{at}.expression")
    if name == "map" and "path" not in arg:
        return _map_items(data, arg, at)
    if not isinstance(data, dict):
        raise TransformError(at, f"needs an object, got {_kind(data)}")
    try:
        if name == "pick":
            return _pick(data, arg)
        if name == "omit":
            for path in arg:
                _remove(data, path)
        elif name == "rename":
            for old, new in arg.items():
                value = _remove(data, old)
                if value is not MISSING:
                    set_path(data, new, value)
        elif name == "set":
            # Every value sees the data as the op found it, not its sibling assignments.
            values = {path: render_template(value, data) for path, value in arg.items()}
            for path, value in values.items():
                set_path(data, path, value)
        elif name == "map":
            set_path(data, arg["path"], _map_items(get_path(data, arg["path"]), arg, at))
        elif name == "jmespath":
            set_path(data, arg["path"], _search(arg["expression"], data, f"{at}.expression"))
        else:
            raise TransformError(where, f"unknown operation {name!r}")
    except ValueError as exc:  # set_path met a non-object on the way, or a bad placeholder
        raise TransformError(at, str(exc)) from None
    return data


def _pick(data: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    picked: dict[str, Any] = {}
    for path in paths:
        value = get_path(data, path)
        if value is not MISSING:
            set_path(picked, path, value)
    return picked


def _remove(data: dict[str, Any], path: str) -> Any:
    """Take the value at `path` out of `data`; MISSING (and no change) if there is none."""
    *parents, last = split_path(path)
    parent = get_path(data, ".".join(parents)) if parents else data
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    return MISSING


def _map_items(items: Any, arg: Mapping[str, Any], at: str) -> list[Any]:
    path = arg.get("path")
    if not isinstance(items, list):
        found = "nothing" if items is MISSING else _kind(items)
        shown = f"path {path!r}" if path else "the value"
        raise TransformError(at, f"{shown} must hold a list, found {found}", {"path": path})
    mapped = []
    for position, item in enumerate(items):
        try:
            if "expression" in arg:
                mapped.append(_search(arg["expression"], item, f"{at}.expression"))
            else:
                mapped.append(apply_ops(arg["ops"], item, f"{at}.ops"))
        except TransformError as exc:
            raise TransformError(
                exc.where, f"item {position}: {exc.problem}", {**exc.details, "item": position}
            ) from None
    return mapped


def _search(expression: str, data: Any, where: str) -> Any:
    try:
        return jmespath.search(expression, data)
    except JMESPathError as exc:
        raise TransformError(where, f"JMESPath {expression!r} failed: {_first_line(exc)}") from None


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number"}  # fmt: skip
    if value is None:
        return "null"
    return names.get(type(value), f"a {type(value).__name__}")


# -- checks beyond the schema -------------------------------------------------------------


def transform_config_issues(config: Mapping[str, Any]) -> list[Issue]:
    """Problems in a transform config that its JSON Schema cannot catch: JMESPath expressions
    that do not parse, and calls of functions JMESPath does not have or with the wrong number
    of arguments.

    Args:
        config: the step's `config`, ideally already valid against the schema (anything
            else is skipped, not reported twice).

    Returns:
        `(path, problem)` pairs, paths relative to the config (`ops.2.jmespath.expression`).
    """
    issues: list[Issue] = []
    expression = config.get("expression")
    if isinstance(expression, str):
        issues += _expression_issues(expression, "expression")
    ops = config.get("ops")
    if isinstance(ops, list):
        issues += _ops_issues(ops, "ops")
    return issues


def _ops_issues(ops: list[Any], where: str) -> list[Issue]:
    issues: list[Issue] = []
    for index, op in enumerate(ops):
        if not isinstance(op, Mapping):
            continue
        for name in ("map", "jmespath"):
            arg = op.get(name)
            if not isinstance(arg, Mapping):
                continue
            at = f"{where}.{index}.{name}"
            if isinstance(arg.get("expression"), str):
                issues += _expression_issues(arg["expression"], f"{at}.expression")
            if isinstance(arg.get("ops"), list):
                issues += _ops_issues(arg["ops"], f"{at}.ops")
    return issues


def _expression_issues(expression: str, where: str) -> list[Issue]:
    try:
        parsed = jmespath.compile(expression)
    except ParseError as exc:
        return [(where, f"invalid JMESPath {expression!r}: {_first_line(exc)}")]
    # jmespath only finds unknown functions and wrong arities when the expression runs.
    return [(where, f"JMESPath {expression!r}: {problem}") for problem in _calls(parsed.parsed)]


def _calls(node: Any) -> list[str]:
    problems: list[str] = []
    if not isinstance(node, Mapping):
        return problems
    children = node.get("children", [])
    if node.get("type") == "function_expression":
        problems += _call_problem(str(node.get("value")), len(children))
    for child in children:
        problems += _calls(child)
    return problems


def _call_problem(name: str, arguments: int) -> list[str]:
    table: Mapping[str, Any] = Functions.FUNCTION_TABLE
    if name not in table:
        return [f"unknown function {name}() (known: {', '.join(sorted(table))})"]
    signature = table[name]["signature"]
    variadic = bool(signature) and bool(signature[-1].get("variadic"))
    if variadic and arguments < len(signature):
        return [f"{name}() takes at least {len(signature)} argument(s), got {arguments}"]
    if not variadic and arguments != len(signature):
        return [f"{name}() takes {len(signature)} argument(s), got {arguments}"]
    return []


def _first_line(exc: Exception) -> str:
    # jmespath's message repeats the expression over further lines, with a caret under it.
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return first.removesuffix(":").removesuffix(", for expression")
