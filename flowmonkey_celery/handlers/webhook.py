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
    HEADERS_SCHEMA,
    BadInput,
    HostRules,
    HttpClient,
    HttpRequest,
    RequestFailed,
    Resolver,
    default_header,
    render_headers,
    status_failure,
    system_resolver,
)

WEBHOOK = "webhook"


class WebhookHandler:
    """`webhook` steps POST `{token, execution_id, step_id, expires_at, outcomes, input}` as
    JSON to `url` (a `${path}` template over the step's input, like `headers` and `reason`),
    with the step key as `Idempotency-Key`, then wait. Headers are made as the `http` step
    makes them (a header of the step replaces a default of the same name in any case). The
    receiver ends the wait once with the token: `engine.resume_with_token(token, data,
    outcome=...)`. A refused or failed delivery is a failure like the `http` step's
    (HTTP_<status>, HTTP_ERROR, INPUT_ERROR; retry and on_failure apply, and a retry sends a
    new token). Bound the wait with the step's `wait_timeout_ms` and `on_timeout`; timing out
    revokes the token.

    Args:
        allowed_hosts / allow_private_addresses / session / resolver: as for the `http` step.
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
                "headers": HEADERS_SCHEMA,
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
        resolver: Resolver = system_resolver,
    ) -> None:
        self.client = HttpClient(
            HostRules(allowed_hosts, allow_private_addresses, resolver), session
        )

    def __repr__(self) -> str:
        return f"<WebhookHandler {self.client.rules!r}>"

    def execute(self, params: HandlerParams) -> StepResult:
        config = params.config
        what = f"webhook step {params.step.id!r}"
        context = template_context(params.input)
        # Everything the input fills is made before the token is issued: an input that does
        # not fit fails the step without a token, and without a request.
        try:
            url = render_template(config["url"], context)
            if not isinstance(url, str) or not url:
                raise BadInput(f"url must be text, got {url!r} (from {config['url']!r})")
            headers = render_headers(config.get("headers") or {}, context)
            reason = _reason(config.get("reason"), context) or f"waiting for the callback of {url}"
        except ValueError as exc:  # BadInput, or a `${}` placeholder
            return Result.failure(ErrorCode.INPUT_ERROR.value, f"{what}: {exc}", retryable=False)
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
        default_header(headers, "Content-Type", "application/json")
        default_header(headers, "Idempotency-Key", params.call_key)
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
        return Result.wait_for_signal(reason)


def _reason(template: str | None, context: dict[str, Any]) -> str | None:
    """The `reason` filled from the input, as `wait_for_signal` fills its own; None when
    there is none or it comes out empty."""
    if template is None:
        return None
    value = render_template(template, context)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
