"""Schedule trigger models, triggers declared in flow files, and how flow validation reports
bad ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flowmonkey_celery import Flow, FlowRegistry, FlowValidationError
from flowmonkey_celery.core.triggers import ScheduleTrigger, TriggerFire, flow_triggers

SEED_TRIGGER = {
    "id": "daily-report",
    "type": "schedule",
    "name": "Daily Report",
    "flowId": "generate-report",
    "enabled": True,
    "schedule": "0 9 * * *",
    "timezone": "America/New_York",
    "staticContext": {"reportType": "daily"},
}


def _flow(**fields: Any) -> dict[str, Any]:
    return {"id": "report", "initialStepId": "a", "steps": {"a": {"type": "t"}}, **fields}


def _issues(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(FlowValidationError) as caught:
        Flow.from_dict(data)
    return caught.value.issues


def _only(issues: list[tuple[str, str]], path: str) -> str:
    messages = [message for where, message in issues if where == path]
    assert len(messages) == 1, f"expected one issue at {path!r}, got {issues}"
    return messages[0]


# -- ScheduleTrigger ---------------------------------------------------------------------------


def test_seed_readme_trigger_loads_unchanged() -> None:
    trigger = ScheduleTrigger.model_validate(SEED_TRIGGER)

    assert trigger.flow_id == "generate-report"
    assert trigger.static_context == {"reportType": "daily"}
    assert trigger.timezone == "America/New_York"
    assert trigger.name == "Daily Report"


def test_snake_case_keys_give_the_same_trigger() -> None:
    snake = ScheduleTrigger.model_validate(
        {
            "id": "daily-report",
            "type": "schedule",
            "name": "Daily Report",
            "flow_id": "generate-report",
            "enabled": True,
            "schedule": "0 9 * * *",
            "timezone": "America/New_York",
            "static_context": {"reportType": "daily"},
        }
    )

    assert snake == ScheduleTrigger.model_validate(SEED_TRIGGER)


def test_only_id_flow_and_schedule_are_required() -> None:
    trigger = ScheduleTrigger(id="t", flow_id="f", schedule="*/5 * * * *")

    assert trigger.type == "schedule"
    assert trigger.enabled is True
    assert trigger.timezone == "UTC"
    assert trigger.static_context == {}
    assert trigger.name is None
    assert trigger.created_at is None and trigger.updated_at is None


@pytest.mark.parametrize("missing", ["id", "flowId", "schedule"])
def test_required_fields_are_named_when_missing(missing: str) -> None:
    data = {k: v for k, v in SEED_TRIGGER.items() if k != missing}

    with pytest.raises(ValidationError) as caught:
        ScheduleTrigger.model_validate(data)

    assert caught.value.errors()[0]["type"] == "missing"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "EST5EDT-ish", "", " UTC"])
def test_unknown_timezone_is_refused_naming_the_zone(zone: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ScheduleTrigger(id="t", flow_id="f", schedule="0 9 * * *", timezone=zone)

    message = str(caught.value)
    assert f"unknown timezone {zone!r}" in message
    assert "IANA" in message


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_iana_timezones_are_accepted(zone: str) -> None:
    trigger = ScheduleTrigger(id="t", flow_id="f", schedule="0 9 * * *", timezone=zone)

    assert trigger.zoneinfo.key == zone


def test_other_trigger_types_are_not_schedule_triggers() -> None:
    with pytest.raises(ValidationError):
        ScheduleTrigger.model_validate({**SEED_TRIGGER, "type": "http"})


def test_a_misspelt_field_is_refused_rather_than_ignored() -> None:
    with pytest.raises(ValidationError) as caught:
        ScheduleTrigger.model_validate({**SEED_TRIGGER, "timeZone": "Europe/Berlin"})

    assert "timeZone" in str(caught.value)


@pytest.mark.parametrize("schedule", ["", "   "])
def test_an_empty_schedule_is_refused(schedule: str) -> None:
    with pytest.raises(ValidationError):
        ScheduleTrigger(id="t", flow_id="f", schedule=schedule)


def test_schedule_whitespace_is_tidied() -> None:
    trigger = ScheduleTrigger(id="t", flow_id="f", schedule="  0  9 *  * *\t")

    assert trigger.schedule == "0 9 * * *"


def test_timestamps_must_be_timezone_aware_and_are_kept_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    trigger = ScheduleTrigger(
        id="t",
        flow_id="f",
        schedule="0 9 * * *",
        created_at=datetime(2026, 1, 1, 11, tzinfo=plus_two),
    )

    assert trigger.created_at == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert trigger.created_at is not None and trigger.created_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError, match="timezone-aware"):
        ScheduleTrigger(id="t", flow_id="f", schedule="* * * * *", created_at=datetime(2026, 1, 1))


def test_to_dict_is_camel_case_and_round_trips() -> None:
    trigger = ScheduleTrigger.model_validate(
        {**SEED_TRIGGER, "createdAt": "2026-01-01T09:00:00+00:00"}
    )

    data = trigger.to_dict()

    assert data["flowId"] == "generate-report"
    assert data["staticContext"] == {"reportType": "daily"}
    assert data["createdAt"] == "2026-01-01T09:00:00Z"
    assert ScheduleTrigger.model_validate(data) == trigger


def test_trigger_fire_keeps_instants_in_utc_and_refuses_naive_ones() -> None:
    new_york = timezone(timedelta(hours=-5))
    fire = TriggerFire(
        trigger_id="t",
        scheduled_for=datetime(2026, 1, 5, 9, tzinfo=new_york),
        execution_id="e1",
        fired_at=datetime(2026, 1, 5, 14, 0, 2, tzinfo=UTC),
    )

    assert fire.scheduled_for == datetime(2026, 1, 5, 14, tzinfo=UTC)
    assert fire.scheduled_for.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError):
        TriggerFire(trigger_id="t", scheduled_for=datetime(2026, 1, 5), fired_at=fire.fired_at)


# -- triggers declared in flow files -----------------------------------------------------------


def test_flow_triggers_start_the_flow_they_are_declared_in() -> None:
    flow = Flow.from_dict(
        _flow(
            triggers=[
                {
                    "id": "nightly",
                    "type": "schedule",
                    "schedule": "0 2 * * *",
                    "timezone": "Europe/Berlin",
                    "staticContext": {"mode": "full"},
                },
                {"id": "hourly", "type": "schedule", "schedule": "0 * * * *", "enabled": False},
            ]
        )
    )

    nightly, hourly = flow_triggers(flow)

    assert nightly == ScheduleTrigger(
        id="nightly",
        flow_id="report",
        schedule="0 2 * * *",
        timezone="Europe/Berlin",
        static_context={"mode": "full"},
    )
    assert hourly.flow_id == "report" and hourly.enabled is False and hourly.timezone == "UTC"


def test_a_flow_trigger_may_repeat_its_own_flow_id() -> None:
    flow = Flow.from_dict(
        _flow(
            triggers=[{"id": "t", "type": "schedule", "schedule": "* * * * *", "flowId": "report"}]
        )
    )

    assert [t.flow_id for t in flow_triggers(flow)] == ["report"]


def test_flows_without_triggers_are_unchanged() -> None:
    flow = Flow.from_dict(_flow())

    assert flow.triggers == []
    assert flow_triggers(flow) == []
    assert "triggers" not in flow.to_dict()


def test_flow_with_triggers_round_trips_through_to_dict() -> None:
    data = _flow(triggers=[{"id": "t", "type": "schedule", "schedule": "0 9 * * 1-5"}])
    flow = Flow.from_dict(data)

    again = Flow.from_dict(flow.to_dict())

    assert again == flow
    assert flow_triggers(again) == flow_triggers(flow)


def test_yaml_flow_file_declares_a_schedule(tmp_path: Path) -> None:
    path = tmp_path / "report.yaml"
    path.write_text(
        "id: report\n"
        "initialStepId: build\n"
        "steps:\n"
        "  build: {type: build-report}\n"
        "triggers:\n"
        "  - id: weekday-morning\n"
        "    type: schedule\n"
        "    schedule: '0 9 * * 1-5'\n"
        "    timezone: America/New_York\n"
        "    staticContext: {reportType: daily}\n",
        encoding="utf-8",
    )

    (trigger,) = flow_triggers(Flow.from_file(path))

    assert trigger.id == "weekday-morning"
    assert trigger.flow_id == "report"
    assert trigger.schedule == "0 9 * * 1-5"
    assert trigger.static_context == {"reportType": "daily"}


def test_registry_accepts_a_flow_with_triggers() -> None:
    flows = FlowRegistry()
    flows.register(
        Flow.from_dict(_flow(triggers=[{"id": "t", "type": "schedule", "schedule": "* * * * *"}]))
    )

    assert flow_triggers(flows.get("report"))[0].id == "t"


@pytest.mark.parametrize(
    ("trigger", "path", "fragment"),
    [
        ({"id": "t", "schedule": "0 9 * * *"}, "triggers.0.type", "needs a type"),
        ({"id": "t", "type": "sms", "schedule": "0 9 * * *"}, "triggers.0.type", "'sms'"),
        ({"id": "t", "type": "schedule"}, "triggers.0.schedule", "required field is missing"),
        ({"type": "schedule", "schedule": "* * * * *"}, "triggers.0.id", "required"),
        (
            {"id": "t", "type": "schedule", "schedule": "0 9 * * *", "timezone": "Europe/Berln"},
            "triggers.0.timezone",
            "unknown timezone 'Europe/Berln'",
        ),
        (
            {"id": "t", "type": "schedule", "schedule": "0 9 * * *", "timeZone": "UTC"},
            "triggers.0.timeZone",
            "did you mean 'timezone'",
        ),
        (
            {"id": "t", "type": "schedule", "schedule": "* * * * *", "flowId": "other"},
            "triggers.0.flow_id",
            "'other'",
        ),
        (
            {"id": "t", "type": "schedule", "schedule": "* * * * *", "enabled": "sometimes"},
            "triggers.0.enabled",
            "bool",
        ),
    ],
    ids=[
        "missing-type",
        "unknown-type",
        "missing-schedule",
        "missing-id",
        "bad-timezone",
        "misspelt-field",
        "other-flow",
        "bad-enabled",
    ],
)
def test_bad_flow_trigger_is_reported_with_its_path(
    trigger: dict[str, Any], path: str, fragment: str
) -> None:
    message = _only(_issues(_flow(triggers=[trigger])), path)

    assert fragment in message


def test_duplicate_trigger_ids_in_one_flow_are_refused() -> None:
    same = {"id": "t", "type": "schedule", "schedule": "* * * * *"}

    message = _only(_issues(_flow(triggers=[same, same])), "triggers.1.id")

    assert "duplicate trigger id 't'" in message


@pytest.mark.parametrize(
    ("triggers", "path"),
    [("0 9 * * *", "triggers"), (["0 9 * * *"], "triggers.0")],
    ids=["not-a-list", "entry-not-an-object"],
)
def test_malformed_triggers_section_is_reported(triggers: Any, path: str) -> None:
    issues = _issues(_flow(triggers=triggers))

    assert [where for where, _ in issues] == [path]


def test_trigger_problems_are_reported_with_every_other_problem() -> None:
    data = _flow(
        triggers=[
            {"id": "ok", "type": "schedule", "schedule": "* * * * *"},
            {"id": "bad-zone", "type": "schedule", "schedule": "* * * * *", "timezone": "Nowhere"},
            {"id": "no-schedule", "type": "schedule"},
        ]
    )
    data["steps"]["a"]["transitions"] = {"onSuccess": "missing-step"}

    paths = {where for where, _ in _issues(data)}

    assert paths == {
        "steps.a.transitions.on_success",
        "triggers.1.timezone",
        "triggers.2.schedule",
    }
