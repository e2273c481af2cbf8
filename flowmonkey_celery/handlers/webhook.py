"""The built-in `webhook` step: hand a resume token to another system over HTTP, then wait
for it to call back (`engine.resume_with_token(token, data)`)."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import timedelta
from typing import Any

import requests

from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.selectors import render_template, template_context
from flowmonkey_celery.errors import ErrorCode
from flowmonkey_celery.handlers.http import (
    HostRules,
    HttpClient,
    HttpRequest,
    RequestFailed,
    status_failure,
)

WEBHOOK = "webhook"


class WebhookHandler:
    """`webhook` steps POST `{token, execution_id, step_id, expires_at, outcomes, input}` as
    JSON to `url` (a `${path}` template over the step's input, like `headers`), with the step
    key as `Idempotency-Key`, then wait. The receiver ends the wait once with the token:
    `engine.resume_with_token(token, data, outcome=...)`. A refused or failed delivery is a
    failure like the `http` step's (HTTP_<status>, HTTP_ERROR; retry and on_failure apply,
    and a retry sends a new token). Bound the wait with the step's `wait_timeout_ms` and
    `on_timeout`; timing out revokes the token.

    Args:
        allowed_hosts / allow_private_addresses / session: as for the `http` step.
    """

    type = WEBHOOK
    metadata: dict[str, Any] = {
        "type": WEBHOOK,
        "name": "Webhook",
        "description": "Send a resume token to a URL, then wait for the callback",
        "category": "integration",
        "stateful": False,
        "config_schema": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "minLength": 1},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "outcomes": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "uniqueItems": True,
                },
                "token_expires_ms": {"type": "integer", "exclusiveMinimum": 0},
                "timeout_ms": {"type": "number", "exclusiveMinimum": 0},
                "reason": {"type": "string"},
            },
            "additionalProperties": False,
        },
    }

    def __init__(
        self,
        allowed_hosts: Collection[str] | None = None,
        allow_private_addresses: bool = False,
        session: requests.Session | None = None,
    ) -> None:
        self.client = HttpClient(HostRules(allowed_hosts, allow_private_addresses), session)

    def execute(self, params: HandlerParams) -> StepResult:
        config = params.config
        what = f"webhook step {params.step.id!r}"
        context = template_context(params.input)
        try:
            url = render_template(config["url"], context)
            headers = {
                k: str(v) for k, v in render_template(config.get("headers") or {}, context).items()
            }
        except ValueError as exc:
            return Result.failure(ErrorCode.INPUT_ERROR.value, f"{what}: {exc}", retryable=False)
        if not isinstance(url, str) or not url:
            return Result.failure(
                ErrorCode.INPUT_ERROR.value, f"{what}: url is empty", retryable=False
            )
        expires_ms = config.get("token_expires_ms")
        expires_in = timedelta(milliseconds=expires_ms) if expires_ms else None
        outcomes = config.get("outcomes")
        token = params.resume_token(expires_in, outcomes)
        now = params.clock.now()
        payload = {
            "token": token,
            "execution_id": params.execution.id,
            "step_id": params.step.id,
            "expires_at": (now + expires_in).isoformat() if expires_in else None,
            "outcomes": outcomes,
            "input": params.input,
        }
        given = {name.lower() for name in headers}
        for name, value in (
            ("Content-Type", "application/json"),
            ("Idempotency-Key", params.call_key),
        ):
            if name.lower() not in given:
                headers[name] = value
        request = HttpRequest(
            method="POST",
            url=url,
            headers=headers,
            body=json.dumps(payload).encode(),
            timeout_s=float(config.get("timeout_ms", 30000)) / 1000,
            # A redirect would turn the POST into a GET without the token: a 3xx is a failed
            # delivery, not a delivered one.
            allow_redirects=False,
        )
        try:
            answer = self.client.send(request)
        except RequestFailed as exc:
            return Result.failure(
                ErrorCode.HTTP_ERROR.value, f"{what}: {exc}", exc.details, retryable=exc.retryable
            )
        if not 200 <= answer.status < 300:
            return status_failure(answer, now, what)
        return Result.wait_for_signal(config.get("reason") or f"waiting for the callback of {url}")
