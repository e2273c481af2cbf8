"""More than a thousand invalid requests, generated: wrong types for every field of every
request model, missing and extra fields, bodies over 1 MiB (with a Content-Length or chunked),
deeply nested and broken JSON, non-UTF-8 bytes, NUL characters and unpaired surrogates, bad
webhook signatures and stale timestamps, unknown ids, another tenant's ids, bad query
parameters, 10,000-character, control-character and NUL path ids.

Each gets a 4xx (never a 5xx) in the API's error shape, whose message names the field,
parameter or path at fault. A body that is not JSON (whatever its Content-Type) is a 400
INVALID_JSON; JSON no store can keep (a NUL, an unpaired surrogate, more than 64 levels) a 400
INVALID_INPUT; a NUL in the URL a 400 INVALID_ARGUMENT. After the whole batch the store holds
exactly what it held before, except that each refused webhook delivery to an existing HTTP
trigger added one `rejected` entry to that trigger's history (with the refusal's code and no
execution). One app and one client serve the batch, per store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from pydantic.alias_generators import to_camel

from flowmonkey_celery.core import tokens
from flowmonkey_celery.triggers.webhooks import sign
from tests.integration.api.conftest import (
    BACKENDS,
    SECRET,
    Api,
    assert_unchanged,
    error_of,
    issue_paths,
    module_api,
    snapshot,
    without_trigger_history,
)

MIB = 1024 * 1024
UNSET: Any = object()
SCHEMA = {
    "type": "object",
    "required": ["order"],
    "properties": {
        "order": {
            "type": "object",
            "required": ["id", "total"],
            "properties": {"id": {"type": "string"}, "total": {"type": "number", "minimum": 0}},
        },
        "note": {"type": "string", "maxLength": 10},
    },
}


@dataclass(frozen=True)
class Case:
    """One invalid request and what it must get."""

    name: str
    method: str
    path: str
    who: str | None = "a"
    body: Any = UNSET  # sent as JSON text
    content: Any = None  # sent as is (bytes, or an iterator for a chunked body)
    headers: dict[str, str] = field(default_factory=dict)
    params: Any = None
    status: int = 422
    codes: tuple[str, ...] = ("INVALID_INPUT",)
    mentions: tuple[str, ...] = ()
    # An existing HTTP trigger this delivery is refused by: one `rejected` fire is recorded.
    webhook: str | None = None

    def send(self, api: Api) -> Any:
        headers = dict(self.headers)
        kwargs: dict[str, Any] = {}
        if self.body is not UNSET:
            kwargs["content"] = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif self.content is not None:
            kwargs["content"] = self.content
            headers.setdefault("Content-Type", "application/json")
        if self.params is not None:
            kwargs["params"] = self.params
        return api.request(self.method, self.path, self.who, headers=headers, **kwargs)


# -- the world the batch runs against ---------------------------------------------------------


def build_world(api: Api) -> dict[str, str]:
    ids: dict[str, str] = {}
    ids["a_wait"], ids["a_token"] = api.waiting("approval")
    ids["a_gate"], ids["a_gate_token"] = api.waiting("gate")
    ids["a_done"] = api.completed()
    ids["b_wait"], ids["b_token"] = api.waiting("approval", "b")
    ids["b_done"] = api.completed("b")
    ids["a_event"] = api.emit("order.paid", payload={"n": 1})["event"]["id"]
    ids["b_event"] = api.emit("order.paid", "b", payload={"n": 2})["event"]["id"]
    assert (
        api.post(
            "/flows",
            "b",
            json={"id": "b-private", "initialStepId": "go", "steps": {"go": {"type": "noop"}}},
        ).status_code
        == 201
    )
    api.trigger(id="plain", input_schema=SCHEMA)
    api.trigger(id="bearer", auth={"type": "bearer", "secret": SECRET})
    api.trigger(id="signed", auth={"type": "hmac", "secret": SECRET})
    api.trigger(id="github", auth={"type": "hmac", "scheme": "github", "secret": SECRET})
    api.trigger(id="small", max_body_bytes=256)
    api.trigger(id="disabled", enabled=False)
    api.trigger(id="keyed", idempotency_key_path="order.id")
    api.trigger(id="a-events", type="event", event_type="order.paid")
    api.trigger("b", id="b-hook", auth={"type": "bearer", "secret": SECRET})
    return ids


# -- generated cases ----------------------------------------------------------------------------

WRONG_FOR_STR = [5, -1, 1.5, True, False, [], ["x"], {}, {"a": 1}]
WRONG_FOR_DICT = ["text", "", 5, 1.5, True, False, [], ["a", 1]]
WRONG_FOR_INT = ["abc", "", "1.5", 1.5, [], [1], {}, {"v": 1}, "one"]
NOT_AN_OBJECT = [[], [1, 2], "text", 5, 1.5, True]


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # str | dict | int
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None
    minimum: int | None = None


def wrong_values(spec: Field) -> list[tuple[str, Any]]:
    values: list[Any] = {
        "str": WRONG_FOR_STR,
        "dict": WRONG_FOR_DICT,
        "int": WRONG_FOR_INT,
    }[spec.kind]
    named = [(f"{type(v).__name__}:{json.dumps(v)[:12]}", v) for v in values]
    if spec.required:
        named.append(("null", None))
    if spec.min_length:
        named.append(("too-short", ""))
    if spec.max_length:
        named.append(("too-long", "x" * (spec.max_length + 1)))
    if spec.minimum is not None:
        named += [("below-minimum", spec.minimum - 1), ("far-below", spec.minimum - 10**6)]
    return named


def model_cases(ids: dict[str, str]) -> list[Case]:
    """Every field of every request model with a wrong value; missing required fields; extra
    fields; bodies that are not objects. Each on a base body that is otherwise valid (so that
    a wrongly accepted one would change something)."""
    models = [
        (
            "start",
            "POST",
            "/executions",
            {"flow_id": "quick"},
            [
                Field("flow_id", "str", required=True, min_length=1, max_length=200),
                Field("context", "dict"),
                Field("flow_version", "str"),
                Field("tenant_id", "str", min_length=1, max_length=200),
                Field("idempotency_key", "str", min_length=1, max_length=200),
                Field("metadata", "dict"),
                Field("timeout", "dict"),
            ],
        ),
        (
            "resume",
            "POST",
            f"/executions/{ids['a_wait']}/resume",
            {"data": {"ok": True}},
            [Field("expected_version", "int", minimum=0)],
        ),
        (
            "token",
            "POST",
            "/executions/resume-with-token",
            {"token": ids["a_token"], "data": {"ok": True}},
            [
                Field("token", "str", required=True, min_length=1, max_length=200),
                Field("outcome", "str", min_length=1, max_length=200),
            ],
        ),
        (
            "cancel",
            "POST",
            f"/executions/{ids['a_wait']}/cancel",
            {"reason": "r"},
            [Field("reason", "str", max_length=1000)],
        ),
        (
            "emit",
            "POST",
            "/events",
            {"type": "order.paid", "payload": {"n": 9}},
            [
                Field("type", "str", required=True, min_length=1, max_length=200),
                Field("key", "str", min_length=1, max_length=500),
                Field("tenant_id", "str", min_length=1, max_length=200),
            ],
        ),
    ]
    cases: list[Case] = []
    for model, method, path, base, fields in models:
        for spec in fields:
            for label, value in wrong_values(spec):
                cases.append(
                    Case(
                        f"{model}.{spec.name}={label}",
                        method,
                        path,
                        body={**base, spec.name: value},
                        mentions=(f"body.{spec.name}",),
                    )
                )
            if spec.required:
                rest = {k: v for k, v in base.items() if k != spec.name}
                cases.append(
                    Case(
                        f"{model}.{spec.name}-missing",
                        method,
                        path,
                        body=rest,
                        mentions=(f"body.{spec.name}", "required"),
                    )
                )
        # camelCase keys are accepted (flowId): not an extra field of the model.
        known = {spec.name for spec in fields} | {to_camel(s.name) for s in fields} | set(base)
        for extra in (
            "unknown",
            "Flow_Id",
            "flowId",
            "execution_id",
            "status",
            "secret",
            "données",
        ):
            if extra not in known:
                cases.append(
                    Case(
                        f"{model}+{extra}",
                        method,
                        path,
                        body={**base, extra: 1},
                        mentions=(f"body.{extra}", "extra"),
                    )
                )
        for value in NOT_AN_OBJECT:
            cases.append(
                Case(
                    f"{model}-body-{json.dumps(value)}",
                    method,
                    path,
                    body=value,
                    mentions=("body",),
                )
            )
        if model != "cancel":  # a cancel's body is optional
            cases.append(Case(f"{model}-body-null", method, path, body=None, mentions=("body",)))
            cases.append(Case(f"{model}-empty-body", method, path, content=b"", mentions=("body",)))
        cases.append(
            Case(
                f"{model}-two-wrong-fields",
                method,
                path,
                body={**base, fields[0].name: [], "surplus": True},
                mentions=(f"body.{fields[0].name}", "body.surplus", "2 problem"),
            )
        )
    return cases


def engine_argument_cases(ids: dict[str, str]) -> list[Case]:
    """Bodies of the right types the engine refuses: 400 INVALID_ARGUMENT, or the token and
    flow refusals."""
    gate, gate_token = ids["a_gate"], ids["a_gate_token"]
    cases = []
    for label, data in (("list", [1, 2]), ("text", "yes"), ("number", 5), ("bool", True)):
        cases.append(
            Case(
                f"resume-gate-data-{label}",
                "POST",
                f"/executions/{gate}/resume",
                body={"data": data},
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("resume data", "object"),
            )
        )
        cases.append(
            Case(
                f"token-gate-data-{label}",
                "POST",
                "/executions/resume-with-token",
                body={"token": gate_token, "data": data},
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("resume data", "object"),
            )
        )
        cases.append(
            Case(
                f"token-outcome-data-{label}",
                "POST",
                "/executions/resume-with-token",
                body={"token": gate_token, "data": data, "outcome": "ok"},
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("outcome",),
            )
        )
    for label, text in (
        ("nan", b"NaN"),
        ("infinity", b"Infinity"),
        ("minus-infinity", b"-Infinity"),
    ):
        cases += [
            Case(
                f"start-context-{label}",
                "POST",
                "/executions",
                content=b'{"flow_id": "quick", "context": {"x": ' + text + b"}}",
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("context", "JSON"),
            ),
            Case(
                f"start-metadata-{label}",
                "POST",
                "/executions",
                content=b'{"flow_id": "quick", "metadata": {"x": ' + text + b"}}",
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("metadata", "JSON"),
            ),
            Case(
                f"emit-payload-{label}",
                "POST",
                "/events",
                content=b'{"type": "t", "payload": {"x": [' + text + b"]}}",
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("payload", "JSON"),
            ),
            Case(
                f"resume-data-{label}",
                "POST",
                f"/executions/{ids['a_wait']}/resume",
                content=b'{"data": ' + text + b"}",
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("resume data", "JSON"),
            ),
        ]
    for label, timeout in (
        ("ms-text", {"execution_timeout_ms": "soon"}),
        ("ms-negative", {"execution_timeout_ms": -5}),
        ("unknown-key", {"nope": 1}),
    ):
        cases.append(
            Case(
                f"start-timeout-{label}",
                "POST",
                "/executions",
                body={"flow_id": "quick", "timeout": timeout},
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("timeout",),
            )
        )
    # A lone surrogate: encoded, it is no UTF-8 (INVALID_JSON); escaped, it is JSON no store
    # can keep (INVALID_INPUT). Either way the body is refused before any model reads it.
    for label, body, code, mention in (
        ("emit-type", b'{"type": "\xed\xa0\x80"}', "INVALID_JSON", "UTF-8"),
        ("emit-type-escaped", b'{"type": "\\ud800"}', "INVALID_INPUT", "surrogate"),
        ("start-flow-id", b'{"flow_id": "\\udfff"}', "INVALID_INPUT", "surrogate"),
        ("token", b'{"token": "fmrt_\\ud800"}', "INVALID_INPUT", "surrogate"),
    ):
        path = (
            "/executions/resume-with-token"
            if label == "token"
            else ("/events" if label.startswith("emit") else "/executions")
        )
        cases.append(
            Case(
                f"surrogate-{label}",
                "POST",
                path,
                content=body,
                status=400,
                codes=(code,),
                mentions=(mention,),
            )
        )
    for label, event_type in (("blank", "   "), ("tab", "\t")):
        cases.append(
            Case(
                f"emit-type-{label}",
                "POST",
                "/events",
                body={"type": event_type},
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("type",),
            )
        )
    for label, token in (
        ("no-prefix", "abc"),
        ("prefix-only", "fmrt_"),
        ("punctuation", "fmrt_!!!!"),
        ("unicode", "fmrt_ééé"),
        ("spaces", " " * 10),
        ("control", "fmrt_\x01\x02"),
        ("unknown", tokens.new_token()),
        ("unknown-2", tokens.new_token()),
        ("b-token", ids["b_token"]),
        ("upper", ids["a_token"].upper()),
        ("truncated", ids["a_token"][:-3]),
        ("padded", ids["a_token"] + "x"),
    ):
        cases.append(
            Case(
                f"token-{label}",
                "POST",
                "/executions/resume-with-token",
                body={"token": token, "data": 1},
                status=400,
                codes=("INVALID_RESUME_TOKEN",),
                mentions=("token",),
            )
        )
    return cases


def flow_cases() -> list[Case]:
    """Invalid flows for POST /flows and POST /flows/validate: 422 INVALID_FLOW, every issue
    with its path (the path prefix that must be among them)."""
    go = {"type": "noop"}
    base = {"id": "new-flow", "initialStepId": "go", "steps": {"go": go}}

    def without(key: str) -> dict[str, Any]:
        return {k: v for k, v in base.items() if k != key}

    variants: list[tuple[str, Any, str]] = []
    for value in (5, [], {}, True, None, ""):
        variants.append((f"id={json.dumps(value)}", {**base, "id": value}, "id"))
    for value in ("abc", "", 5, "1.0.0.0.0", [], "1..0"):
        variants.append((f"version={json.dumps(value)}", {**base, "version": value}, "version"))
    for value in ("nope", 5, None, "", []):
        variants.append(
            (f"initial={json.dumps(value)}", {**base, "initialStepId": value}, "initial_step_id")
        )
    variants += [
        ("no-id", without("id"), "id"),
        ("no-initial", without("initialStepId"), "initial_step_id"),
        ("no-steps", without("steps"), "steps"),
        ("steps-empty", {**base, "steps": {}}, "steps"),
        ("steps-list", {**base, "steps": [go]}, "steps"),
        ("steps-text", {**base, "steps": "go"}, "steps"),
        ("step-number", {**base, "steps": {"go": 5}}, "steps.go"),
        ("step-no-type", {**base, "steps": {"go": {}}}, "steps.go"),
        ("step-type-number", {**base, "steps": {"go": {"type": 5}}}, "steps.go.type"),
        ("step-type-empty", {**base, "steps": {"go": {"type": ""}}}, "steps.go.type"),
        (
            "transition-ghost",
            {**base, "steps": {"go": {**go, "transitions": {"onSuccess": "ghost"}}}},
            "steps.go.transitions",
        ),
        (
            "transitions-text",
            {**base, "steps": {"go": {**go, "transitions": "next"}}},
            "steps.go.transitions",
        ),
        (
            "transition-unknown-key",
            {**base, "steps": {"go": {**go, "transitions": {"onMaybe": "go"}}}},
            "steps.go.transitions",
        ),
        ("config-text", {**base, "steps": {"go": {**go, "config": "x"}}}, "steps.go.config"),
        (
            "signal-config-bogus",
            {**base, "steps": {"go": {"type": "wait_for_signal", "config": {"bogus": 1}}}},
            "steps.go.config",
        ),
        (
            "signal-expiry-negative",
            {
                **base,
                "steps": {"go": {"type": "wait_for_signal", "config": {"token_expires_ms": -1}}},
            },
            "steps.go.config.token_expires_ms",
        ),
        (
            "signal-expiry-text",
            {
                **base,
                "steps": {
                    "go": {"type": "wait_for_signal", "config": {"token_expires_ms": "soon"}}
                },
            },
            "steps.go.config.token_expires_ms",
        ),
        (
            "signal-outcomes-empty",
            {**base, "steps": {"go": {"type": "wait_for_signal", "config": {"outcomes": []}}}},
            "steps.go.config.outcomes",
        ),
        (
            "event-config-missing",
            {**base, "steps": {"go": {"type": "wait_for_event", "config": {}}}},
            "steps.go.config",
        ),
        (
            "delay-config-bogus",
            {**base, "steps": {"go": {"type": "delay", "config": {"bogus": 1}}}},
            "steps.go.config",
        ),
        ("unknown-top-field", {**base, "colour": "red"}, "colour"),
        ("unknown-step-field", {**base, "steps": {"go": {**go, "colour": "red"}}}, "steps.go"),
        ("output-key-number", {**base, "steps": {"go": {**go, "outputKey": 5}}}, "steps.go"),
        ("name-number", {**base, "name": 5}, "name"),
    ]
    cases = []
    for path in ("/flows", "/flows/validate"):
        for label, flow, prefix in variants:
            cases.append(
                Case(
                    f"{path}:{label}",
                    "POST",
                    path,
                    body=flow,
                    codes=("INVALID_FLOW",),
                    mentions=(f"issue:{prefix}",),
                )
            )
        for value in NOT_AN_OBJECT:
            cases.append(
                Case(
                    f"{path}:body-{json.dumps(value)}", "POST", path, body=value, mentions=("body",)
                )
            )
        cases.append(Case(f"{path}:body-null", "POST", path, body=None, mentions=("body",)))
    return cases


def trigger_cases() -> list[Case]:
    """Invalid triggers for POST /triggers, PUT /triggers/plain and PATCH /triggers/plain (which
    merges the body into the stored trigger: a missing field is not missing there)."""
    http = {"type": "http", "id": "new-hook", "flow_id": "quick"}
    event = {"type": "event", "id": "new-event", "flow_id": "quick", "event_type": "order.paid"}
    auth_problems: list[tuple[str, Any]] = [
        ("text", "bearer"),
        ("number", 5),
        ("list", []),
        ("type-magic", {"type": "magic"}),
        ("bearer-no-secret", {"type": "bearer"}),
        ("bearer-short-secret", {"type": "bearer", "secret": "short"}),
        ("bearer-secret-number", {"type": "bearer", "secret": 12345678901234567890}),
        ("none-with-secret", {"type": "none", "secret": SECRET}),
        ("both-secrets", {"type": "bearer", "secret": SECRET, "secret_env": "HOOK_SECRET"}),
        ("env-not-a-name", {"type": "hmac", "secret_env": "not a name!"}),
        ("env-pasted-secret", {"type": "hmac", "secret_env": "sk_live/abc+def="}),
        ("tolerance-zero", {"type": "hmac", "secret": SECRET, "tolerance_seconds": 0}),
        ("tolerance-day-plus", {"type": "hmac", "secret": SECRET, "tolerance_seconds": 86_401}),
        ("tolerance-text", {"type": "hmac", "secret": SECRET, "tolerance_seconds": "long"}),
        ("scheme-md5", {"type": "hmac", "secret": SECRET, "scheme": "md5"}),
        ("extra", {"type": "bearer", "secret": SECRET, "colour": 1}),
        ("header-number", {"type": "hmac", "secret": SECRET, "header": 5}),
    ]
    fields: dict[str, list[tuple[str, Any]]] = {
        "name": [(f"{type(v).__name__}", v) for v in (5, True, [], {})],
        "flow_id": [
            *((f"{type(v).__name__}:{v!r}", v) for v in WRONG_FOR_STR),
            ("empty", ""),
            ("long", "f" * 201),
            ("null", None),
        ],
        "enabled": [(f"{v!r}", v) for v in ("maybe", 2, -1, 1.5, [], {}, None, "enabled")],
        "tenant_id": [(f"{type(v).__name__}", v) for v in (5, True, [], {})],
        "input_schema": [(f"{v!r}", v) for v in ("object", 5, [], True)],
        "auth": auth_problems,
        "max_body_bytes": [(f"{v!r}", v) for v in (0, -1, 64 * MIB + 1, "big", 1.5, [], None)],
        "idempotency_key_path": [(f"{v!r}", v) for v in ("", 5, [], {})],
        "context_key": [(f"{v!r}", v) for v in ("", 5, [])],
        "context_mapping": [(f"{v!r}", v) for v in ("x", 5, [], {"a": 5}, {"a": None})],
        "static_context": [(f"{v!r}", v) for v in ("x", 5, [], True)],
        "created_at": [
            (f"{v!r}", v) for v in ("notadate", "2026-13-01T00:00:00Z", [], "2026-03-02T09:00:00")
        ],
    }
    ids = [
        ("empty", ""),
        ("space", "has space"),
        ("leading-dash", "-hook"),
        ("leading-dot", ".hook"),
        ("slash", "a/b"),
        ("unicode", "crochet-é"),
        ("emoji", "hook-🪝"),
        ("control", "a\x01b"),
        ("newline", "a\nb"),
        ("long", "h" * 201),
        ("number", 5),
        ("null", None),
    ]
    cases: list[Case] = []
    targets = [("POST", "/triggers"), ("PUT", "/triggers/plain"), ("PATCH", "/triggers/plain")]
    for method, path in targets:
        for name, values in fields.items():
            for label, value in values:
                cases.append(
                    Case(
                        f"{method}-http.{name}={label}",
                        method,
                        path,
                        body={**http, name: value},
                        mentions=(f"http.{name}",),
                    )
                )
        for name, values in {
            "event_type": [
                *((f"{v!r}", v) for v in WRONG_FOR_STR),
                ("empty", ""),
                ("long", "e" * 201),
                ("null", None),
            ],
            "conditions": [
                (f"{v!r}", v)
                for v in (
                    "x",
                    5,
                    [1],
                    ["x"],
                    [{"path": "a", "op": "nope", "value": 1}],
                    {"path": "a", "op": "nope"},
                    {"all": []},
                    {"all": [], "any": []},
                    {"path": "a", "op": "matches", "value": 5},
                    True,
                )
            ],
            "name": [("number", 5)],
        }.items():
            for label, value in values:
                cases.append(
                    Case(
                        f"{method}-event.{name}={label}",
                        method,
                        path,
                        body={**event, name: value},
                        mentions=(f"event.{name}",),
                    )
                )
        for missing, body in (("flow_id", http), ("flow_id", event), ("event_type", event)):
            if method == "PATCH" and missing == "flow_id":
                continue  # the stored trigger's flow_id is kept
            rest = {k: v for k, v in body.items() if k != missing}
            cases.append(
                Case(
                    f"{method}-{body['type']}-no-{missing}",
                    method,
                    path,
                    body=rest,
                    mentions=(f"{body['type']}.{missing}", "required"),
                )
            )
        for extra in ("colour", "secret", "tenant", "schedule", "event_type"):
            cases.append(
                Case(
                    f"{method}-http+{extra}",
                    method,
                    path,
                    body={**http, extra: "x"},
                    mentions=(f"http.{extra}",),
                )
            )
        for label, kind in (
            ("bogus", "bogus"),
            ("upper", "HTTP"),
            ("number", 5),
            ("list", ["http"]),
        ):
            cases.append(
                Case(
                    f"{method}-type-{label}",
                    method,
                    path,
                    body={**http, "type": kind},
                    mentions=("type",),
                )
            )
        for value in NOT_AN_OBJECT:
            cases.append(
                Case(
                    f"{method}-trigger-body-{json.dumps(value)}",
                    method,
                    path,
                    body=value,
                    mentions=("body",),
                )
            )
        for label, schema in (
            ("type-bogus", {"type": "bogus"}),
            ("min-text", {"type": "string", "minLength": "x"}),
            ("required-text", {"required": "order"}),
        ):
            cases.append(
                Case(
                    f"{method}-input_schema-{label}",
                    method,
                    path,
                    body={**http, "input_schema": schema},
                    status=400,
                    codes=("INVALID_ARGUMENT",),
                    mentions=("input_schema",),
                )
            )
        cases.append(
            Case(
                f"{method}-unknown-flow",
                method,
                path,
                body={**http, "flow_id": "no-such-flow"},
                status=404,
                codes=("FLOW_NOT_FOUND",),
                mentions=("no-such-flow",),
            )
        )
        if method != "PATCH":  # merged into an HTTP trigger's fields, it is an invalid schedule
            cases.append(
                Case(
                    f"{method}-schedule-with-a-tenant-key",
                    method,
                    path,
                    body={
                        "type": "schedule",
                        "id": "nightly",
                        "flow_id": "quick",
                        "schedule": "0 3 * * *",
                    },
                    status=403,
                    codes=("UNAUTHORIZED",),
                    mentions=("admin",),
                )
            )
    for label, value in ids:
        cases.append(
            Case(
                f"POST-http.id={label}",
                "POST",
                "/triggers",
                body={**http, "id": value},
                mentions=("http.id",),
            )
        )
    cases.append(
        Case(
            "POST-http-no-id",
            "POST",
            "/triggers",
            body={k: v for k, v in http.items() if k != "id"},
            mentions=("http.id", "required"),
        )
    )
    schedule = {"type": "schedule", "id": "nightly", "flow_id": "quick", "schedule": "0 3 * * *"}
    for label, body, status, code, mention in (
        (
            "cron-words",
            {**schedule, "schedule": "every night"},
            400,
            "INVALID_ARGUMENT",
            "every night",
        ),
        ("cron-fields", {**schedule, "schedule": "61 3 * * *"}, 400, "INVALID_ARGUMENT", "61 3"),
        ("cron-empty", {**schedule, "schedule": ""}, 422, "INVALID_INPUT", "schedule.schedule"),
        ("cron-blank", {**schedule, "schedule": "   "}, 422, "INVALID_INPUT", "schedule.schedule"),
        (
            "timezone",
            {**schedule, "timezone": "Mars/Olympus"},
            422,
            "INVALID_INPUT",
            "schedule.timezone",
        ),
        (
            "timezone-padded",
            {**schedule, "timezone": " UTC"},
            422,
            "INVALID_INPUT",
            "schedule.timezone",
        ),
        (
            "no-schedule",
            {k: v for k, v in schedule.items() if k != "schedule"},
            422,
            "INVALID_INPUT",
            "schedule.schedule",
        ),
        (
            "static-text",
            {**schedule, "static_context": "x"},
            422,
            "INVALID_INPUT",
            "schedule.static_context",
        ),
    ):
        cases.append(
            Case(
                f"admin-schedule-{label}",
                "POST",
                "/triggers",
                who="admin",
                body=body,
                status=status,
                codes=(code,),
                mentions=(mention,),
            )
        )
    return cases


def query_cases(ids: dict[str, str]) -> list[Case]:
    cases: list[Case] = []
    bad_limits = ["0", "-1", "501", "100000", "abc", "1.5", "", "1e2", "0x10", " "]
    for path in ("/executions", "/events", "/triggers/plain/history"):
        for limit in bad_limits:
            cases.append(
                Case(
                    f"{path}?limit={limit!r}",
                    "GET",
                    path,
                    params={"limit": limit},
                    mentions=("query.limit",),
                )
            )
    for status in (
        "nope",
        "RUNNING",
        "Waiting",
        "5",
        "",
        "waiting,running",
        "complete",
        "wait ing",
    ):
        cases.append(
            Case(
                f"status={status!r}",
                "GET",
                "/executions",
                params={"status": status},
                mentions=("query.status",),
            )
        )
    for name in ("created_after", "created_before"):
        for value in (
            "notadate",
            "2026-13-01T00:00:00Z",
            "2026-03-02T25:00:00Z",
            "",
            "yesterday",
            "abc123",
            "2026-02-30T00:00:00Z",
            "--",
            "2026-03-02T09:00:00+25:00",
        ):
            cases.append(
                Case(
                    f"{name}={value!r}",
                    "GET",
                    "/executions",
                    params={name: value},
                    mentions=(f"query.{name}",),
                )
            )
    for value in ("team", "", "novalue", "a=b"):
        cases.append(
            Case(
                f"metadata={value!r}",
                "GET",
                "/executions",
                params={"metadata": value},
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("metadata", repr(value)),
            )
        )
    cases.append(
        Case(
            "metadata-second-bad",
            "GET",
            "/executions",
            params=[("metadata", "team:red"), ("metadata", "oops")],
            status=400,
            codes=("INVALID_ARGUMENT",),
            mentions=("'oops'",),
        )
    )
    cases.append(
        Case(
            "metadata-empty-key",
            "GET",
            "/executions",
            params={"metadata": ":red"},
            status=400,
            codes=("INVALID_ARGUMENT",),
            mentions=("':red'",),
        )
    )
    cases.append(
        Case(
            "three-bad-parameters",
            "GET",
            "/executions",
            params={"limit": "0", "status": "nope", "created_after": "x"},
            mentions=("query.limit", "query.status", "query.created_after", "3 problem"),
        )
    )
    for label, after in (
        ("unknown", str(uuid.uuid4())),
        ("b-execution", ids["b_wait"]),
        ("long", "x" * 10_000),
        ("unicode", "é漢字"),
        ("empty", ""),
    ):
        cases.append(
            Case(
                f"/executions?after={label}",
                "GET",
                "/executions",
                params={"after": after},
                status=404,
                codes=("EXECUTION_NOT_FOUND",),
                mentions=(after[:50],),
            )
        )
    for label, after in (
        ("unknown", str(uuid.uuid4())),
        ("b-event", ids["b_event"]),
        ("long", "e" * 10_000),
        ("empty", ""),
    ):
        cases.append(
            Case(
                f"/events?after={label}",
                "GET",
                "/events",
                params={"after": after},
                status=404,
                codes=("EVENT_NOT_FOUND",),
                mentions=(after[:50],),
            )
        )
    for version in ("nope", "9.9.9", "x" * 10_000, "1.0"):
        cases.append(
            Case(
                f"flow-version={version[:10]}",
                "GET",
                "/flows/quick",
                params={"version": version},
                status=404,
                codes=("FLOW_NOT_FOUND",),
                mentions=(version[:50],),
            )
        )
    for kind in ("htp", "HTTP", "", "webhook", "http,event", "schedule "):
        cases.append(
            Case(
                f"/triggers?type={kind!r}",
                "GET",
                "/triggers",
                params={"type": kind},
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("type", "schedule, http, event"),
            )
        )
    # A NUL anywhere in the query string: refused before any route reads it.
    for path, name, value in (
        ("/executions", "after", "a\x00b"),
        ("/executions", "flow_id", "\x00"),
        ("/executions", "tenant_id", "t\x00"),
        ("/executions", "metadata", "a\x00:b"),
        ("/executions", "status", "waiting\x00"),
        ("/events", "after", "\x00"),
        ("/events", "type", "order\x00paid"),
        ("/triggers", "type", "http\x00"),
        ("/flows/quick", "version", "1.0.0\x00"),
        ("/triggers/plain/history", "limit", "5\x00"),
    ):
        cases.append(
            Case(
                f"{path}?{name}=<NUL>",
                "GET",
                path,
                params={name: value},
                status=400,
                codes=("INVALID_ARGUMENT",),
                mentions=("NUL",),
            )
        )
    return cases


def weird_ids() -> list[tuple[str, str, bool]]:
    """(label, id, whether the message shows it as is)."""
    return [
        ("10k", "x" * 10_000, True),
        ("10k-unicode", "é" * 10_000, True),
        ("unicode", "é✓漢字𝄞", True),
        ("rtl-override", "\u202eevil", False),
        ("zero-width", "a\u200bb", False),
        ("controls", "\x01\x1f", False),
        ("delete", "\x7f", False),
        ("newline", "a\nb", False),
        ("tab", "a\tb", False),
        ("space", " ", True),
        ("dots", "..", True),
        ("percent", "%", True),
        ("quotes", "'\"", False),
        ("html", "<script>", True),
        ("sql", "x' OR '1'='1", False),
        ("uuid-upper", str(uuid.uuid4()).upper(), True),
    ]


def path_cases(ids: dict[str, str]) -> list[Case]:
    """Unknown, strange and other tenants' ids in every path with an id."""
    routes: list[tuple[str, str, Any, tuple[str, ...]]] = [
        ("GET", "/flows/{}", UNSET, ("FLOW_NOT_FOUND",)),
        ("GET", "/executions/{}", UNSET, ("EXECUTION_NOT_FOUND",)),
        ("GET", "/executions/{}/history", UNSET, ("EXECUTION_NOT_FOUND",)),
        ("POST", "/executions/{}/resume", {"data": 1}, ("EXECUTION_NOT_FOUND",)),
        ("POST", "/executions/{}/cancel", {"reason": "r"}, ("EXECUTION_NOT_FOUND",)),
        ("GET", "/triggers/{}", UNSET, ("TRIGGER_NOT_FOUND",)),
        ("PUT", "/triggers/{}", {"type": "http", "flow_id": "quick"}, ("TRIGGER_NOT_FOUND",)),
        ("PATCH", "/triggers/{}", {"enabled": False}, ("TRIGGER_NOT_FOUND",)),
        ("DELETE", "/triggers/{}", UNSET, ("TRIGGER_NOT_FOUND",)),
        ("GET", "/triggers/{}/history", UNSET, ("TRIGGER_NOT_FOUND",)),
        ("GET", "/triggers/{}/stats", UNSET, ("TRIGGER_NOT_FOUND",)),
        ("GET", "/webhooks/{}", UNSET, ("TRIGGER_NOT_FOUND",)),
        ("POST", "/webhooks/{}", {"order": 1}, ("TRIGGER_NOT_FOUND",)),
    ]
    others = {
        "/flows/{}": ["b-private"],
        "/executions/{}": [ids["b_wait"], ids["b_done"]],
        "/triggers/{}": ["b-hook"],
        "/webhooks/{}": ["a-events"],  # an event trigger is no webhook
    }
    cases: list[Case] = []
    for method, template, body, codes in routes:
        who = None if template.startswith("/webhooks") else "a"
        prefix = "/" + template.split("/")[1] + "/{}"
        candidates = [*weird_ids(), ("unknown-uuid", str(uuid.uuid4()), True)]
        candidates += [
            (f"other-{n}", ident, True) for n, ident in enumerate(others.get(prefix, []))
        ]
        for label, ident, shown in candidates:
            cases.append(
                Case(
                    f"{method} {template}:{label}",
                    method,
                    template.format(quote(ident, safe="").replace(".", "%2E")),
                    who=who,
                    body=body,
                    status=404,
                    codes=codes,
                    mentions=(ident,) if shown else (),
                )
            )
        # A NUL (%00) in the path is refused before routing: 400, whatever the route.
        for label, ident in (
            ("nul", "a\x00b"),
            ("nul-only", "\x00"),
            ("nul-end", "x" * 50 + "\x00"),
        ):
            cases.append(
                Case(
                    f"{method} {template}:{label}",
                    method,
                    template.format(quote(ident, safe="")),
                    who=who,
                    body=body,
                    status=400,
                    codes=("INVALID_ARGUMENT",),
                    mentions=("NUL", "%00"),
                )
            )
        # An encoded slash is a path separator again: no route, or another one that refuses.
        cases.append(
            Case(
                f"{method} {template}:slash",
                method,
                template.format("a%2Fb"),
                who=who,
                body=body,
                status=404,
                codes=(*codes, "NOT_FOUND"),
            )
        )
    return cases


JSON_ROUTES = [
    ("POST", "/executions"),
    ("POST", "/executions/{a_wait}/resume"),
    ("POST", "/executions/resume-with-token"),
    ("POST", "/executions/{a_wait}/cancel"),
    ("POST", "/events"),
    ("POST", "/flows"),
    ("POST", "/flows/validate"),
    ("POST", "/triggers"),
    ("PUT", "/triggers/plain"),
]
BAD_JSON = [
    b"{",
    b"{bad",
    b"{'flow_id': 'quick'}",
    b'{"flow_id": "quick",}',
    b"[1, 2",
    b"nul",
    b'{"flow_id": "quick"} trailing',
    b'"unterminated',
    b'{"flow_id":}',
    b"\x00",
    b"{}{}",
    b'{"flow_id": "qu\x01ick"}',  # a raw control character inside a string
    b'{"a": 01}',
    b'{"a": .5}',
    b'{"a": "\\x41"}',
    b'{"a": "\\ud800"',
]
NOT_UTF8 = [
    b'{"flow_id": "\xff"}',
    b"\xc3\x28",
    b'{"flow_id": "\xe9t\xe9"}',
    b"\x80abc",
]


# JSON that parses, but that no store can keep: 400 INVALID_INPUT "the body cannot be stored".
UNSTORABLE = [
    ("nul", b'{"x": "a\\u0000b"}', "NUL"),
    ("nul-key", b'{"\\u0000": 1}', "NUL"),
    ("nul-nested", b'{"x": [{"y": ["\\u0000"]}]}', "NUL"),
    ("surrogate-high", b'{"x": "\\ud800"}', "surrogate"),
    ("surrogate-low", b'{"x": "\\udfff"}', "surrogate"),
    ("surrogate-key", b'{"\\udbff": 1}', "surrogate"),
    ("surrogate-reversed", b'{"x": "\\udc00\\ud800"}', "surrogate"),
    ("depth-65", b"[" * 65 + b"]" * 65, "64 levels"),
    ("depth-65-objects", b'{"a":' * 65 + b"1" + b"}" * 65, "64 levels"),
    ("depth-900", b"[" * 900 + b"]" * 900, "64 levels"),
]


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def body_cases(ids: dict[str, str]) -> list[Case]:
    cases: list[Case] = []
    for method, template in JSON_ROUTES:
        path = template.format(**ids)
        for n, text in enumerate(BAD_JSON):
            cases.append(
                Case(
                    f"{method} {template}:bad-json-{n}",
                    method,
                    path,
                    content=text,
                    status=400,
                    codes=("INVALID_JSON",),
                    mentions=("not valid JSON", "line 1 column"),
                )
            )
        for n, raw in enumerate(NOT_UTF8):
            cases.append(
                Case(
                    f"{method} {template}:not-utf8-{n}",
                    method,
                    path,
                    content=raw,
                    status=400,
                    codes=("INVALID_JSON",),
                    mentions=("not UTF-8", "byte"),
                )
            )
        for label, content, mention in UNSTORABLE:
            cases.append(
                Case(
                    f"{method} {template}:unstorable-{label}",
                    method,
                    path,
                    content=content,
                    status=400,
                    codes=("INVALID_INPUT",),
                    mentions=("cannot be stored", mention),
                )
            )
        for label, content in (
            ("unbalanced", b"[" * 100_000),
            ("balanced-5000", deep(5000)),
            ("objects-3000", b'{"a":' * 3000 + b"1" + b"}" * 3000),
        ):
            cases.append(
                Case(
                    f"{method} {template}:deep-{label}",
                    method,
                    path,
                    content=content,
                    status=400,
                    codes=("INVALID_JSON",),
                    mentions=("nested too deeply",),
                )
            )
        for label, size in (("1MiB+1", MIB + 1), ("2MiB", 2 * MIB)):
            padded = b'{"pad": "' + b"x" * (size - 11) + b'"}'
            cases.append(
                Case(
                    f"{method} {template}:huge-{label}",
                    method,
                    path,
                    content=padded,
                    status=413,
                    codes=("PAYLOAD_TOO_LARGE",),
                    mentions=(str(MIB),),
                )
            )
        # Chunked (no Content-Length): the cap holds all the same.
        for label, chunks in (
            ("1MiB+1", [b'{"pad": "', b"x" * (MIB - 10), b'"}']),
            ("3MiB", [b'{"pad": "', *([b"x" * MIB] * 3), b'"}']),
        ):
            cases.append(
                Case(
                    f"{method} {template}:huge-chunked-{label}",
                    method,
                    path,
                    content=iter(chunks),
                    status=413,
                    codes=("PAYLOAD_TOO_LARGE",),
                    mentions=(str(MIB),),
                )
            )
        # A body is read as JSON whatever its Content-Type says: broken JSON is INVALID_JSON.
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
            cases.append(
                Case(
                    f"{method} {template}:content-type-{ctype}",
                    method,
                    path,
                    content=b'{"flow_id": "quick",}',
                    headers={"Content-Type": ctype},
                    status=400,
                    codes=("INVALID_JSON",),
                    mentions=("not valid JSON",),
                )
            )
    return cases


def webhook_cases(api: Api) -> list[Case]:
    """Refused deliveries: each to an existing HTTP trigger records one `rejected` fire."""
    now = api.clock.now()
    good = json.dumps({"order": {"id": "o-1", "total": 3}}).encode()
    cases: list[Case] = []

    def to(
        trigger: str,
        label: str,
        content: Any,
        status: int,
        code: str,
        mentions: tuple[str, ...],
        headers: dict[str, str] | None = None,
        webhook: bool = True,
    ) -> None:
        cases.append(
            Case(
                f"webhook {trigger}:{label}",
                "POST",
                f"/webhooks/{trigger}",
                who=None,
                content=content,
                headers=headers or {},
                status=status,
                codes=(code,),
                mentions=mentions,
                webhook=trigger if webhook else None,
            )
        )

    for label, body, paths in (
        ("empty-object", {}, ("<body>", "order")),
        ("order-number", {"order": 5}, ("order",)),
        ("order-id-number", {"order": {"id": 5, "total": 1}}, ("order.id",)),
        ("order-total-text", {"order": {"id": "o", "total": "3"}}, ("order.total",)),
        ("order-total-negative", {"order": {"id": "o", "total": -1}}, ("order.total",)),
        ("order-missing-total", {"order": {"id": "o"}}, ("order", "total")),
        ("order-empty", {"order": {}}, ("order", "id")),
        ("note-too-long", {"order": {"id": "o", "total": 1}, "note": "n" * 11}, ("note",)),
        ("note-number", {"order": {"id": "o", "total": 1}, "note": 5}, ("note",)),
        ("list", [good.decode()], ("<body>",)),
        ("text", "order", ("<body>",)),
        ("number", 5, ("<body>",)),
        ("true", True, ("<body>",)),
        (
            "two-problems",
            {"order": {"id": 1, "total": "x"}},
            ("order.id", "order.total", "2 problems"),
        ),
    ):
        to("plain", f"schema-{label}", json.dumps(body).encode(), 400, "INVALID_INPUT", paths)
    for n, text in enumerate([*BAD_JSON, b""]):
        to("plain", f"bad-json-{n}", text, 400, "INVALID_JSON", ("JSON",))
    for n, raw in enumerate(NOT_UTF8):
        to("plain", f"not-utf8-{n}", raw, 400, "INVALID_JSON", ("JSON",))
    for label, text in (("null", b"null"), ("blank", b"   \n\t"), ("empty", b"")):
        to("plain", f"empty-{label}", text, 400, "INVALID_JSON", ("JSON",))
    for label, content in (
        ("unbalanced", b"[" * 100_000),
        ("balanced-5000", deep(5000)),
        ("objects-3000", b'{"a":' * 3000 + b"1" + b"}" * 3000),
    ):
        to("plain", f"deep-{label}", content, 400, "INVALID_JSON", ("nested too deeply",))
    for label, content, mention in UNSTORABLE:
        to(
            "plain",
            f"unstorable-{label}",
            content,
            400,
            "INVALID_INPUT",
            ("cannot be stored", mention),
        )
    to(
        "plain",
        "idempotency-key-201",
        good,
        400,
        "INVALID_INPUT",
        ("idempotency key", "201"),
        {"Idempotency-Key": "k" * 201},
    )
    to("plain", "huge-1MiB+1", b" " * (MIB + 1), 413, "PAYLOAD_TOO_LARGE", (str(MIB),))
    to(
        "plain",
        "huge-chunked",
        iter([b" " * MIB, b" " * 10]),
        413,
        "PAYLOAD_TOO_LARGE",
        (str(MIB),),
    )
    for label, size in (("257", 257), ("1000", 1000), ("100k", 100_000), ("2MiB", 2 * MIB)):
        to(
            "small",
            f"too-large-{label}",
            b" " * (size - len(good)) + good,
            413,
            "PAYLOAD_TOO_LARGE",
            ("256",),
        )
        to(
            "small",
            f"too-large-chunked-{label}",
            iter([b" " * (size - 100), b" " * 100]),
            413,
            "PAYLOAD_TOO_LARGE",
            ("256",),
        )
    for label, body in (("good", good), ("empty", b""), ("junk", b"{x"), ("huge", b" " * 2 * MIB)):
        to(
            "disabled",
            label,
            body,
            409 if label != "huge" else 413,
            "TRIGGER_DISABLED" if label != "huge" else "PAYLOAD_TOO_LARGE",
            ("disabled",) if label != "huge" else (str(MIB),),
        )
    for label, body, mention in (
        ("no-order", {}, "order.id"),
        ("no-id", {"order": {}}, "order.id"),
        ("id-null", {"order": {"id": None}}, "order.id"),
        ("id-object", {"order": {"id": {"n": 1}}}, "order.id"),
        ("id-list", {"order": {"id": [1]}}, "order.id"),
        ("order-text", {"order": "o-1"}, "order.id"),
        ("id-201", {"order": {"id": "i" * 201}}, "201"),
    ):
        to("keyed", label, json.dumps(body).encode(), 400, "INVALID_INPUT", (mention,))
    for trigger in ("bearer", "b-hook"):
        for label, value in (
            ("missing", None),
            ("empty", ""),
            ("scheme-only", "Bearer"),
            ("wrong", f"Bearer {SECRET}x"),
            ("prefix", f"Bearer {SECRET[:-1]}"),
            ("case", f"Bearer {SECRET.upper()}"),
            ("basic", f"Basic {SECRET}"),
            ("raw", SECRET),
            ("api-key", f"Bearer {api.keys['a'].raw}"),
            ("token-scheme", f"Token {SECRET}"),
        ):
            headers = {} if value is None else {"Authorization": value}
            to(trigger, f"bearer-{label}", good, 401, "UNAUTHORIZED", ("bearer",), headers)
        to(
            trigger,
            "bearer-in-x-api-key",
            good,
            401,
            "UNAUTHORIZED",
            ("bearer",),
            {"X-API-Key": SECRET},
        )
    header = "X-FlowMonkey-Signature"
    stamp = str(int(now.timestamp()))
    right = hmac.new(SECRET.encode(), stamp.encode() + b"." + good, hashlib.sha256).hexdigest()
    for label, value, mention in (
        ("missing", None, header),
        ("empty", "", header),
        ("garbage", "garbage", header),
        ("no-v1", f"t={stamp}", header),
        ("no-t", f"v1={right}", header),
        ("t-text", f"t=now,v1={right}", header),
        ("t-negative", f"t=-5,v1={right}", header),
        ("t-float", f"t={stamp}.5,v1={right}", header),
        ("v1-wrong", f"t={stamp},v1={'0' * 64}", "does not match"),
        ("v1-upper", f"t={stamp},v1={right.upper()}", "does not match"),
        ("v1-of-another-body", sign(SECRET, b"{}", now), "does not match"),
        ("other-secret", sign(SECRET + "!", good, now), "does not match"),
        ("api-key-as-secret", sign(api.keys["a"].raw, good, now), "does not match"),
        (
            "github-shape",
            "sha256=" + hmac.new(SECRET.encode(), good, hashlib.sha256).hexdigest(),
            header,
        ),
        ("old-301s", sign(SECRET, good, now - timedelta(seconds=301)), "timestamp"),
        ("old-day", sign(SECRET, good, now - timedelta(days=1)), "timestamp"),
        ("future-301s", sign(SECRET, good, now + timedelta(seconds=301)), "timestamp"),
        ("epoch", f"t=0,v1={right}", "timestamp"),
        ("far-future", f"t={10**12},v1={right}", "timestamp"),
        ("long-header", f"t={stamp},v1=" + "a" * 10_000, "does not match"),
    ):
        headers = {} if value is None else {header: value}
        to("signed", f"hmac-{label}", good, 401, "INVALID_SIGNATURE", (mention,), headers)
    to(
        "signed",
        "hmac-right-but-body-changed",
        good + b" ",
        401,
        "INVALID_SIGNATURE",
        ("does not match",),
        {header: sign(SECRET, good, now)},
    )
    github = "X-Hub-Signature-256"
    digest = hmac.new(SECRET.encode(), good, hashlib.sha256).hexdigest()
    for label, value in (
        ("missing", None),
        ("empty", ""),
        ("no-prefix", digest),
        ("sha1", "sha1=" + hashlib.sha1(good).hexdigest()),
        ("wrong", "sha256=" + "0" * 64),
        (
            "other-secret",
            "sha256=" + hmac.new(b"other-secret-1234", good, hashlib.sha256).hexdigest(),
        ),
        ("timestamped-shape", sign(SECRET, good, now)),
        ("upper", "SHA256=" + digest.upper()),
    ):
        headers = {} if value is None else {github: value}
        to("github", f"github-{label}", good, 401, "INVALID_SIGNATURE", (github,), headers)
    to(
        "github",
        "github-body-changed",
        good + b"\n",
        401,
        "INVALID_SIGNATURE",
        (github,),
        {github: "sha256=" + digest},
    )
    for trigger in ("ghost", "a-events", "PLAIN", "plain ", "plain.", "x" * 10_000):
        to(
            quote(trigger, safe=""),
            "unknown",
            good,
            404,
            "TRIGGER_NOT_FOUND",
            (trigger,),
            webhook=False,
        )
    return cases


def auth_cases(ids: dict[str, str], api: Api) -> list[Case]:
    routes = [
        ("GET", "/flows", UNSET),
        ("GET", "/flows/quick", UNSET),
        (
            "POST",
            "/flows",
            {"id": "new-flow", "initialStepId": "go", "steps": {"go": {"type": "noop"}}},
        ),
        (
            "POST",
            "/flows/validate",
            {"id": "new-flow", "initialStepId": "go", "steps": {"go": {"type": "noop"}}},
        ),
        ("POST", "/executions", {"flow_id": "quick"}),
        ("GET", "/executions", UNSET),
        ("GET", f"/executions/{ids['a_wait']}", UNSET),
        ("GET", f"/executions/{ids['a_wait']}/history", UNSET),
        ("POST", f"/executions/{ids['a_wait']}/resume", {"data": 1}),
        ("POST", "/executions/resume-with-token", {"token": ids["a_token"]}),
        ("POST", f"/executions/{ids['a_wait']}/cancel", {"reason": "r"}),
        ("GET", "/triggers", UNSET),
        ("POST", "/triggers", {"type": "http", "id": "new-hook", "flow_id": "quick"}),
        ("GET", "/triggers/plain", UNSET),
        ("PUT", "/triggers/plain", {"type": "http", "flow_id": "quick", "enabled": False}),
        ("DELETE", "/triggers/plain", UNSET),
        ("GET", "/triggers/plain/history", UNSET),
        ("GET", "/triggers/plain/stats", UNSET),
        ("POST", "/events", {"type": "order.paid"}),
        ("GET", "/events", UNSET),
    ]
    credentials = {
        "missing": {},
        "unknown": {"Authorization": f"Bearer fmk_{uuid.uuid4().hex}"},
        "revoked": api.keys["revoked"].headers,
        "no-prefix": {"Authorization": f"Bearer {api.keys['a'].raw[4:]}"},
        "trigger-secret": {"Authorization": f"Bearer {SECRET}"},
        "x-api-key-unknown": {"X-API-Key": "fmk_nope"},
    }
    return [
        Case(
            f"auth-{label} {method} {path}",
            method,
            path,
            who=None,
            body=body,
            headers=headers,
            status=401,
            codes=("UNAUTHORIZED",),
            mentions=("API key",),
        )
        for method, path, body in routes
        for label, headers in credentials.items()
    ]


def routing_cases() -> list[Case]:
    cases = [
        Case(f"{method} {path}", method, path, status=405, codes=("METHOD_NOT_ALLOWED",))
        for method, path in (
            ("PATCH", "/executions"),
            ("DELETE", "/executions"),
            ("PUT", "/flows"),
            ("DELETE", "/events"),
            ("PATCH", "/triggers"),
            ("PATCH", "/flows/quick"),
            ("PUT", "/executions/resume-with-token"),
        )
    ]
    cases += [
        Case(f"unknown route {path}", "GET", path, status=404, codes=("NOT_FOUND",))
        for path in (
            "/nope",
            "/executions/x/y/z",
            "/v1/executions",
            "/flows/quick/versions",
            "/" + "z" * 10_000,
        )
    ]
    return cases


def all_cases(api: Api, ids: dict[str, str]) -> list[Case]:
    return [
        *model_cases(ids),
        *engine_argument_cases(ids),
        *flow_cases(),
        *trigger_cases(),
        *query_cases(ids),
        *path_cases(ids),
        *body_cases(ids),
        *webhook_cases(api),
        *auth_cases(ids, api),
        *routing_cases(),
    ]


# -- the batch ---------------------------------------------------------------------------------


def check(case: Case, response: Any) -> str | None:
    """What is wrong with the answer to `case`, or None."""
    where = f"{case.name}: {response.status_code} {response.text[:300]!r}"
    if response.status_code >= 500:
        return f"5xx for {where}"
    if response.status_code != case.status:
        return f"expected {case.status} for {where}"
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"not JSON: {where}"
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if (
        set(body) != {"error"}
        or not isinstance(error, dict)
        or not {"code", "message"} <= set(error)
    ):
        return f"not the error shape: {where}"
    if error["code"] not in case.codes:
        return f"expected code {case.codes} for {where}"
    message = error["message"]
    if not isinstance(message, str) or not message.strip():
        return f"empty message: {where}"
    for mention in case.mentions:
        if mention.startswith("issue:"):
            prefix = mention.removeprefix("issue:")
            paths = issue_paths(error) if "issues" in error.get("details", {}) else []
            if not any(p == prefix or p.startswith(prefix + ".") for p in paths):
                return f"no issue at {prefix!r} in {paths} for {where}"
        elif mention.lower() not in message.lower():
            return f"message does not mention {mention[:60]!r}: {where}"
    return None


@dataclass
class Batch:
    api: Api
    ids: dict[str, str]
    cases: list[Case]


@pytest.fixture(scope="module", params=BACKENDS)
def batch(request: pytest.FixtureRequest) -> Iterator[Batch]:
    with module_api(request, request.param) as api:
        ids = build_world(api)
        yield Batch(api, ids, all_cases(api, ids))


def test_the_batch_has_more_than_a_thousand_distinct_cases(batch: Batch) -> None:
    names = [case.name for case in batch.cases]
    assert len(names) == len(set(names)), [n for n, c in Counter(names).items() if c > 1]
    assert len(batch.cases) >= 1000, len(batch.cases)


def test_every_invalid_request_is_refused_and_changes_nothing(batch: Batch) -> None:
    api = batch.api
    triggers = sorted({case.webhook for case in batch.cases if case.webhook})
    every_trigger = [t["id"] for t in api.get("/triggers", "admin").json()["items"]]
    fires_before = {t: {f["id"] for f in api.fires(t)} for t in every_trigger}
    before = snapshot(api)
    began = time.perf_counter()

    problems = [problem for case in batch.cases if (problem := check(case, case.send(api)))]

    elapsed = time.perf_counter() - began
    assert not problems, f"{len(problems)} of {len(batch.cases)}:\n" + "\n".join(problems[:60])
    after = snapshot(api)
    assert_unchanged(without_trigger_history(before), without_trigger_history(after))
    # Each refused delivery to an existing HTTP trigger added one `rejected` fire with its
    # code; nothing else was recorded.
    for trigger in triggers:
        expected = Counter(c.codes[0] for c in batch.cases if c.webhook == trigger)
        new = [f for f in api.fires(trigger) if f["id"] not in fires_before[trigger]]
        assert {f["id"] for f in api.fires(trigger)} >= fires_before[trigger]
        assert Counter(f["error"]["code"] for f in new) == expected, trigger
        assert {(f["status"], f["execution_id"]) for f in new} == {("rejected", None)}
    for trigger in set(every_trigger) - set(triggers):
        assert {f["id"] for f in api.fires(trigger)} == fires_before[trigger], trigger
    assert elapsed < 60, elapsed


# -- one request at a time: each on a fresh store -----------------------------------------------


@pytest.mark.parametrize("body", [b"[" * 100_000, deep(2000), b'{"a":' * 2000 + b"1" + b"}" * 2000])
def test_a_deeply_nested_webhook_body_is_refused_as_invalid_json(api: Api, body: bytes) -> None:
    api.trigger(id="hook")
    before = snapshot(api)

    response = api.post(
        "/webhooks/hook", None, content=body, headers={"Content-Type": "application/json"}
    )

    error = error_of(response, 400, "INVALID_JSON")
    assert "nested too deeply" in error["message"]
    assert [(f["status"], f["error"]["code"]) for f in api.fires("hook")] == [
        ("rejected", "INVALID_JSON")
    ]
    assert_unchanged(without_trigger_history(before), without_trigger_history(snapshot(api)))


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [40, 300, 600])
@pytest.mark.parametrize("route", ["start", "emit", "resume", "webhook"])
def test_what_the_api_accepts_it_can_show(api: Api, route: str, depth: int) -> None:
    """A nested document is refused with a 400 and nothing stored (more than 64 levels), or
    accepted and readable afterwards."""
    api.trigger(id="hook")
    waiting, _ = api.waiting("approval")
    before = snapshot(api)
    document = nested(depth)

    if route == "start":
        response = api.post("/executions", json={"flow_id": "quick", "context": document})
        shown = lambda: api.get(f"/executions/{response.json()['execution']['id']}")  # noqa: E731
    elif route == "emit":
        response = api.post("/events", json={"type": "t", "payload": document})
        shown = lambda: api.get("/events")  # noqa: E731
    elif route == "resume":
        response = api.post(f"/executions/{waiting}/resume", json={"data": document})
        shown = lambda: api.get(f"/executions/{waiting}")  # noqa: E731
    else:
        response = api.post("/webhooks/hook", None, json=document)
        shown = lambda: api.get(f"/executions/{response.json()['execution_id']}")  # noqa: E731

    if depth > 64:
        error = error_of(response, 400, "INVALID_INPUT")
        assert "64 levels" in error["message"]
        assert_unchanged(without_trigger_history(before), without_trigger_history(snapshot(api)))
    else:
        assert response.status_code in (200, 201, 202), response.text[:300]
        assert shown().status_code == 200


@pytest.mark.parametrize("route", ["start", "webhook"])
def test_a_body_of_64_levels_is_taken_and_one_of_65_refused(api: Api, route: str) -> None:
    api.trigger(id="hook")
    if route == "start":  # the body's own object is a level: the context has one fewer

        def send(levels: int) -> Any:
            return api.post("/executions", json={"flow_id": "quick", "context": nested(levels - 1)})

    else:

        def send(levels: int) -> Any:
            return api.post("/webhooks/hook", None, json=nested(levels))

    assert send(64).status_code in (201, 202)
    before = snapshot(api)

    error = error_of(send(65), 400, "INVALID_INPUT")

    assert "64 levels" in error["message"]
    assert_unchanged(without_trigger_history(before), without_trigger_history(snapshot(api)))


@pytest.mark.parametrize(
    ("method", "path", "head", "tail"),
    [
        ("POST", "/executions", b'{"flow_id": "quick", "context": {"pad": "', b'"}}'),
        ("POST", "/events", b'{"type": "t", "payload": "', b'"}'),
    ],
)
def test_a_chunked_body_over_1_mib_is_413(
    api: Api, method: str, path: str, head: bytes, tail: bytes
) -> None:
    before = snapshot(api)
    chunks = iter([head, *([b"x" * MIB] * 3), tail])

    response = api.request(
        method, path, content=chunks, headers={"Content-Type": "application/json"}
    )

    error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert_unchanged(before, snapshot(api))


def test_a_chunked_body_at_1_mib_is_read(api: Api) -> None:
    head, tail = b'{"flow_id": "quick", "context": {"pad": "', b'"}}'
    pad = MIB - len(head) - len(tail)
    chunks = iter([head, *([b"x" * (pad // 4)] * 4), b"x" * (pad % 4), tail])

    response = api.request(
        "POST", "/executions", content=chunks, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 201, response.text[:300]
    assert len(response.json()["execution"]["context"]["pad"]) == pad


def test_nul_characters_never_make_a_500(api: Api) -> None:
    """In a URL: 400 INVALID_ARGUMENT before any route (and any store) sees it; in a body:
    400 INVALID_INPUT. Nothing is stored, on every store (PostgreSQL text holds no NUL)."""
    before = snapshot(api)
    flow = {"id": "f\x00", "initialStepId": "go", "steps": {"go": {"type": "noop"}}}
    answers = [
        ("execution-path", api.get("/executions/a%00b"), "INVALID_ARGUMENT"),
        ("trigger-path", api.get("/triggers/a%00b"), "INVALID_ARGUMENT"),
        ("webhook-path", api.post("/webhooks/a%00b", None, json={}), "INVALID_ARGUMENT"),
        (
            "executions-cursor",
            api.get("/executions", params={"after": "a\x00b"}),
            "INVALID_ARGUMENT",
        ),
        ("events-cursor", api.get("/events", params={"after": "a\x00b"}), "INVALID_ARGUMENT"),
        (
            "metadata-filter",
            api.get("/executions", params={"metadata": "a\x00:b"}),
            "INVALID_ARGUMENT",
        ),
        (
            "idempotency-key",
            api.post("/executions", json={"flow_id": "quick", "idempotency_key": "k\x00"}),
            "INVALID_INPUT",
        ),
        (
            "context",
            api.post("/executions", json={"flow_id": "quick", "context": {"a": "\x00"}}),
            "INVALID_INPUT",
        ),
        (
            "event-payload",
            api.post("/events", json={"type": "t", "payload": {"a": "\x00"}}),
            "INVALID_INPUT",
        ),
        ("event-type", api.post("/events", json={"type": "t\x00"}), "INVALID_INPUT"),
        ("flow-id", api.post("/flows", json=flow), "INVALID_INPUT"),
        (
            "trigger-id",
            api.post("/triggers", json={"type": "http", "id": "h\x00", "flow_id": "quick"}),
            "INVALID_INPUT",
        ),
    ]

    wrong = [
        (label, r.status_code, r.text[:120])
        for label, r, code in answers
        if r.status_code != 400 or r.json()["error"]["code"] != code
    ]
    assert not wrong, wrong
    assert all("NUL" in r.json()["error"]["message"] for _, r, _ in answers)
    assert_unchanged(before, snapshot(api))


@pytest.mark.parametrize(
    "where", ["resume.expected_version", "trigger.max_body_bytes", "trigger.auth.tolerance_seconds"]
)
def test_a_boolean_is_not_a_number(api: Api, where: str) -> None:
    execution_id, _ = api.waiting("approval")
    before = snapshot(api)
    if where == "resume.expected_version":
        response = api.post(
            f"/executions/{execution_id}/resume", json={"data": 1, "expected_version": True}
        )
    elif where == "trigger.max_body_bytes":
        response = api.post(
            "/triggers",
            json={"type": "http", "id": "h", "flow_id": "quick", "max_body_bytes": True},
        )
    else:
        auth = {"type": "hmac", "secret": SECRET, "tolerance_seconds": True}
        response = api.post(
            "/triggers", json={"type": "http", "id": "h", "flow_id": "quick", "auth": auth}
        )

    error = error_of(response, 422, "INVALID_INPUT")
    assert where.split(".")[-1] in error["message"]
    assert_unchanged(before, snapshot(api))


@pytest.mark.parametrize("path", ["/flows", "/flows/validate"])
def test_an_invalid_flow_message_names_its_problems(api: Api, path: str) -> None:
    flow = {"id": "f", "initialStepId": "nowhere", "steps": {"go": {"type": "noop", "colour": 1}}}

    error = error_of(api.post(path, json=flow), 422, "INVALID_FLOW")

    assert "initial_step_id" in error["message"] and "steps.go" in error["message"]
    assert "2 problems" in error["message"]


def test_an_invalid_flow_message_lists_ten_problems_and_counts_the_rest(api: Api) -> None:
    steps = {f"s{n}": {"type": "noop", "transitions": {"onSuccess": "ghost"}} for n in range(12)}
    flow = {"id": "f", "initialStepId": "s0", "steps": steps}

    error = error_of(api.post("/flows", json=flow), 422, "INVALID_FLOW")

    assert len(error["details"]["issues"]) == 12
    assert "(and 2 more)" in error["message"]
    assert sum(f"steps.s{n}." in error["message"] for n in range(12)) == 10


def test_an_unknown_trigger_type_filter_is_refused(api: Api) -> None:
    api.trigger(id="hook")

    error = error_of(api.get("/triggers", params={"type": "htp"}), 400, "INVALID_ARGUMENT")

    assert "'htp'" in error["message"] and "schedule, http, event" in error["message"]
    for kind in ("schedule", "http", "event"):
        assert api.get("/triggers", params={"type": kind}).status_code == 200


@pytest.mark.parametrize("route", ["start", "emit", "resume", "webhook", "webhook-key"])
def test_an_unpaired_surrogate_is_refused(api: Api, route: str) -> None:
    """A JSON escape of an unpaired surrogate (\\ud800) is no text a store can keep or an
    answer can encode: 400 INVALID_INPUT, nothing stored (a webhook records its refusal)."""
    headers = {"Content-Type": "application/json"}
    api.trigger(id="hook")
    api.trigger(id="keyed", idempotency_key_path="k")
    waiting, _ = api.waiting("approval")
    before = snapshot(api)

    if route == "start":
        response = api.post(
            "/executions",
            content=b'{"flow_id": "quick", "context": {"a": "\\ud800"}}',
            headers=headers,
        )
    elif route == "emit":
        response = api.post(
            "/events", content=b'{"type": "t", "payload": "\\udfff"}', headers=headers
        )
    elif route == "resume":
        response = api.post(
            f"/executions/{waiting}/resume", content=b'{"data": "\\ud800"}', headers=headers
        )
    elif route == "webhook":
        response = api.post("/webhooks/hook", None, content=b'{"a": "\\ud800"}', headers=headers)
    else:
        response = api.post("/webhooks/keyed", None, content=b'{"k": "\\ud800"}', headers=headers)

    error = error_of(response, 400, "INVALID_INPUT")
    assert "surrogate" in error["message"]
    assert_unchanged(without_trigger_history(before), without_trigger_history(snapshot(api)))
    if route.startswith("webhook"):
        trigger = "hook" if route == "webhook" else "keyed"
        assert [(f["status"], f["error"]["code"]) for f in api.fires(trigger)] == [
            ("rejected", "INVALID_INPUT")
        ]
    assert api.get("/executions", "admin", params={"limit": 500}).status_code == 200
    assert api.get("/events", "admin", params={"limit": 500}).status_code == 200


# -- how a missing field is named ----------------------------------------------------------


def test_a_missing_field_is_named_as_documented(api: Api) -> None:
    before = snapshot(api)

    error = error_of(api.post("/executions", json={"context": {}}), 422, "INVALID_INPUT")

    assert_unchanged(before, snapshot(api))
    # Its field name, not its camelCase alias (the README documents flow_id).
    assert issue_paths(error) == ["body.flow_id"]
    assert "body.flow_id" in error["message"]
