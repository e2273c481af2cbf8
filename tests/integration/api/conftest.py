"""The REST API under test: `create_app` over a Runtime whose clock only moves when a test moves
it, with API keys for tenant A, tenant B, an admin, and a revoked key of tenant A.

Every `api` test runs on MemoryStore, SQLite and PostgreSQL (a throwaway database each).
`snapshot(api)` is everything the store holds (every table on SQL, every collection of the
MemoryStore) plus the flows registered in the process, to prove a refused request changed
nothing.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import BaseModel
from sqlalchemy import select

from flowmonkey_celery import (
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
)
from flowmonkey_celery.api import create_app
from flowmonkey_celery.core.api_keys import new_api_key
from flowmonkey_celery.core.tokens import IssuedResumeToken
from flowmonkey_celery.runtime import Runtime
from flowmonkey_celery.stores.sql import SqlStore
from flowmonkey_celery.stores.sql import schema as sql_schema

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRET = "whsec-0123456789abcdef"  # a trigger secret: it must never appear in any answer
TENANTS = {"a": "tenant-a", "b": "tenant-b"}
BACKENDS = ["memory", "sqlite", "postgres"]
# Where each store keeps webhook fire history: the one collection a refused delivery grows.
TRIGGER_HISTORY = ("_trigger_history", "fm_trigger_history")


class Noop:
    """A step that succeeds at once."""

    type = "noop"

    def execute(self, params: HandlerParams) -> StepResult:
        return Result.success({"done": True})


def flow_definitions() -> list[dict[str, Any]]:
    """The flows every test deploys (shared: no tenant owns them)."""
    return [
        {"id": "quick", "initialStepId": "go", "steps": {"go": {"type": "noop"}}},
        {
            # Waits for a signal (with a resume token), then runs one more step.
            "id": "approval",
            "initialStepId": "approve",
            "steps": {
                "approve": {
                    "type": "wait_for_signal",
                    "outputKey": "decision",
                    "transitions": {"onSuccess": "record"},
                },
                "record": {"type": "noop"},
            },
        },
        {
            # Its token expires a minute after it was issued.
            "id": "expiring",
            "initialStepId": "approve",
            "steps": {
                "approve": {
                    "type": "wait_for_signal",
                    "config": {"token_expires_ms": 60_000},
                    "outputKey": "decision",
                }
            },
        },
        {
            # No output_key: resume data must be an object (merged into the context).
            "id": "gate",
            "initialStepId": "hold",
            "steps": {"hold": {"type": "wait_for_signal"}},
        },
        {
            "id": "payment",
            "initialStepId": "paid",
            "steps": {
                "paid": {
                    "type": "wait_for_event",
                    "config": {"event": "payment.received", "match": {"order_id": "${order.id}"}},
                    "outputKey": "payment",
                }
            },
        },
    ]


@dataclass(frozen=True)
class Key:
    name: str
    raw: str
    record_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.raw}"}


class Api:
    """One app over one store, and who may call it."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.clock = ManualClock(START)
        self.runtime = Runtime(
            store, HandlerRegistry([Noop()]), FlowRegistry(flow_definitions()), clock=self.clock
        )
        self.engine = self.runtime.engine
        self.tokens: list[IssuedResumeToken] = []
        self.engine.on_resume_token(self.tokens.append)
        self.app = create_app(self.runtime)
        # 500s are answers to assert on, not exceptions in the test.
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.keys = {
            "admin": self._issue("ops", admin=True),
            "a": self._issue("tenant-a-key", tenant_id=TENANTS["a"]),
            "b": self._issue("tenant-b-key", tenant_id=TENANTS["b"]),
            "revoked": self._issue("tenant-a-old-key", tenant_id=TENANTS["a"]),
        }
        assert store.revoke_api_key(self.keys["revoked"].record_id, START)

    def _issue(self, name: str, **scope: Any) -> Key:
        issued = new_api_key(name, START, **scope)
        self.store.save_api_key(issued.record)
        return Key(name, issued.key, issued.record.id)

    # -- requests --------------------------------------------------------------------------------

    def headers(self, who: str | None) -> dict[str, str]:
        return {} if who is None else self.keys[who].headers

    def request(self, method: str, path: str, who: str | None = "a", **kwargs: Any) -> Response:
        headers = {**self.headers(who), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, who: str | None = "a", **kwargs: Any) -> Response:
        return self.request("GET", path, who, **kwargs)

    def post(self, path: str, who: str | None = "a", **kwargs: Any) -> Response:
        return self.request("POST", path, who, **kwargs)

    def put(self, path: str, who: str | None = "a", **kwargs: Any) -> Response:
        return self.request("PUT", path, who, **kwargs)

    def delete(self, path: str, who: str | None = "a", **kwargs: Any) -> Response:
        return self.request("DELETE", path, who, **kwargs)

    # -- arranging -------------------------------------------------------------------------------

    def start(self, flow_id: str = "quick", who: str = "a", **fields: Any) -> dict[str, Any]:
        """Start an execution through the API; the execution as answered."""
        response = self.post("/executions", who, json={"flow_id": flow_id, **fields})
        assert response.status_code == 201, response.text
        execution: dict[str, Any] = response.json()["execution"]
        return execution

    def waiting(self, flow_id: str = "approval", who: str = "a", **fields: Any) -> tuple[str, str]:
        """An execution waiting at its signal step, and the resume token the step issued."""
        execution_id = self.start(flow_id, who, **fields)["id"]
        assert self.engine.run(execution_id).status.value == "waiting"
        token = next(t.token for t in reversed(self.tokens) if t.execution_id == execution_id)
        return execution_id, token

    def failed(self, who: str = "a", **fields: Any) -> str:
        """An approval whose wait was failed (what it waited for failed): status failed,
        error CARD_DECLINED at step `approve`."""
        execution_id, _ = self.waiting("approval", who, **fields)
        failed = self.engine.fail_waiting(execution_id, "CARD_DECLINED", "the card was declined")
        assert failed.status.value == "failed"
        return execution_id

    def completed(self, who: str = "a", **fields: Any) -> str:
        execution_id = self.start("quick", who, **fields)["id"]
        assert self.engine.run(execution_id).status.value == "completed"
        return execution_id

    def trigger(self, who: str = "a", **fields: Any) -> dict[str, Any]:
        """Create a trigger (an http one unless `type` says otherwise)."""
        body = {"type": "http", "flow_id": "quick", **fields}
        response = self.post("/triggers", who, json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def emit(self, event_type: str = "order.paid", who: str = "a", **fields: Any) -> dict[str, Any]:
        response = self.post("/events", who, json={"type": event_type, **fields})
        assert response.status_code == 202, response.text
        emitted: dict[str, Any] = response.json()
        return emitted

    def fires(self, trigger_id: str) -> list[dict[str, Any]]:
        """The trigger's history as the store keeps it (newest first)."""
        return [
            f.model_dump(mode="json")
            for f in self.store.list_trigger_fires(trigger_id, limit=100_000)
        ]


# -- answers ---------------------------------------------------------------------------------


def error_of(response: Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The `error` of a refusal, after checking its status, shape and code."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:2000]}"
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"code", "message"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    if code is not None:
        assert error["code"] == code, error
    return error


def issue_paths(error: dict[str, Any]) -> list[str]:
    return [issue["path"] for issue in error["details"]["issues"]]


# -- state -----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-comparable form of anything a store keeps."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return sorted(
            ([json.dumps(_plain(k), sort_keys=True), _plain(v)] for k, v in value.items()),
            key=lambda pair: pair[0],
        )
    if isinstance(value, set | frozenset):
        return sorted(json.dumps(_plain(v), sort_keys=True) for v in value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def snapshot(api: Api) -> dict[str, Any]:
    """Everything stored, by table (SQL) or collection (MemoryStore), and the flows registered
    in the process."""
    store = api.store
    state: dict[str, Any] = {}
    if isinstance(store, SqlStore):
        with store.engine.connect() as connection:
            for table in sql_schema.metadata.sorted_tables:
                rows = connection.execute(select(table)).mappings().all()
                state[table.name] = sorted(
                    json.dumps(dict(row), sort_keys=True, default=str) for row in rows
                )
    else:
        assert isinstance(store, MemoryStore)
        for name, value in vars(store).items():
            if name != "_lock":
                state[name] = _plain(value)
    state["process:flows"] = sorted((f.id, f.version) for f in api.runtime.flows.all())
    return state


def without_trigger_history(state: dict[str, Any]) -> dict[str, Any]:
    return {name: rows for name, rows in state.items() if name not in TRIGGER_HISTORY}


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    changed = sorted(
        name for name in set(before) | set(after) if before.get(name) != after.get(name)
    )
    assert not changed, f"changed: {changed}"


# -- stores ----------------------------------------------------------------------------------


@contextmanager
def open_store(backend: str, request: pytest.FixtureRequest, directory: Path) -> Iterator[Any]:
    if backend == "memory":
        yield MemoryStore()
        return
    if backend == "sqlite":
        store = SqlStore(f"sqlite:///{directory}/api-{uuid.uuid4().hex[:8]}.db")
        store.migrate()
        try:
            yield store
        finally:
            store.dispose()
        return
    postgres = request.getfixturevalue("postgres")
    with postgres.database() as url:
        store = SqlStore(url)
        try:
            yield store
        finally:
            store.dispose()


@pytest.fixture(autouse=True)
def _quiet_trigger_warnings(caplog: pytest.LogCaptureFixture) -> None:
    # The runtime warns that no HTTP adapter serves an HTTP trigger: the app is not served
    # (no lifespan) in these tests. Not what they are about.
    caplog.set_level(logging.ERROR, logger="flowmonkey_celery.runtime")


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    with open_store(request.param, request, tmp_path) as store:
        yield Api(store)


@pytest.fixture
def memory_api() -> Api:
    """For behaviour that does not depend on the store (routing, OpenAPI)."""
    return Api(MemoryStore())


@contextmanager
def module_api(request: pytest.FixtureRequest, backend: str) -> Iterator[Api]:
    """One Api for a whole module (for module-scoped fixtures)."""
    directory = request.getfixturevalue("tmp_path_factory").mktemp(f"api-{backend}")
    with open_store(backend, request, directory) as store:
        yield Api(store)
