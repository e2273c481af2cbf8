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


def test_resume_token_example_runs_as_written() -> None:
    from flowmonkey_celery import Engine, FlowRegistry, HandlerRegistry, MemoryStore

    block = next(b for b in _python_blocks() if "resume_with_token" in b)
    engine = Engine(MemoryStore(), HandlerRegistry(), FlowRegistry())
    namespace: dict[str, object] = {"engine": engine}
    exec(compile(block, "README resume tokens", "exec"), namespace)
    assert namespace["ex"].status == "completed"  # type: ignore[attr-defined]


def test_every_yaml_step_example_validates() -> None:
    """Each `type:` snippet of a step in the README is a valid step of a one-step flow."""
    import yaml

    from flowmonkey_celery import FlowRegistry, HandlerRegistry

    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    snippets = [b for b in blocks if re.match(r"[\w-]+:\n  type:", b)]
    assert len(snippets) >= 3
    for snippet in snippets:
        steps = yaml.safe_load(snippet)
        ((step_id, step),) = steps.items()
        targets = {t for t in (step.get("transitions") or {}).values() if isinstance(t, str)}
        flow = {
            "id": f"readme-{step_id}",
            "initial_step_id": step_id,
            "steps": {
                step_id: {"id": step_id, **step},
                **{t: {"id": t, "type": "delay", "config": {"ms": 1}} for t in targets},
            },
        }
        if step["type"] not in {
            "delay",
            "wait_for_signal",
            "subflow",
            "parallel",
            "http",
            "webhook",
            "transform",
            "email",
            "llm",
        }:
            continue  # needs a handler of the reader's own, or more steps
        FlowRegistry(handlers=HandlerRegistry()).register(flow)


def test_stateful_handler_example_runs_as_a_job() -> None:
    from flowmonkey_celery import Engine, FlowRegistry, HandlerRegistry, MemoryStore

    block = next(b for b in _python_blocks() if "save_checkpoint" in b)
    namespace: dict[str, object] = {"copy_chunk": lambda done: done + 25}
    exec(compile(block, "README jobs", "exec"), namespace)
    export = namespace["Export"]()  # type: ignore[operator]
    flow = {
        "id": "exporting",
        "initial_step_id": "export",
        "steps": {"export": {"id": "export", "type": "export", "output_key": "result"}},
    }
    engine = Engine(MemoryStore(), HandlerRegistry([export]), FlowRegistry([flow]))
    execution = engine.run(engine.create("exporting", {"rows": 100}).execution.id)

    assert execution.context["result"] == {"exported": 100}
    (job,) = engine.store.list_jobs(execution.id)
    assert job.checkpoint == {"done": 100}


def test_replay_example_runs_as_written() -> None:
    block = next(b for b in _python_blocks() if "engine.replay(" in b)
    namespace: dict[str, object] = {}
    exec(compile(block, "README replay", "exec"), namespace)
    assert namespace["done"].status == "completed"  # type: ignore[attr-defined]


def test_tracing_example_runs_as_written() -> None:
    block = next(b for b in _python_blocks() if "install_tracing(engine, provider)" in b)
    namespace: dict[str, object] = {}
    exec(compile(block, "README tracing", "exec"), namespace)
    names = [span.name for span in namespace["exporter"].get_finished_spans()]  # type: ignore[attr-defined]
    assert names == ["checkout", "flowmonkey.step charge", "flowmonkey.step ship"]
