"""POST /executions/{id}/replay and POST /executions/replay (bulk), on every store."""

from __future__ import annotations

from tests.integration.api.conftest import Api, assert_unchanged, error_of, snapshot


def approved(api: Api, who: str = "a") -> str:
    """An approval resumed with a decision and completed (its `record` step ran)."""
    execution_id, _ = api.waiting("approval", who, context={"order": "o-1"})
    resumed = api.post(f"/executions/{execution_id}/resume", who, json={"data": {"ok": False}})
    assert resumed.status_code == 200, resumed.text
    assert api.engine.run(execution_id).status.value == "completed"
    return execution_id


def test_replay_starts_a_linked_execution_at_the_step_with_the_patched_context(api: Api) -> None:
    original_id = approved(api)
    original = api.get(f"/executions/{original_id}").json()

    response = api.post(
        f"/executions/{original_id}/replay",
        json={"from_step": "record", "context_patch": {"decision": {"ok": True}}},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True
    replayed = body["execution"]
    assert replayed["current_step_id"] == "record"
    assert replayed["status"] == "pending"
    assert replayed["context"] == {"order": "o-1", "decision": {"ok": True}}
    assert replayed["metadata"] == {"replay_of": original_id, "replay_from_step": "record"}
    assert replayed["tenant_id"] == original["tenant_id"]
    assert api.get(f"/executions/{original_id}").json() == original
    linked = api.get("/executions", params={"metadata": f"replay_of:{original_id}"}).json()
    assert [item["id"] for item in linked["items"]] == [replayed["id"]]
    assert api.engine.run(replayed["id"]).status.value == "completed"


def test_replay_with_an_idempotency_key_twice_answers_the_first(api: Api) -> None:
    original_id = approved(api)
    body = {"from_step": "record", "idempotency_key": "fix-1"}

    first = api.post(f"/executions/{original_id}/replay", json=body).json()
    second = api.post(f"/executions/{original_id}/replay", json=body).json()

    assert first["created"] is True and second["created"] is False
    assert second["execution"]["id"] == first["execution"]["id"]


def test_replay_refusals_name_the_problem_and_store_nothing(api: Api) -> None:
    original_id = approved(api)
    never_ran, _ = api.waiting("approval")  # waiting at approve: record never ran
    before = snapshot(api)

    unknown = api.post("/executions/nope/replay", json={"from_step": "record"})
    no_step = api.post(f"/executions/{original_id}/replay", json={"from_step": "recrod"})
    not_reached = api.post(f"/executions/{never_ran}/replay", json={"from_step": "record"})
    bad_patch = api.post(
        f"/executions/{original_id}/replay", json={"from_step": "record", "context_patch": [1]}
    )
    missing = api.post(f"/executions/{original_id}/replay", json={})

    error_of(unknown, 404, "EXECUTION_NOT_FOUND")
    assert "recrod" in error_of(no_step, 404, "STEP_NOT_FOUND")["message"]
    message = error_of(not_reached, 400, "INVALID_ARGUMENT")["message"]
    assert "never ran step 'record'" in message and "approve" in message
    assert "body.context_patch" in error_of(bad_patch, 422, "INVALID_INPUT")["message"]
    assert "body.from_step" in error_of(missing, 422, "INVALID_INPUT")["message"]
    assert_unchanged(before, snapshot(api))


def test_bulk_replay_replays_failed_executions_once_each(api: Api) -> None:
    failed = [api.failed(), api.failed()]
    approved(api)  # completed: never selected

    first = api.post("/executions/replay", json={"flow_id": "approval"})
    again = api.post("/executions/replay", json={"flow_id": "approval"})

    assert first.status_code == 200, first.text
    assert first.json()["replayed"] == 2
    outcomes = first.json()["outcomes"]
    assert sorted(o["original_id"] for o in outcomes) == sorted(failed)
    assert {o["from_step"] for o in outcomes} == {"approve"}  # where each failed
    assert again.json()["replayed"] == 0
    assert [o["execution_id"] for o in again.json()["outcomes"]] == [
        o["execution_id"] for o in outcomes
    ]
    nothing = api.post("/executions/replay", json={"flow_id": "quick"}).json()
    assert nothing == {"replayed": 0, "outcomes": []}


def test_bulk_replay_refuses_bad_filters(api: Api) -> None:
    before = snapshot(api)
    for body in (
        {"limit": 0},
        {"limit": "many"},
        {"status": "failed"},
        {"created_after": "x"},
        {"include_replays": "yes"},
    ):
        error_of(api.post("/executions/replay", json=body), 422, "INVALID_INPUT")
    assert_unchanged(before, snapshot(api))
