"""What the history keeps of a step's data: the context before it and its output.

The execution detail page shows them, and `Engine.replay` starts a new execution from the
context as it was before a step. Large values are left out (their size is noted instead), so a
flow moving big documents does not multiply them into every history row.
"""

from __future__ import annotations

import json
from typing import Any

# The largest context or output (as compact JSON, UTF-8) kept in a history event.
DEFAULT_SNAPSHOT_BYTES = 64 * 1024


def snapshot_of(name: str, value: Any, limit: int) -> dict[str, Any]:
    """`{name: copy of value}`, or `{name + "_omitted_bytes": size}` when the value is over
    `limit` bytes of JSON; `{}` when `limit` is 0 (snapshots off).

    A copy, because the engine goes on changing the execution's context in place."""
    if limit <= 0:
        return {}
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode())
    if size > limit:
        return {f"{name}_omitted_bytes": size}
    return {name: json.loads(text)}
