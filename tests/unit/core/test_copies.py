"""The engine's copies of executions and contexts: what one holder changes, no other sees."""

from __future__ import annotations

from datetime import UTC, datetime

from flowmonkey_celery import Execution
from flowmonkey_celery.core.execution import Cancellation, ErrorInfo, TimeoutConfig
from flowmonkey_celery.core.json_values import copy_json

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_copy_json_copies_every_nested_object_and_list() -> None:
    original = {"order": {"items": [{"sku": "A", "qty": 1}], "paid": False}, "n": 1.5}
    copied = copy_json(original)
    copied["order"]["items"][0]["qty"] = 2
    copied["order"]["items"].append({"sku": "B"})
    copied["order"]["paid"] = True

    assert copied != original
    assert original == {"order": {"items": [{"sku": "A", "qty": 1}], "paid": False}, "n": 1.5}


def test_copy_json_falls_back_to_deepcopy_for_values_that_are_not_json() -> None:
    inner = {"a": [1]}
    original = {"tuple": (inner,), "when": T0}
    copied = copy_json(original)
    copied["tuple"][0]["a"].append(2)

    assert inner == {"a": [1]}
    assert copied["when"] == T0


def test_a_clone_shares_nothing_mutable_with_the_original() -> None:
    original = Execution(
        id="ex-1",
        flow_id="f",
        flow_version="1.0.0",
        context={"order": {"items": [1, 2]}},
        metadata={"tags": ["a"]},
        error=ErrorInfo(code="X", message="boom", details={"tries": [1]}),
        cancellation=Cancellation(source="user", cancelled_at=T0),
        timeout=TimeoutConfig(execution_timeout_ms=1000),
        created_at=T0,
        updated_at=T0,
    )
    before = original.model_copy(deep=True)
    clone = original.clone()
    assert clone == original

    clone.context["order"]["items"].append(3)
    clone.metadata["tags"].append("b")
    assert clone.error is not None and clone.cancellation is not None and clone.timeout
    clone.error.details["tries"].append(2)
    clone.cancellation.reason = "changed"
    clone.timeout.execution_timeout_ms = 5
    clone.step_count = 9

    assert original == before
