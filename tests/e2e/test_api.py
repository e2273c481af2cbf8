"""The REST API over real HTTP (a uvicorn process) with a real worker and beat on PostgreSQL and
Redis: signed webhooks, event triggers and a flow waiting for an event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from flowmonkey_celery import ExecutionStatus
from flowmonkey_celery.core.api_keys import new_api_key
from flowmonkey_celery.triggers.webhooks import sign
from tests.e2e.conftest import FlowMonkeyCluster

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("broker", ["redis"])]
SECRET = "s3cret-shared-with-the-sender"


class Api:
    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}"}

    def post(self, path: str, body: Any, **headers: str) -> requests.Response:
        return requests.post(
            self.base + path, json=body, headers={**self.headers, **headers}, timeout=10
        )

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers, timeout=10)


@pytest.fixture
def api(cluster: FlowMonkeyCluster) -> Iterator[Api]:
    cluster.start_worker()
    cluster.start_beat()
    base = cluster.start_api()
    admin = new_api_key("e2e-admin", datetime.now(UTC), admin=True)
    cluster.client.runtime.store.save_api_key(admin.record)
    yield Api(base, admin.key)


def executions_of(cluster: FlowMonkeyCluster, flow_id: str) -> list[Any]:
    return cluster.client.runtime.store.list_executions(flow_id=flow_id)


def test_a_signed_webhook_starts_a_flow_that_completes_and_a_redelivery_starts_nothing(
    cluster: FlowMonkeyCluster, api: Api, tmp_path: Path
) -> None:
    trigger = {
        "id": "shop-orders",
        "type": "http",
        "flow_id": "e2e-hooked",
        "input_schema": {"type": "object", "required": ["order_id"]},
        "context_key": "order",
        "static_context": {"calls_file": str(tmp_path / "calls.txt")},
        "auth": {"type": "hmac", "secret": SECRET},
    }
    assert api.post("/triggers", trigger).status_code == 201
    body = json.dumps({"order_id": "A-1"}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-FlowMonkey-Signature": sign(SECRET, body, datetime.now(UTC)),
        "Idempotency-Key": "delivery-1",
    }

    first = requests.post(
        f"{api.base}/webhooks/shop-orders", data=body, headers=headers, timeout=10
    )
    again = requests.post(
        f"{api.base}/webhooks/shop-orders", data=body, headers=headers, timeout=10
    )
    forged = requests.post(
        f"{api.base}/webhooks/shop-orders",
        data=body,
        headers={**headers, "X-FlowMonkey-Signature": sign("wrong", body, datetime.now(UTC))},
        timeout=10,
    )

    assert first.status_code == 202 and again.status_code == 202
    execution_id = first.json()["execution_id"]
    assert again.json() == {**first.json(), "duplicate": True}
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "INVALID_SIGNATURE"
    cluster.wait_finished([execution_id], timeout=60)
    finished = cluster.client.get(execution_id)
    assert finished is not None and finished.status is ExecutionStatus.COMPLETED
    assert finished.context["order"] == {"order_id": "A-1"}
    assert [e.id for e in executions_of(cluster, "e2e-hooked")] == [execution_id]
    stats = api.get("/triggers/shop-orders/stats").json()
    assert (stats["accepted"], stats["duplicate"], stats["rejected"]) == (1, 1, 1)


def test_an_event_matching_two_triggers_starts_two_executions_and_one_matching_none_starts_none(
    cluster: FlowMonkeyCluster, api: Api, tmp_path: Path
) -> None:
    calls = str(tmp_path / "calls.txt")
    for trigger_id, condition in (
        ("all-paid", None),
        ("big-paid", {"path": "total", "op": "gte", "value": 100}),
    ):
        trigger: dict[str, Any] = {
            "id": trigger_id,
            "type": "event",
            "flow_id": "e2e-hooked",
            "event_type": "order.paid",
            "static_context": {"calls_file": calls},
        }
        if condition:
            trigger["conditions"] = [condition]
        assert api.post("/triggers", trigger).status_code == 201

    matched = api.post("/events", {"type": "order.paid", "payload": {"total": 150}, "key": "p-1"})
    repeated = api.post("/events", {"type": "order.paid", "payload": {"total": 150}, "key": "p-1"})
    unmatched = api.post("/events", {"type": "order.refunded", "payload": {"total": 150}})

    assert matched.status_code == 202 and len(matched.json()["started"]) == 2
    assert repeated.json()["created"] is False and repeated.json()["started"] == []
    assert unmatched.json()["started"] == []
    cluster.wait_finished(matched.json()["started"], timeout=60)
    started = executions_of(cluster, "e2e-hooked")
    assert len(started) == 2 and all(e.status is ExecutionStatus.COMPLETED for e in started)


@pytest.mark.parametrize("posted", ["while it waits", "just before the wait"])
def test_a_flow_waiting_for_an_event_continues_when_it_is_posted(
    cluster: FlowMonkeyCluster, api: Api, tmp_path: Path, posted: str
) -> None:
    context = {"order": {"id": "A-7"}, "calls_file": str(tmp_path / "calls.txt")}
    started = api.post("/executions", {"flow_id": "e2e-await-payment", "context": context})
    assert started.status_code == 201
    execution_id = started.json()["execution"]["id"]
    payment = {"type": "payment.received", "payload": {"order_id": "A-7", "amount": 12}}
    if posted == "while it waits":
        cluster.wait_for(
            lambda: (
                (e := cluster.client.get(execution_id)) is not None
                and e.status is ExecutionStatus.WAITING
                and e.current_step_id == "await"
            ),
            timeout=60,
            what="the flow to wait for its payment",
        )
    else:  # the first step (1.5 s of work) is still running: the event comes first
        current = cluster.client.get(execution_id)
        assert current is not None and current.current_step_id == "prepare"
    other = api.post("/events", {"type": "payment.received", "payload": {"order_id": "B-9"}})
    emitted = api.post("/events", payment)
    assert other.status_code == 202 and emitted.status_code == 202

    cluster.wait_finished([execution_id], timeout=60)
    finished = cluster.client.get(execution_id)
    assert finished is not None and finished.status is ExecutionStatus.COMPLETED
    assert finished.context["payment"]["payload"] == payment["payload"]
    assert finished.context["payment"]["id"] == emitted.json()["event"]["id"]


def test_the_api_is_ready_once_the_beat_has_ticked(cluster: FlowMonkeyCluster, api: Api) -> None:
    answer = cluster.wait_for(
        lambda: (r := requests.get(f"{api.base}/ready", timeout=10)).status_code == 200 and r,
        timeout=30,
        what="/ready to answer 200",
    )
    assert answer.json()["checks"]["broker"]["ok"] and answer.json()["checks"]["tick"]["ok"]
    assert requests.get(f"{api.base}/openapi.json", timeout=10).status_code == 200
