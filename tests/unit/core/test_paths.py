"""Dot paths into JSON-like data: reading (`get_path`) and writing (`set_path`)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flowmonkey_celery.core.paths import MISSING, get_path, set_path

ORDER: dict[str, Any] = {
    "user": {"name": "Ada", "address": {"city": "London", "zip": None}},
    "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
    "codes": {"0": "zero"},
    "note": "fragile",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("note", "fragile"),
        ("user.name", "Ada"),
        ("user.address.city", "London"),
        ("user.address", {"city": "London", "zip": None}),
        ("items.0.sku", "A-1"),
        ("items.1.qty", 1),
        ("codes.0", "zero"),  # a numeric segment is a plain key in an object
    ],
)
def test_get_path_reads_nested_objects_and_list_items(path: str, expected: Any) -> None:
    assert get_path(ORDER, path) == expected


def test_get_path_tells_a_stored_none_from_a_missing_key() -> None:
    assert get_path(ORDER, "user.address.zip") is None
    assert get_path(ORDER, "user.address.country") is MISSING


def test_missing_is_falsy_and_shows_as_missing() -> None:
    assert not MISSING
    assert repr(MISSING) == "MISSING"


@pytest.mark.parametrize(
    "path",
    [
        "items.2",  # one past the end
        "items.99.sku",
        "items.first",  # a list has no named members
        "note.0",  # a string is not a list of characters
        "user.name.first",  # nothing below a string
        "user.address.zip.code",  # nothing below a stored None
        "nobody.home",
    ],
)
def test_get_path_returns_missing_where_nothing_is(path: str) -> None:
    assert get_path(ORDER, path) is MISSING


def test_get_path_on_a_list_at_the_top_level_indexes_it() -> None:
    assert get_path([["a", "b"], ["c"]], "0.1") == "b"


def test_get_path_with_a_non_ascii_digit_segment_is_missing_not_a_crash() -> None:
    # "²".isdigit() is True but int("²") fails; a path a user typed must never crash a step.
    assert get_path(ORDER, "items.²") is MISSING


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", None, 3])
def test_get_path_refuses_an_invalid_path(path: Any) -> None:
    with pytest.raises(ValueError, match="path"):
        get_path(ORDER, path)


def test_set_path_writes_a_top_level_key() -> None:
    data: dict[str, Any] = {"a": 1}

    set_path(data, "b", 2)

    assert data == {"a": 1, "b": 2}


def test_set_path_creates_intermediate_objects_and_keeps_siblings() -> None:
    data: dict[str, Any] = {"user": {"name": "Ada"}}

    set_path(data, "user.address.city", "London")
    set_path(data, "results.score.value", 91)

    assert data == {
        "user": {"name": "Ada", "address": {"city": "London"}},
        "results": {"score": {"value": 91}},
    }


def test_set_path_overwrites_an_existing_leaf() -> None:
    data: dict[str, Any] = {"user": {"name": "Ada", "role": "dev"}}

    set_path(data, "user.role", {"title": "lead"})

    assert data == {"user": {"name": "Ada", "role": {"title": "lead"}}}


def test_set_path_replaces_a_none_on_the_way_with_an_object() -> None:
    data: dict[str, Any] = {"result": None}

    set_path(data, "result.status", "ok")

    assert data == {"result": {"status": "ok"}}


@pytest.mark.parametrize(
    ("data", "path", "walked", "kind"),
    [
        ({"user": "Ada"}, "user.name", "user", "str"),
        ({"items": [1, 2]}, "items.0", "items", "list"),
        ({"a": {"b": 5}}, "a.b.c.d", "a.b", "int"),
    ],
)
def test_set_path_refuses_to_overwrite_a_non_object_and_names_the_path(
    data: dict[str, Any], path: str, walked: str, kind: str
) -> None:
    before = copy.deepcopy(data)

    with pytest.raises(ValueError) as raised:
        set_path(data, path, "x")

    message = str(raised.value)
    assert repr(path) in message
    assert repr(walked) in message
    assert kind in message
    assert data == before


@pytest.mark.parametrize("path", ["", "a..b", "a."])
def test_set_path_refuses_an_invalid_path_and_writes_nothing(path: str) -> None:
    data: dict[str, Any] = {"a": {}}

    with pytest.raises(ValueError, match="path"):
        set_path(data, path, 1)

    assert data == {"a": {}}
