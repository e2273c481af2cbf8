"""An execution's history as a timeline: one row per handler call (attempt, duration, outcome,
error, where it went next), wait, resume, retry and end; what `flowmonkey executions show`
prints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.console import JustifyMethod
from rich.markup import escape
from rich.table import Table

from flowmonkey_celery.core.events import EventType, HistoryEvent
from flowmonkey_celery.core.execution import Execution, ExecutionStatus

# Facts the other rows already tell: a step starting (its step.completed has started_at),
# the execution starting.
_FOLDED = {EventType.STEP_STARTED, EventType.EXECUTION_STARTED}
_OUTCOME_COLOURS = {"success": "green", "failure": "red", "wait": "yellow", "retry": "yellow"}
STATUS_COLOURS = {
    ExecutionStatus.COMPLETED: "green",
    ExecutionStatus.FAILED: "red",
    ExecutionStatus.CANCELLED: "red",
    ExecutionStatus.WAITING: "yellow",
}


@dataclass
class TimelineRow:
    at: datetime
    what: str
    step: str = ""
    attempt: str = ""
    duration: str = ""
    outcome: str = ""
    detail: str = ""


def elapsed(seconds: float) -> str:
    """`+0.4 ms`, `+1.25 s`, `+3 m 05 s`, `+20 h 00 m`, `+2 d 04 h`."""
    if seconds < 1:
        return f"+{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"+{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"+{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"+{hours} h {minutes:02d} m"
    days, hours = divmod(hours, 24)
    return f"+{days} d {hours:02d} h"


def timeline_rows(events: list[HistoryEvent]) -> list[TimelineRow]:
    """The rows for `events` (oldest first); a transition joins the row of the step it
    leaves ("→ next-step")."""
    rows: list[TimelineRow] = []
    for event in events:
        if event.type in _FOLDED:
            continue
        step = event.step_id or ""
        if event.type is EventType.TRANSITION:
            target = event.data.get("to")
            arrow = f"→ {target}" if target else "→ end"
            if rows and rows[-1].step == step:
                last = rows[-1]
                last.detail = f"{last.detail}; {arrow}" if last.detail else arrow
            else:
                rows.append(TimelineRow(event.at, "transition", step, detail=arrow))
            continue
        rows.append(_row(event, step))
    return rows


def _row(event: HistoryEvent, step: str) -> TimelineRow:
    error = f"{event.error.code}: {event.error.message}" if event.error else ""
    if event.type is EventType.STEP_COMPLETED:
        duration = f"{event.duration_ms:.2f} ms" if event.duration_ms is not None else ""
        return TimelineRow(
            event.at,
            "step",
            step,
            str(event.attempt or ""),
            duration,
            event.outcome or "",
            error,
        )
    if event.type is EventType.STEP_RETRY:
        wake = str(event.data.get("wake_at") or "")[:23].replace("T", " ")
        return TimelineRow(
            event.at, "retry", step, str(event.attempt or ""), detail=f"attempt at {wake} UTC"
        )
    if event.type is EventType.EXECUTION_WAITING:
        wake_at = event.data.get("wake_at")
        kind = str(event.data.get("kind") or "signal")
        if wake_at:
            what = f"{kind} until {str(wake_at)[:19].replace('T', ' ')} UTC"
        else:
            what = {"signal": "for a signal", "children": "for its children"}.get(
                kind, f"for its {kind}"
            )
        reason = event.data.get("reason")
        return TimelineRow(
            event.at, "waiting", step, detail=what + (f": {reason}" if reason else "")
        )
    if event.type is EventType.EXECUTION_RESUMED:
        trigger = event.data.get("trigger") or "?"
        with_data = " with data" if event.data.get("with_data") else ""
        return TimelineRow(event.at, "resumed", step, detail=f"by {trigger}{with_data}")
    if event.type is EventType.EXECUTION_CREATED:
        flow = f"{event.data.get('flow_id', '')} {event.data.get('flow_version', '')}".strip()
        return TimelineRow(event.at, "created", step, detail=flow)
    if event.type is EventType.IDEMPOTENCY_HIT:
        key = event.data.get("idempotency_key")
        return TimelineRow(event.at, "idempotency hit", detail=f"key {key!r}: no new execution")
    what = event.type.value.removeprefix("execution.")
    detail = error or ", ".join(f"{k}={v}" for k, v in sorted(event.data.items()))
    return TimelineRow(event.at, what, step, detail=detail)


def timeline_table(execution: Execution, events: list[HistoryEvent]) -> Table:
    """The rows as a rich table, times relative to the execution's creation."""
    table = Table(title=f"History of {escape(execution.id)}", title_justify="left")
    columns: list[tuple[str, JustifyMethod]] = [
        ("at", "right"),
        ("event", "left"),
        ("step", "left"),
        ("attempt", "right"),
        ("duration", "right"),
        ("outcome", "left"),
        ("detail", "left"),
    ]
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for row in timeline_rows(events):
        colour = _OUTCOME_COLOURS.get(row.outcome)
        outcome = f"[{colour}]{escape(row.outcome)}[/]" if colour else escape(row.outcome)
        table.add_row(
            elapsed(max(0.0, (row.at - execution.created_at).total_seconds())),
            escape(row.what),
            escape(row.step),
            row.attempt,
            row.duration,
            outcome,
            escape(row.detail),
        )
    return table


def summary_table(execution: Execution) -> Table:
    """The execution's state, one field a line."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    colour = STATUS_COLOURS.get(execution.status, "cyan")
    fields: list[tuple[str, str | None]] = [
        ("execution", escape(execution.id)),
        ("flow", escape(f"{execution.flow_id} {execution.flow_version}")),
        ("status", f"[{colour}]{execution.status.value}[/]"),
        ("step", escape(execution.current_step_id or "-")),
        ("handler calls", str(execution.step_count)),
        ("tenant", escape(execution.tenant_id) if execution.tenant_id else None),
        (
            "parent",
            escape(execution.parent_execution_id) if execution.parent_execution_id else None,
        ),
        (
            "idempotency key",
            escape(execution.idempotency_key) if execution.idempotency_key else None,
        ),
        ("created", f"{execution.created_at:%F %T} UTC"),
        ("updated", f"{execution.updated_at:%F %T} UTC"),
    ]
    if execution.status is ExecutionStatus.WAITING:
        until = f" until {execution.wake_at:%F %T} UTC" if execution.wake_at else ""
        kind = execution.wait_kind.value if execution.wait_kind else "signal"
        reason = f": {execution.wait_reason}" if execution.wait_reason else ""
        fields.append(("waiting", escape(f"{kind}{until}{reason}")))
    if execution.error is not None:
        fields.append(("error", escape(f"{execution.error.code}: {execution.error.message}")))
    if execution.cancellation is not None:
        why = execution.cancellation
        fields.append(("cancelled", escape(f"by {why.source}: {why.reason or 'no reason'}")))
    for name, value in fields:
        if value is not None:
            grid.add_row(name, value)
    return grid
