"""Tenant isolation on every route: with tenant A's key, tenant B's executions, resume tokens,
flows, triggers and events do not exist. Each call at one of B's things answers exactly what
the same call at an id nobody has answers (never a 403), and changes nothing; lists never show
B's items, whatever A asks for; the admin key sees both tenants. A missing, unknown or revoked
key gets 401 on every authenticated route.

`ROUTES` is the route table: a route the app serves that is not in it fails
`test_the_route_table_is_every_route_of_the_app`, and every route has tenant cases.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from httpx import Response

from flowmonkey_celery.core import tokens
from tests.integration.api.conftest import (
    BACKENDS,
    SECRET,
    TENANTS,
    Api,
    assert_unchanged,
    error_of,
    module_api,
    snapshot,
)

A, B = TENANTS["a"], TENANTS["b"]
B_FLOW = {"id": "b-private", "initialStepId": "go", "steps": {"go": {"type": "noop"}}}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None

    def send(self, api: Api, who: str | None, headers: dict[str, str] | None = None) -> Response:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.params is not None:
            kwargs["params"] = self.params
        return api.request(self.method, self.path, who, **kwargs)


@dataclass
class World:
    """What each tenant has (ids), built once per store through the API."""

    api: Api
    ids: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return self.ids[name]


def http_trigger(trigger_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": trigger_id,
        "type": "http",
        "flow_id": "quick",
        "auth": {"type": "bearer", "secret": SECRET},
        **fields,
    }


def event_trigger(trigger_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": trigger_id,
        "type": "event",
        "flow_id": "quick",
        "event_type": "order.paid",
        **fields,
    }


def build_world(api: Api) -> World:
    world = World(api)
    ids = world.ids
    for who in ("a", "b"):
        ids[f"{who}_exec"] = api.completed(who, idempotency_key=f"{who}-idem")
        ids[f"{who}_waiting"], ids[f"{who}_token"] = api.waiting("approval", who)
        ids[f"{who}_payment"] = api.start("payment", who, context={"order": {"id": f"o-{who}"}})[
            "id"
        ]
        assert api.engine.run(ids[f"{who}_payment"]).status.value == "waiting"
        api.trigger(who, **http_trigger(f"{who}-hook"))
        api.trigger(who, **event_trigger(f"{who}-events"))
        emitted = api.emit("order.paid", who, payload={"total": 1}, key=f"{who}-only-key")
        ids[f"{who}_event"] = emitted["event"]["id"]
        assert len(emitted["started"]) == 1  # its own tenant's event trigger only
        ids[f"{who}_started"] = emitted["started"][0]
        api.clock.advance(1)
    assert api.post("/flows", "b", json=B_FLOW).status_code == 201
    assert api.post("/flows", "a", json={**B_FLOW, "id": "a-private"}).status_code == 201
    ids["admin_exec"] = api.start("quick", "admin")["id"]  # no tenant
    return world


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    with module_api(request, request.param) as api:
        yield build_world(api)


# -- comparing answers -------------------------------------------------------------------------


def masked(response: Response, ident: str) -> tuple[int, Any]:
    """The answer with `ident` replaced by <id> wherever it appears."""
    escaped = json.dumps(ident)[1:-1]
    text = json.dumps(response.json(), sort_keys=True).replace(escaped, "<id>")
    return response.status_code, json.loads(text)


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__


def assert_answers_like_unknown(
    world: World, theirs: Call, their_id: str, unknown: Call, unknown_id: str, status: int
) -> None:
    api = world.api
    before = snapshot(api)

    got = theirs.send(api, "a")
    reference = unknown.send(api, "a")

    assert_unchanged(before, snapshot(api))
    assert got.status_code != 403
    error_of(reference, status)
    error_of(got, status)
    assert shape(got.json()) == shape(reference.json())
    assert masked(got, their_id) == masked(reference, unknown_id)


def like_unknown(
    method: str,
    path: str,
    thing: str,
    unknown: Callable[[], str],
    status: int = 404,
    body: Callable[[str], Any] | None = None,
    params: Callable[[str], dict[str, Any]] | None = None,
    in_path: bool = True,
) -> Callable[[World], None]:
    """A case: A's call at B's `thing` (a World id, or a literal) answers like the call at an
    unknown id, which sits in the path or, with `in_path=False`, in the body or query."""

    def run(world: World) -> None:
        their_id = world.ids.get(thing, thing)
        nobody = unknown()

        def call(ident: str) -> Call:
            return Call(
                method,
                path.format(id=ident) if in_path else path,
                json=body(ident) if body else None,
                params=params(ident) if params else None,
            )

        assert_answers_like_unknown(world, call(their_id), their_id, call(nobody), nobody, status)

    return run


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_name() -> str:
    return f"zz-nobody-{uuid.uuid4().hex[:8]}"


# -- listing -----------------------------------------------------------------------------------


def listed_ids(api: Api, who: str, path: str, **params: Any) -> list[str]:
    response = api.get(path, who, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def b_things(world: World, kind: str) -> set[str]:
    return {
        "executions": {
            world["b_exec"],
            world["b_waiting"],
            world["b_payment"],
            world["b_started"],
        },
        "events": {world["b_event"]},
        "triggers": {"b-hook", "b-events"},
        "flows": {"b-private"},
    }[kind]


def a_things(world: World, kind: str) -> set[str]:
    return {
        "executions": {world["a_exec"], world["a_waiting"], world["a_payment"], world["a_started"]},
        "events": {world["a_event"]},
        "triggers": {"a-hook", "a-events"},
        "flows": {"a-private", "quick"},
    }[kind]


def lists_only_own(path: str, kind: str, *queries: dict[str, Any]) -> Callable[[World], None]:
    """A's list (also asking for B's tenant, or filtered) has none of B's items; the admin's
    has both tenants'. (`limit` is ignored where a list takes none.)"""

    def run(world: World) -> None:
        api = world.api
        before = snapshot(api)
        for query in ({}, {"tenant_id": B}, *queries):
            mine = set(listed_ids(api, "a", path, limit=500, **query))
            assert not mine & b_things(world, kind), query
        assert a_things(world, kind) <= set(listed_ids(api, "a", path, limit=500))
        everything = set(listed_ids(api, "admin", path, limit=500))
        assert a_things(world, kind) | b_things(world, kind) <= everything
        assert_unchanged(before, snapshot(api))

    return run


def executions_list_tenant_param(world: World) -> None:
    """Asking for B's tenant, A gets an empty page (none of B's it can see), for its own
    tenant its own; the admin may ask for one tenant."""
    api = world.api
    asked = api.get("/executions", "a", params={"tenant_id": B, "limit": 500}).json()
    own = api.get("/executions", "a", params={"tenant_id": A, "limit": 500}).json()["items"]
    admin_b = api.get("/executions", "admin", params={"tenant_id": B, "limit": 500}).json()["items"]

    assert asked == {"items": [], "next_after": None}
    assert {item["tenant_id"] for item in own} == {A}
    assert a_things(world, "executions") <= {item["id"] for item in own}
    assert {item["tenant_id"] for item in admin_b} == {B}
    assert {item["id"] for item in admin_b} == b_things(world, "executions")


def executions_counts_only_own(world: World) -> None:
    """A's counts are what A's list holds (none of B's), also when A asks for B's tenant
    (all zero); the admin's for B are B's list."""
    api = world.api
    before = snapshot(api)

    def counted(who: str, **params: Any) -> dict[str, int]:
        response = api.get("/executions/counts", who, params=params)
        assert response.status_code == 200, response.text
        found: dict[str, int] = response.json()["counts"]
        return found

    def listed(who: str, **params: Any) -> dict[str, int]:
        page = api.get("/executions", who, params={"limit": 500, **params}).json()["items"]
        return {s: sum(1 for item in page if item["status"] == s) for s in counted(who)}

    assert counted("a") == listed("a")
    assert counted("a", tenant_id=B) == dict.fromkeys(counted("a"), 0)
    assert counted("a", flow_id="approval") == listed("a", flow_id="approval")
    assert counted("admin", tenant_id=B) == listed("admin", tenant_id=B)
    assert sum(counted("admin", tenant_id=B).values()) == len(b_things(world, "executions"))
    assert_unchanged(before, snapshot(api))


# -- creating: what A makes is A's, and touches none of B's ---------------------------------------


def b_view(api: Api) -> dict[str, Any]:
    """Everything B can read."""
    return {
        "executions": api.get("/executions", "b", params={"limit": 500}).json(),
        "events": api.get("/events", "b", params={"limit": 500}).json(),
        "triggers": api.get("/triggers", "b").json(),
        "flows": api.get("/flows", "b").json(),
        "fires": {t: api.get(f"/triggers/{t}/history", "b").json() for t in ("b-hook", "b-events")},
    }


def start_for_b(world: World) -> None:
    api = world.api
    before = b_view(api)

    started = api.post("/executions", "a", json={"flow_id": "quick", "tenant_id": B}).json()
    same_key = api.post(
        "/executions", "a", json={"flow_id": "quick", "idempotency_key": "b-idem"}
    ).json()

    assert started["execution"]["tenant_id"] == A
    # B's idempotency key is not A's: A gets an execution of its own, not B's.
    assert same_key["created"] is True
    assert same_key["execution"]["id"] != world["b_exec"]
    assert same_key["execution"]["tenant_id"] == A
    assert b_view(api) == before


def emit_for_b(world: World) -> None:
    api = world.api
    before = b_view(api)

    as_b = api.emit("order.paid", "a", payload={"total": 2}, tenant_id=B)
    their_key = api.emit("order.paid", "a", payload={"total": 3}, key="b-only-key")
    their_payment = api.emit("payment.received", "a", payload={"order_id": "o-b"})

    assert as_b["event"]["tenant_id"] == A
    assert all(api.get(f"/executions/{e}", "a").json()["tenant_id"] == A for e in as_b["started"])
    # B used this key: for A it is a new key, and B's event is not answered.
    assert their_key["created"] is True and their_key["event"]["id"] != world["b_event"]
    assert their_key["event"]["payload"] == {"total": 3}
    assert their_payment["resumed"] == []  # B's execution waits for B's payment, not A's
    assert api.get(f"/executions/{world['b_payment']}", "b").json()["status"] == "waiting"
    assert b_view(api) == before


def trigger_for_b(world: World) -> None:
    api = world.api
    before = b_view(api)

    created = api.post("/triggers", "a", json=http_trigger("a-claims-b", tenant_id=B))

    assert created.status_code == 201 and created.json()["tenant_id"] == A
    assert b_view(api) == before


def takes_no_id_of_b(
    call: Callable[[World], Call], shared: Callable[[World], Call]
) -> Callable[[World], None]:
    """Creating with an id B holds is refused (ids are one namespace), exactly as an id of a
    shared thing A cannot change is, never with 403; B's thing is unchanged."""

    def run(world: World) -> None:
        api = world.api
        before = snapshot(api)
        b_before = b_view(api)

        theirs = call(world).send(api, "a")
        reference = shared(world).send(api, "a")

        assert_unchanged(before, snapshot(api))
        assert b_view(api) == b_before
        error_of(theirs, 409)
        error_of(reference, 409)
        their_id = call(world).json["id"]
        assert masked(theirs, their_id) == masked(reference, shared(world).json["id"])

    return run


def patch_to_b(world: World) -> None:
    """A's trigger stays A's whatever tenant a PATCH names."""
    api = world.api
    before = b_view(api)

    patched = api.request("PATCH", "/triggers/a-events", "a", json={"tenant_id": B})

    assert patched.status_code == 200 and patched.json()["tenant_id"] == A
    assert b_view(api) == before


def validate_b_flow(world: World) -> None:
    """Validating touches no registry: B's id validates as any unknown id does."""
    api = world.api
    before = snapshot(api)
    nobody = new_name()

    theirs = api.post("/flows/validate", "a", json=B_FLOW)
    reference = api.post("/flows/validate", "a", json={**B_FLOW, "id": nobody})

    assert theirs.status_code == 200
    assert masked(theirs, "b-private") == masked(reference, nobody)
    assert_unchanged(before, snapshot(api))


def bulk_replay_leaves_b(world: World) -> None:
    """A's bulk replay, even asking for B's tenant, never selects B's failed executions; the
    admin's may."""
    api = world.api
    failed = api.failed("b")

    mine = api.post("/executions/replay", "a", json={"limit": 1000}).json()
    asked = api.post("/executions/replay", "a", json={"tenant_id": B}).json()
    admin = api.post("/executions/replay", "admin", json={"tenant_id": B}).json()

    assert failed not in {o["original_id"] for o in mine["outcomes"]}
    assert asked == {"replayed": 0, "outcomes": []}
    assert [o["original_id"] for o in admin["outcomes"]] == [failed]


# -- routes without an API key ---------------------------------------------------------------


def webhook_needs_the_triggers_own_secret(world: World) -> None:
    """A webhook is fired with the trigger's credentials: A's API key is not one of them."""
    api = world.api
    before = snapshot(api)
    fires = len(api.fires("b-hook"))

    with_a_key = api.post("/webhooks/b-hook", "a", json={"x": 1})
    with_x_api_key = api.post(
        "/webhooks/b-hook", None, json={"x": 1}, headers={"X-API-Key": api.keys["a"].raw}
    )

    error_of(with_a_key, 401, "UNAUTHORIZED")
    error_of(with_x_api_key, 401, "UNAUTHORIZED")
    assert len(api.fires("b-hook")) == fires + 2  # two rejected deliveries, nothing else
    after = snapshot(api)
    assert {name for name in before if before[name] != after[name]} <= {
        "_trigger_history",
        "fm_trigger_history",
    }


def webhook_info_names_no_tenant(world: World) -> None:
    response = world.api.get("/webhooks/b-hook", None)
    assert response.status_code == 200
    assert B not in response.text and SECRET not in response.text
    assert "tenant_id" not in response.json()


def health_names_no_tenant(path: str) -> Callable[[World], None]:
    def run(world: World) -> None:
        response = world.api.get(path, "a")
        assert response.status_code in (200, 503)
        assert A not in response.text and B not in response.text

    return run


def metrics_need_an_admin_key(world: World) -> None:
    """/metrics counts every tenant's flows: a tenant's key is refused, naming nothing."""
    response = world.api.get("/metrics", "a")
    assert error_of(response, 403, "UNAUTHORIZED")
    assert A not in response.text and B not in response.text
    assert world.api.get("/metrics", "admin").status_code == 200


# -- the dashboard's routes --------------------------------------------------------------------


def inbox_lists_only_own(world: World) -> None:
    """A's inbox holds A's waits and none of B's (whatever A filters by); the admin's both."""
    api = world.api
    before = snapshot(api)
    b_waits = {world["b_waiting"], world["b_payment"]}
    for query in ({}, {"flow_id": "approval"}, {"kind": "signal"}, {"kind": "event"}):
        assert not set(listed_ids(api, "a", "/inbox", limit=200, **query)) & b_waits, query
    assert {world["a_waiting"], world["a_payment"]} <= set(
        listed_ids(api, "a", "/inbox", limit=200)
    )
    everything = set(listed_ids(api, "admin", "/inbox", limit=200))
    assert {world["a_waiting"], world["a_payment"]} | b_waits <= everything
    assert_unchanged(before, snapshot(api))


def whoami_names_only_its_own(world: World) -> None:
    answer = world.api.get("/whoami", "a")
    assert answer.status_code == 200
    assert answer.json()["tenant_id"] == A and B not in answer.text


def fleet_is_for_admins(world: World) -> None:
    """Workers, queues and the waiting counts are every tenant's: a tenant's key gets 403,
    naming nothing of them; the admin's key gets the view."""
    api = world.api
    before = snapshot(api)

    refused = api.get("/fleet", "a")

    error = error_of(refused, 403, "UNAUTHORIZED")
    assert B not in refused.text and "waiting" not in error["message"]
    assert api.get("/fleet", "admin").status_code == 200
    assert_unchanged(before, snapshot(api))


# -- the route table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A route: a valid call with A's key (for the 401 checks; None for public routes), and
    its tenant cases (name -> check); `xfail` names the cases a known BUG fails (strict)."""

    valid: Callable[[World], Call] | None
    cases: dict[str, Callable[[World], None]]
    xfail: dict[str, str] = field(default_factory=dict)


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/flows"): Route(
        lambda w: Call("GET", "/flows"),
        {"lists-only-own": lists_only_own("/flows", "flows")},
    ),
    ("POST", "/flows"): Route(
        lambda w: Call("POST", "/flows", json={**B_FLOW, "id": "a-new-flow"}),
        {
            "b-flow-id-refused-like-a-shared-one": takes_no_id_of_b(
                lambda w: Call("POST", "/flows", json={**B_FLOW, "version": "2.0.0"}),
                lambda w: Call(
                    "POST", "/flows", json={**B_FLOW, "id": "quick", "version": "2.0.0"}
                ),
            )
        },
    ),
    ("POST", "/flows/validate"): Route(
        lambda w: Call("POST", "/flows/validate", json=B_FLOW),
        {"b-flow-id-validates-like-unknown": validate_b_flow},
    ),
    ("GET", "/flows/{flow_id}"): Route(
        lambda w: Call("GET", "/flows/quick"),
        {
            "b-flow": like_unknown("GET", "/flows/{id}", "b-private", new_name),
            "b-flow-version": like_unknown(
                "GET", "/flows/{id}", "b-private", new_name, params=lambda _: {"version": "1.0.0"}
            ),
        },
    ),
    ("POST", "/executions"): Route(
        lambda w: Call("POST", "/executions", json={"flow_id": "quick"}),
        {
            "start-b-flow": like_unknown(
                "POST",
                "/executions",
                "b-private",
                new_name,
                body=lambda flow: {"flow_id": flow},
                in_path=False,
            ),
            "start-as-b": start_for_b,
        },
    ),
    ("GET", "/executions"): Route(
        lambda w: Call("GET", "/executions"),
        {
            "lists-only-own": lists_only_own(
                "/executions",
                "executions",
                {"status": "waiting"},
                {"flow_id": "approval"},
                {"metadata": "trigger_id:b-events"},
            ),
            "tenant-id-param": executions_list_tenant_param,
            "b-cursor": like_unknown(
                "GET",
                "/executions",
                "b_exec",
                new_uuid,
                params=lambda ident: {"after": ident},
                in_path=False,
            ),
        },
    ),
    ("GET", "/executions/counts"): Route(
        lambda w: Call("GET", "/executions/counts"),
        {"counts-only-own": executions_counts_only_own},
    ),
    ("GET", "/executions/{execution_id}"): Route(
        lambda w: Call("GET", f"/executions/{w['a_exec']}"),
        {
            "b-execution": like_unknown("GET", "/executions/{id}", "b_exec", new_uuid),
            "b-waiting": like_unknown("GET", "/executions/{id}", "b_waiting", new_uuid),
        },
    ),
    ("GET", "/executions/{execution_id}/history"): Route(
        lambda w: Call("GET", f"/executions/{w['a_exec']}/history"),
        {"b-execution": like_unknown("GET", "/executions/{id}/history", "b_waiting", new_uuid)},
    ),
    ("POST", "/executions/{execution_id}/resume"): Route(
        lambda w: Call("POST", f"/executions/{w['a_waiting']}/resume", json={"data": 1}),
        {
            "b-waiting": like_unknown(
                "POST", "/executions/{id}/resume", "b_waiting", new_uuid, body=lambda _: {"data": 1}
            ),
            "b-waiting-at-its-version": like_unknown(
                "POST",
                "/executions/{id}/resume",
                "b_waiting",
                new_uuid,
                body=lambda _: {"data": 1, "expected_version": 2},
            ),
        },
    ),
    ("POST", "/executions/resume-with-token"): Route(
        lambda w: Call("POST", "/executions/resume-with-token", json={"token": w["a_token"]}),
        {
            "b-token": like_unknown(
                "POST",
                "/executions/resume-with-token",
                "b_token",
                tokens.new_token,
                status=400,
                body=lambda token: {"token": token, "data": 1},
                in_path=False,
            )
        },
    ),
    ("POST", "/executions/{execution_id}/cancel"): Route(
        lambda w: Call("POST", f"/executions/{w['a_waiting']}/cancel", json={"reason": "r"}),
        {
            "b-waiting": like_unknown(
                "POST",
                "/executions/{id}/cancel",
                "b_waiting",
                new_uuid,
                body=lambda _: {"reason": "r"},
            ),
            "b-finished": like_unknown("POST", "/executions/{id}/cancel", "b_exec", new_uuid),
        },
    ),
    ("POST", "/executions/{execution_id}/replay"): Route(
        lambda w: Call("POST", f"/executions/{w['a_exec']}/replay", json={"from_step": "go"}),
        {
            "b-finished": like_unknown(
                "POST",
                "/executions/{id}/replay",
                "b_exec",
                new_uuid,
                body=lambda _: {"from_step": "go", "context_patch": {"x": 1}},
            ),
        },
    ),
    ("POST", "/executions/replay"): Route(
        lambda w: Call("POST", "/executions/replay", json={}),
        {"replays-only-own": bulk_replay_leaves_b},
    ),
    ("GET", "/triggers"): Route(
        lambda w: Call("GET", "/triggers"),
        {
            "lists-only-own": lists_only_own(
                "/triggers", "triggers", {"type": "http"}, {"type": "event"}
            )
        },
    ),
    ("POST", "/triggers"): Route(
        lambda w: Call("POST", "/triggers", json=http_trigger("a-new-hook")),
        {
            "b-trigger-id-refused": takes_no_id_of_b(
                lambda w: Call("POST", "/triggers", json=http_trigger("b-hook")),
                lambda w: Call("POST", "/triggers", json=http_trigger("b-events")),
            ),
            "b-flow": like_unknown(
                "POST",
                "/triggers",
                "b-private",
                new_name,
                body=lambda flow: http_trigger("a-other-hook", flow_id=flow),
                in_path=False,
            ),
            "as-b": trigger_for_b,
        },
    ),
    ("GET", "/triggers/{trigger_id}"): Route(
        lambda w: Call("GET", "/triggers/a-hook"),
        {
            "b-http": like_unknown("GET", "/triggers/{id}", "b-hook", new_name),
            "b-event": like_unknown("GET", "/triggers/{id}", "b-events", new_name),
        },
    ),
    ("PUT", "/triggers/{trigger_id}"): Route(
        lambda w: Call("PUT", "/triggers/a-hook", json=http_trigger("a-hook", enabled=False)),
        {
            "b-http": like_unknown(
                "PUT", "/triggers/{id}", "b-hook", new_name, body=lambda i: http_trigger(i)
            ),
            "b-event": like_unknown(
                "PUT", "/triggers/{id}", "b-events", new_name, body=lambda i: event_trigger(i)
            ),
            "own-trigger-to-b-flow": like_unknown(
                "PUT",
                "/triggers/a-hook",
                "b-private",
                new_name,
                body=lambda flow: http_trigger("a-hook", flow_id=flow),
                in_path=False,
            ),
        },
    ),
    ("PATCH", "/triggers/{trigger_id}"): Route(
        lambda w: Call("PATCH", "/triggers/a-hook", json={"enabled": True}),
        {
            "b-http": like_unknown(
                "PATCH", "/triggers/{id}", "b-hook", new_name, body=lambda _: {"enabled": False}
            ),
            "b-event": like_unknown(
                "PATCH", "/triggers/{id}", "b-events", new_name, body=lambda _: {"enabled": False}
            ),
            "own-trigger-to-b-flow": like_unknown(
                "PATCH",
                "/triggers/a-hook",
                "b-private",
                new_name,
                body=lambda flow: {"flow_id": flow},
                in_path=False,
            ),
            "own-trigger-to-b-tenant": patch_to_b,
        },
    ),
    ("DELETE", "/triggers/{trigger_id}"): Route(
        lambda w: Call("DELETE", "/triggers/a-hook"),
        {
            "b-http": like_unknown("DELETE", "/triggers/{id}", "b-hook", new_name),
            "b-event": like_unknown("DELETE", "/triggers/{id}", "b-events", new_name),
        },
    ),
    ("GET", "/triggers/{trigger_id}/history"): Route(
        lambda w: Call("GET", "/triggers/a-hook/history"),
        {"b-event": like_unknown("GET", "/triggers/{id}/history", "b-events", new_name)},
    ),
    ("GET", "/triggers/{trigger_id}/stats"): Route(
        lambda w: Call("GET", "/triggers/a-hook/stats"),
        {"b-http": like_unknown("GET", "/triggers/{id}/stats", "b-hook", new_name)},
    ),
    ("POST", "/events"): Route(
        lambda w: Call("POST", "/events", json={"type": "a.thing"}),
        {"as-b": emit_for_b},
    ),
    ("GET", "/events"): Route(
        lambda w: Call("GET", "/events"),
        {
            "lists-only-own": lists_only_own("/events", "events", {"type": "order.paid"}),
            "b-cursor": like_unknown(
                "GET", "/events", "b_event", new_uuid, params=lambda i: {"after": i}, in_path=False
            ),
        },
    ),
    ("POST", "/webhooks/{trigger_id}"): Route(
        None, {"api-key-is-no-webhook-credential": webhook_needs_the_triggers_own_secret}
    ),
    ("GET", "/webhooks/{trigger_id}"): Route(
        None, {"names-no-tenant": webhook_info_names_no_tenant}
    ),
    ("GET", "/whoami"): Route(
        lambda w: Call("GET", "/whoami"), {"names-only-its-own": whoami_names_only_its_own}
    ),
    ("GET", "/inbox"): Route(
        lambda w: Call("GET", "/inbox"),
        {
            "lists-only-own": inbox_lists_only_own,
            "b-cursor": like_unknown(
                "GET",
                "/inbox",
                "b_waiting",
                new_uuid,
                params=lambda ident: {"after": ident},
                in_path=False,
            ),
        },
    ),
    ("GET", "/executions/{execution_id}/children"): Route(
        lambda w: Call("GET", f"/executions/{w['a_exec']}/children"),
        {"b-execution": like_unknown("GET", "/executions/{id}/children", "b_exec", new_uuid)},
    ),
    ("GET", "/fleet"): Route(lambda w: Call("GET", "/fleet"), {"admin-only": fleet_is_for_admins}),
    ("GET", "/health"): Route(None, {"names-no-tenant": health_names_no_tenant("/health")}),
    ("GET", "/ready"): Route(None, {"names-no-tenant": health_names_no_tenant("/ready")}),
    ("GET", "/metrics"): Route(
        lambda w: Call("GET", "/metrics"), {"admin-only": metrics_need_an_admin_key}
    ),
}


def served_routes(api: Api) -> set[tuple[str, str]]:
    """(method, path) of every route the app documents."""
    paths = api.get("/openapi.json", None).json()["paths"]
    return {(method.upper(), path) for path, methods in paths.items() for method in methods}


def test_the_route_table_is_every_route_of_the_app(memory_api: Api) -> None:
    served = served_routes(memory_api)
    assert served == set(ROUTES), (
        f"routes without tenant cases: {sorted(served - set(ROUTES))}; "
        f"cases for routes that are gone: {sorted(set(ROUTES) - served)}"
    )
    assert all(route.cases for route in ROUTES.values())


def _cases() -> list[Any]:
    cases = []
    for (method, path), route in ROUTES.items():
        for name, check in route.cases.items():
            marks = (
                [pytest.mark.xfail(strict=True, reason=route.xfail[name])]
                if name in route.xfail
                else []
            )
            cases.append(pytest.param(check, id=f"{method} {path} {name}", marks=marks))
    return cases


@pytest.mark.parametrize("case", _cases())
def test_tenant_a_cannot_reach_tenant_b(world: World, case: Callable[[World], None]) -> None:
    case(world)


def test_the_admin_key_reads_both_tenants(world: World) -> None:
    api = world.api
    for name in ("a_exec", "b_exec", "b_waiting", "admin_exec"):
        assert api.get(f"/executions/{world[name]}", "admin").status_code == 200
    for trigger_id in ("a-hook", "b-hook", "b-events"):
        assert api.get(f"/triggers/{trigger_id}", "admin").status_code == 200
    assert api.get("/flows/b-private", "admin").status_code == 200
    assert api.get("/events", "admin", params={"after": world["b_event"]}).status_code == 200
    flows = {f["id"]: f["tenant_id"] for f in api.get("/flows", "admin").json()["items"]}
    assert (flows["b-private"], flows["a-private"], flows["quick"]) == (B, A, None)


def test_tenant_b_sees_its_own_things(world: World) -> None:
    """The mirror image: what A could not see, B can."""
    api = world.api
    assert api.get(f"/executions/{world['b_waiting']}", "b").status_code == 200
    assert api.get("/flows/b-private", "b").status_code == 200
    assert api.get("/triggers/b-hook", "b").status_code == 200
    assert world["b_event"] in listed_ids(api, "b", "/events", limit=500)


def test_an_admin_execution_is_no_tenants(world: World) -> None:
    api = world.api
    for who in ("a", "b"):
        error_of(api.get(f"/executions/{world['admin_exec']}", who), 404, "EXECUTION_NOT_FOUND")
        assert world["admin_exec"] not in listed_ids(api, who, "/executions", limit=500)


# -- 401 without a valid key --------------------------------------------------------------------

AUTHENTICATED = [key for key, route in ROUTES.items() if route.valid is not None]


def _credentials(api: Api) -> dict[str, dict[str, str]]:
    return {
        "missing": {},
        "empty-bearer": {"Authorization": "Bearer "},
        "unknown": {"Authorization": f"Bearer fmk_{uuid.uuid4().hex}"},
        "unknown-x-api-key": {"X-API-Key": f"fmk_{uuid.uuid4().hex}"},
        "revoked": api.keys["revoked"].headers,
        "revoked-x-api-key": {"X-API-Key": api.keys["revoked"].raw},
        "a-key-without-its-prefix": {"Authorization": f"Bearer {api.keys['a'].raw[4:]}"},
        "basic-scheme": {"Authorization": f"Basic {api.keys['a'].raw}"},
    }


CREDENTIALS = [
    "missing",
    "empty-bearer",
    "unknown",
    "unknown-x-api-key",
    "revoked",
    "revoked-x-api-key",
    "a-key-without-its-prefix",
    "basic-scheme",
]


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("route", AUTHENTICATED, ids=lambda key: f"{key[0]} {key[1]}")
def test_every_authenticated_route_needs_a_valid_key(
    world: World, route: tuple[str, str], credential: str
) -> None:
    api = world.api
    call = ROUTES[route].valid
    assert call is not None
    before = snapshot(api)

    response = call(world).send(api, None, _credentials(api)[credential])

    error = error_of(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    if credential.startswith("revoked"):
        assert "revoked" in error["message"]
    assert_unchanged(before, snapshot(api))


def test_a_valid_key_works_in_either_header(world: World) -> None:
    api = world.api
    raw = api.keys["a"].raw
    assert api.get("/executions", None, headers={"X-API-Key": raw}).status_code == 200
    assert (
        api.get("/executions", None, headers={"Authorization": f"bearer {raw}"}).status_code == 200
    )


@pytest.mark.parametrize(
    "call",
    [
        Call("GET", "/flows/no-such-flow"),
        Call("GET", "/flows/no-such-flow", params={"version": "1.0.0"}),
        Call("POST", "/executions", json={"flow_id": "no-such-flow"}),
        Call("POST", "/triggers", json=http_trigger("a-leak-hook", flow_id="no-such-flow")),
        Call("PUT", "/triggers/a-hook", json=http_trigger("a-hook", flow_id="no-such-flow")),
        Call("PATCH", "/triggers/a-hook", json={"flow_id": "no-such-flow"}),
    ],
    ids=["get-flow", "get-flow-version", "start", "create-trigger", "put-trigger", "patch"],
)
def test_an_unknown_flow_answer_names_no_flow_of_another_tenant(world: World, call: Call) -> None:
    before = snapshot(world.api)

    response = call.send(world.api, "a")

    error = error_of(response, 404, "FLOW_NOT_FOUND")
    assert error["details"] == {"id": "no-such-flow"}
    assert error["message"] in (
        "flow 'no-such-flow' not found",
        "flow 'no-such-flow' version 1.0.0 not found",
    )
    assert "b-private" not in response.text
    assert_unchanged(before, snapshot(world.api))
