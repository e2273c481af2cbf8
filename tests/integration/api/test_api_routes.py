"""Every route of the REST API, as a client meets it: the happy path and each documented
refusal, with the store's state checked where a refusal must leave it alone. Runs on
MemoryStore, SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from flowmonkey_celery.core import tokens
from flowmonkey_celery.triggers.webhooks import sign
from tests.integration.api.conftest import (
    BACKENDS,
    SECRET,
    START,
    TENANTS,
    Api,
    assert_unchanged,
    error_of,
    issue_paths,
    module_api,
    snapshot,
    without_trigger_history,
)

# -- flows -------------------------------------------------------------------------------------


def approval_v2() -> dict[str, Any]:
    return {
        "id": "approval",
        "version": "2.0.0",
        "name": "Approval, two steps after",
        "initialStepId": "approve",
        "steps": {
            "approve": {
                "type": "wait_for_signal",
                "outputKey": "decision",
                "transitions": {"onSuccess": "one"},
            },
            "one": {"type": "noop", "transitions": {"onSuccess": "two"}},
            "two": {"type": "noop"},
        },
    }


def test_flows_list_shows_every_flow_with_its_versions_and_latest(api: Api) -> None:
    assert api.post("/flows", "admin", json=approval_v2()).status_code == 201

    listed = api.get("/flows").json()["items"]

    by_id = {item["id"]: item for item in listed}
    assert sorted(by_id) == ["approval", "expiring", "gate", "payment", "quick"]
    assert by_id["approval"] == {
        "id": "approval",
        "name": "Approval, two steps after",
        "latest_version": "2.0.0",
        "versions": ["1.0.0", "2.0.0"],
        "steps": 3,
        "tenant_id": None,
    }


def test_get_flow_answers_the_latest_version_or_the_one_asked_for(api: Api) -> None:
    assert api.post("/flows", "admin", json=approval_v2()).status_code == 201

    latest = api.get("/flows/approval").json()
    first = api.get("/flows/approval", params={"version": "1.0.0"}).json()

    assert (latest["version"], sorted(latest["steps"])) == ("2.0.0", ["approve", "one", "two"])
    assert sorted(first["steps"]) == ["approve", "record"]


def test_get_flow_names_the_version_it_answers(api: Api) -> None:
    assert api.post("/flows", "admin", json=approval_v2()).status_code == 201

    assert api.get("/flows/quick").json().get("version") == "1.0.0"
    assert api.get("/flows/approval", params={"version": "1.0.0"}).json().get("version") == "1.0.0"
    assert api.get("/flows/approval").json().get("version") == "2.0.0"


def test_get_flow_of_an_unknown_id_or_version_is_404(api: Api) -> None:
    unknown = error_of(api.get("/flows/no-such-flow"), 404, "FLOW_NOT_FOUND")
    no_version = error_of(api.get("/flows/approval?version=9.9.9"), 404, "FLOW_NOT_FOUND")

    # The same words whoever asks: no list of the registered flows or versions.
    assert unknown["message"] == "flow 'no-such-flow' not found"
    assert unknown["details"] == {"id": "no-such-flow"}
    assert no_version["message"] == "flow 'approval' version 9.9.9 not found"
    assert no_version["details"] == {"id": "approval"}


def test_register_a_flow_201_then_it_is_listed_and_can_be_started(api: Api) -> None:
    flow = {"id": "a-own", "initialStepId": "go", "steps": {"go": {"type": "noop"}}}

    response = api.post("/flows", json=flow)

    assert response.status_code == 201
    assert response.json() == {"id": "a-own", "version": "1.0.0", "steps": 1}
    listed = {item["id"]: item for item in api.get("/flows").json()["items"]}
    assert listed["a-own"]["tenant_id"] == TENANTS["a"]
    execution = api.start("a-own")
    assert api.engine.run(execution["id"]).status.value == "completed"


def test_register_an_invalid_flow_is_422_listing_every_issue_with_its_path(api: Api) -> None:
    before = snapshot(api)
    broken = {
        "id": "broken",
        "initialStepId": "nowhere",
        "steps": {
            "a": {"type": "noop", "transitions": {"onSuccess": "ghost"}},
            "b": {"type": "wait_for_signal", "config": {"bogus": 1, "token_expires_ms": -5}},
            "c": {"type": "wait_for_event", "config": {}},
        },
    }

    error = error_of(api.post("/flows", json=broken), 422, "INVALID_FLOW")

    assert sorted(issue_paths(error)) == [
        "initial_step_id",
        "steps.a.transitions.on_success",
        "steps.b.config",
        "steps.b.config.token_expires_ms",
        "steps.c.config",
    ]
    assert all(issue["message"] for issue in error["details"]["issues"])
    assert "5 problems" in error["message"]
    error_of(api.get("/flows/broken"), 404, "FLOW_NOT_FOUND")
    assert_unchanged(before, snapshot(api))


def test_register_a_flow_with_a_step_type_no_handler_serves_is_422(api: Api) -> None:
    before = snapshot(api)
    flow = {
        "id": "needs-mail",
        "initialStepId": "go",
        "steps": {
            "go": {"type": "noop", "transitions": {"onSuccess": "mail"}},
            "mail": {"type": "send_email"},
        },
    }

    error = error_of(api.post("/flows", json=flow), 422, "INVALID_FLOW")

    assert issue_paths(error) == ["steps.mail.type"]
    assert "'send_email'" in error["message"] and "steps.mail.type" in error["message"]
    error_of(api.get("/flows/needs-mail"), 404, "FLOW_NOT_FOUND")
    assert_unchanged(before, snapshot(api))


def test_validate_refuses_a_step_type_no_handler_serves_as_register_does(api: Api) -> None:
    flow = {"id": "needs-mail", "initialStepId": "mail", "steps": {"mail": {"type": "send_email"}}}

    registered = api.post("/flows", json=flow)
    validated = api.post("/flows/validate", json=flow)

    assert issue_paths(error_of(registered, 422, "INVALID_FLOW")) == ["steps.mail.type"]
    # validate checks what register checks.
    assert issue_paths(error_of(validated, 422, "INVALID_FLOW")) == ["steps.mail.type"]


def test_register_the_same_id_and_version_with_another_definition_is_refused(api: Api) -> None:
    first = {"id": "mine", "initialStepId": "go", "steps": {"go": {"type": "noop"}}}
    changed = {**first, "steps": {"go": {"type": "noop"}, "more": {"type": "noop"}}}
    assert api.post("/flows", json=first).status_code == 201
    before = snapshot(api)

    error = error_of(api.post("/flows", json=changed), 422, "INVALID_FLOW")
    again = api.post("/flows", json=first)  # the very same definition: harmless

    assert "new version" in error["message"]
    assert issue_paths(error) == ["version"]
    assert again.status_code == 201
    assert api.get("/flows/mine").json()["steps"].keys() == {"go"}
    assert_unchanged(before, snapshot(api))


def test_validate_checks_a_flow_without_registering_it(api: Api) -> None:
    before = snapshot(api)
    flow = {
        "id": "draft",
        "version": "0.3.0",
        "initialStepId": "go",
        "steps": {"go": {"type": "noop"}},
    }

    valid = api.post("/flows/validate", json=flow)
    invalid = api.post("/flows/validate", json={**flow, "initialStepId": "nope"})

    assert valid.status_code == 200
    assert valid.json() == {"valid": True, "id": "draft", "version": "0.3.0", "steps": 1}
    assert issue_paths(error_of(invalid, 422, "INVALID_FLOW")) == ["initial_step_id"]
    error_of(api.get("/flows/draft"), 404, "FLOW_NOT_FOUND")
    assert_unchanged(before, snapshot(api))


# -- executions: start, get, history ---------------------------------------------------------------


def test_start_is_201_with_the_committed_execution(api: Api) -> None:
    response = api.post(
        "/executions",
        json={"flow_id": "approval", "context": {"order": 7}, "metadata": {"team": "red"}},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["created"] is True
    execution = body["execution"]
    assert execution["flow_id"] == "approval" and execution["flow_version"] == "1.0.0"
    assert execution["status"] == "pending"
    assert execution["context"] == {"order": 7}
    assert execution["metadata"] == {"team": "red"}
    assert execution["tenant_id"] == TENANTS["a"]
    assert api.get(f"/executions/{execution['id']}").json() == execution


def test_start_with_an_idempotency_key_twice_answers_the_first_execution(api: Api) -> None:
    body = {"flow_id": "quick", "idempotency_key": "order-42", "context": {"n": 1}}

    first = api.post("/executions", json=body).json()
    second = api.post("/executions", json={**body, "context": {"n": 2}}).json()
    other = api.post("/executions", json={**body, "idempotency_key": "order-43"}).json()

    assert first["created"] is True and second["created"] is False
    assert second["execution"]["id"] == first["execution"]["id"]
    assert second["execution"]["context"] == {"n": 1}
    assert other["created"] is True and other["execution"]["id"] != first["execution"]["id"]
    assert len(api.get("/executions").json()["items"]) == 2


def test_start_a_pinned_version(api: Api) -> None:
    assert api.post("/flows", "admin", json=approval_v2()).status_code == 201

    pinned = api.start("approval", flow_version="1.0.0")
    latest = api.start("approval")

    assert (pinned["flow_version"], latest["flow_version"]) == ("1.0.0", "2.0.0")


def test_start_an_unknown_flow_or_version_is_404_and_stores_nothing(api: Api) -> None:
    before = snapshot(api)

    unknown = error_of(api.post("/executions", json={"flow_id": "nope"}), 404, "FLOW_NOT_FOUND")
    version = error_of(
        api.post("/executions", json={"flow_id": "quick", "flow_version": "7.0.0"}),
        404,
        "FLOW_NOT_FOUND",
    )

    assert "nope" in unknown["message"] and "7.0.0" in version["message"]
    assert_unchanged(before, snapshot(api))


def test_start_takes_camel_case_keys(api: Api) -> None:
    assert api.post("/flows", "admin", json=approval_v2()).status_code == 201
    body = {"flowId": "approval", "flowVersion": "1.0.0", "idempotencyKey": "k-1"}

    first = api.post("/executions", json={**body, "context": {"n": 1}})
    again = api.post("/executions", json={**body, "context": {"n": 2}})

    assert first.status_code == 201, first.text
    execution = first.json()["execution"]
    assert (execution["flow_id"], execution["flow_version"]) == ("approval", "1.0.0")
    assert execution["idempotency_key"] == "k-1"
    assert again.json()["created"] is False
    assert again.json()["execution"]["id"] == execution["id"]


def test_resume_and_emit_take_camel_case_keys(api: Api) -> None:
    execution_id, _ = api.waiting("approval")
    version = api.get(f"/executions/{execution_id}").json()["version"]

    stale = api.post(
        f"/executions/{execution_id}/resume", json={"data": 1, "expectedVersion": version + 1}
    )
    emitted = api.post("/events", "admin", json={"type": "x", "tenantId": TENANTS["b"]})

    assert error_of(stale, 409, "VERSION_CONFLICT")["details"]["expected_version"] == version + 1
    assert emitted.status_code == 202 and emitted.json()["event"]["tenant_id"] == TENANTS["b"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_is_read_as_json_whatever_its_content_type(
    api: Api, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}

    started = api.post("/executions", content=b'{"flow_id": "quick"}', headers=headers)
    emitted = api.post("/events", content=b'{"type": "order.paid"}', headers=headers)

    assert started.status_code == 201, started.text
    assert started.json()["execution"]["flow_id"] == "quick"
    assert emitted.status_code == 202, emitted.text


def test_get_and_history_of_an_execution(api: Api) -> None:
    execution_id, _ = api.waiting("approval")

    shown = api.get(f"/executions/{execution_id}").json()
    history = api.get(f"/executions/{execution_id}/history").json()["items"]

    assert (shown["status"], shown["current_step_id"]) == ("waiting", "approve")
    assert [event["type"] for event in history] == [
        "execution.created",
        "execution.started",
        "step.started",
        "step.completed",
        "execution.waiting",
    ]
    assert {event["execution_id"] for event in history} == {execution_id}


def test_get_or_history_of_an_unknown_execution_is_404(api: Api) -> None:
    unknown = str(uuid.uuid4())
    for path in (f"/executions/{unknown}", f"/executions/{unknown}/history"):
        error = error_of(api.get(path), 404, "EXECUTION_NOT_FOUND")
        assert unknown in error["message"]


# -- executions: list ----------------------------------------------------------------------


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def make_listed(api: Api) -> dict[str, str]:
    """Four executions of tenant A a minute apart (and one of B), in known states."""
    made: dict[str, str] = {}
    made["e1"] = api.completed(metadata={"team": "red", "n": 5})
    api.clock.advance(60)
    made["e2"] = api.waiting("approval", metadata={"team": "blue"})[0]
    api.clock.advance(60)
    made["e3"] = api.start("quick", metadata={"team": "red", "env": "prod"})["id"]
    api.clock.advance(60)
    made["e4"] = api.waiting("approval")[0]
    made["b"] = api.waiting("approval", who="b", metadata={"team": "red"})[0]
    return made


@pytest.fixture(scope="module", params=BACKENDS)
def listing(request: pytest.FixtureRequest) -> Iterator[tuple[Api, dict[str, str]]]:
    """One store per backend for the read-only listing tests."""
    with module_api(request, request.param) as api:
        yield api, make_listed(api)


def test_list_executions_oldest_first_of_the_callers_tenant(
    listing: tuple[Api, dict[str, str]],
) -> None:
    api, listed = listing
    assert _ids(api.get("/executions")) == [listed[e] for e in ("e1", "e2", "e3", "e4")]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "completed"}, ["e1"]),
        ({"status": "waiting"}, ["e2", "e4"]),
        ({"status": "pending"}, ["e3"]),
        ({"status": "failed"}, []),
        ({"flow_id": "approval"}, ["e2", "e4"]),
        ({"flow_id": "quick", "status": "pending"}, ["e3"]),
        ({"created_after": (START + timedelta(minutes=1)).isoformat()}, ["e2", "e3", "e4"]),
        ({"created_before": (START + timedelta(minutes=2)).isoformat()}, ["e1", "e2"]),
        # Without an offset (or a bare date), an instant is UTC, as every stored time is.
        ({"created_after": "2026-03-02T09:00:30"}, ["e2", "e3", "e4"]),
        ({"created_before": "2026-03-02T09:01:30"}, ["e1", "e2"]),
        ({"created_after": "2026-03-02"}, ["e1", "e2", "e3", "e4"]),
        ({"created_before": "2026-03-02"}, []),
        ({"created_after": "2026-03-03"}, []),
        ({"created_before": "2026-03-03"}, ["e1", "e2", "e3", "e4"]),
        (
            {
                "created_after": "2026-03-02T09:00:30Z",
                "created_before": "2026-03-02T10:02:30+01:00",
            },
            ["e2", "e3"],
        ),
        ({"metadata": "team:red"}, ["e1", "e3"]),
        ({"metadata": ["team:red", "env:prod"]}, ["e3"]),
        ({"metadata": "n:5"}, ["e1"]),
        ({"metadata": "team:green"}, []),
        ({"limit": 2}, ["e1", "e2"]),
        ({"status": "waiting", "flow_id": "approval", "limit": 1}, ["e2"]),
    ],
)
def test_list_executions_filters(
    listing: tuple[Api, dict[str, str]], query: dict[str, Any], expected: list[str]
) -> None:
    api, listed = listing
    assert _ids(api.get("/executions", params=query)) == [listed[e] for e in expected]


def test_list_executions_next_after_is_set_only_for_a_full_page(
    listing: tuple[Api, dict[str, str]],
) -> None:
    api, listed = listing
    full = api.get("/executions", params={"limit": 2}).json()
    rest = api.get("/executions", params={"limit": 3, "after": listed["e2"]}).json()

    assert full["next_after"] == listed["e2"]
    assert [item["id"] for item in rest["items"]] == [listed["e3"], listed["e4"]]
    assert rest["next_after"] is None


def test_list_executions_pages_with_after_without_duplicates_or_gaps(api: Api) -> None:
    # Ties on created_at (same instant) are ordered by id: paging must not drop or repeat them.
    for burst in range(3):
        for _ in range(4):
            api.start("quick")
        api.completed()
        api.clock.advance(1 + burst)
    everything = _ids(api.get("/executions", params={"limit": 500}))
    assert len(everything) == 15

    for limit in (1, 2, 4, 5, 7):
        paged: list[str] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit, **({"after": after} if after else {})}
            page = api.get("/executions", params=params).json()
            paged += [item["id"] for item in page["items"]]
            after = page["next_after"]
            if after is None:
                break
        assert paged == everything, f"limit={limit}"


def test_list_executions_pages_with_a_filter(listing: tuple[Api, dict[str, str]]) -> None:
    api, listed = listing
    first = api.get("/executions", params={"status": "waiting", "limit": 1}).json()
    second = api.get(
        "/executions", params={"status": "waiting", "limit": 1, "after": first["next_after"]}
    ).json()

    assert [i["id"] for i in first["items"] + second["items"]] == [listed["e2"], listed["e4"]]


def test_list_executions_refuses_a_metadata_filter_that_is_not_key_value(api: Api) -> None:
    error = error_of(api.get("/executions", params={"metadata": "team"}), 400, "INVALID_ARGUMENT")
    assert "'team'" in error["message"] and "key:value" in error["message"]


def test_list_executions_with_an_unknown_cursor_is_404(api: Api) -> None:
    unknown = str(uuid.uuid4())
    error = error_of(api.get("/executions", params={"after": unknown}), 404, "EXECUTION_NOT_FOUND")
    assert unknown in error["message"]


# -- executions: resume, resume with a token, cancel ---------------------------------------------


def test_resume_a_waiting_execution_with_data(api: Api) -> None:
    execution_id, _ = api.waiting("approval")

    response = api.post(f"/executions/{execution_id}/resume", json={"data": {"approved": True}})

    assert response.status_code == 200
    resumed = response.json()
    assert (resumed["status"], resumed["current_step_id"]) == ("running", "record")
    assert resumed["context"]["decision"] == {"approved": True}
    assert api.engine.run(execution_id).status.value == "completed"


@pytest.mark.parametrize("state", ["pending", "running", "completed"])
def test_resume_of_an_execution_that_is_not_waiting_is_409(api: Api, state: str) -> None:
    if state == "pending":
        execution_id = api.start("approval")["id"]
    elif state == "running":  # resumed, at its next step
        execution_id, _ = api.waiting("approval")
        assert api.post(f"/executions/{execution_id}/resume", json={}).status_code == 200
    else:
        execution_id = api.completed()
    before = snapshot(api)

    error = error_of(
        api.post(f"/executions/{execution_id}/resume", json={"data": {"x": 1}}),
        409,
        "EXECUTION_NOT_WAITING",
    )

    assert error["details"]["status"] == state
    assert state in error["message"]
    assert_unchanged(before, snapshot(api))


def test_resume_with_a_stale_expected_version_is_409_and_changes_nothing(api: Api) -> None:
    execution_id, _ = api.waiting("approval")
    version = api.get(f"/executions/{execution_id}").json()["version"]
    before = snapshot(api)

    stale = api.post(
        f"/executions/{execution_id}/resume", json={"data": 1, "expected_version": version + 1}
    )

    error = error_of(stale, 409, "VERSION_CONFLICT")
    assert error["details"]["expected_version"] == version + 1
    assert_unchanged(before, snapshot(api))
    current = api.post(
        f"/executions/{execution_id}/resume", json={"data": 1, "expected_version": version}
    )
    assert current.status_code == 200 and current.json()["context"]["decision"] == 1


def test_resume_of_an_unknown_execution_is_404(api: Api) -> None:
    error_of(api.post(f"/executions/{uuid.uuid4()}/resume", json={}), 404, "EXECUTION_NOT_FOUND")


def test_resume_with_token(api: Api) -> None:
    execution_id, token = api.waiting("approval")

    response = api.post("/executions/resume-with-token", json={"token": token, "data": "yes"})

    assert response.status_code == 200
    resumed = response.json()
    assert (resumed["id"], resumed["status"]) == (execution_id, "running")
    assert resumed["context"]["decision"] == "yes"


def test_resume_with_a_malformed_token_is_400(api: Api) -> None:
    api.waiting("approval")
    before = snapshot(api)

    error = error_of(
        api.post("/executions/resume-with-token", json={"token": "not-a-token"}),
        400,
        "INVALID_RESUME_TOKEN",
    )

    assert "malformed" in error["message"]
    assert_unchanged(before, snapshot(api))


def test_resume_with_an_unknown_token_is_400(api: Api) -> None:
    api.waiting("approval")
    before = snapshot(api)

    error = error_of(
        api.post("/executions/resume-with-token", json={"token": tokens.new_token()}),
        400,
        "INVALID_RESUME_TOKEN",
    )

    assert "not recognised" in error["message"]
    assert_unchanged(before, snapshot(api))


def test_resume_with_a_used_token_is_400(api: Api) -> None:
    execution_id, token = api.waiting("approval")
    assert api.post("/executions/resume-with-token", json={"token": token}).status_code == 200
    before = snapshot(api)

    error = error_of(
        api.post("/executions/resume-with-token", json={"token": token, "data": "again"}),
        400,
        "INVALID_RESUME_TOKEN",
    )

    assert "already used" in error["message"]
    assert error["details"]["execution_id"] == execution_id
    assert_unchanged(before, snapshot(api))


def test_resume_with_an_expired_token_is_410(api: Api) -> None:
    execution_id, token = api.waiting("expiring")
    api.clock.advance(timedelta(seconds=61))
    before = snapshot(api)

    error = error_of(
        api.post("/executions/resume-with-token", json={"token": token}),
        410,
        "RESUME_TOKEN_EXPIRED",
    )

    assert "expired" in error["message"]
    assert api.get(f"/executions/{execution_id}").json()["status"] == "waiting"
    assert_unchanged(before, snapshot(api))


def test_a_token_still_inside_its_lifetime_resumes(api: Api) -> None:
    _, token = api.waiting("expiring")
    api.clock.advance(timedelta(seconds=59))

    response = api.post("/executions/resume-with-token", json={"token": token, "data": 1})

    assert response.status_code == 200 and response.json()["status"] == "completed"


def test_cancel_then_cancel_again_is_409(api: Api) -> None:
    execution_id, _ = api.waiting("approval")

    cancelled = api.post(f"/executions/{execution_id}/cancel", json={"reason": "not needed"})
    before = snapshot(api)
    again = api.post(f"/executions/{execution_id}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json() == {
        "cancelled": True,
        "previous_status": "waiting",
        "children_cancelled": [],
    }
    shown = api.get(f"/executions/{execution_id}").json()
    assert shown["status"] == "cancelled"
    assert (shown["cancellation"]["source"], shown["cancellation"]["reason"]) == (
        "api",
        "not needed",
    )
    error = error_of(again, 409, "INVALID_TRANSITION")
    assert error["details"]["status"] == "cancelled"
    assert "already cancelled" in error["message"]
    assert_unchanged(before, snapshot(api))


def test_cancel_of_a_completed_execution_is_409(api: Api) -> None:
    execution_id = api.completed()
    before = snapshot(api)

    error = error_of(api.post(f"/executions/{execution_id}/cancel"), 409, "INVALID_TRANSITION")

    assert error["details"]["status"] == "completed"
    assert "completed" in error["message"]
    assert_unchanged(before, snapshot(api))


def test_cancel_without_a_body_and_of_a_pending_execution(api: Api) -> None:
    execution_id = api.start("approval")["id"]

    response = api.post(f"/executions/{execution_id}/cancel")

    assert response.status_code == 200 and response.json()["previous_status"] == "pending"


def test_cancel_of_an_unknown_execution_is_404(api: Api) -> None:
    error_of(api.post(f"/executions/{uuid.uuid4()}/cancel"), 404, "EXECUTION_NOT_FOUND")


# -- triggers ----------------------------------------------------------------------------------


def http_trigger(**fields: Any) -> dict[str, Any]:
    return {
        "id": "shop-orders",
        "type": "http",
        "name": "Shop orders",
        "flow_id": "quick",
        "auth": {"type": "bearer", "secret": SECRET},
        **fields,
    }


def test_http_trigger_crud_never_shows_the_secret(api: Api) -> None:
    created = api.post("/triggers", json=http_trigger())
    api.clock.advance(5)
    read = api.get("/triggers/shop-orders")
    listed = api.get("/triggers")
    listed_http = api.get("/triggers", params={"type": "http"})
    listed_event = api.get("/triggers", params={"type": "event"})
    replaced = api.put("/triggers/shop-orders", json={**http_trigger(), "enabled": False})
    info = api.get("/webhooks/shop-orders", who=None)

    for response in (created, read, listed, listed_http, replaced, info):
        assert response.status_code in (200, 201), response.text
        assert SECRET not in response.text
        assert '"secret"' not in response.text
    assert created.status_code == 201
    trigger = created.json()
    assert trigger["url"] == "/webhooks/shop-orders"
    assert trigger["tenant_id"] == TENANTS["a"]
    assert trigger["auth"]["type"] == "bearer" and trigger["auth"]["has_secret"] is True
    assert read.json() == trigger
    assert [t["id"] for t in listed.json()["items"]] == ["shop-orders"]
    assert [t["id"] for t in listed_http.json()["items"]] == ["shop-orders"]
    assert listed_event.json()["items"] == []
    updated = replaced.json()
    assert updated["enabled"] is False
    assert updated["created_at"] == trigger["created_at"]
    assert updated["updated_at"] > trigger["updated_at"]
    assert api.get("/triggers/shop-orders").json()["enabled"] is False


def test_delete_a_trigger_then_it_is_gone(api: Api) -> None:
    api.trigger(**http_trigger())
    api.post(
        "/webhooks/shop-orders", who=None, json={}, headers={"Authorization": f"Bearer {SECRET}"}
    )
    assert len(api.fires("shop-orders")) == 1

    deleted = api.delete("/triggers/shop-orders")

    assert deleted.status_code == 200 and deleted.json() == {"deleted": "shop-orders"}
    error_of(api.get("/triggers/shop-orders"), 404, "TRIGGER_NOT_FOUND")
    error_of(api.get("/triggers/shop-orders/history"), 404, "TRIGGER_NOT_FOUND")
    error_of(api.delete("/triggers/shop-orders"), 404, "TRIGGER_NOT_FOUND")
    error_of(api.post("/webhooks/shop-orders", who=None, json={}), 404, "TRIGGER_NOT_FOUND")
    assert api.fires("shop-orders") == []


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("PUT", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/history"),
        ("GET", "/stats"),
    ],
)
def test_unknown_trigger_is_404(api: Api, method: str, suffix: str) -> None:
    body = {"json": http_trigger()} if method in ("PUT", "PATCH") else {}
    before = snapshot(api)

    error = error_of(
        api.request(method, f"/triggers/ghost{suffix}", **body), 404, "TRIGGER_NOT_FOUND"
    )

    assert "'ghost'" in error["message"]
    assert_unchanged(before, snapshot(api))


def test_create_a_trigger_with_a_taken_id_is_409_and_changes_nothing(api: Api) -> None:
    api.trigger(**http_trigger())
    before = snapshot(api)

    again = api.post("/triggers", json=http_trigger(flow_id="approval", name="Other"))

    error = error_of(again, 409, "INVALID_ARGUMENT")
    assert "'shop-orders'" in error["message"] and "PUT" in error["message"]
    assert api.get("/triggers/shop-orders").json()["flow_id"] == "quick"
    assert_unchanged(before, snapshot(api))


def bearer(api: Api, trigger_id: str, secret: str = SECRET) -> int:
    """The status of a webhook delivery to `trigger_id` with a bearer secret."""
    response = api.post(
        f"/webhooks/{trigger_id}", who=None, json={}, headers={"Authorization": f"Bearer {secret}"}
    )
    return response.status_code


def test_put_takes_a_gets_output_and_keeps_the_stored_secret(api: Api) -> None:
    api.trigger(**http_trigger())
    shown = api.get("/triggers/shop-orders").json()
    assert "url" in shown and shown["auth"]["has_secret"] is True
    api.clock.advance(5)

    replaced = api.put("/triggers/shop-orders", json={**shown, "name": "Renamed"})

    assert replaced.status_code == 200, replaced.text
    updated = replaced.json()
    assert {k: v for k, v in updated.items() if k not in ("name", "updated_at")} == {
        k: v for k, v in shown.items() if k not in ("name", "updated_at")
    }
    assert updated["name"] == "Renamed" and updated["updated_at"] > shown["updated_at"]
    assert SECRET not in replaced.text
    assert (bearer(api, "shop-orders"), bearer(api, "shop-orders", "wrong-secret-value")) == (
        202,
        401,
    )


def test_put_with_a_new_secret_replaces_it(api: Api) -> None:
    api.trigger(**http_trigger())
    new_secret = "whsec-fedcba9876543210"

    replaced = api.put(
        "/triggers/shop-orders", json=http_trigger(auth={"type": "bearer", "secret": new_secret})
    )

    assert replaced.status_code == 200, replaced.text
    assert new_secret not in replaced.text
    assert (bearer(api, "shop-orders", new_secret), bearer(api, "shop-orders")) == (202, 401)


def test_put_ignores_the_id_of_its_body(api: Api) -> None:
    api.trigger(**http_trigger())

    replaced = api.put("/triggers/shop-orders", json=http_trigger(id="another-id", enabled=False))

    assert replaced.status_code == 200 and replaced.json()["id"] == "shop-orders"
    error_of(api.get("/triggers/another-id"), 404, "TRIGGER_NOT_FOUND")
    assert api.get("/triggers/shop-orders").json()["enabled"] is False


def test_patch_changes_the_fields_it_names_and_keeps_the_rest(api: Api) -> None:
    api.trigger(**http_trigger(input_schema={"type": "object"}, max_body_bytes=2048))
    shown = api.get("/triggers/shop-orders").json()
    api.clock.advance(5)

    disabled = api.request("PATCH", "/triggers/shop-orders", json={"enabled": False})
    delivered_while_disabled = bearer(api, "shop-orders")
    enabled = api.request("PATCH", "/triggers/shop-orders", json={"enabled": True, "name": "N"})

    assert disabled.status_code == 200, disabled.text
    assert {k: v for k, v in disabled.json().items() if k not in ("enabled", "updated_at")} == {
        k: v for k, v in shown.items() if k not in ("enabled", "updated_at")
    }
    assert disabled.json()["enabled"] is False
    assert delivered_while_disabled == 409
    assert enabled.status_code == 200
    assert (enabled.json()["enabled"], enabled.json()["name"]) == (True, "N")
    assert enabled.json()["created_at"] == shown["created_at"]
    assert SECRET not in disabled.text + enabled.text
    assert bearer(api, "shop-orders") == 202  # the secret was kept


def test_patch_an_event_trigger(api: Api) -> None:
    api.trigger(**event_trigger())

    changed = api.request("PATCH", "/triggers/big-orders", json={"event_type": "order.refunded"})

    assert changed.status_code == 200, changed.text
    assert changed.json()["event_type"] == "order.refunded"
    assert changed.json()["conditions"] == event_trigger()["conditions"]


def test_patch_with_an_invalid_field_is_422_and_changes_nothing(api: Api) -> None:
    api.trigger(**http_trigger())
    before = snapshot(api)

    error = error_of(
        api.request("PATCH", "/triggers/shop-orders", json={"max_body_bytes": 0, "colour": 1}),
        422,
        "INVALID_INPUT",
    )

    assert sorted(issue_paths(error)) == ["http.colour", "http.max_body_bytes"]
    assert_unchanged(before, snapshot(api))


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_auth_can_be_turned_off_by_put_or_patch(api: Api, method: str) -> None:
    api.trigger(**http_trigger())
    body = {"auth": {"type": "none"}}
    if method == "PUT":
        body = http_trigger(**body)

    # The stored secret is not put back into an auth that takes none.
    response = api.request(method, "/triggers/shop-orders", json=body)

    assert response.status_code == 200, response.text
    assert response.json()["auth"]["type"] == "none"
    assert response.json()["auth"]["has_secret"] is False
    assert api.post("/webhooks/shop-orders", who=None, json={}).status_code == 202


def test_create_a_trigger_of_an_unknown_flow_is_404(api: Api) -> None:
    before = snapshot(api)
    error = error_of(
        api.post("/triggers", json=http_trigger(flow_id="nope")), 404, "FLOW_NOT_FOUND"
    )
    assert "nope" in error["message"]
    assert_unchanged(before, snapshot(api))


def test_create_an_invalid_trigger_is_422_with_every_issue(api: Api) -> None:
    before = snapshot(api)
    body = {"type": "http", "id": "has space", "flow_id": 5, "max_body_bytes": 0, "colour": "red"}

    error = error_of(api.post("/triggers", json=body), 422, "INVALID_INPUT")

    assert sorted(issue_paths(error)) == [
        "http.colour",
        "http.flow_id",
        "http.id",
        "http.max_body_bytes",
    ]
    assert_unchanged(before, snapshot(api))


def test_a_schedule_trigger_needs_an_admin_key(api: Api) -> None:
    body = {"type": "schedule", "id": "nightly", "flow_id": "quick", "schedule": "0 3 * * *"}

    refused = api.post("/triggers", json=body)
    admitted = api.post("/triggers", "admin", json=body)

    error_of(refused, 403, "UNAUTHORIZED")
    assert admitted.status_code == 201 and admitted.json()["schedule"] == "0 3 * * *"


def event_trigger(**fields: Any) -> dict[str, Any]:
    return {
        "id": "big-orders",
        "type": "event",
        "flow_id": "quick",
        "event_type": "order.paid",
        "conditions": [{"path": "total", "op": "gt", "value": 100}],
        **fields,
    }


def test_event_trigger_crud_and_its_history_and_stats(api: Api) -> None:
    created = api.post("/triggers", json=event_trigger())
    api.clock.advance(1)
    big = api.emit("order.paid", payload={"total": 150, "order": "o-1"})
    small = api.emit("order.paid", payload={"total": 50})
    api.clock.advance(1)
    disabled = api.put("/triggers/big-orders", json={**event_trigger(), "enabled": False})
    while_disabled = api.emit("order.paid", payload={"total": 500})

    assert created.status_code == 201
    assert created.json()["event_type"] == "order.paid"
    assert created.json()["tenant_id"] == TENANTS["a"]
    assert [t["id"] for t in api.get("/triggers", params={"type": "event"}).json()["items"]] == [
        "big-orders"
    ]
    assert len(big["started"]) == 1 and small["started"] == []
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert while_disabled["started"] == []
    started = api.get(f"/executions/{big['started'][0]}").json()
    assert started["context"]["total"] == 150 and started["tenant_id"] == TENANTS["a"]
    assert started["metadata"] == {"trigger_id": "big-orders", "event_id": big["event"]["id"]}
    history = api.get("/triggers/big-orders/history").json()["items"]
    assert [(f["status"], f["event_id"], f["execution_id"]) for f in history] == [
        ("accepted", big["event"]["id"], big["started"][0])
    ]
    stats = api.get("/triggers/big-orders/stats").json()
    assert (stats["fires"], stats["accepted"], stats["rejected"]) == (1, 1, 0)
    assert stats["last_fired_at"] == history[0]["at"]


def test_trigger_history_newest_first_and_stats_of_webhook_deliveries(api: Api) -> None:
    api.trigger(id="hook", auth={"type": "bearer", "secret": SECRET})
    good = {"Authorization": f"Bearer {SECRET}", "Idempotency-Key": "d-1"}
    api.post("/webhooks/hook", who=None, json={"n": 1}, headers=good)
    api.clock.advance(1)
    api.post("/webhooks/hook", who=None, json={"n": 1}, headers=good)
    api.clock.advance(1)
    api.post("/webhooks/hook", who=None, json={"n": 1}, headers={"Authorization": "Bearer no"})

    history_response = api.get("/triggers/hook/history")
    history = history_response.json()["items"]
    latest = api.get("/triggers/hook/history", params={"limit": 1}).json()["items"]
    stats = api.get("/triggers/hook/stats").json()

    for shown in (history_response.text, json.dumps(stats), api.get("/triggers", "admin").text):
        assert SECRET not in shown

    assert [f["status"] for f in history] == ["rejected", "duplicate", "accepted"]
    assert history[0]["error"]["code"] == "UNAUTHORIZED"
    assert history[1]["execution_id"] == history[2]["execution_id"] is not None
    assert latest == history[:1]
    assert {k: stats[k] for k in ("fires", "accepted", "duplicate", "rejected", "failed")} == {
        "fires": 3,
        "accepted": 1,
        "duplicate": 1,
        "rejected": 1,
        "failed": 0,
    }
    assert stats["last_fired_at"] == history[0]["at"]
    assert stats["mean_latency_ms"] is not None and stats["mean_latency_ms"] >= 0


# -- events ------------------------------------------------------------------------------------


def test_emit_is_202_with_the_stored_event(api: Api) -> None:
    response = api.post(
        "/events", json={"type": "order.paid", "payload": {"total": 3}, "key": "pay-1"}
    )

    assert response.status_code == 202
    body = response.json()
    assert body["created"] is True and body["started"] == [] and body["resumed"] == []
    event = body["event"]
    assert (event["type"], event["payload"], event["key"]) == ("order.paid", {"total": 3}, "pay-1")
    assert (event["tenant_id"], event["source"]) == (TENANTS["a"], "api")
    assert api.get("/events").json()["items"][0]["id"] == event["id"]


def test_emit_the_same_key_twice_stores_one_event(api: Api) -> None:
    api.trigger(**event_trigger(conditions=None))
    first = api.emit("order.paid", payload={"n": 1}, key="pay-1")
    second = api.emit("order.paid", payload={"n": 2}, key="pay-1")

    assert (first["created"], second["created"]) == (True, False)
    assert second["event"]["id"] == first["event"]["id"]
    assert second["event"]["payload"] == {"n": 1}
    assert len(first["started"]) == 1 and second["started"] == []
    assert [e["id"] for e in api.get("/events").json()["items"]] == [first["event"]["id"]]
    assert len(api.get("/executions").json()["items"]) == 1


def test_emit_resumes_the_execution_waiting_for_it(api: Api) -> None:
    execution_id = api.start("payment", context={"order": {"id": "o-9"}})["id"]
    assert api.engine.run(execution_id).status.value == "waiting"

    other = api.emit("payment.received", payload={"order_id": "o-1"})
    mine = api.emit("payment.received", payload={"order_id": "o-9", "amount": 12})

    assert other["resumed"] == [] and mine["resumed"] == [execution_id]
    shown = api.get(f"/executions/{execution_id}").json()
    assert shown["status"] == "completed"
    assert shown["context"]["payment"]["payload"] == {"order_id": "o-9", "amount": 12}


def test_list_events_pages_oldest_first_and_filters_by_type(api: Api) -> None:
    emitted = []
    for n in range(5):
        emitted.append(api.emit("tick" if n % 2 else "tock", payload={"n": n})["event"]["id"])
        if n != 2:  # two at one instant: ordered by id
            api.clock.advance(1)
    everything = [e["id"] for e in api.get("/events").json()["items"]]

    paged: list[str] = []
    after = None
    pages = 0
    while True:
        page = api.get("/events", params={"limit": 2, **({"after": after} if after else {})})
        paged += [e["id"] for e in page.json()["items"]]
        after = page.json()["next_after"]
        pages += 1
        if after is None:
            break
    ticks = api.get("/events", params={"type": "tick"}).json()["items"]

    assert sorted(everything) == sorted(emitted) and len(everything) == 5
    assert paged == everything and pages == 3
    assert [e["payload"]["n"] for e in ticks] == [1, 3]


def test_list_events_with_an_unknown_cursor_is_404(api: Api) -> None:
    error = error_of(api.get("/events", params={"after": "ghost"}), 404, "EVENT_NOT_FOUND")
    assert "'ghost'" in error["message"]


# -- webhooks ----------------------------------------------------------------------------------


def deliver(api: Api, trigger_id: str, body: bytes | None = None, **headers: str) -> Any:
    content = b'{"order": {"id": "o-1", "total": 12.5}}' if body is None else body
    return api.post(
        f"/webhooks/{trigger_id}",
        who=None,
        content=content,
        headers={"Content-Type": "application/json", **headers},
    )


def test_webhook_starts_the_flow_with_the_body_as_context(api: Api) -> None:
    api.trigger(id="hook", flow_id="quick")

    response = deliver(api, "hook")

    assert response.status_code == 202
    body = response.json()
    assert body["trigger_id"] == "hook" and body["flow_id"] == "quick"
    assert body["duplicate"] is False
    execution = api.get(f"/executions/{body['execution_id']}").json()
    assert execution["context"]["order"] == {"id": "o-1", "total": 12.5}
    assert execution["context"]["trigger"]["id"] == "hook"
    assert execution["tenant_id"] == TENANTS["a"]
    assert execution["metadata"] == {"trigger_id": "hook"}
    assert [f["status"] for f in api.fires("hook")] == ["accepted"]


def test_webhook_of_an_unknown_trigger_is_404(api: Api) -> None:
    api.trigger(**event_trigger())  # not an HTTP trigger: not a webhook either
    before = snapshot(api)

    for trigger_id in ("ghost", "big-orders"):
        error = error_of(deliver(api, trigger_id), 404, "TRIGGER_NOT_FOUND")
        assert trigger_id in error["message"]
        error_of(api.get(f"/webhooks/{trigger_id}", who=None), 404, "TRIGGER_NOT_FOUND")
    assert_unchanged(before, snapshot(api))


def assert_only_rejected(api: Api, before: dict[str, Any], trigger_id: str, code: str) -> None:
    """Nothing stored but one `rejected` history entry with the refusal's code."""
    assert_unchanged(without_trigger_history(before), without_trigger_history(snapshot(api)))
    fires = api.fires(trigger_id)
    assert [(f["status"], f["error"]["code"], f["execution_id"]) for f in fires] == [
        ("rejected", code, None)
    ]


def test_webhook_of_a_disabled_trigger_is_409(api: Api) -> None:
    api.trigger(id="hook", enabled=False)
    before = snapshot(api)

    error = error_of(deliver(api, "hook"), 409, "TRIGGER_DISABLED")

    assert "'hook'" in error["message"] and "disabled" in error["message"]
    assert_only_rejected(api, before, "hook", "TRIGGER_DISABLED")


@pytest.mark.parametrize("chunked", [False, True])
def test_webhook_body_too_large_is_413_and_nothing_stored(api: Api, chunked: bool) -> None:
    api.trigger(id="hook", max_body_bytes=64)
    before = snapshot(api)
    body = json.dumps({"pad": "x" * 100}).encode()

    content: Any = iter([body[:40], body[40:]]) if chunked else body
    response = api.post(
        "/webhooks/hook", who=None, content=content, headers={"Content-Type": "application/json"}
    )

    error = error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert "64" in error["message"] and error["details"]["max_body_bytes"] == 64
    assert_only_rejected(api, before, "hook", "PAYLOAD_TOO_LARGE")


def test_webhook_body_at_the_limit_is_accepted(api: Api) -> None:
    body = b'{"pad": "' + b"x" * 53 + b'"}'
    assert len(body) == 64
    api.trigger(id="hook", max_body_bytes=64)

    assert deliver(api, "hook", body).status_code == 202


@pytest.mark.parametrize("body", [b"{not json", b"", b"   ", b"\xff\xfe\x00"])
def test_webhook_body_that_is_not_json_is_400(api: Api, body: bytes) -> None:
    api.trigger(id="hook")
    before = snapshot(api)

    error = error_of(deliver(api, "hook", body), 400, "INVALID_JSON")

    assert "JSON" in error["message"]
    assert_only_rejected(api, before, "hook", "INVALID_JSON")


def test_webhook_body_breaking_the_input_schema_is_400_with_each_issue_path(api: Api) -> None:
    schema = {
        "type": "object",
        "required": ["order", "customer"],
        "properties": {
            "order": {
                "type": "object",
                "required": ["id", "total"],
                "properties": {"id": {"type": "string"}, "total": {"type": "number"}},
            },
            "customer": {"type": "string"},
        },
    }
    api.trigger(id="hook", input_schema=schema)
    before = snapshot(api)

    error = error_of(deliver(api, "hook", b'{"order": {"id": 5}}'), 400, "INVALID_INPUT")

    issues = {(i["path"], i["message"]) for i in error["details"]["issues"]}
    assert {path for path, _ in issues} == {"", "order", "order.id"}
    assert any("customer" in message for path, message in issues if path == "")
    assert any("total" in message for path, message in issues if path == "order")
    assert "3 problems" in error["message"] and "order.id" in error["message"]
    assert_only_rejected(api, before, "hook", "INVALID_INPUT")
    assert (
        deliver(api, "hook", b'{"order": {"id": "o", "total": 1}, "customer": "c"}').status_code
        == 202
    )


def test_webhook_whose_secret_variable_is_not_set_is_503(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = f"FM_TEST_HOOK_SECRET_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.delenv(variable, raising=False)
    api.trigger("admin", id="hook", auth={"type": "bearer", "secret_env": variable})
    before = snapshot(api)

    unset = deliver(api, "hook", Authorization=f"Bearer {SECRET}")
    monkeypatch.setenv(variable, SECRET)
    refused_state = snapshot(api)
    set_now = deliver(api, "hook", Authorization=f"Bearer {SECRET}")

    error = error_of(unset, 503, "TRIGGER_MISCONFIGURED")
    assert variable in error["message"]
    assert_unchanged(without_trigger_history(before), without_trigger_history(refused_state))
    assert set_now.status_code == 202
    assert sorted((f["status"], (f["error"] or {}).get("code")) for f in api.fires("hook")) == [
        ("accepted", None),
        ("rejected", "TRIGGER_MISCONFIGURED"),
    ]


def test_webhook_bearer_auth(api: Api) -> None:
    api.trigger(id="hook", auth={"type": "bearer", "secret": SECRET})
    before = snapshot(api)

    missing = deliver(api, "hook")
    wrong = deliver(api, "hook", Authorization=f"Bearer {SECRET}x")
    basic = deliver(api, "hook", Authorization=f"Basic {SECRET}")
    refused_state = snapshot(api)
    right = deliver(api, "hook", Authorization=f"Bearer {SECRET}")

    for response in (missing, wrong, basic):
        error = error_of(response, 401, "UNAUTHORIZED")
        assert "bearer" in error["message"]
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert SECRET not in response.text
    assert_unchanged(without_trigger_history(before), without_trigger_history(refused_state))
    assert sorted(f["status"] for f in api.fires("hook")) == ["accepted"] + ["rejected"] * 3
    assert (
        right.status_code == 202
        and api.get(f"/executions/{right.json()['execution_id']}").status_code == 200
    )


def test_webhook_hmac_timestamped(api: Api) -> None:
    api.trigger(id="hook", auth={"type": "hmac", "secret": SECRET})
    body = b'{"order": {"id": "o-1"}}'
    now = api.clock.now()

    good = deliver(api, "hook", body, **{"X-FlowMonkey-Signature": sign(SECRET, body, now)})
    before = snapshot(api)
    tampered = deliver(
        api, "hook", body + b" ", **{"X-FlowMonkey-Signature": sign(SECRET, body, now)}
    )
    other_secret = deliver(
        api, "hook", body, **{"X-FlowMonkey-Signature": sign(SECRET + "x", body, now)}
    )
    missing = deliver(api, "hook", body)
    garbled = deliver(api, "hook", body, **{"X-FlowMonkey-Signature": "sha256=abc"})
    old = deliver(
        api,
        "hook",
        body,
        **{"X-FlowMonkey-Signature": sign(SECRET, body, now - timedelta(seconds=301))},
    )
    future = deliver(
        api,
        "hook",
        body,
        **{"X-FlowMonkey-Signature": sign(SECRET, body, now + timedelta(seconds=301))},
    )

    assert good.status_code == 202
    assert "does not match" in error_of(tampered, 401, "INVALID_SIGNATURE")["message"]
    assert "does not match" in error_of(other_secret, 401, "INVALID_SIGNATURE")["message"]
    assert "missing" in error_of(missing, 401, "INVALID_SIGNATURE")["message"]
    assert "t=<unix seconds>" in error_of(garbled, 401, "INVALID_SIGNATURE")["message"]
    for stale in (old, future):
        assert "replay" in error_of(stale, 401, "INVALID_SIGNATURE")["message"]
    assert_unchanged(without_trigger_history(before), without_trigger_history(snapshot(api)))
    statuses = sorted(f["status"] for f in api.fires("hook"))
    assert statuses == ["accepted"] + ["rejected"] * 6


def test_webhook_hmac_signed_delivery_replayed_after_the_tolerance_is_refused(api: Api) -> None:
    api.trigger(id="hook", auth={"type": "hmac", "secret": SECRET, "tolerance_seconds": 60})
    body = b'{"n": 1}'
    signature = {"X-FlowMonkey-Signature": sign(SECRET, body, api.clock.now())}
    assert deliver(api, "hook", body, **signature).status_code == 202
    api.clock.advance(61)
    before = snapshot(api)

    replay = deliver(api, "hook", body, **signature)

    error = error_of(replay, 401, "INVALID_SIGNATURE")
    assert "61 s" in error["message"] and "replay" in error["message"]
    assert_unchanged(without_trigger_history(before), without_trigger_history(snapshot(api)))


def test_webhook_hmac_github_scheme(api: Api) -> None:
    api.trigger(id="gh", auth={"type": "hmac", "scheme": "github", "secret": SECRET})
    body = b'{"action": "opened"}'
    digest = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()

    good = deliver(api, "gh", body, **{"X-Hub-Signature-256": digest})
    wrong = deliver(api, "gh", body + b"\n", **{"X-Hub-Signature-256": digest})
    timestamped = deliver(
        api, "gh", body, **{"X-Hub-Signature-256": sign(SECRET, body, api.clock.now())}
    )
    missing = deliver(api, "gh", body)

    assert good.status_code == 202
    assert "X-Hub-Signature-256" in error_of(wrong, 401, "INVALID_SIGNATURE")["message"]
    error_of(timestamped, 401, "INVALID_SIGNATURE")
    assert "missing" in error_of(missing, 401, "INVALID_SIGNATURE")["message"]
    assert len(api.get("/executions").json()["items"]) == 1


def test_webhook_idempotency_key_header_twice_starts_one_execution(api: Api) -> None:
    api.trigger(id="hook")

    first = deliver(api, "hook", **{"Idempotency-Key": "delivery-1"})
    second = deliver(api, "hook", b'{"changed": true}', **{"Idempotency-Key": "delivery-1"})
    third = deliver(api, "hook", **{"Idempotency-Key": "delivery-2"})

    assert (first.status_code, second.status_code, third.status_code) == (202, 202, 202)
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    assert second.json()["execution_id"] == first.json()["execution_id"]
    assert third.json()["execution_id"] != first.json()["execution_id"]
    assert len(api.get("/executions").json()["items"]) == 2
    assert sorted(f["status"] for f in api.fires("hook")) == ["accepted", "accepted", "duplicate"]


def test_webhook_idempotency_key_path_from_the_body(api: Api) -> None:
    api.trigger(id="hook", idempotency_key_path="order.id")

    first = deliver(api, "hook", b'{"order": {"id": "o-7", "total": 1}}')
    second = deliver(api, "hook", b'{"order": {"id": "o-7", "total": 2}}')
    numeric = deliver(api, "hook", b'{"order": {"id": 8}}')
    before = snapshot(api)
    missing = deliver(api, "hook", b'{"order": {}}')

    assert second.json()["execution_id"] == first.json()["execution_id"]
    assert second.json()["duplicate"] is True and numeric.json()["duplicate"] is False
    assert len(api.get("/executions").json()["items"]) == 2
    error = error_of(missing, 400, "INVALID_INPUT")
    assert "'order.id'" in error["message"]
    assert_unchanged(without_trigger_history(before), without_trigger_history(snapshot(api)))


def test_webhook_info_shows_what_the_trigger_expects_but_no_secret(api: Api) -> None:
    api.trigger(
        id="hook",
        name="Shop",
        auth={"type": "hmac", "secret": SECRET, "tolerance_seconds": 120},
        input_schema={"type": "object"},
        max_body_bytes=2048,
    )

    response = api.get("/webhooks/hook", who=None)

    assert response.status_code == 200
    assert response.json() == {
        "id": "hook",
        "name": "Shop",
        "flow_id": "quick",
        "enabled": True,
        "input_schema": {"type": "object"},
        "auth": {"type": "hmac", "scheme": "timestamped"},
        "max_body_bytes": 2048,
    }
    assert SECRET not in response.text


# -- health, readiness, docs ------------------------------------------------------------------


def test_health_answers_without_a_key(api: Api) -> None:
    response = api.get("/health", who=None)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_ready_needs_a_recent_tick(api: Api) -> None:
    never = api.get("/ready", who=None)
    api.store.record_heartbeat("tick", api.clock.now())
    ticked = api.get("/ready", who=None)
    api.clock.advance(31)
    stale = api.get("/ready", who=None)

    assert never.status_code == 503
    assert never.json()["ready"] is False
    assert never.json()["checks"]["database"] == {"ok": True}
    assert never.json()["checks"]["tick"]["last_tick_at"] is None
    assert "beat" in never.json()["checks"]["tick"]["error"]
    assert ticked.status_code == 200 and ticked.json()["ready"] is True
    assert ticked.json()["checks"]["tick"]["ok"] is True
    assert stale.status_code == 503 and stale.json()["checks"]["tick"]["ok"] is False


def test_docs_and_openapi(memory_api: Api) -> None:
    docs = memory_api.get("/docs", who=None)
    spec = memory_api.get("/openapi.json", who=None)

    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for route in (
        "/webhooks/{trigger_id}",
        "/events",
        "/executions",
        "/flows",
        "/triggers",
        "/health",
        "/ready",
    ):
        assert route in paths, route
    assert set(paths["/webhooks/{trigger_id}"]) == {"get", "post"}
    assert set(paths["/executions"]) == {"get", "post"}
    assert set(paths["/triggers/{trigger_id}"]) == {"get", "put", "patch", "delete"}


def test_an_unknown_route_or_method_answers_in_the_error_shape(memory_api: Api) -> None:
    error_of(memory_api.get("/nope"), 404, "NOT_FOUND")
    error_of(memory_api.delete("/executions"), 405, "METHOD_NOT_ALLOWED")


def test_an_unexpected_exception_is_a_500_in_the_error_shape(
    memory_api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**_: Any) -> Any:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(memory_api.store, "list_executions", broken)

    response = memory_api.get("/executions")

    error = error_of(response, 500, "INTERNAL_ERROR")
    assert "RuntimeError" in error["message"] and "the disk is on fire" not in response.text
    assert response.headers["content-type"].startswith("application/json")
    assert any("unexpected error" in r.getMessage() for r in caplog.records)
