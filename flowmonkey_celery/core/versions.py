"""Semantic versions for flows: "latest" is by version order, so 1.10.0 > 1.9.0."""

from __future__ import annotations

import re
from typing import Any

_VERSION = re.compile(
    r"^v?(?P<nums>\d+(?:\.\d+){0,2})(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


def parse_version(text: str) -> tuple[Any, ...] | None:
    """A sortable key for `text`, or None if it is not a version like 1, 1.2 or 1.2.3-rc.1.

    A pre-release sorts before its release (1.0.0-rc.1 < 1.0.0), as semver says.
    """
    match = _VERSION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    numbers = [int(n) for n in match["nums"].split(".")]
    numbers += [0] * (3 - len(numbers))
    pre = match["pre"]
    if pre is None:
        return (*numbers, 1, ())
    identifiers = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".")
    )
    return (*numbers, 0, identifiers)


def version_key(text: str) -> tuple[Any, ...]:
    """Like `parse_version`, but unparseable versions sort first instead of failing."""
    return parse_version(text) or (-1, -1, -1, 0, ())
