"""FlowRegistry (versions by semver, pinning) and HandlerRegistry (types, duplicates)."""

from __future__ import annotations

from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    ExecutionStatus,
    Flow,
    FlowMonkeyError,
    FlowRegistry,
    FlowValidationError,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.core.versions import parse_version


def _flow(version: str, step_type: str = "t", **step: Any) -> dict[str, Any]:
    return {
        "id": "orders",
        "version": version,
        "initialStepId": "a",
        "steps": {"a": {"type": step_type, **step}},
    }


def _registry(*versions: str) -> FlowRegistry:
    flows = FlowRegistry()
    for version in versions:
        flows.register(_flow(version))
    return flows


# --- FlowRegistry: versions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "latest"),
    [
        (["1.9.0", "1.10.0", "1.2.0"], "1.10.0"),
        (["1.0.0", "1.0.0-rc.1"], "1.0.0"),
        (["0.9.0", "1.0.0-rc.1"], "1.0.0-rc.1"),
        (["1.0.0-rc.2", "1.0.0-rc.10"], "1.0.0-rc.10"),
        (["2.0.0", "10.0.0", "9.9.9"], "10.0.0"),
    ],
)
def test_latest_is_chosen_by_semantic_version(versions: list[str], latest: str) -> None:
    flows = _registry(*versions)

    assert flows.get("orders").version == latest


def test_versions_lists_registered_versions_oldest_first() -> None:
    flows = _registry("1.10.0", "1.0.0-rc.1", "1.9.0", "1.0.0")

    assert flows.versions("orders") == ["1.0.0-rc.1", "1.0.0", "1.9.0", "1.10.0"]
    assert flows.versions("unknown") == []


def test_get_by_version_returns_that_definition() -> None:
    flows = FlowRegistry()
    flows.register(_flow("1.0.0", "old-type"))
    flows.register(_flow("2.0.0", "new-type"))

    assert flows.get("orders", "1.0.0").steps["a"].type == "old-type"
    assert flows.get("orders").steps["a"].type == "new-type"


def test_unknown_flow_is_flow_not_found_naming_the_registered_flows() -> None:
    flows = _registry("1.0.0")

    with pytest.raises(FlowMonkeyError) as caught:
        flows.get("invoices")

    assert caught.value.code == ErrorCode.FLOW_NOT_FOUND
    assert "'invoices'" in caught.value.message
    assert "orders" in caught.value.message


def test_unknown_version_is_flow_not_found_naming_the_registered_versions() -> None:
    flows = _registry("1.0.0", "1.1.0")

    with pytest.raises(FlowMonkeyError) as caught:
        flows.get("orders", "3.0.0")

    assert caught.value.code == ErrorCode.FLOW_NOT_FOUND
    assert "3.0.0" in caught.value.message
    assert "1.0.0, 1.1.0" in caught.value.message


def test_registering_an_identical_flow_again_is_a_no_op() -> None:
    flows = FlowRegistry()
    first = flows.register(_flow("1.0.0"))

    # Same definition, spelled in snake_case with a list of steps.
    again = flows.register(
        {
            "id": "orders",
            "version": "1.0.0",
            "initial_step_id": "a",
            "steps": [{"id": "a", "type": "t"}],
        }
    )

    assert again == first
    assert flows.versions("orders") == ["1.0.0"]


def test_changing_a_registered_version_is_refused() -> None:
    flows = FlowRegistry()
    flows.register(_flow("1.0.0", "charge"))

    with pytest.raises(FlowValidationError) as caught:
        flows.register(_flow("1.0.0", "refund"))

    assert caught.value.code == ErrorCode.INVALID_FLOW
    assert "new version" in caught.value.message
    assert flows.get("orders", "1.0.0").steps["a"].type == "charge"


def test_adding_explicit_on_resume_null_to_a_registered_version_is_refused() -> None:
    # Absent on_resume continues to on_success after a wait; an explicit null completes instead,
    # so the two definitions behave differently and must not share a version.
    flows = FlowRegistry()
    flows.register(
        {
            "id": "orders",
            "version": "1.0.0",
            "initialStepId": "a",
            "steps": {"a": {"type": "t", "transitions": {"onSuccess": "b"}}, "b": {"type": "t"}},
        }
    )

    with pytest.raises(FlowValidationError):
        flows.register(
            {
                "id": "orders",
                "version": "1.0.0",
                "initialStepId": "a",
                "steps": {
                    "a": {"type": "t", "transitions": {"onSuccess": "b", "onResume": None}},
                    "b": {"type": "t"},
                },
            }
        )

    assert flows.get("orders", "1.0.0").steps["a"].transitions.resume_target() == "b"


def test_register_validates_and_reports_every_problem() -> None:
    flows = FlowRegistry()

    with pytest.raises(FlowValidationError) as caught:
        flows.register(
            {"id": "bad", "initialStepId": "x", "steps": {"a": {"type": "t"}}, "version": "v?"}
        )

    assert {path for path, _ in caught.value.issues} == {"initial_step_id", "version"}
    assert "bad" not in flows


def test_register_accepts_a_flow_object() -> None:
    flows = FlowRegistry()
    flow = Flow.from_dict(_flow("1.2.3"))

    assert flows.register(flow) == flow
    assert flows.get("orders") == flow


# --- FlowRegistry: executions pin their version --------------------------------------------------


@handler("ask")
def _ask(params: HandlerParams) -> StepResult:
    return Result.wait_for_signal("waiting for approval")


@handler("mark")
def _mark(params: HandlerParams) -> StepResult:
    return Result.success(params.step.config["label"])


def _pinned_flow(version: str, label: str) -> dict[str, Any]:
    return {
        "id": "approval",
        "version": version,
        "initialStepId": "ask",
        "steps": {
            "ask": {"type": "ask", "transitions": {"onResume": "finish"}},
            "finish": {"type": "mark", "config": {"label": label}, "outputKey": "ran"},
        },
    }


def test_execution_keeps_running_its_version_after_a_newer_one_registers() -> None:
    flows = FlowRegistry([_pinned_flow("1.0.0", "v1 step")])
    engine = Engine(MemoryStore(), HandlerRegistry([_ask, _mark]), flows, clock=ManualClock())
    old = engine.create("approval", {}).execution
    assert engine.run(old.id).status == ExecutionStatus.WAITING

    flows.register(_pinned_flow("2.0.0", "v2 step"))
    engine.resume(old.id, {"approved": True})
    finished = engine.run(old.id)

    assert finished.status == ExecutionStatus.COMPLETED
    assert finished.flow_version == "1.0.0"
    assert finished.context["ran"] == "v1 step"

    new = engine.create("approval", {}).execution
    assert new.flow_version == "2.0.0"
    engine.run(new.id)
    engine.resume(new.id)
    assert engine.run(new.id).context["ran"] == "v2 step"


# --- HandlerRegistry ----------------------------------------------------------------------------


@handler("greet")
def _greet(params: HandlerParams) -> StepResult:
    return Result.success({"message": f"Hello, {params.input['name']}!"})


class _ShoutHandler:
    """A handler object: just `.type` and `.execute(params)`."""

    type = "shout"

    def execute(self, params: HandlerParams) -> StepResult:
        return Result.success(str(params.input).upper())


def test_routing_and_built_in_handlers_are_registered_from_the_start() -> None:
    registry = HandlerRegistry()

    assert {"conditional", "switch", "delay"} <= set(registry.types())
    assert registry.get("conditional").type == "conditional"
    assert registry.get("switch").type == "switch"


def test_duplicate_handler_type_is_refused() -> None:
    registry = HandlerRegistry([_greet])

    @handler("greet")
    def other_greet(params: HandlerParams) -> StepResult:
        return Result.success("hi")

    with pytest.raises(FlowMonkeyError) as caught:
        registry.register(other_greet)

    assert caught.value.code == ErrorCode.DUPLICATE_HANDLER
    assert "'greet'" in caught.value.message
    assert "replace=True" in caught.value.message
    assert registry.get("greet") is _greet


def test_replace_true_swaps_the_handler() -> None:
    registry = HandlerRegistry([_greet])

    @handler("greet")
    def other_greet(params: HandlerParams) -> StepResult:
        return Result.success("hi")

    registry.register(other_greet, replace=True)

    assert registry.get("greet") is other_greet


def test_object_with_type_and_execute_is_accepted_and_runs() -> None:
    registry = HandlerRegistry([_ShoutHandler()])
    flows = FlowRegistry(
        [
            {
                "id": "loud",
                "initialStepId": "s",
                "steps": {
                    "s": {
                        "type": "shout",
                        "input": {"type": "key", "key": "word"},
                        "outputKey": "out",
                    }
                },
            }
        ]
    )
    engine = Engine(MemoryStore(), registry, flows, clock=ManualClock())

    execution = engine.run(engine.create("loud", {"word": "hey"}).execution.id)

    assert "shout" in registry
    assert execution.status == ExecutionStatus.COMPLETED
    assert execution.context["out"] == "HEY"


class _NoExecute:
    type = "x"


class _NoType:
    def execute(self, params: HandlerParams) -> StepResult:
        return Result.success(None)


class _ExecuteNotCallable:
    type = "x"
    execute = "not a method"


class _NonStringType:
    type = 42

    def execute(self, params: HandlerParams) -> StepResult:
        return Result.success(None)


def _plain_function(params: HandlerParams) -> StepResult:
    return Result.success(None)


@pytest.mark.parametrize(
    "candidate",
    [
        42,
        "greet",
        None,
        _plain_function,
        _NoExecute(),
        _NoType(),
        _ExecuteNotCallable(),
        _NonStringType(),
    ],
    ids=[
        "int",
        "str",
        "none",
        "undecorated-function",
        "no-execute",
        "no-type",
        "execute-not-callable",
        "non-string-type",
    ],
)
def test_non_handlers_are_refused_with_invalid_argument(candidate: Any) -> None:
    registry = HandlerRegistry()

    with pytest.raises(FlowMonkeyError) as caught:
        registry.register(candidate)

    assert caught.value.code == ErrorCode.INVALID_ARGUMENT
    assert "@handler" in caught.value.message
    assert registry.types() == HandlerRegistry().types()  # nothing added


def test_get_unknown_handler_is_handler_not_found_naming_registered_types() -> None:
    registry = HandlerRegistry([_greet])

    with pytest.raises(FlowMonkeyError) as caught:
        registry.get("fax")

    assert caught.value.code == ErrorCode.HANDLER_NOT_FOUND
    assert "'fax'" in caught.value.message
    assert f"registered: {', '.join(registry.types())}" in caught.value.message
    assert "greet" in registry.types()


# --- parse_version ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.9.0", "1.10.0"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-alpha.2", "1.0.0-alpha.10"),
        ("1.0.0-alpha.10", "1.0.0-beta"),
        ("1.0.0-rc.9", "1.0.0-rc.10"),
        ("0.9.9", "1.0.0-rc.1"),
        ("1.2", "1.2.1"),
    ],
)
def test_parse_version_orders_by_semver(lower: str, higher: str) -> None:
    low, high = parse_version(lower), parse_version(higher)

    assert low is not None and high is not None
    assert low < high


@pytest.mark.parametrize(
    ("a", "b"), [("1", "1.0.0"), ("1.2", "1.2.0"), ("v1.2.3", "1.2.3"), ("1.0.0+build.7", "1.0.0")]
)
def test_parse_version_treats_equivalent_spellings_alike(a: str, b: str) -> None:
    assert parse_version(a) is not None
    assert parse_version(a) == parse_version(b)


@pytest.mark.parametrize("text", ["", "abc", "1.2.3.4", "1.0.0-", "1.x", None, 1])
def test_parse_version_returns_none_for_non_versions(text: Any) -> None:
    assert parse_version(text) is None


def test_a_version_stored_by_another_process_is_found_on_a_miss() -> None:
    stored: list[Flow] = []
    flows = FlowRegistry()
    flows.source = lambda: list(stored)
    stored.append(
        Flow.from_dict(
            {
                "id": "late",
                "initialStepId": "a",
                "steps": {"a": {"type": "delay", "config": {"ms": 1}}},
            }
        )
    )

    assert flows.get("late").id == "late"


def test_a_newer_version_stored_by_another_process_becomes_the_latest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flowmonkey_celery.core.registries as registries

    def version(v: str) -> Flow:
        steps = {"a": {"type": "delay", "config": {"ms": 1}}}
        return Flow.from_dict({"id": "f", "version": v, "initialStepId": "a", "steps": steps})

    stored = [version("1.0.0")]
    flows = FlowRegistry()
    flows.source = lambda: list(stored)
    assert flows.get("f").version == "1.0.0"
    stored.append(version("1.1.0"))
    assert flows.get("f").version == "1.0.0"  # looked up again only now and then
    monkeypatch.setattr(registries, "LATEST_SECONDS", 0.0)
    monkeypatch.setattr(registries, "REFRESH_SECONDS", 0.0)
    assert flows.get("f").version == "1.1.0"
