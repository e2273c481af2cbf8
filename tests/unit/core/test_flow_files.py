"""Flows from YAML/JSON files and folders, and the `flowmonkey validate` command."""

from __future__ import annotations

import json
from importlib.resources import as_file, files
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowmonkey_celery import ErrorCode, Flow, FlowValidationError
from flowmonkey_celery.cli import main
from flowmonkey_celery.core.flow_files import load_flow_folder

GREETING_YAML = """\
id: greeting
version: 1.0.0
name: Greeting Flow
initial_step_id: say-hello
steps:
  say-hello:
    type: greet
    input: { type: key, key: user }
    output_key: greeting
    transitions: { on_success: null }
"""

BAD_YAML = """\
id: broken
initial_step_id: start
steps:
  a:
    type: t
    transitions: { on_success: nowhere }
"""

GREETING_JSON = {
    "id": "greeting",
    "version": "1.0.0",
    "name": "Greeting Flow",
    "initialStepId": "say-hello",
    "steps": {
        "say-hello": {
            "id": "say-hello",
            "type": "greet",
            "config": {},
            "input": {"type": "key", "key": "user"},
            "outputKey": "greeting",
            "transitions": {"onSuccess": None},
        }
    },
}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _error_from(path: Path | str) -> FlowValidationError:
    with pytest.raises(FlowValidationError) as caught:
        Flow.from_file(path)
    return caught.value


# --- Flow.from_file ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_from_file_loads_yaml(tmp_path: Path, suffix: str) -> None:
    flow = Flow.from_file(_write(tmp_path, f"greeting{suffix}", GREETING_YAML))

    assert flow.id == "greeting"
    assert flow.initial_step_id == "say-hello"
    assert flow.steps["say-hello"].output_key == "greeting"


def test_from_file_loads_flowmonkey_json(tmp_path: Path) -> None:
    path = _write(tmp_path, "greeting.json", json.dumps(GREETING_JSON))

    flow = Flow.from_file(str(path))  # a plain string path works too

    assert flow == Flow.from_dict(GREETING_JSON)
    assert flow.to_dict() == GREETING_JSON


def test_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.yaml", "id: x\nsteps:\n  a: {type: t\n  b: [\n")

    error = _error_from(path)

    assert error.code == ErrorCode.INVALID_FLOW
    assert error.message.startswith(f"{path}: not valid YAML")
    assert "line" in error.message


def test_json_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.json", '{"id": "x", "steps": ')

    assert _error_from(path).message.startswith(f"{path}: not valid JSON")


def test_missing_file_is_reported_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    error = _error_from(path)

    assert error.code == ErrorCode.INVALID_FLOW
    assert str(path) in error.message
    assert "cannot read" in error.message


@pytest.mark.parametrize("name", ["flow.txt", "flow.toml", "flow"])
def test_unsupported_suffix_says_which_ones_work(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, GREETING_YAML)

    error = _error_from(path)

    assert str(path) in error.message
    assert ".yaml, .yml or .json" in error.message


def test_invalid_flow_file_prefixes_the_message_with_the_file_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.yaml", BAD_YAML)

    error = _error_from(path)

    assert error.message.startswith(f"{path}: flow 'broken' is invalid (2 problems)")
    assert {where for where, _ in error.issues} == {
        "initial_step_id",
        "steps.a.transitions.on_success",
    }
    assert str(error).startswith(f"[INVALID_FLOW] {path}: ")


def test_empty_yaml_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "empty.yaml", "")

    error = _error_from(path)

    assert str(path) in error.message
    assert "must be an object" in error.message


# --- load_flow_folder ----------------------------------------------------------------------------


def test_load_flow_folder_loads_every_flow_file_sorted_by_name(tmp_path: Path) -> None:
    _write(tmp_path, "b-greeting.yaml", GREETING_YAML)
    _write(tmp_path, "a-json.json", json.dumps({**GREETING_JSON, "id": "json-greeting"}))
    _write(tmp_path, "README.md", "not a flow")

    flows = load_flow_folder(tmp_path)

    assert [flow.id for flow in flows] == ["json-greeting", "greeting"]


def test_load_flow_folder_reports_the_problems_of_every_bad_file(tmp_path: Path) -> None:
    _write(tmp_path, "good.yaml", GREETING_YAML)
    _write(tmp_path, "bad.yaml", BAD_YAML)
    _write(tmp_path, "syntax.json", "{ nope")

    with pytest.raises(FlowValidationError) as caught:
        load_flow_folder(tmp_path)

    paths = [where for where, _ in caught.value.issues]
    assert "bad.yaml:initial_step_id" in paths
    assert "bad.yaml:steps.a.transitions.on_success" in paths
    assert "syntax.json" in paths
    assert not any(where.startswith("good.yaml") for where in paths)
    assert "3 problem(s)" in caught.value.message


def test_load_flow_folder_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FlowValidationError) as caught:
        load_flow_folder(tmp_path / "flows")

    assert "does not exist" in caught.value.message


# --- flowmonkey validate -------------------------------------------------------------------------


def _validate(*args: str) -> Result:
    # A wide terminal keeps rich from wrapping the lines we look for.
    return CliRunner().invoke(main, ["validate", *args], env={"COLUMNS": "300"})


def test_cli_validate_good_file_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "greeting.yaml", GREETING_YAML)

    result = _validate("greeting.yaml")

    assert result.exit_code == 0, result.output
    assert "greeting.yaml: greeting 1.0.0, 1 steps" in result.output


def test_cli_validate_bad_file_exits_1_listing_every_issue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "bad.yaml", BAD_YAML)

    result = _validate("bad.yaml")

    assert result.exit_code == 1
    assert "bad.yaml: 2 problem(s)" in result.output
    assert "initial_step_id: 'start' is not a step of this flow" in result.output
    assert "steps.a.transitions.on_success: 'nowhere' is not a step of this flow" in result.output


def test_cli_validate_folder_checks_every_file_and_fails_if_any_is_bad(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flows").mkdir()
    _write(tmp_path / "flows", "good.yaml", GREETING_YAML)
    _write(tmp_path / "flows", "bad.yml", BAD_YAML)

    result = _validate("flows")

    assert result.exit_code == 1
    assert "good.yaml: greeting 1.0.0" in result.output
    assert "bad.yml: 2 problem(s)" in result.output


def test_cli_validate_with_no_flow_files_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()

    result = _validate("empty")

    assert result.exit_code == 2
    assert "no .yaml, .yml or .json files found" in result.output


# --- the packaged example ------------------------------------------------------------------------


def test_packaged_order_fulfilment_example_is_a_valid_flow() -> None:
    resource = files("flowmonkey_celery") / "examples" / "flows" / "order-fulfilment.yaml"
    with as_file(resource) as path:
        flow = Flow.from_file(path)
        result = _validate(str(path))

    assert flow.id == "order-fulfilment"
    assert flow.initial_step_id == "validate"
    assert len(flow.steps) == 8
    assert flow.steps["manager-approval"].transitions.resume_target() == "check-approval"
    assert result.exit_code == 0, result.output
