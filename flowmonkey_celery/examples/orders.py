"""Handlers for the order-fulfilment example flow."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.handlers import HandlerParams, handler
from flowmonkey_celery.core.results import Result, StepResult

FLOWS_DIR = Path(__file__).parent / "flows"


def order_flow() -> Flow:
    return Flow.from_file(FLOWS_DIR / "order-fulfilment.yaml")


@handler("validate-order", description="Check an order has items and a positive total")
def validate_order(params: HandlerParams) -> StepResult:
    order = params.input or {}
    items = order.get("items") or []
    if not items:
        return Result.failure("INVALID_ORDER", f"order {order.get('id')} has no items")
    total = sum(item["price"] * item.get("qty", 1) for item in items)
    return Result.success({"total": total, "item_count": len(items)})


@handler("wait-for-approval", description="Pause until a person approves (resume)")
def wait_for_approval(params: HandlerParams) -> StepResult:
    return Result.wait_for_signal(params.input["note"])


@handler("charge-card", description="Charge a card; the demo card fails once, then succeeds")
def charge_card(params: HandlerParams) -> StepResult:
    if params.input["card"] == "flaky" and params.attempt == 1:
        return Result.failure("CARD_NETWORK_DOWN", "card network timed out")
    # step_key is stable per attempt: the payment API can deduplicate with it.
    charge_id = "ch_" + hashlib.sha256(params.step_key.encode()).hexdigest()[:10]
    return Result.success({"charge_id": charge_id, "amount": params.input["amount"]})


@handler("delay", description="Wait for hours / minutes / seconds (input, else config)")
def delay(params: HandlerParams) -> StepResult:
    config = params.input or params.config
    wait = timedelta(
        hours=config.get("hours", 0),
        minutes=config.get("minutes", 0),
        seconds=config.get("seconds", 0),
    )
    return Result.wait(delay=wait, reason=f"waiting {wait}")


@handler("send-email", description="Pretend to send an email")
def send_email(params: HandlerParams) -> StepResult:
    return Result.success({"sent_to": params.input["to"], "subject": params.input["subject"]})


HANDLERS = [validate_order, wait_for_approval, charge_card, delay, send_email]
