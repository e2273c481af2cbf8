"""Dot paths into JSON-like data: `user.address.city`, `items.0.sku`."""

from __future__ import annotations

import re
from typing import Any, Final


class _Missing:
    """Marks "no value at this path", which differs from a stored `None`."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def split_path(path: str) -> list[str]:
    """Split a dot path; raises ValueError for an empty path or an empty segment."""
    if not isinstance(path, str) or not path:
        raise ValueError("a path must be a non-empty string like 'user.address.city'")
    parts = path.split(".")
    if any(part == "" for part in parts):
        raise ValueError(f"path {path!r} has an empty segment")
    return parts


def get_path(data: Any, path: str) -> Any:
    """Value at `path`, or `MISSING`. A numeric segment indexes a list."""
    current = data
    for part in split_path(path):
        if isinstance(current, dict):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list | tuple) and _is_index(part):
            index = int(part)
            if not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Store `value` at `path` in `data`, creating intermediate objects.

    Raises:
        ValueError: a segment on the way holds a non-object value (it is never overwritten).
    """
    parts = split_path(path)
    current: dict[str, Any] = data
    for depth, part in enumerate(parts[:-1]):
        nxt = current.get(part)
        if nxt is None:
            nxt = {}
            current[part] = nxt
        elif not isinstance(nxt, dict):
            walked = ".".join(parts[: depth + 1])
            raise ValueError(
                f"cannot write {path!r}: {walked!r} holds a {type(nxt).__name__}, not an object"
            )
        current = nxt
    current[parts[-1]] = value


_INDEX = re.compile(r"-?[0-9]+")


def _is_index(part: str) -> bool:
    return _INDEX.fullmatch(part) is not None
