"""What a review of the triggers and API found, each pinned by a test: secrets that must not
show, tenants that must not cross, signed deliveries that must not replay, inputs that must
not become 500s, and an enqueue that fails after its commit."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from flowmonkey_celery.triggers.webhooks import sign
from tests.integration.api.conftest import Api, error_of, issue_paths

SECRET = "a-shared-secret-of-some-length"


def hmac_trigger(api: Api, **auth: Any) -> None:
    api.trigger(id="signed", auth={"type": "hmac", "secret": SECRET, **auth})


def deliver(api: Api, body: bytes, **headers: str) -> Any:
    return api.client.post("/webhooks/signed", content=body, headers=headers)


def test_a_flow_files_webhook_secret_is_never_shown(memory_api: Api) -> None:
    api = memory_api
    api.runtime.flows.register(
        {
            "id": "hooked",
            "initialStepId": "go",
            "steps": {"go": {"type": "noop"}},
            "triggers": [{"id": "h", "type": "http", "auth": {"type": "bearer", "secret": SECRET}}],
        }
    )
    shown = api.get("/flows/hooked")
    assert shown.status_code == 200
    assert SECRET not in shown.text
    assert shown.json()["triggers"][0]["auth"]["has_secret"] is True


def test_a_tenant_cannot_name_a_variable_of_the_api_host_as_a_secret(memory_api: Api) -> None:
    body = {
        "id": "probe",
        "type": "http",
        "flow_id": "quick",
        "auth": {"type": "hmac", "secret_env": "HOME"},
    }
    refused = memory_api.post("/triggers", json=body)
    assert "secret_env" in error_of(refused, 403, "UNAUTHORIZED")["message"]
    assert memory_api.post("/triggers", "admin", json=body).status_code == 201


def test_a_replayed_signed_delivery_starts_nothing_even_without_an_idempotency_key(
    memory_api: Api,
) -> None:
    api = memory_api
    hmac_trigger(api)
    body = b'{"n": 1}'
    signature = sign(SECRET, body, api.clock.now())

    first = deliver(api, body, **{"X-FlowMonkey-Signature": signature})
    replayed = deliver(api, body, **{"X-FlowMonkey-Signature": signature})

    assert first.status_code == replayed.status_code == 202
    assert replayed.json()["duplicate"] is True
    assert replayed.json()["execution_id"] == first.json()["execution_id"]


def test_a_github_delivery_is_deduplicated_by_its_delivery_id(memory_api: Api) -> None:
    import hashlib
    import hmac

    api = memory_api
    hmac_trigger(api, scheme="github")
    body = b'{"action": "opened"}'
    mac = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": mac, "X-GitHub-Delivery": "72d3162e"}

    first = deliver(api, body, **headers)
    again = deliver(api, body, **headers)

    assert first.status_code == again.status_code == 202 and again.json()["duplicate"] is True


@pytest.mark.parametrize(
    "body", [b'{"n": ' + b"9" * 5000 + b"}", b"[" * 3000 + b"]" * 3000], ids=["huge-int", "deep"]
)
def test_json_python_cannot_read_is_a_400_on_the_api_and_on_webhooks(
    memory_api: Api, body: bytes
) -> None:
    api = memory_api
    api.trigger(id="plain")
    on_api = api.post("/events", content=body, headers={"Content-Type": "application/json"})
    on_webhook = api.client.post("/webhooks/plain", content=body)
    error_of(on_api, 400, "INVALID_JSON")
    error_of(on_webhook, 400, "INVALID_JSON")
    assert [f["status"] for f in api.fires("plain")] == ["rejected"]


def test_a_timestamp_of_hundreds_of_digits_is_refused_as_a_bad_signature(memory_api: Api) -> None:
    api = memory_api
    hmac_trigger(api)
    answer = deliver(api, b"{}", **{"X-FlowMonkey-Signature": "t=" + "9" * 400 + ",v1=ab"})
    error_of(answer, 401, "INVALID_SIGNATURE")


def test_a_broker_that_fails_after_the_commit_still_gets_a_202(memory_api: Api) -> None:
    api = memory_api
    api.trigger(id="plain")

    def broker_down(execution: Any) -> None:
        raise ConnectionError("broker down")

    api.app.state.flowmonkey.receiver.dispatch = broker_down
    answer = api.client.post("/webhooks/plain", json={"n": 1})

    assert answer.status_code == 202  # committed: the stalled-lease sweep sends it later
    assert api.engine.get(answer.json()["execution_id"]) is not None


def test_a_tenants_flow_cannot_start_another_tenants_private_flow(memory_api: Api) -> None:
    api = memory_api
    private = {"id": "b-private", "initialStepId": "go", "steps": {"go": {"type": "noop"}}}
    assert api.post("/flows", "b", json=private).status_code == 201
    sneaky = {
        "id": "a-sneaky",
        "initialStepId": "sub",
        "steps": {"sub": {"type": "subflow", "config": {"flow": "b-private"}}},
    }
    refused = error_of(api.post("/flows", "a", json=sneaky), 422, "INVALID_FLOW")
    assert issue_paths(refused) == ["steps.sub.config.flow"]
    assert "b-private" not in json.dumps(api.get("/flows", "a").json())


def test_an_event_of_a_tenant_never_resumes_an_execution_of_no_tenant(memory_api: Api) -> None:
    api = memory_api
    execution_id = api.start("payment", "admin", context={"order": {"id": "42"}})["id"]
    api.engine.run(execution_id)
    emitted = api.emit("payment.received", "a", payload={"order_id": "42"})
    assert emitted["resumed"] == []
    api.clock.advance(timedelta(seconds=1))
    own = api.emit("payment.received", "admin", payload={"order_id": "42"})
    assert own["resumed"] == [execution_id]
