"""Handler metadata, config schemas checked at registration, and the built-in `delay` step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    ExecutionStatus,
    FlowMonkeyError,
    FlowRegistry,
    FlowValidationError,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    WaitKind,
)
from flowmonkey_celery.core.handler_info import HandlerInfo

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Notify:
    """A handler with a config schema: `channel` required, `retries` an integer."""

    type = "notify"
    metadata: dict[str, Any] = {
        "type": "notify",
        "name": "Notify",
        "description": "Tell someone",
        "category": "integration",
        "stateful": False,
        "config_schema": {
            "type": "object",
            "required": ["channel"],
            "properties": {
                "channel": {"type": "string"},
                "retries": {"type": "integer", "minimum": 0},
                "target": {
                    "type": "object",
                    "properties": {"port": {"type": "integer"}},
                },
            },
            "additionalProperties": False,
        },
    }

    def execute(self, params: HandlerParams) -> StepResult:
        return Result.success({"sent": params.config["channel"]})


def notify_flow(config: dict[str, Any], flow_id: str = "notifying") -> dict[str, Any]:
    return {
        "id": flow_id,
        "initialStepId": "tell",
        "steps": {"tell": {"type": "notify", "config": config, "outputKey": "told"}},
    }


def test_handler_info_reads_the_metadata() -> None:
    info = HandlerRegistry([Notify()]).info("notify")
    assert info == HandlerInfo(
        type="notify",
        name="Notify",
        description="Tell someone",
        category="integration",
        stateful=False,
        config_schema=Notify.metadata["config_schema"],
    )


def test_every_built_in_handler_describes_itself_with_a_config_schema() -> None:
    infos = {info.type: info for info in HandlerRegistry().infos()}
    assert infos["delay"].config_schema is not None
    assert infos["delay"].description


def test_a_step_config_breaking_its_handler_schema_is_refused_at_registration() -> None:
    flows = FlowRegistry(handlers=HandlerRegistry([Notify()]))
    with pytest.raises(FlowValidationError) as caught:
        flows.register(notify_flow({"retries": "three", "target": {"port": "x"}, "colour": 1}))
    error = caught.value
    assert error.code == ErrorCode.INVALID_FLOW
    paths = [path for path, _ in error.issues]
    assert paths == [
        "steps.tell.config",  # channel missing, colour unknown
        "steps.tell.config",
        "steps.tell.config.retries",
        "steps.tell.config.target.port",
    ]
    messages = " | ".join(message for _, message in error.issues)
    assert "missing required key 'channel'" in messages
    assert "unknown key 'colour'; allowed: channel, retries, target" in messages
    assert "must be a whole number, not 'three'" in messages
    assert "notifying" not in flows  # nothing registered


def test_structural_and_config_problems_are_reported_together() -> None:
    flows = FlowRegistry(handlers=HandlerRegistry([Notify()]))
    flow = notify_flow({"chanel": "sms"})
    flow["steps"]["tell"]["transitions"] = {"onSuccess": "nowhere"}
    with pytest.raises(FlowValidationError) as caught:
        flows.register(flow)
    issues = dict(caught.value.issues)
    assert "steps.tell.transitions.onSuccess" in " ".join(issues) or any(
        "nowhere" in message for message in issues.values()
    )
    assert "unknown key 'chanel' (did you mean 'channel'?)" in issues["steps.tell.config"]


def test_a_value_matching_none_of_the_alternatives_names_the_closest_problem() -> None:
    class Either(Notify):
        type = "either"
        metadata = {
            "config_schema": {
                "type": "object",
                "properties": {
                    "when": {
                        "oneOf": [
                            {"type": "integer", "minimum": 0},
                            {
                                "type": "object",
                                "properties": {"at": {"type": "string"}},
                                "required": ["at"],
                                "additionalProperties": False,
                            },
                        ]
                    }
                },
            }
        }

    flows = FlowRegistry(handlers=HandlerRegistry([Either()]))
    flow = notify_flow({"when": {"att": "9:00"}})
    flow["steps"]["tell"]["type"] = "either"
    with pytest.raises(FlowValidationError) as caught:
        flows.register(flow)
    [(path, message)] = caught.value.issues
    assert path == "steps.tell.config.when"
    assert "not valid under any" not in message
    assert "'att' (did you mean 'at'?)" in message or "missing required key 'at'" in message


def test_a_misspelt_choice_gets_a_suggestion() -> None:
    class Pick(Notify):
        type = "pick"
        metadata = {
            "config_schema": {
                "type": "object",
                "properties": {"method": {"enum": ["GET", "POST", "DELETE"]}},
            }
        }

    flows = FlowRegistry(handlers=HandlerRegistry([Pick()]))
    flow = notify_flow({"method": "POTS"})
    flow["steps"]["tell"]["type"] = "pick"
    with pytest.raises(FlowValidationError) as caught:
        flows.register(flow)
    [(path, message)] = caught.value.issues
    assert path == "steps.tell.config.method"
    assert "'POTS' is not one of ['GET', 'POST', 'DELETE'] (did you mean 'POST'?)" in message


def test_an_engine_attaches_its_handlers_so_later_registrations_are_checked() -> None:
    handlers, flows = HandlerRegistry([Notify()]), FlowRegistry()
    Engine(MemoryStore(), handlers, flows)
    with pytest.raises(FlowValidationError):
        flows.register(notify_flow({}))
    flows.register(notify_flow({"channel": "sms"}))
    assert "notifying" in flows


def test_a_flow_registered_before_the_engine_existed_is_checked_at_create() -> None:
    flows = FlowRegistry([notify_flow({"retries": -1, "channel": "sms"})])  # no handlers yet
    engine = Engine(MemoryStore(), HandlerRegistry([Notify()]), flows)
    store_before = engine.store.list_executions()
    with pytest.raises(FlowValidationError) as caught:
        engine.create("notifying")
    assert caught.value.issues[0][0] == "steps.tell.config.retries"
    assert engine.store.list_executions() == store_before == []


def test_a_valid_config_runs() -> None:
    engine = Engine(MemoryStore(), HandlerRegistry([Notify()]), FlowRegistry())
    engine.flows.register(notify_flow({"channel": "sms", "retries": 2}))
    execution = engine.run(engine.create("notifying").execution.id)
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.context["told"] == {"sent": "sms"}


def test_a_handler_declaring_an_invalid_schema_is_refused_when_registered() -> None:
    class Broken(Notify):
        type = "broken"
        metadata = {"config_schema": {"type": "no-such-type"}}

    with pytest.raises(FlowMonkeyError) as caught:
        HandlerRegistry([Broken()])
    assert caught.value.code == ErrorCode.INVALID_ARGUMENT
    assert "'broken' declares an invalid config_schema" in caught.value.message


def test_your_handler_of_a_built_in_type_takes_its_place_but_not_twice() -> None:
    class MyDelay:
        type = "delay"

        def execute(self, params: HandlerParams) -> StepResult:
            return Result.success("mine")

    mine = MyDelay()
    registry = HandlerRegistry([mine])
    assert registry.get("delay") is mine
    with pytest.raises(FlowMonkeyError) as caught:
        registry.register(MyDelay())
    assert caught.value.code == ErrorCode.DUPLICATE_HANDLER


# -- delay ---------------------------------------------------------------------------------


def delay_engine(config: dict[str, Any], input_: dict[str, Any] | None = None) -> Engine:
    step: dict[str, Any] = {
        "type": "delay",
        "config": config,
        "transitions": {"onSuccess": None},
    }
    if input_ is not None:
        step["input"] = input_
    flow = {"id": "waiting", "initialStepId": "pause", "steps": {"pause": step}}
    return Engine(MemoryStore(), HandlerRegistry(), FlowRegistry([flow]), clock=ManualClock(START))


@pytest.mark.parametrize(
    ("config", "wait"),
    [
        ({"ms": 1500}, timedelta(milliseconds=1500)),
        ({"seconds": 30}, timedelta(seconds=30)),
        ({"minutes": 2, "seconds": 5}, timedelta(minutes=2, seconds=5)),
        ({"hours": 1.5}, timedelta(minutes=90)),
        ({"days": 2}, timedelta(days=2)),
    ],
)
def test_delay_waits_durably_for_the_configured_duration(
    config: dict[str, Any], wait: timedelta
) -> None:
    engine = delay_engine(config)
    execution = engine.run(engine.create("waiting").execution.id)
    assert execution.status is ExecutionStatus.WAITING
    assert execution.wait_kind is WaitKind.TIMER
    assert execution.wake_at == START + wait


def test_delay_until_an_instant_and_then_completes() -> None:
    engine = delay_engine({"until": "2026-03-05T09:00:00+01:00"})
    execution_id = engine.create("waiting").execution.id
    waiting = engine.run(execution_id)
    assert waiting.wake_at == datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
    done = engine.run(execution_id, simulate_time=True)
    assert done.status is ExecutionStatus.COMPLETED


def test_delay_reads_placeholders_from_its_input() -> None:
    engine = delay_engine({"seconds": "${wait_seconds}"}, {"type": "full"})
    execution = engine.run(engine.create("waiting", {"wait_seconds": 42}).execution.id)
    assert execution.wake_at == START + timedelta(seconds=42)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"seconds": "${missing}"}, "seconds must be a number >= 0, got None"),
        ({"until": "tomorrow"}, "until must be an ISO 8601 instant"),
        ({"until": "2026-03-05T09:00:00"}, "until needs a time zone"),
    ],
)
def test_delay_with_an_unusable_value_fails_with_input_error(
    config: dict[str, Any], problem: str
) -> None:
    engine = delay_engine(config)
    execution = engine.run(engine.create("waiting").execution.id)
    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.code == "INPUT_ERROR"
    assert problem in execution.error.message


@pytest.mark.parametrize(
    "config",
    [{}, {"seconds": -1}, {"seconds": "soon"}, {"weeks": 1}, {"until": "x", "seconds": 1}],
)
def test_delay_config_the_schema_refuses_is_refused_at_registration(
    config: dict[str, Any],
) -> None:
    flows = FlowRegistry(handlers=HandlerRegistry())
    with pytest.raises(FlowValidationError) as caught:
        flows.register(
            {"id": "bad", "initialStepId": "p", "steps": {"p": {"type": "delay", "config": config}}}
        )
    assert all(path.startswith("steps.p.config") for path, _ in caught.value.issues)
