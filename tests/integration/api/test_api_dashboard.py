"""The dashboard's own routes: the static pages at /ui (no key, under any mount prefix), who
is calling (/whoami), the waiting inbox (/inbox), an execution's children, and the fleet view
(/fleet: heartbeats, queue depths on a real broker or a dead one, waiting stats). Tenant
isolation of each is in test_api_tenants.py's route table."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kombu import Connection

from flowmonkey_celery.celery import FlowMonkeyCelery
from tests.integration.api.conftest import TENANTS, Api, assert_unchanged, error_of, snapshot
from tests.services import REDIS_URL

A, B = TENANTS["a"], TENANTS["b"]
NAP = {
    "id": "nap",
    "initialStepId": "sleep",
    "steps": {"sleep": {"type": "delay", "config": {"ms": 3_600_000}}},
}
TIMED_APPROVAL = {
    "id": "timed-approval",
    "initialStepId": "approve",
    "steps": {
        "approve": {
            "type": "wait_for_signal",
            "name": "Manager approval",
            "config": {"reason": "approve order ${order.id}"},
            "waitTimeoutMs": 600_000,
            "outputKey": "decision",
        }
    },
}


def register(api: Api, flow: dict[str, Any]) -> None:
    response = api.post("/flows", "admin", json=flow)
    assert response.status_code == 201, response.text


def run(api: Api, flow_id: str, who: str = "a", **fields: Any) -> str:
    execution_id = api.start(flow_id, who, **fields)["id"]
    api.engine.run(execution_id)
    return execution_id


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


# -- /ui ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ui", "/ui/"])
def test_the_dashboard_page_is_served_without_a_key(memory_api: Api, path: str) -> None:
    response = memory_api.get(path, None)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    # Without the slash, relative URLs would resolve next to /ui: the page anchors them in it.
    assert ('<base href="ui/">' in response.text) is (path == "/ui")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/ui/app.js", "javascript"),
        ("/ui/graph.js", "javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ],
)
def test_the_dashboard_files_are_served(memory_api: Api, path: str, kind: str) -> None:
    response = memory_api.get(path, None)

    assert response.status_code == 200
    assert kind in response.headers["content-type"]


def test_every_module_the_page_imports_is_served(memory_api: Api) -> None:
    """No build step: the browser loads each ES module by its relative URL."""
    import re

    pending, loaded = ["app.js"], set()
    while pending:
        name = pending.pop()
        response = memory_api.get(f"/ui/{name}", None)
        assert response.status_code == 200, name
        loaded.add(name)
        for imported in re.findall(r'from "\./([\w.-]+\.js)"', response.text):
            if imported not in loaded:
                pending.append(imported)
    assert {"api.js", "dom.js", "graph.js", "router.js", "page-execution.js"} <= loaded
    # Offline: nothing is fetched from another origin.
    for name in loaded:
        assert "http://" not in memory_api.get(f"/ui/{name}", None).text.replace(
            "http://www.w3.org/2000/svg", ""
        )


def test_an_unknown_dashboard_file_is_a_404(memory_api: Api) -> None:
    error_of(memory_api.get("/ui/no-such-file.js", None), 404, "NOT_FOUND")


def test_the_dashboard_works_under_a_mount_prefix(memory_api: Api) -> None:
    parent = FastAPI()
    parent.mount("/ops/flowmonkey", memory_api.app)
    client = TestClient(parent)

    page = client.get("/ops/flowmonkey/ui")
    script = client.get("/ops/flowmonkey/ui/app.js")
    me = client.get("/ops/flowmonkey/whoami", headers=memory_api.keys["a"].headers)

    assert page.status_code == 200 and '<base href="ui/">' in page.text
    assert script.status_code == 200
    assert me.json()["tenant_id"] == A


# -- /whoami -----------------------------------------------------------------------------------


def test_whoami_names_the_key_and_its_scope(memory_api: Api) -> None:
    tenant = memory_api.get("/whoami", "a").json()
    admin = memory_api.get("/whoami", "admin").json()

    assert tenant == {"name": "tenant-a-key", "tenant_id": A, "admin": False, "auth_required": True}
    assert admin == {"name": "ops", "tenant_id": None, "admin": True, "auth_required": True}


def test_whoami_without_auth_needs_no_key(memory_api: Api) -> None:
    from flowmonkey_celery.api import create_app

    open_app = TestClient(create_app(memory_api.runtime, auth=False))

    answer = open_app.get("/whoami")

    assert answer.status_code == 200
    assert answer.json()["auth_required"] is False and answer.json()["admin"] is True


# -- /inbox ------------------------------------------------------------------------------------


def test_the_inbox_lists_signal_and_event_waits_oldest_first(api: Api) -> None:
    register(api, NAP)
    signal = run(api, "approval")
    api.clock.advance(1)
    api.completed()
    run(api, "nap")  # a timer ends by itself: not for the inbox
    api.clock.advance(1)
    event = run(api, "payment", context={"order": {"id": "o-1"}})

    listed = api.get("/inbox", "a")

    assert ids(listed) == [signal, event]
    assert listed.json()["next_after"] is None
    kinds = {item["id"]: item["waiting_for"]["kind"] for item in listed.json()["items"]}
    assert kinds == {signal: "signal", event: "event"}
    assert ids(api.get("/inbox", "a", params={"kind": "event"})) == [event]
    assert ids(api.get("/inbox", "a", params={"kind": "signal"})) == [signal]
    assert ids(api.get("/inbox", "a", params={"flow_id": "payment"})) == [event]


def test_an_inbox_item_says_which_step_waits_why_and_until_when(api: Api) -> None:
    register(api, TIMED_APPROVAL)
    waiting = run(api, "timed-approval", context={"order": {"id": "A-17"}})

    (item,) = api.get("/inbox", "a").json()["items"]

    assert item["id"] == waiting and item["status"] == "waiting"
    assert item["waiting_for"] == {
        "kind": "signal",
        "reason": "approve order A-17",
        "since": api.clock.now().isoformat(),
        "deadline_at": (api.clock.now() + timedelta(minutes=10)).isoformat(),
        "deadline": "wait timeout",
        "step_name": "Manager approval",
        "step_type": "wait_for_signal",
        "output_key": "decision",
    }


def test_an_execution_deadline_nearer_than_the_wait_is_the_deadline(api: Api) -> None:
    waiting = run(api, "approval", timeout={"execution_timeout_ms": 30_000})

    (item,) = api.get("/inbox", "a").json()["items"]

    assert item["id"] == waiting
    assert item["waiting_for"]["deadline"] == "execution timeout"
    assert (
        item["waiting_for"]["deadline_at"] == (api.clock.now() + timedelta(seconds=30)).isoformat()
    )


def test_a_resumed_execution_leaves_the_inbox(api: Api) -> None:
    waiting = run(api, "approval")
    assert ids(api.get("/inbox", "a")) == [waiting]

    assert (
        api.post(f"/executions/{waiting}/resume", "a", json={"data": {"ok": 1}}).status_code == 200
    )

    assert ids(api.get("/inbox", "a")) == []


def test_the_inbox_pages_by_cursor_through_every_wait(api: Api) -> None:
    waiting = []
    for _ in range(5):
        waiting.append(run(api, "approval"))
        api.clock.advance(1)

    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = api.get("/inbox", "a", params={"limit": 2, **({"after": after} if after else {})})
        seen += ids(page)
        pages += 1
        after = page.json()["next_after"]
        if after is None:
            break

    assert seen == waiting
    assert pages == 3


def test_timers_waiting_ahead_of_a_signal_wait_do_not_push_it_off_the_first_page(
    api: Api,
) -> None:
    """The store filters by wait kind: a full page of timers before the first signal wait is
    not read, the page holds the signal wait and says it is the last."""
    register(api, NAP)
    for _ in range(5):
        run(api, "nap")
        api.clock.advance(1)
    signal = run(api, "approval")

    page = api.get("/inbox", "a", params={"limit": 2}).json()

    assert [item["id"] for item in page["items"]] == [signal]
    assert page["next_after"] is None


@pytest.mark.parametrize(
    ("params", "status", "code", "named"),
    [
        ({"kind": "timer"}, 400, "INVALID_ARGUMENT", "timer"),
        ({"kind": "nonsense"}, 422, "INVALID_INPUT", "query.kind"),
        ({"limit": 0}, 422, "INVALID_INPUT", "query.limit"),
        ({"limit": 201}, 422, "INVALID_INPUT", "query.limit"),
        ({"after": "no-such-execution"}, 404, "EXECUTION_NOT_FOUND", "no-such-execution"),
    ],
)
def test_bad_inbox_queries_are_refused_naming_the_problem(
    memory_api: Api, params: dict[str, Any], status: int, code: str, named: str
) -> None:
    api = memory_api
    run(api, "approval")
    before = snapshot(api)

    error = error_of(api.get("/inbox", "a", params=params), status, code)

    assert named in error["message"]
    assert_unchanged(before, snapshot(api))


# -- /executions/{id}/children ------------------------------------------------------------------


def test_children_are_listed_oldest_first_and_paged(api: Api) -> None:
    parent = api.completed()
    children = []
    for _ in range(3):
        result = api.engine.create("quick", {}, tenant_id=A, parent_execution_id=parent)
        children.append(result.execution.id)
        api.clock.advance(1)
    api.completed()  # no child of it

    everything = api.get(f"/executions/{parent}/children", "a")
    first = api.get(f"/executions/{parent}/children", "a", params={"limit": 2})
    rest = api.get(
        f"/executions/{parent}/children",
        "a",
        params={"limit": 2, "after": first.json()["next_after"]},
    )

    assert ids(everything) == children
    assert everything.json()["items"][0]["parent_execution_id"] == parent
    assert ids(first) == children[:2] and first.json()["next_after"] == children[1]
    assert ids(rest) == children[2:] and rest.json()["next_after"] is None
    assert ids(api.get(f"/executions/{children[0]}/children", "a")) == []


def test_children_of_an_unknown_execution_or_from_a_wrong_cursor_are_refused(api: Api) -> None:
    parent = api.completed()
    stranger = api.completed()

    error_of(api.get(f"/executions/{uuid.uuid4()}/children", "a"), 404, "EXECUTION_NOT_FOUND")
    error = error_of(
        api.get(f"/executions/{parent}/children", "a", params={"after": stranger}),
        400,
        "INVALID_ARGUMENT",
    )
    assert stranger in error["message"]


# -- /fleet --------------------------------------------------------------------------------------


def test_the_fleet_shows_the_tick_the_workers_seen_and_the_waits(memory_api: Api) -> None:
    api = memory_api
    now = api.clock.now()
    store = api.store
    store.record_heartbeat("tick", now - timedelta(seconds=2))
    store.record_heartbeat("api", now)
    store.record_heartbeat("worker:celery@alive", now - timedelta(seconds=4))
    store.record_heartbeat("worker:celery@stuck", now - timedelta(minutes=5))
    store.record_heartbeat("worker:celery@long-gone", now - timedelta(days=3))
    run(api, "approval")
    api.clock.advance(20)

    fleet = api.get("/fleet", "admin").json()
    api.clock.advance(20)
    later = api.get("/fleet", "admin").json()

    assert fleet["tick"]["last_at"] == (now - timedelta(seconds=2)).isoformat()
    assert fleet["tick"]["ok"] is True and fleet["tick"]["age_seconds"] == 22
    assert [(w["name"], w["alive"]) for w in fleet["workers"]] == [
        ("celery@alive", True),  # newest first; three days ago is no longer listed
        ("celery@stuck", False),
    ]
    assert fleet["waiting"]["waiting_count"] == 1
    assert fleet["waiting"]["oldest_waiting_seconds"] == 20
    # 42 s without a tick or a heartbeat: the beat is late, the worker no longer alive.
    assert later["tick"]["ok"] is False
    assert (later["workers"][0]["name"], later["workers"][0]["alive"]) == ("celery@alive", False)
    assert fleet["queues"] == {
        "broker": None,
        "error": "this API runs without a broker",
        "items": [],
    }


def test_a_fleet_without_a_tick_is_not_ok(memory_api: Api) -> None:
    fleet = memory_api.get("/fleet", "admin").json()

    assert fleet["tick"] == {
        "last_at": None,
        "age_seconds": None,
        "period_seconds": memory_api.runtime.options.tick_seconds,
        "ok": False,
    }
    assert fleet["workers"] == []


def test_the_fleet_needs_an_admin_key(memory_api: Api) -> None:
    error = error_of(memory_api.get("/fleet", "a"), 403, "UNAUTHORIZED")
    assert "admin" in error["message"]


@pytest.fixture
def celery_api(memory_api: Api) -> Iterator[tuple[Api, FlowMonkeyCelery]]:
    """The API over a Celery runtime on Redis, with a step queue of its own."""
    queue = f"fm-fleet-{uuid.uuid4().hex[:10]}"
    runtime = memory_api.runtime
    runtime.options = dataclasses.replace(runtime.options, queue=queue)
    app = Celery("fleet-test", broker=REDIS_URL)
    fm = FlowMonkeyCelery(app, runtime)
    with Connection(REDIS_URL) as connection:
        connection.default_channel.queue_declare(queue=queue)
    try:
        yield memory_api, fm
    finally:
        with Connection(REDIS_URL) as connection:
            for name in (queue, runtime.options.tick_queue_name):
                connection.default_channel.queue_delete(name)
        app.close()


def test_the_fleet_counts_the_messages_waiting_in_the_step_queue(
    celery_api: tuple[Api, FlowMonkeyCelery], redis_client: Any
) -> None:
    api, fm = celery_api
    client = TestClient(dashboard_app(api, fm))
    for index in range(3):
        fm.step_task.apply_async((f"execution-{index}", 0), queue=fm.step_queue)

    queues = client.get("/fleet", headers=api.keys["admin"].headers).json()["queues"]

    assert queues["error"] is None
    by_name = {q["name"]: q for q in queues["items"]}
    assert by_name[fm.step_queue] == {
        "name": fm.step_queue,
        "role": "steps",
        "messages": 3,
        "exists": True,
    }
    tick_queue = fm.options.tick_queue_name
    assert by_name[tick_queue]["role"] == "tick" and by_name[tick_queue]["messages"] == 0


def test_a_broker_that_is_down_is_reported_not_a_500(memory_api: Api) -> None:
    app = Celery("fleet-down", broker="redis://127.0.0.1:1/0")
    try:
        client = TestClient(dashboard_app(memory_api, FlowMonkeyCelery(app, memory_api.runtime)))

        answer = client.get("/fleet", headers=memory_api.keys["admin"].headers)
    finally:
        app.close()

    assert answer.status_code == 200
    queues = answer.json()["queues"]
    assert queues["error"] == "the broker does not answer (OperationalError)"
    assert "127.0.0.1" not in queues["error"]


def dashboard_app(api: Api, fm: FlowMonkeyCelery) -> FastAPI:
    from flowmonkey_celery.api import create_app

    return create_app(fm)
