"""`flowmonkey replay` on the embedded default: a new execution at the step, with the context
it had there (patched), committed and enqueued; the original unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.test_cli_control import (
    flowmonkey,
    home,
    queued_steps,
    stored,
    waiting_execution,
)

__all__ = ["home"]  # the fixture, used by name


def test_replay_from_a_step_enqueues_a_linked_execution_with_the_patched_context(
    home: Path,
) -> None:
    original_id = waiting_execution(home, "A-7")
    original = stored(home, original_id)

    result = flowmonkey(
        "replay",
        original_id,
        "--from",
        "manager-approval",
        "--patch",
        '{"order": {"card": "amex"}}',
    )

    assert result.exit_code == 0, result.output
    new_id = result.stdout.strip()
    replayed = stored(home, new_id)
    assert replayed.current_step_id == "manager-approval"
    assert replayed.context["order"]["card"] == "amex"
    assert replayed.context["order"]["id"] == "A-7"
    assert replayed.context["validated"] == original.context["validated"]
    assert replayed.metadata == {"replay_of": original_id, "replay_from_step": "manager-approval"}
    assert stored(home, original_id) == original
    assert queued_steps(home) == [(new_id, replayed.version)]


def test_replay_failed_with_nothing_failed_says_so_as_json(home: Path) -> None:
    result = flowmonkey("replay", "--failed", "--flow", "order-fulfilment", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"replayed": 0, "outcomes": []}


def test_replay_usage_errors_exit_2_and_engine_refusals_exit_1(home: Path) -> None:
    original_id = waiting_execution(home, "A-8")

    assert flowmonkey("replay").exit_code == 2  # neither an id nor --failed
    assert flowmonkey("replay", original_id).exit_code == 2  # no --from
    assert flowmonkey("replay", original_id, "--from", "x", "--patch", "[1]").exit_code == 2
    never_ran = flowmonkey("replay", original_id, "--from", "charge-payment")
    assert never_ran.exit_code == 1
    assert never_ran.stderr.startswith("INVALID_ARGUMENT: ")
    assert "never ran step 'charge-payment'" in never_ran.stderr
    unknown = flowmonkey("replay", "nope", "--from", "validate")
    assert unknown.stderr.startswith("EXECUTION_NOT_FOUND: ")
