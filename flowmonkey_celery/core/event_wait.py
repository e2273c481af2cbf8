"""The built-in `wait_for_event` step: wait inside a running flow for an emitted event that
belongs to it (the payment of this order, the reply to this ticket)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.selectors import render_template, template_context

WAIT_FOR_EVENT = "wait_for_event"
# Events emitted this long before the wait still match (they wait in the inbox): the event a
# system sends a moment before the flow gets to this step is not lost. Inngest and Hatchet drop
# it.
DEFAULT_LOOK_BACK_MS = 5 * 60 * 1000


class WaitForEventHandler:
    """`wait_for_event` waits for `emit(event, payload)` of an event whose payload has each
    `match` path equal to its value (`${path}` templates over the step's input), e.g.
    `match: {order_id: "${order.id}"}`. The event (`id, type, key, payload, created_at`) lands
    at the step's `output_key`. An event emitted up to `look_back_ms` before the wait (default
    five minutes) matches too. Bound the wait with the step's `wait_timeout_ms` and
    `transitions.on_timeout`."""

    type = WAIT_FOR_EVENT
    metadata: dict[str, Any] = {
        "type": WAIT_FOR_EVENT,
        "name": "Wait for an event",
        "description": "Wait for an emitted event that matches this execution (correlation)",
        "category": "control",
        "stateful": False,
        "config_schema": {
            "type": "object",
            "required": ["event"],
            "properties": {
                "event": {"type": "string", "minLength": 1, "description": "the event type"},
                "match": {
                    "type": "object",
                    "description": "payload path -> value the event must have; ${path} ok",
                },
                "look_back_ms": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "events emitted this long before the wait match too "
                    f"(default {DEFAULT_LOOK_BACK_MS})",
                },
                "reason": {"type": "string", "description": "shown while waiting; ${path} ok"},
            },
            "additionalProperties": False,
        },
    }

    def execute(self, params: HandlerParams) -> StepResult:
        config = params.config
        values = template_context(params.input)
        match = render_template(config.get("match") or {}, values)
        reason = config.get("reason")
        if isinstance(reason, str):
            rendered = render_template(reason, values)
            reason = str(rendered) if rendered not in (None, "") else None  # found nothing
        missing = [path for path, value in match.items() if value in (None, "")]
        if missing:
            return Result.failure(
                "INPUT_ERROR",
                f"wait_for_event step {params.step.id!r}: match value of {', '.join(missing)} "
                "is empty (the template found nothing in the input); it would match any event",
                {"match": match},
                retryable=False,
            )
        return Result.wait_for_event(
            config["event"],
            match,
            look_back=timedelta(milliseconds=config.get("look_back_ms", DEFAULT_LOOK_BACK_MS)),
            reason=reason or f"waiting for event {config['event']}",
        )
