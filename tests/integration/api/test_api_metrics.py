"""`GET /metrics`: Prometheus text with the API process's counters and the store's waiting
gauges, for an admin key (or anyone, with FLOWMONKEY_METRICS_PUBLIC=true)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from prometheus_client.parser import text_string_to_metric_families

from flowmonkey_celery import FlowRegistry, HandlerRegistry, MemoryStore
from flowmonkey_celery.api import create_app
from flowmonkey_celery.runtime import Runtime
from flowmonkey_celery.settings import Settings
from tests.integration.api.conftest import Api, Noop, error_of, flow_definitions


def samples(response: Response) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_show_the_waiting_executions_of_the_store(api: Api) -> None:
    api.waiting("approval")
    api.waiting("approval", who="b")  # every tenant's: the gauges are the fleet's
    api.completed()
    api.clock.advance(timedelta(minutes=5))

    found = samples(api.get("/metrics", "admin"))

    assert value(found, "flowmonkey_store_up") == 1
    assert value(found, "flowmonkey_waiting_executions") == 2
    assert value(found, "flowmonkey_oldest_waiting_seconds") == 300
    assert value(found, "flowmonkey_due_executions") == 0
    assert value(found, "flowmonkey_due_lag_seconds") == 0


def test_metrics_count_what_this_api_process_started_and_received(memory_api: Api) -> None:
    trigger = memory_api.trigger(id="orders-hook")
    before = samples(memory_api.get("/metrics", "admin"))

    memory_api.start("quick")
    memory_api.start("quick")
    delivered = memory_api.post(f"/webhooks/{trigger['id']}", None, json={"order": 1})
    assert delivered.status_code < 300, delivered.text

    after = samples(memory_api.get("/metrics", "admin"))
    created = "flowmonkey_executions_created_total"
    assert value(after, created, flow="quick") - value(before, created, flow="quick") == 3
    fires = {"trigger_type": "http", "status": "accepted"}
    fired = "flowmonkey_trigger_fires_total"
    assert value(after, fired, **fires) - value(before, fired, **fires) == 1


def test_a_flood_of_rejected_deliveries_records_60_a_minute_and_counts_them_all(
    memory_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = memory_api
    trigger = api.trigger(id="guarded", enabled=False)  # every delivery refused: 409
    fired = "flowmonkey_trigger_fires_total"
    rejected = {"trigger_type": "http", "status": "rejected"}
    before = value(samples(api.get("/metrics", "admin")), fired, **rejected)

    for _ in range(75):
        error_of(api.post(f"/webhooks/{trigger['id']}", None, json={}), 409, "TRIGGER_DISABLED")

    assert [f["status"] for f in api.fires("guarded")] == ["rejected"] * 60
    after = value(samples(api.get("/metrics", "admin")), fired, **rejected)
    assert after - before == 75
    assert api.get("/triggers/guarded/stats", "a").json()["rejected"] == 60

    api.clock.advance(timedelta(minutes=1))  # a new minute: recorded again, the gap logged
    with caplog.at_level("WARNING", logger="flowmonkey_celery.webhooks"):
        error_of(api.post(f"/webhooks/{trigger['id']}", None, json={}), 409, "TRIGGER_DISABLED")
    assert len(api.fires("guarded")) == 61
    assert "15 rejected deliveries to trigger 'guarded'" in caplog.text


def test_metrics_need_an_admin_key(memory_api: Api) -> None:
    error_of(memory_api.get("/metrics", None), 401, "UNAUTHORIZED")
    error_of(memory_api.get("/metrics", "revoked"), 401, "UNAUTHORIZED")
    assert "admin" in error_of(memory_api.get("/metrics", "a"), 403, "UNAUTHORIZED")["message"]


def test_metrics_are_open_with_metrics_public_or_without_api_keys() -> None:
    def client(settings: Settings, auth: bool = True) -> TestClient:
        runtime = Runtime(
            MemoryStore(),
            HandlerRegistry([Noop()]),
            FlowRegistry(flow_definitions()),
            settings=settings,
        )
        return TestClient(create_app(runtime, auth=auth))

    assert client(Settings(metrics_public=True)).get("/metrics").status_code == 200
    assert client(Settings(), auth=False).get("/metrics").status_code == 200
    assert client(Settings()).get("/metrics").status_code == 401
    # The other routes keep their keys.
    assert client(Settings(metrics_public=True)).get("/executions").status_code == 401
