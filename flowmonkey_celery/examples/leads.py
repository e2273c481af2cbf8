"""Lead routing with conditions (`flowmonkey demo leads`).

A handler scores each lead; the flow's `conditional` step routes it, first match wins:
spam to the bin, enterprise leads to an account executive, small businesses to a trial,
everyone else to the newsletter. The rules live in `flows/lead-routing.yaml`, not in code.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.events import EventType
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.handlers import HandlerParams, handler
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.examples.demo_run import FLOWS_DIR, DemoRun, Summary

ROUTING_STEP = "route-lead"
FREE_MAIL = ("@gmail.com", "@outlook.com", "@yahoo.com")
SPAM_WORDS = re.compile(r"\b(casino|pills|crypto giveaway)\b", re.IGNORECASE)

LEADS: list[dict[str, Any]] = [
    {
        "id": "L-1",
        "company": "Acme Corp",
        "email": "cto@acme.example",
        "employees": 2000,
        "budget": 80000,
        "message": "We need single sign-on for 2,000 seats.",
    },
    {
        "id": "L-2",
        "company": "Bakkerij Jansen",
        "email": "info@jansen-bakkerij.example",
        "employees": 8,
        "budget": 600,
        "message": "Can we try it for our two shops?",
    },
    {
        "id": "L-3",
        "company": "Best Deals",
        "email": "win@mailinator.com",
        "employees": 1,
        "budget": 0,
        "message": "Cheap pills!! http://x.example http://y.example",
    },
    {
        "id": "L-4",
        "company": "",
        "email": "sam.student@gmail.com",
        "employees": 1,
        "budget": 0,
        "message": "Just curious.",
    },
    {
        "id": "L-5",
        "company": "Globex",
        "email": "globex.ceo@gmail.com",
        "employees": 5000,
        "budget": 50000,
        "message": "Call me.",
    },
]


def lead_flow() -> Flow:
    return Flow.from_file(FLOWS_DIR / "lead-routing.yaml")


@handler("score-lead", description="Score a lead 0-100 from its size, budget and email; flag spam")
def score_lead(params: HandlerParams) -> StepResult:
    lead = params.input or {}
    employees = lead.get("employees") or 0
    budget = lead.get("budget") or 0
    email = str(lead.get("email") or "")
    message = str(lead.get("message") or "")
    score = 40 if employees >= 500 else 25 if employees >= 50 else 15 if employees >= 5 else 0
    score += 40 if budget >= 10000 else 20 if budget >= 500 else 0
    score += 0 if email.endswith(FREE_MAIL) else 20
    spam = bool(SPAM_WORDS.search(message)) or message.count("http") >= 2
    return Result.success({"score": min(score, 100), "spam": spam})


@handler(
    "assign-lead",
    description="Put a lead in a queue and give it an owner from the step's config",
    config_schema={
        "type": "object",
        "required": ["queue", "owners"],
        "properties": {
            "queue": {"type": "string", "minLength": 1},
            "owners": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
        "additionalProperties": False,
    },
)
def assign_lead(params: HandlerParams) -> StepResult:
    owners: list[str] = params.config["owners"]
    # The same lead always gets the same owner (a redelivered step changes nothing).
    digest = int(hashlib.sha256(str(params.input.get("id")).encode()).hexdigest(), 16)
    return Result.success({"queue": params.config["queue"], "owner": owners[digest % len(owners)]})


HANDLERS = [score_lead, assign_lead]


def route_taken(engine: Engine, execution: Execution) -> str:
    """The step the routing step sent the lead to, from the execution's history."""
    for event in engine.history(execution.id):
        if event.type is EventType.TRANSITION and event.step_id == ROUTING_STEP:
            return str(event.data.get("to") or "-")
    return "-"


def run(demo: DemoRun) -> Summary:
    """Route each example lead and show where it went."""
    flow = lead_flow()
    engine = Engine(demo.store, HandlerRegistry(HANDLERS), FlowRegistry([flow]))
    demo.store.save_flow_definition(flow, now=engine.clock.now())
    demo.presenter.watch(engine)

    demo.presenter.say(
        f"Store: {demo.store.database}. The routing rules are the `{ROUTING_STEP}` step of "
        "flows/lead-routing.yaml: any / all / not over the lead and its score.\n"
    )
    rows: list[tuple[str, ...]] = []
    for lead in LEADS:
        who = lead["company"] or lead["email"]
        size = f"{lead['employees']} employee{'s' if lead['employees'] != 1 else ''}"
        demo.presenter.heading(f"{lead['id']}: {who}, {size}")
        execution = engine.create("lead-routing", {"lead": lead}).execution
        demo.presenter.label(execution.id, lead["id"])
        execution = engine.run(execution.id)
        scoring = execution.context.get("scoring", {})
        assignment = execution.context.get("assignment", {})
        route = route_taken(engine, execution)
        demo.presenter.say(f"  -> {route} (score {scoring.get('score')})\n")
        rows.append(
            (
                lead["id"],
                str(scoring.get("score", "-")),
                "yes" if scoring.get("spam") else "no",
                route,
                assignment.get("owner", "-"),
                execution.status.value,
            )
        )
    return Summary(
        title="Leads, routed",
        columns=("lead", "score", "spam", "route", "owner", "status"),
        rows=rows,
    )
