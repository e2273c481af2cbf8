"""The built-in `wait_for_signal` step: wait for a person or a system to resume, with a resume
token for whoever should do it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.selectors import render_template, template_context

WAIT_FOR_SIGNAL = "wait_for_signal"


class WaitForSignalHandler:
    """`wait_for_signal` steps wait until `engine.resume(id, data)` or
    `engine.resume_with_token(token, data)`; the data lands at the step's `output_key`.

    Unless `token: false`, the step issues a resume token (single use, expiring after
    `token_expires_ms` if set, limited to `outcomes` if given), delivered to the engine's
    `on_resume_token` subscribers: mail it to an approver, post it to a chat. The step's
    `wait_timeout_ms` and `transitions.on_timeout` bound the wait; timing out revokes the token.
    """

    type = WAIT_FOR_SIGNAL
    metadata: dict[str, Any] = {
        "type": WAIT_FOR_SIGNAL,
        "name": "Wait for a signal",
        "description": "Wait for a person or a system to resume, with a single-use resume token",
        "category": "control",
        "stateful": False,
        "config_schema": {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "shown while waiting; ${path} ok"},
                "outcomes": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "the outcomes a token may report (e.g. approved, rejected)",
                },
                "token": {"type": "boolean", "description": "issue a resume token (true)"},
                "token_expires_ms": {"type": "integer", "exclusiveMinimum": 0},
            },
            "additionalProperties": False,
        },
    }

    def execute(self, params: HandlerParams) -> StepResult:
        config = params.config
        reason = config.get("reason")
        if isinstance(reason, str):
            rendered = render_template(reason, template_context(params.input))
            reason = str(rendered) if rendered not in (None, "") else None  # found nothing
        if config.get("token", True):
            expires_ms = config.get("token_expires_ms")
            params.resume_token(
                timedelta(milliseconds=expires_ms) if expires_ms else None,
                config.get("outcomes"),
            )
        return Result.wait_for_signal(reason or f"waiting for a signal at {params.step.id!r}")
