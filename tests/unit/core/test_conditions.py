"""Routing conditions: the 14 operators, their aliases, all/any/not, and how bad conditions are
reported. Conditions are data, never evaluated as code."""

from __future__ import annotations

from typing import Any

import pytest

from flowmonkey_celery.core.conditions import OPERATORS, condition_issues, evaluate

LEAD: dict[str, Any] = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "score": 85,
    "ratio": 0.5,
    "country": "UK",
    "tags": ["vip", "beta"],
    "flags": {"trial": True},
    "active": True,
    "count": 1,
    "manager": None,
    "zero": 0,
    "empty": "",
}


def holds(op: str, path: str | None, value: Any = None, data: Any = None) -> bool:
    condition: dict[str, Any] = {"op": op, "value": value}
    if path is not None:
        condition["path"] = path
    return evaluate(condition, LEAD if data is None else data)


# (op, path, value, expected): for every operator at least one match and one non-match.
OPERATOR_TABLE = [
    # eq: strict for bools, int and float compare as numbers
    ("eq", "country", "UK", True),
    ("eq", "country", "uk", False),
    ("eq", "score", 85.0, True),
    ("eq", "active", True, True),
    ("eq", "active", 1, False),
    ("eq", "count", True, False),
    ("eq", "count", 1, True),
    ("eq", "zero", False, False),
    ("eq", "manager", None, True),
    ("eq", "flags", {"trial": True}, True),
    # neq
    ("neq", "country", "FR", True),
    ("neq", "country", "UK", False),
    ("neq", "count", True, True),
    # gt / gte / lt / lte on numbers (int and float mixed) and on strings
    ("gt", "score", 80, True),
    ("gt", "score", 85, False),
    ("gt", "ratio", 0.25, True),
    ("gt", "name", "Ada", True),
    ("gt", "country", "US", False),
    ("gte", "score", 85.0, True),
    ("gte", "score", 86, False),
    ("gte", "country", "UK", True),
    ("lt", "ratio", 1, True),
    ("lt", "score", 85, False),
    ("lt", "country", "US", True),
    ("lte", "score", 85, True),
    ("lte", "score", 84.9, False),
    ("lte", "country", "UA", False),
    # in / nin
    ("in", "country", ["UK", "IE"], True),
    ("in", "country", ["FR", "DE"], False),
    ("in", "score", [85.0, 90], True),
    ("in", "count", [True], False),
    ("nin", "country", ["FR", "DE"], True),
    ("nin", "country", ["UK", "IE"], False),
    ("nin", "active", [1], True),
    # contains: substring, list member, object key
    ("contains", "email", "@example", True),
    ("contains", "email", "@test", False),
    ("contains", "tags", "vip", True),
    ("contains", "tags", "alpha", False),
    ("contains", "flags", "trial", True),
    ("contains", "flags", "paid", False),
    # startsWith / endsWith
    ("startsWith", "name", "Ada", True),
    ("startsWith", "name", "Lovelace", False),
    ("endsWith", "email", ".com", True),
    ("endsWith", "email", ".org", False),
    # exists / notExists: present and not None
    ("exists", "score", None, True),
    ("exists", "zero", None, True),
    ("exists", "empty", None, True),
    ("exists", "manager", None, False),
    ("exists", "nobody", None, False),
    ("notExists", "nobody", None, True),
    ("notExists", "manager", None, True),
    ("notExists", "zero", None, False),
    # matches: re.search, so unanchored unless the pattern anchors itself
    ("matches", "email", r"^[a-z]+@example\.(com|org)$", True),
    ("matches", "email", "example", True),
    ("matches", "email", r"^example", False),
    ("matches", "name", r"\d", False),
]


@pytest.mark.parametrize(
    ("op", "path", "value", "expected"),
    OPERATOR_TABLE,
    ids=[f"{op}-{path}-{value!r}" for op, path, value, _ in OPERATOR_TABLE],
)
def test_operator(op: str, path: str, value: Any, expected: bool) -> None:
    assert holds(op, path, value) is expected


def test_operator_table_covers_all_fourteen_operators() -> None:
    assert {row[0] for row in OPERATOR_TABLE} == set(OPERATORS)
    assert len(OPERATORS) == 14


@pytest.mark.parametrize(
    ("op", "path", "value"),
    [
        ("gt", "score", "80"),
        ("gte", "country", 1),
        ("lt", "active", 2),  # a bool is not a number here
        ("lte", "tags", ["z"]),
        ("gt", "nobody", 1),
        ("gt", "manager", 0),
        ("contains", "email", 1),
        ("contains", "score", 8),
        ("contains", "flags", ["trial"]),
        ("contains", "flags", {"trial": True}),
        ("startsWith", "score", "8"),
        ("endsWith", "tags", "beta"),
        ("matches", "score", r"\d+"),
        ("matches", "nobody", ".*"),
        ("in", "country", "UK"),  # the value must be a list
        ("eq", "nobody", None),  # missing is not the same as null
    ],
)
def test_mismatched_types_never_match_and_never_raise(op: str, path: str, value: Any) -> None:
    assert holds(op, path, value) is False


@pytest.mark.parametrize(
    ("alias", "path", "value", "expected"),
    [
        ("starts_with", "name", "Ada", True),
        ("starts_with", "name", "Lovelace", False),
        ("ends_with", "email", ".com", True),
        ("ends_with", "email", ".org", False),
        ("not_exists", "nobody", None, True),
        ("not_exists", "score", None, False),
        ("ne", "country", "FR", True),
        ("ne", "country", "UK", False),
        ("not_in", "country", ["FR"], True),
        ("not_in", "country", ["UK"], False),
    ],
)
def test_alias_behaves_like_its_operator(alias: str, path: str, value: Any, expected: bool) -> None:
    assert holds(alias, path, value) is expected


def test_condition_without_path_tests_the_whole_data() -> None:
    assert holds("gt", None, 10, data=42) is True
    assert holds("in", None, ["gold", "silver"], data="bronze") is False


def test_path_can_index_into_a_list() -> None:
    assert holds("eq", "tags.1", "beta") is True


# -- all / any / not --------------------------------------------------------------------------

HIGH_SCORE = {"path": "score", "op": "gte", "value": 80}
IN_UK = {"path": "country", "op": "eq", "value": "UK"}
IN_FR = {"path": "country", "op": "eq", "value": "FR"}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"all": [HIGH_SCORE, IN_UK]}, True),
        ({"all": [HIGH_SCORE, IN_FR]}, False),
        ({"any": [IN_FR, IN_UK]}, True),
        ({"any": [IN_FR, {"path": "score", "op": "lt", "value": 10}]}, False),
        ({"not": IN_FR}, True),
        ({"not": IN_UK}, False),
        ({"all": [HIGH_SCORE, {"any": [IN_FR, {"not": IN_FR}]}]}, True),
        ({"not": {"all": [HIGH_SCORE, {"not": {"any": [IN_FR, IN_UK]}}]}}, True),
        ({"any": [{"all": [IN_FR, HIGH_SCORE]}, {"not": {"path": "tags", "op": "exists"}}]}, False),
    ],
)
def test_combinators_nest(condition: dict[str, Any], expected: bool) -> None:
    assert evaluate(condition, LEAD) is expected


# -- condition_issues -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        HIGH_SCORE,
        {"path": "nobody", "op": "exists"},
        {"op": "not_in", "path": "country", "value": ["FR"]},
        {"path": "email", "op": "matches", "value": r"^\w+@"},
        {"all": [HIGH_SCORE, {"not": {"any": [IN_FR, IN_UK]}}]},
    ],
)
def test_condition_issues_accepts_valid_conditions(condition: dict[str, Any]) -> None:
    assert condition_issues(condition, "c") == []


@pytest.mark.parametrize(
    ("condition", "where", "words"),
    [
        ("score > 80", "c", "must be an object"),
        ({"path": "score", "value": 1}, "c.op", "missing operator"),
        ({"path": "score", "op": "bigger", "value": 1}, "c.op", "'bigger'"),
        ({"path": "email", "op": "matches", "value": "(unclosed"}, "c.value", "regular expression"),
        ({"path": "email", "op": "matches", "value": 5}, "c.value", "regular expression"),
        ({"path": "", "op": "exists"}, "c.path", "dot path"),
        ({"all": []}, "c.all", "non-empty list"),
        ({"any": HIGH_SCORE}, "c.any", "non-empty list"),
        ({"all": [HIGH_SCORE], "any": [IN_UK]}, "c", "only one of all/any/not"),
        ({"not": {"path": "x", "op": "nope"}}, "c.not.op", "'nope'"),
        ({"all": [HIGH_SCORE, {"any": [IN_UK, {"op": "eqq"}]}]}, "c.all.1.any.1.op", "'eqq'"),
    ],
)
def test_condition_issues_names_the_problem_and_where_it_is(
    condition: Any, where: str, words: str
) -> None:
    issues = condition_issues(condition, "c")

    assert [path for path, _ in issues] == [where]
    assert words in issues[0][1]


def test_unknown_operator_issue_lists_the_known_operators() -> None:
    [(_, message)] = condition_issues({"path": "a", "op": "like"}, "c")

    for op in OPERATORS:
        assert op in message


def test_condition_issues_reports_every_problem_in_a_list() -> None:
    condition = {"any": [{"op": "bad1"}, HIGH_SCORE, {"path": "x", "op": "matches", "value": "["}]}

    issues = condition_issues(condition, "steps.route.config.conditions.0")

    assert [path for path, _ in issues] == [
        "steps.route.config.conditions.0.any.0.op",
        "steps.route.config.conditions.0.any.2.value",
    ]
