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
