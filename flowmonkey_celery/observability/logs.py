"""Logs: text (the default) or JSON lines, each saying which step attempt it was logged in.

The engine binds the step attempt it runs (`core/log_context.py`); `StepContextFilter` copies
it onto every record a handler of ours emits, the step handler's own `logging` calls included:
`execution_id, flow_id, step_id, attempt, tenant_id` (absent outside a step).

- `configure_logging(settings)`: the root logger gets one handler, in FLOWMONKEY_LOG_FORMAT
  (`text` or `json`) at FLOWMONKEY_LOG_LEVEL (default INFO). `flowmonkey api` calls it.
- `log_celery_through_flowmonkey(settings)`: in a worker or beat, JSON takes over Celery's
  logging (`setup_logging`: Celery's own lines come out as JSON too); text keeps Celery's
  handlers and format and adds the step attempt to them (`after_setup_logger`).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from flowmonkey_celery.core.log_context import current_step
from flowmonkey_celery.settings import Settings

CONTEXT_FIELDS = ("execution_id", "flow_id", "step_id", "attempt", "tenant_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
# The loggers uvicorn gives handlers of its own: in JSON, their lines go through ours instead.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    *CONTEXT_FIELDS,
}


class StepContextFilter(logging.Filter):
    """Copies the step attempt running in this context onto the record (a value given with
    `extra=` is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = current_step()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, getattr(bound, name) if bound is not None else None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `timestamp` (UTC, ISO 8601), `level`, `logger`, `message`,
    `process`, the step attempt's fields when inside one, any `extra=` fields, and
    `exception` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def step_suffix(record: logging.LogRecord) -> str:
    """` [execution_id=... step_id=... attempt=...]` for a record logged inside a step."""
    shown = [
        f"{name}={getattr(record, name)}"
        for name in ("execution_id", "step_id", "attempt", "tenant_id")
        if getattr(record, name, None) is not None
    ]
    return f" [{' '.join(shown)}]" if shown else ""


class TextFormatter(logging.Formatter):
    """A plain line, with the step attempt appended when inside one."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__(TEXT_FORMAT)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record) if self.inner is not None else super().format(record)
        suffix = step_suffix(record)
        if not suffix:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first}{suffix}{newline}{rest}"


class FlowMonkeyHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs (found and replaced if it runs again)."""


def level_of(settings: Settings, celery_level: int | str | None = None) -> int:
    """FLOWMONKEY_LOG_LEVEL if set; else INFO, or Celery's `-l` if that is more verbose."""
    if settings.log_level is not None:
        return logging.getLevelNamesMapping()[settings.log_level]
    level = logging.INFO
    if isinstance(celery_level, str):
        celery_level = logging.getLevelNamesMapping().get(celery_level.upper())
    if celery_level:
        level = min(level, celery_level)
    return level


def configure_logging(
    settings: Settings, *, celery_level: int | str | None = None, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger's records to `stream` (stderr) in FLOWMONKEY_LOG_FORMAT, at
    FLOWMONKEY_LOG_LEVEL (see `level_of`), with the step attempt on each. A handler this
    installed before is replaced; other handlers stay. In JSON, uvicorn's loggers are routed
    through it too. Returns the handler."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, FlowMonkeyHandler):
            root.removeHandler(existing)
    handler = FlowMonkeyHandler(stream or sys.stderr)
    handler.addFilter(StepContextFilter())
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level_of(settings, celery_level))
    if settings.log_format == "json":
        for name in UVICORN_LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
    return handler


_celery_settings: list[Settings] = []


def log_celery_through_flowmonkey(settings: Settings) -> None:
    """In a Celery worker or beat built with `settings`: JSON replaces Celery's logging setup
    (so its own lines are JSON as well); text keeps Celery's handlers and adds the step attempt
    to their lines. Connected once per process; the latest settings apply."""
    from celery import signals

    _celery_settings[:] = [settings]
    if settings.log_format == "json":
        signals.setup_logging.connect(_take_over, weak=False, dispatch_uid="flowmonkey.logs")
    else:
        signals.setup_logging.disconnect(dispatch_uid="flowmonkey.logs")
    for signal in (signals.after_setup_logger, signals.after_setup_task_logger):
        signal.connect(_add_step_context, weak=False, dispatch_uid="flowmonkey.logs.text")


def _take_over(loglevel: int | str | None = None, **_: Any) -> None:
    if _celery_settings:
        configure_logging(_celery_settings[0], celery_level=loglevel)


def _add_step_context(
    logger: logging.Logger | None = None, loglevel: int | str | None = None, **_: Any
) -> None:
    if logger is None or not _celery_settings:
        return
    settings = _celery_settings[0]
    for handler in logger.handlers:
        if not any(isinstance(f, StepContextFilter) for f in handler.filters):
            handler.addFilter(StepContextFilter())
            handler.setFormatter(TextFormatter(handler.formatter or logging.Formatter()))
    if logger is logging.getLogger():
        logger.setLevel(level_of(settings, loglevel))
