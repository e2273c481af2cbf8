"""A daily report on cron (`flowmonkey demo daily-report`).

`flows/daily-report.yaml` declares a schedule trigger (07:00 in Amsterdam); each fire builds
yesterday's sales report and "sends" it, which here means writing it to a file under
FLOWMONKEY_HOME/reports (swap in the built-in `email` step to mail it). The demo plays the
beat's tick on a simulated clock across three days, so it runs in a second: each slot fires
once, and a second beat ticking at the same instant fires nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flowmonkey_celery.core.clock import ManualClock
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.handlers import HandlerParams, handler
from flowmonkey_celery.core.ports import AnyTrigger, TriggerStore
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.triggers import (
    ScheduleTrigger,
    TriggerFire,
    TriggerFireRecord,
    TriggerStats,
    flow_triggers,
)
from flowmonkey_celery.examples.demo_run import FLOWS_DIR, DemoRun, Summary, short_id
from flowmonkey_celery.settings import Settings
from flowmonkey_celery.triggers.schedule import fire_due_schedules

TRIGGER_ID = "daily-report"
PRODUCTS = ("mug", "teapot", "sofa", "lamp", "rug")
DAYS_SIMULATED = 3
TICK = timedelta(hours=1)  # a real beat ticks every second; hourly is enough to see the slots


def report_flow() -> Flow:
    return Flow.from_file(FLOWS_DIR / "daily-report.yaml")


def report_date(context: dict[str, Any]) -> date:
    """The day a fire reports on: the day before its slot, in the report's time zone."""
    slot = datetime.fromisoformat(context["trigger"]["scheduled_for"])
    return (slot.astimezone(ZoneInfo(context.get("timezone", "UTC"))) - timedelta(days=1)).date()


@handler("collect-sales-figures", description="Yesterday's sales figures (made up, per day)")
def collect_sales_figures(params: HandlerParams) -> StepResult:
    day = report_date(params.input)
    # Stands in for a database query: the same day always gives the same figures.
    seed = int(hashlib.sha256(day.isoformat().encode()).hexdigest(), 16)
    orders = 20 + seed % 40
    return Result.success(
        {
            "date": day.isoformat(),
            "orders": orders,
            "revenue_eur": orders * (35 + seed % 50),
            "refunds": seed % 4,
            "top_product": PRODUCTS[seed % len(PRODUCTS)],
        }
    )


@handler("render-report", description="Render the report's subject and text")
def render_report(params: HandlerParams) -> StepResult:
    figures = params.input["figures"]
    day = date.fromisoformat(figures["date"])
    slot = params.input["trigger"]["scheduled_for"]
    body = "\n".join(
        [
            f"Daily sales report for {day:%A %d %B %Y}",
            "",
            f"Orders:       {figures['orders']}",
            f"Revenue:      {figures['revenue_eur']:,} EUR",
            f"Refunds:      {figures['refunds']}",
            f"Top product:  {figures['top_product']}",
            "",
            f"Sent to {', '.join(params.input.get('recipients', []))} by trigger "
            f"{params.input['trigger']['id']} (slot {slot}).",
        ]
    )
    return Result.success(
        {
            "subject": f"Sales {day.isoformat()}: {figures['orders']} orders",
            "body": body + "\n",
            "file_name": f"{params.input.get('report', 'report')}-{day.isoformat()}.txt",
        }
    )


class ReportOutbox:
    """The `deliver-report` step: writes each report to a file in `folder` (default:
    FLOWMONKEY_HOME/reports, read when the step runs). Writing the same report again
    replaces the file with the same text, so a redelivered step does no harm."""

    type = "deliver-report"
    metadata: dict[str, Any] = {"description": "Deliver a report: write it to a file"}

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder

    def execute(self, params: HandlerParams) -> StepResult:
        folder = self.folder or Settings.from_env().home / "reports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / params.input["file_name"]
        path.write_text(params.input["body"], encoding="utf-8")
        return Result.success({"path": str(path), "bytes": path.stat().st_size})


#: For a worker that loads this module (FLOWMONKEY_HANDLERS): reports go to FLOWMONKEY_HOME.
deliver_report = ReportOutbox()


@dataclass
class OneTrigger:
    """The store's triggers, seen as if `trigger_id` were the only one: the demo's tick fires
    its own trigger and leaves any other schedule in the store to your beat."""

    store: TriggerStore
    trigger_id: str

    def list_triggers(
        self, enabled_only: bool = False, trigger_type: str | None = None
    ) -> list[AnyTrigger]:
        return [
            t
            for t in self.store.list_triggers(enabled_only, trigger_type)
            if t.id == self.trigger_id
        ]

    def save_trigger(self, trigger: AnyTrigger, now: datetime) -> AnyTrigger:
        return self.store.save_trigger(trigger, now)

    def create_trigger(self, trigger: AnyTrigger, now: datetime) -> bool:
        return self.store.create_trigger(trigger, now)

    def get_trigger(self, trigger_id: str) -> AnyTrigger | None:
        return self.store.get_trigger(trigger_id)

    def delete_trigger(self, trigger_id: str) -> bool:
        return self.store.delete_trigger(trigger_id)

    def record_fire(self, fire: TriggerFire) -> bool:
        return self.store.record_fire(fire)

    def last_fire(self, trigger_id: str) -> TriggerFire | None:
        return self.store.last_fire(trigger_id)

    def record_trigger_fire(self, record: TriggerFireRecord) -> None:
        self.store.record_trigger_fire(record)

    def list_trigger_fires(
        self, trigger_id: str, *, limit: int = 50, before: datetime | None = None
    ) -> list[TriggerFireRecord]:
        return self.store.list_trigger_fires(trigger_id, limit=limit, before=before)

    def trigger_stats(self, trigger_id: str) -> TriggerStats:
        return self.store.trigger_stats(trigger_id)


def _start_after_earlier_runs(store: TriggerStore, now: datetime) -> datetime:
    """Where the simulated clock starts: now, or after the slots an earlier run of the demo
    simulated (their executions keep their idempotency keys, `trigger:<id>:<slot>`)."""
    earlier = store.last_fire(TRIGGER_ID)
    start = max(now, earlier.scheduled_for + timedelta(minutes=1)) if earlier else now
    return start.replace(second=0, microsecond=0)


def run(demo: DemoRun) -> Summary:
    """Register the flow's schedule trigger and tick through three simulated days."""
    flow = report_flow()
    (declared,) = (t for t in flow_triggers(flow) if t.id == TRIGGER_ID)
    assert isinstance(declared, ScheduleTrigger)
    store = demo.store
    clock = ManualClock(_start_after_earlier_runs(store, datetime.now(UTC)))
    outbox = demo.home / "reports"
    handlers = HandlerRegistry([collect_sales_figures, render_report, ReportOutbox(outbox)])
    engine = Engine(store, handlers, FlowRegistry([flow]), clock=clock)
    store.save_flow_definition(flow, now=clock.now())
    # A fresh trigger, created "now" on the simulated clock: only slots from here on fire.
    store.delete_trigger(TRIGGER_ID)
    enabled = declared.model_copy(update={"enabled": True, "created_at": clock.now()})
    store.save_trigger(enabled, clock.now())
    demo.presenter.watch(engine)

    zone = declared.zoneinfo
    demo.presenter.say(
        f"Store: {store.database}. Trigger {TRIGGER_ID}: '{declared.schedule}' in "
        f"{declared.timezone}. A simulated clock ticks hourly for {DAYS_SIMULATED} days from "
        f"{clock.now():%a %d %b %H:%M} UTC; at each fire a second beat ticks at the same "
        "instant. Progress lines show UTC.\n"
    )
    only_ours = OneTrigger(store, TRIGGER_ID)

    def run_fired(execution: Execution) -> None:  # what a worker does with a fired execution
        slot = datetime.fromisoformat(execution.context["trigger"]["scheduled_for"])
        local = slot.astimezone(zone)
        demo.presenter.label(execution.id, f"{local:%a}")
        demo.presenter.say(
            f"The tick at {clock.now():%a %H:%M} UTC fires the {local:%a %d %b %H:%M} slot "
            f"({declared.timezone}):"
        )
        engine.run(execution.id)
        demo.presenter.say("")

    fires: list[TriggerFire] = []
    ticks = second_beat_fires = 0
    end = clock.now() + timedelta(days=DAYS_SIMULATED)
    next_tick = clock.now().replace(minute=0) + TICK
    while next_tick <= end:
        clock.set(next_tick)
        ticks += 1
        fired = fire_due_schedules(engine, only_ours, clock.now(), dispatch=run_fired)
        if fired:
            second_beat_fires += len(fire_due_schedules(engine, only_ours, clock.now()))
        fires += fired
        next_tick += TICK
    # Left in the store with its fires, but off again, as the flow file declares it: a real
    # `flowmonkey beat` on this home must not start sending reports every morning.
    stored = store.get_trigger(TRIGGER_ID)
    assert stored is not None
    store.save_trigger(stored.model_copy(update={"enabled": False}), clock.now())

    rows: list[tuple[str, ...]] = []
    for fire in fires:
        execution = engine.get(fire.execution_id or "")
        assert execution is not None
        delivery = execution.context.get("delivery", {})
        rows.append(
            (
                f"{fire.scheduled_for.astimezone(zone):%a %d %b %H:%M}",
                execution.context.get("figures", {}).get("date", "-"),
                short_id(execution.id),
                execution.status.value,
                str(delivery.get("path", "-")),
            )
        )
    return Summary(
        title=f"Fires of {TRIGGER_ID}: {len(fires)} in {ticks} hourly ticks",
        columns=("slot", "report for", "execution", "status", "report file"),
        rows=rows,
        notes=[
            f"Each slot fired once; a second beat ticking at the same instant fired "
            f"{second_beat_fires} (one fire per slot is a unique row in the database).",
            f"The reports are in {outbox}; `flowmonkey executions list --flow {flow.id}` "
            "lists the executions. The trigger is off again (as the flow file declares it), "
            "so a `flowmonkey beat` on this home sends no reports.",
        ],
    )
