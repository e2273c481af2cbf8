"""Mapping domain models to table rows and back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping

from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.stores.sql.schema import events, executions

_EXECUTION_JSON: set[str] = {"context", "metadata", "error", "cancellation", "timeout"}
_EVENT_JSON: set[str] = {"error", "data"}
EXECUTION_COLUMNS = frozenset(c.name for c in executions.columns)
EVENT_COLUMNS = frozenset(c.name for c in events.columns) - {"seq"}


def execution_row(execution: Execution) -> dict[str, Any]:
    """Every Execution field as a column value: nested models as JSON, datetimes as-is."""
    as_json = execution.model_dump(mode="json", include=_EXECUTION_JSON)
    as_python = execution.model_dump(mode="python", exclude=_EXECUTION_JSON)
    row = {**as_python, **as_json}
    row["status"] = execution.status.value
    row["wait_kind"] = execution.wait_kind.value if execution.wait_kind else None
    missing = EXECUTION_COLUMNS - row.keys()
    extra = row.keys() - EXECUTION_COLUMNS
    if missing or extra:  # a model field without a column would be silently lost
        raise RuntimeError(f"execution row mismatch: missing {missing}, extra {extra}")
    return row


def execution_from_row(row: RowMapping) -> Execution:
    return Execution.model_validate(dict(row))


def event_row(event: HistoryEvent) -> dict[str, Any]:
    as_json = event.model_dump(mode="json", include=_EVENT_JSON)
    row = {**event.model_dump(mode="python", exclude=_EVENT_JSON), **as_json}
    row["type"] = event.type.value
    return row


def event_from_row(row: RowMapping) -> HistoryEvent:
    data = {key: value for key, value in row.items() if key != "seq"}
    return HistoryEvent.model_validate(data)
