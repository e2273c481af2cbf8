"""The handler of the metrics end-to-end test (loaded by its worker via FLOWMONKEY_HANDLERS):
it logs, takes a moment (so both pool processes get work), and fails its first attempt."""

from __future__ import annotations

import logging
import time

from flowmonkey_celery import HandlerParams, Result, StepResult, handler

log = logging.getLogger("tests.e2e.metrics_handlers")


@handler("e2e-logged-charge")
def logged_charge(params: HandlerParams) -> StepResult:
    """Logs "charging", then fails attempt 1 with GATEWAY_DOWN and succeeds on attempt 2."""
    log.info("charging order %s", params.input.get("order"))
    time.sleep(0.2)
    if params.attempt == 1:
        return Result.failure("GATEWAY_DOWN", "the gateway is down; retried")
    return Result.success({"charged": True})
