"""The README's Redis coordination example runs as written, against real Redis."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.services import REDIS_URL

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_redis_example_runs(redis_client: Any, redis_prefix: str, capsys: Any) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    example = next(block for block in blocks if "RedisLockManager.from_url" in block)
    example = example.replace("redis://localhost:6379/0", REDIS_URL).replace(
        'prefix="flowmonkey"', f'prefix="{redis_prefix}"'
    )
    namespace: dict[str, Any] = {}
    exec(compile(example, "README redis example", "exec"), namespace)
    try:
        assert namespace["lock"] is not None
        # The lock was released by the `with` block: it can be taken again.
        assert namespace["locks"].acquire("execution:42", ttl=5) is not None
    finally:
        namespace["signals"].close()
