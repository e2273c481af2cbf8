"""The README's Python examples must run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_quick_start_runs_and_greets_the_world() -> None:
    quick_start = next(block for block in _python_blocks() if "say-hello" in block)
    namespace: dict[str, object] = {}
    exec(compile(quick_start, "README quick start", "exec"), namespace)
    execution = namespace["ex"]
    assert execution.status == "completed"  # type: ignore[attr-defined]
    assert execution.context["greeting"] == {"message": "Hello, World!"}  # type: ignore[attr-defined]


def test_yaml_greeting_in_readme_is_a_valid_flow(tmp_path: Path) -> None:
    from flowmonkey_celery import Flow

    text = README.read_text(encoding="utf-8")
    yaml_block = re.search(r"```yaml\n(id: greeting.*?)```", text, flags=re.S)
    assert yaml_block is not None
    path = tmp_path / "greeting.yaml"
    path.write_text(yaml_block.group(1), encoding="utf-8")
    flow = Flow.from_file(path)
    assert flow.id == "greeting"
    assert flow.steps["say-hello"].output_key == "greeting"
