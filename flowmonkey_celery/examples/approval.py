"""Expense approval: a flow that waits for a person's decision (`flowmonkey demo approval`).

Small expenses are paid at once; larger ones wait at a `wait_for_signal` step until someone
resumes them: from the dashboard's inbox, with `flowmonkey resume ID --data '{"approved":
true}'`, or with the resume token the step issues. The steps after the decision run wherever
the execution is carried on: a `flowmonkey worker` with this module in FLOWMONKEY_HANDLERS.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.handlers import HandlerParams, handler
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.tokens import IssuedResumeToken
from flowmonkey_celery.examples.demo_run import FLOWS_DIR, DemoRun, Summary

MODULE = __name__
#: Expenses up to this amount (EUR) need nobody's approval.
AUTO_APPROVE_LIMIT = 100
#: From this amount on, finance decides instead of the manager.
FINANCE_LIMIT = 1000

EXPENSES: list[dict[str, Any]] = [
    {"id": "E-101", "employee": "ana@example.com", "amount": 38, "purpose": "taxi to a client"},
    {"id": "E-102", "employee": "ben@example.com", "amount": 1450, "purpose": "a laptop"},
]
DECISIONS = {"approve": True, "reject": False}


def approval_flow() -> Flow:
    return Flow.from_file(FLOWS_DIR / "expense-approval.yaml")


@handler("check-expense", description="Check an expense against the policy: who must approve")
def check_expense(params: HandlerParams) -> StepResult:
    expense = params.input or {}
    amount = expense.get("amount")
    if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
        return Result.failure("INVALID_EXPENSE", f"expense {expense.get('id')} has no amount")
    if amount <= AUTO_APPROVE_LIMIT:
        return Result.success({"needs_approval": False, "approver": None})
    approver = "finance" if amount >= FINANCE_LIMIT else "manager"
    return Result.success({"needs_approval": True, "approver": approver})


@handler("pay-expense", description="Pay an approved expense (pretend)")
def pay_expense(params: HandlerParams) -> StepResult:
    # call_key is stable for this call: the payment API deduplicates a redelivered step with it.
    payment_id = "pay_" + hashlib.sha256(params.call_key.encode()).hexdigest()[:10]
    return Result.success({"payment_id": payment_id, "amount": params.input["amount"]})


@handler("notify-employee", description="Tell the employee what happened (pretend)")
def notify_employee(params: HandlerParams) -> StepResult:
    return Result.success({"to": params.input["to"], "message": params.input["message"]})


HANDLERS = [check_expense, pay_expense, notify_employee]


def run(demo: DemoRun) -> Summary:
    """File the example expenses; leave the large one waiting for a decision, or (with
    `demo.options["decide"]` "approve" / "reject") decide it here and carry it on."""
    flow = approval_flow()
    engine = Engine(demo.store, HandlerRegistry(HANDLERS), FlowRegistry([flow]))
    # Saved like a deploy saves it: `flowmonkey resume`, the API and workers load it from there.
    demo.store.save_flow_definition(flow, now=engine.clock.now())
    tokens: list[IssuedResumeToken] = []
    engine.on_resume_token(tokens.append)
    demo.presenter.watch(engine)
    decide: str | None = demo.options.get("decide")

    demo.presenter.say(
        f"Store: {demo.store.database}. Expenses up to {AUTO_APPROVE_LIMIT} EUR are paid at "
        "once; larger ones wait for a person: a durable wait, no worker held.\n"
    )
    executions: list[Execution] = []
    for expense in EXPENSES:
        demo.presenter.heading(f"{expense['id']}: {expense['amount']} EUR for {expense['purpose']}")
        execution = engine.create("expense-approval", {"expense": expense}).execution
        demo.presenter.label(execution.id, expense["id"])
        execution = engine.run(execution.id)
        if execution.status == "waiting" and decide is not None:
            data = {"approved": DECISIONS[decide], "by": "demo --decide"}
            demo.presenter.say(f"  ... the approver decides: {decide} (engine.resume)")
            engine.resume(execution.id, data)
            execution = engine.run(execution.id)
        executions.append(execution)
        demo.presenter.say("")

    rows: list[tuple[str, ...]] = []
    for execution in executions:
        context = execution.context
        waiting_at = execution.current_step_id if execution.status == "waiting" else None
        rows.append(
            (
                context["expense"]["id"],
                str(context["expense"]["amount"]),
                execution.status.value,
                waiting_at or "-",
                context.get("notification", {}).get("message", "-"),
            )
        )
    waiting = [e for e in executions if e.status == "waiting"]
    notes = _how_to_decide(demo, waiting[0], tokens) if waiting else []
    return Summary(
        title="Expenses",
        columns=("expense", "EUR", "status", "waiting at", "told the employee"),
        rows=rows,
        notes=notes,
    )


def _how_to_decide(demo: DemoRun, waiting: Execution, tokens: list[IssuedResumeToken]) -> list[str]:
    """What to type to decide the waiting expense (each line runs as printed, comments and
    all, in a shell with the export)."""
    env = f"FLOWMONKEY_HANDLERS={MODULE}"
    if demo.embedded:
        env = f"FLOWMONKEY_HOME={demo.home.resolve()} {env}"
    token = next((t.token for t in tokens if t.execution_id == waiting.id), None)
    data = json.dumps({"approved": True})
    resume = f"flowmonkey resume {waiting.id} --data '{data}'"
    lines = [
        f"{waiting.context['expense']['id']} waits for a decision: {waiting.wait_reason}.",
        "Decide it yourself, in a shell with this demo's settings:",
        f"  export {env}",
        f"  {resume}   # or false",
        "  flowmonkey worker   # runs the steps after the decision (the resume only enqueues them)",
        "Instead of that resume:",
    ]
    if token is not None:
        lines.append(
            f"  flowmonkey resume --token {token} --outcome approved   # the step's one-use token"
        )
    lines += [
        f"  {resume} --in-process   # carries it on in that process: no worker needed",
        "  FLOWMONKEY_API_AUTH=false flowmonkey api   # the dashboard: resume it at "
        "http://127.0.0.1:8000/ui/#/inbox (with the worker running)",
        "Or decide it here, in one go: flowmonkey demo approval --decide approve (or reject)",
    ]
    return lines
