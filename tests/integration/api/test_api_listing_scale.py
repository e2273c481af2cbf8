"""`GET /executions?order=newest&idempotency_key=...` and `GET /executions/counts`: what the
dashboard's list and its live counts ask, on every store, tenant-scoped, and refusing bad
filters as the list does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.api.conftest import (
    BACKENDS,
    START,
    TENANTS,
    Api,
    assert_unchanged,
    error_of,
    module_api,
    snapshot,
)

A, B = TENANTS["a"], TENANTS["b"]
ZERO = {"pending": 0, "running": 0, "waiting": 0, "completed": 0, "failed": 0, "cancelled": 0}


def make_world(api: Api) -> dict[str, str]:
    """Tenant A: e1 completed (key "order-1"), e2 waiting, e3 pending (key "order-3"), e4
    waiting, a minute apart; tenant B: b1 waiting with A's key "order-1", b2 completed."""
    made: dict[str, str] = {}
    made["e1"] = api.completed(idempotency_key="order-1", metadata={"team": "red"})
    api.clock.advance(60)
    made["e2"] = api.waiting("approval", metadata={"team": "blue"})[0]
    api.clock.advance(60)
    made["e3"] = api.start("quick", idempotency_key="order-3", metadata={"team": "red"})["id"]
    api.clock.advance(60)
    made["e4"] = api.waiting("approval")[0]
    made["b1"] = api.waiting("approval", who="b", idempotency_key="order-1")[0]
    made["b2"] = api.completed(who="b", metadata={"team": "red"})
    return made


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest) -> Iterator[tuple[Api, dict[str, str]]]:
    with module_api(request, request.param) as api:
        yield api, make_world(api)


def listed(api: Api, who: str = "a", **params: Any) -> list[str]:
    response = api.get("/executions", who, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def counts(api: Api, who: str = "a", **params: Any) -> dict[str, int]:
    response = api.get("/executions/counts", who, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"counts"}
    found: dict[str, int] = body["counts"]
    return found


# -- order and idempotency key -------------------------------------------------------------------


def test_order_newest_lists_newest_first(world: tuple[Api, dict[str, str]]) -> None:
    api, made = world
    oldest = [made[e] for e in ("e1", "e2", "e3", "e4")]

    assert listed(api) == oldest
    assert listed(api, order="oldest") == oldest
    assert listed(api, order="newest") == oldest[::-1]
    assert listed(api, order="newest", status="waiting") == [made["e4"], made["e2"]]


def test_newest_first_pages_with_next_after(world: tuple[Api, dict[str, str]]) -> None:
    api, made = world
    first = api.get("/executions", params={"order": "newest", "limit": 3}).json()
    rest = api.get(
        "/executions", params={"order": "newest", "limit": 3, "after": first["next_after"]}
    ).json()

    assert [i["id"] for i in first["items"]] == [made["e4"], made["e3"], made["e2"]]
    assert first["next_after"] == made["e2"]
    assert [i["id"] for i in rest["items"]] == [made["e1"]]
    assert rest["next_after"] is None


def test_idempotency_key_finds_the_execution_created_with_it_in_the_callers_tenant(
    world: tuple[Api, dict[str, str]],
) -> None:
    api, made = world

    assert listed(api, idempotency_key="order-1") == [made["e1"]]
    assert listed(api, "b", idempotency_key="order-1") == [made["b1"]]
    assert listed(api, "admin", idempotency_key="order-1") == [made["e1"], made["b1"]]
    assert listed(api, "admin", idempotency_key="order-1", tenant_id=B) == [made["b1"]]
    assert listed(api, idempotency_key="order-3", status="pending") == [made["e3"]]
    assert listed(api, idempotency_key="order-3", status="completed") == []
    assert listed(api, idempotency_key="order-2") == []


# -- counts ------------------------------------------------------------------------------------


def test_counts_per_status_of_the_callers_tenant(world: tuple[Api, dict[str, str]]) -> None:
    api, _ = world

    assert counts(api) == {**ZERO, "completed": 1, "waiting": 2, "pending": 1}
    assert counts(api, "b") == {**ZERO, "completed": 1, "waiting": 1}
    assert counts(api, "admin") == {**ZERO, "completed": 2, "waiting": 3, "pending": 1}
    assert counts(api, "admin", tenant_id=B) == {**ZERO, "completed": 1, "waiting": 1}


def test_counts_of_another_tenant_are_zero_for_a_tenant_key(
    world: tuple[Api, dict[str, str]],
) -> None:
    api, _ = world
    before = snapshot(api)

    assert counts(api, "a", tenant_id=B) == ZERO
    assert counts(api, "a", tenant_id=A) == counts(api, "a")
    assert_unchanged(before, snapshot(api))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"flow_id": "approval"}, {"waiting": 2}),
        ({"flow_id": "quick"}, {"completed": 1, "pending": 1}),
        (
            {"created_after": (START + timedelta(minutes=1)).isoformat()},
            {"waiting": 2, "pending": 1},
        ),
        ({"created_before": "2026-03-02T09:01:30"}, {"completed": 1, "waiting": 1}),
        ({"metadata": "team:red"}, {"completed": 1, "pending": 1}),
        ({"metadata": "team:blue", "flow_id": "approval"}, {"waiting": 1}),
        ({"idempotency_key": "order-1"}, {"completed": 1}),
        ({"idempotency_key": "order-9"}, {}),
        ({"flow_id": "nope"}, {}),
    ],
    ids=repr,
)
def test_counts_take_the_lists_filters(
    world: tuple[Api, dict[str, str]], query: dict[str, Any], expected: dict[str, int]
) -> None:
    api, _ = world

    found = counts(api, **query)

    assert found == {**ZERO, **expected}
    for status, number in found.items():
        assert len(listed(api, status=status, limit=500, **query)) == number, status


def test_counts_follow_a_resume_and_a_cancel_at_once(api: Api) -> None:
    waiting = [api.waiting("approval")[0] for _ in range(3)]
    assert counts(api) == {**ZERO, "waiting": 3}

    resumed = api.post(f"/executions/{waiting[0]}/resume", json={"data": {"ok": True}})
    assert resumed.status_code == 200, resumed.text
    api.engine.run(waiting[0])
    cancelled = api.post(f"/executions/{waiting[1]}/cancel", json={"reason": "no"})
    assert cancelled.status_code == 200, cancelled.text

    assert counts(api) == {**ZERO, "waiting": 1, "completed": 1, "cancelled": 1}
    assert counts(api, "b") == ZERO


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "code", "mention"),
    [
        ("/executions", {"order": "sideways"}, 422, "INVALID_INPUT", "query.order"),
        ("/executions", {"order": "NEWEST"}, 422, "INVALID_INPUT", "query.order"),
        ("/executions", {"idempotency_key": ""}, 422, "INVALID_INPUT", "query.idempotency_key"),
        ("/executions", {"idempotency_key": "k" * 501}, 422, "INVALID_INPUT", "idempotency_key"),
        ("/executions/counts", {"metadata": "team"}, 400, "INVALID_ARGUMENT", "'team'"),
        (
            "/executions/counts",
            {"created_after": "yesterday"},
            422,
            "INVALID_INPUT",
            "created_after",
        ),
        (
            "/executions/counts",
            {"created_before": "2026-13-01"},
            422,
            "INVALID_INPUT",
            "created_before",
        ),
        ("/executions/counts", {"idempotency_key": ""}, 422, "INVALID_INPUT", "idempotency_key"),
    ],
    ids=repr,
)
def test_bad_filters_are_refused_naming_the_parameter(
    world: tuple[Api, dict[str, str]],
    path: str,
    params: dict[str, Any],
    status: int,
    code: str,
    mention: str,
) -> None:
    api, _ = world

    error = error_of(api.get(path, params=params), status, code)

    assert mention in error["message"], error


def test_the_same_bad_filter_gets_the_same_answer_from_the_list_and_the_counts(
    world: tuple[Api, dict[str, str]],
) -> None:
    api, _ = world
    for params in ({"metadata": "novalue"}, {"created_after": "notadate"}):
        from_list = api.get("/executions", params=params)
        from_counts = api.get("/executions/counts", params=params)
        assert (from_counts.status_code, from_counts.json()) == (
            from_list.status_code,
            from_list.json(),
        ), params


def test_counts_need_an_api_key(world: tuple[Api, dict[str, str]]) -> None:
    api, _ = world
    error_of(api.get("/executions/counts", None), 401, "UNAUTHORIZED")
    error_of(api.get("/executions/counts", "revoked"), 401, "UNAUTHORIZED")
