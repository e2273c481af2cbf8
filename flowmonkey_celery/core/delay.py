"""The built-in `delay` step: a durable wait (a `wake_at` in the database, no worker sleeps)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.selectors import render_template, template_context
from flowmonkey_celery.errors import ErrorCode

DELAY = "delay"
_UNITS = {"ms": "milliseconds", "seconds": "seconds", "minutes": "minutes", "hours": "hours",
          "days": "days"}  # fmt: skip
_TEMPLATE = {"type": "string", "pattern": r"^\$\{.+\}$"}
_AMOUNT = {"anyOf": [{"type": "number", "minimum": 0}, _TEMPLATE]}


class DelayHandler:
    """`delay` steps: wait `ms` / `seconds` / `minutes` / `hours` / `days` (summed), or `until`
    an ISO 8601 instant with a time zone. Values may be `${path}` placeholders filled from the
    step's input; a wait already over continues at once. The wait is a database timer: it
    survives restarts, and `resume()` may end it early."""

    type = DELAY
    metadata: dict[str, Any] = {
        "type": DELAY,
        "name": "Delay",
        "description": "Wait a duration, or until an instant, durably",
        "category": "control",
        "stateful": False,
        "config_schema": {
            "type": "object",
            "properties": {**{unit: _AMOUNT for unit in _UNITS}, "until": {"type": "string"}},
            "additionalProperties": False,
            "minProperties": 1,
            "not": {"required": ["until"], "minProperties": 2},
        },
    }

    def execute(self, params: HandlerParams) -> StepResult:
        values = render_template(params.config, template_context(params.input))
        if "until" in values:
            return self._until(values["until"], params.step.id)
        amounts: dict[str, float] = {}
        for unit, keyword in _UNITS.items():
            if unit not in values:
                continue
            value = values[unit]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                written = params.config[unit]
                shown = f"{value!r} (from {written!r})" if written != value else repr(value)
                return _bad(params.step.id, f"{unit} must be a number >= 0, got {shown}")
            amounts[keyword] = float(value)
        if not amounts:
            return _bad(params.step.id, "none of ms, seconds, minutes, hours, days or until is set")
        wait = timedelta(**amounts)
        return Result.wait(delay=wait, reason=f"delay of {wait}")

    @staticmethod
    def _until(value: Any, step_id: str) -> StepResult:
        try:
            instant = datetime.fromisoformat(str(value))
        except ValueError:
            return _bad(step_id, f"until must be an ISO 8601 instant, got {value!r}")
        if instant.tzinfo is None:
            return _bad(step_id, f"until needs a time zone (e.g. 2026-01-01T09:00:00Z): {value!r}")
        return Result.wait(wake_at=instant, reason=f"delay until {instant.isoformat()}")


def _bad(step_id: str, problem: str) -> StepResult:
    return Result.failure(
        ErrorCode.INPUT_ERROR.value, f"delay step {step_id!r}: {problem}", retryable=False
    )
