"""Conditions for routing: FlowMonkey's 14 operators plus all/any/not, with no eval of user text.

A leaf condition is `{path, op, value}`; a combinator is `{all: [...]}`, `{any: [...]}` or
`{not: {...}}`, nested freely. Paths are dot paths into the data being tested.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from flowmonkey_celery.core.paths import MISSING, get_path


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(actual: Any, expected: Any) -> bool:
    # Python says True == 1; a business rule "count eq 1" must not match a boolean.
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    return bool(actual == expected)


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def check(actual: Any, expected: Any) -> bool:
        if _is_number(actual) and _is_number(expected):
            return compare(actual, expected)
        if isinstance(actual, str) and isinstance(expected, str):
            return compare(actual, expected)
        return False  # mismatched or missing types never order; no exception, no match

    return check


def _member(actual: Any, expected: Any) -> bool:
    if not isinstance(expected, list | tuple | set):
        return False
    return any(_equal(actual, item) for item in expected)


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list | tuple):
        return any(_equal(item, expected) for item in actual)
    if isinstance(actual, dict):
        try:
            return expected in actual
        except TypeError:  # an unhashable value cannot be a key: no match, no crash
            return False
    return False


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _matches(actual: Any, expected: Any) -> bool:
    if not isinstance(actual, str) or not isinstance(expected, str):
        return False
    return compile_pattern(expected).search(actual) is not None


def _exists(actual: Any, _: Any) -> bool:
    return actual is not MISSING and actual is not None


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _equal,
    "neq": lambda a, e: not _equal(a, e),
    "gt": _ordered(lambda a, e: a > e),
    "gte": _ordered(lambda a, e: a >= e),
    "lt": _ordered(lambda a, e: a < e),
    "lte": _ordered(lambda a, e: a <= e),
    "in": _member,
    "nin": lambda a, e: not _member(a, e),
    "contains": _contains,
    "startsWith": lambda a, e: isinstance(a, str) and isinstance(e, str) and a.startswith(e),
    "endsWith": lambda a, e: isinstance(a, str) and isinstance(e, str) and a.endswith(e),
    "exists": _exists,
    "notExists": lambda a, e: not _exists(a, e),
    "matches": _matches,
}
# YAML writers often spell these the Python way.
OPERATOR_ALIASES = {
    "starts_with": "startsWith",
    "ends_with": "endsWith",
    "not_exists": "notExists",
    "ne": "neq",
    "not_in": "nin",
}
COMBINATORS = ("all", "any", "not")
UNARY_OPERATORS = frozenset({"exists", "notExists"})


def canonical_operator(op: Any) -> str | None:
    """The canonical operator name, or None if `op` is not an operator."""
    if not isinstance(op, str):
        return None
    name = OPERATOR_ALIASES.get(op, op)
    return name if name in OPERATORS else None


def evaluate(condition: Mapping[str, Any], data: Any) -> bool:
    """Whether `condition` holds for `data`. Assumes a condition that passed `condition_issues`."""
    if "all" in condition:
        return all(evaluate(part, data) for part in condition["all"])
    if "any" in condition:
        return any(evaluate(part, data) for part in condition["any"])
    if "not" in condition:
        return not evaluate(condition["not"], data)
    op = canonical_operator(condition.get("op"))
    if op is None:
        raise ValueError(f"unknown operator {condition.get('op')!r}")
    path = condition.get("path")
    actual = get_path(data, path) if path else data
    return OPERATORS[op](actual, condition.get("value"))


def condition_issues(condition: Any, path: str) -> list[tuple[str, str]]:
    """Every problem with a (possibly nested) condition, as `(path, message)` pairs."""
    if not isinstance(condition, Mapping):
        return [(path, f"a condition must be an object, not {type(condition).__name__}")]
    present = [c for c in COMBINATORS if c in condition]
    if len(present) > 1:
        return [(path, f"a condition can hold only one of all/any/not, found {present}")]
    if present:
        combinator = present[0]
        inner = condition[combinator]
        if combinator == "not":
            return condition_issues(inner, f"{path}.not")
        if not isinstance(inner, list) or not inner:
            return [(f"{path}.{combinator}", "must be a non-empty list of conditions")]
        issues: list[tuple[str, str]] = []
        for index, part in enumerate(inner):
            issues += condition_issues(part, f"{path}.{combinator}.{index}")
        return issues
    issues = []
    op = condition.get("op")
    if op is None:
        issues.append((f"{path}.op", "missing operator (or use all / any / not)"))
    elif canonical_operator(op) is None:
        known = ", ".join(OPERATORS)
        issues.append((f"{path}.op", f"unknown operator {op!r}; expected one of {known}"))
    elif canonical_operator(op) == "matches":
        pattern = condition.get("value")
        if not isinstance(pattern, str):
            issues.append((f"{path}.value", "'matches' needs a regular expression string"))
        else:
            try:
                compile_pattern(pattern)
            except re.error as exc:
                issues.append((f"{path}.value", f"invalid regular expression: {exc}"))
    if "path" in condition and not (isinstance(condition["path"], str) and condition["path"]):
        issues.append((f"{path}.path", "must be a non-empty dot path"))
    return issues
