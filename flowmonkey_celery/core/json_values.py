"""Keeping the context plain JSON, so every store holds and returns exactly the same data."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import decimal
import enum
import json
import uuid
from typing import Any

from pydantic import BaseModel


def _encode(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def to_json_value(value: Any) -> Any:
    """`value` as plain JSON data (dicts, lists, str, int, float, bool, None).

    Pydantic models, dataclasses, datetimes, UUIDs, decimals, enums and sets are converted;
    tuples become lists.

    Raises:
        TypeError: something that has no JSON form (a socket, a function, NaN...).
    """
    try:
        return json.loads(json.dumps(value, default=_encode, allow_nan=False))
    except ValueError as exc:  # NaN / Infinity, or a circular reference
        raise TypeError(str(exc)) from exc


_IMMUTABLE = (str, int, float, bool, type(None))


def copy_json(value: Any) -> Any:
    """A deep copy of plain JSON data, several times faster than `copy.deepcopy` (which
    handles cycles and arbitrary objects the context never holds). Anything that is not a
    dict, list or JSON scalar is handed to `copy.deepcopy`."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    if isinstance(value, _IMMUTABLE):
        return value
    return copy.deepcopy(value)


# Deeper than any real document; far below where json, deepcopy and serialisers recurse out.
MAX_JSON_DEPTH = 64


def json_problem(value: Any) -> str | None:
    """What would make plain JSON data unstorable or unreadable somewhere, or None: nesting
    deeper than MAX_JSON_DEPTH, a NUL character (PostgreSQL text cannot hold one) or an unpaired
    UTF-16 surrogate (not text in UTF-8), in a key or a string."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return problem
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"it is nested more than {MAX_JSON_DEPTH} levels deep"
            if isinstance(item, dict):
                for key, child in item.items():
                    problem = _text_problem(key) if isinstance(key, str) else None
                    if problem:
                        return problem
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a text holds a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a text holds an unpaired surrogate (such as \\ud800): it is not valid Unicode"
    return None
