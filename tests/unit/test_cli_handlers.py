"""`flowmonkey handlers` and the config check in `flowmonkey validate`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from flowmonkey_celery.cli import main


def test_handlers_lists_the_built_in_types_with_their_config_keys() -> None:
    result = CliRunner().invoke(main, ["handlers"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for handler_type in ("conditional", "switch", "delay"):
        assert handler_type in result.output
    assert "ms, seconds, minutes, hours, days" in result.output


def test_handlers_json_gives_every_schema() -> None:
    result = CliRunner().invoke(main, ["handlers", "--json"])
    assert result.exit_code == 0, result.output
    listed = {entry["type"]: entry for entry in json.loads(result.output)}
    assert listed["delay"]["config_schema"]["additionalProperties"] is False
    assert listed["delay"]["stateful"] is False


def test_handlers_with_an_unknown_type_names_the_registered_ones() -> None:
    result = CliRunner().invoke(main, ["handlers", "fax"])
    assert result.exit_code == 2
    assert "no handler for fax; registered: conditional" in result.output


def test_validate_checks_step_configs_against_handler_schemas(tmp_path: Path) -> None:
    flow = tmp_path / "pause.yaml"
    flow.write_text(
        "id: pause\ninitial_step_id: p\nsteps:\n  p: { type: delay, config: { weeks: 1 } }\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["validate", str(flow)])
    assert result.exit_code == 1
    assert "steps.p.config: unknown key 'weeks'; allowed: ms, seconds, minutes" in result.output


def test_validate_reports_structural_and_config_problems_in_one_pass(tmp_path: Path) -> None:
    flow = tmp_path / "pause.yaml"
    flow.write_text(
        "id: pause\ninitial_step_id: p\nsteps:\n"
        "  p: { type: delay, config: { secnds: 1 }, transitions: { on_success: gone } }\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["validate", str(flow)])
    assert result.exit_code == 1
    assert "2 problem(s)" in result.output
    assert "unknown key 'secnds' (did you mean 'seconds'?)" in result.output
    assert "gone" in result.output
