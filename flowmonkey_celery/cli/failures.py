"""How a command ends: exit codes, and engine errors reported as `CODE: message`."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import typer
from sqlalchemy.exc import ArgumentError
from typer.core import TyperGroup

from flowmonkey_celery.cli.output import report_error
from flowmonkey_celery.core.execution import Execution, ExecutionStatus
from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError


class ExitCode(IntEnum):
    """What `flowmonkey` exits with (README, "Command line")."""

    OK = 0
    FAILED = 1  # an engine error, an invalid flow file, a flow that failed or was cancelled
    USAGE = 2  # an unknown command or option, a missing argument, a value that does not parse
    WAITING = 3  # `run`: the execution is not finished (waiting, or still going at --timeout)


def exit_code_for(execution: Execution) -> ExitCode:
    """0 for a completed execution, 1 for a failed or cancelled one, 3 for any other."""
    if execution.status is ExecutionStatus.COMPLETED:
        return ExitCode.OK
    if execution.is_terminal:
        return ExitCode.FAILED
    return ExitCode.WAITING


def fail(code: ErrorCode | str, message: str) -> typer.Exit:
    """Report `CODE: message` on stderr; returns the exit (1) for the caller to raise."""
    report_error(str(code), message)
    return typer.Exit(ExitCode.FAILED)


class FlowMonkeyGroup(TyperGroup):
    """The root command group. Every engine error a command lets through (an unknown
    execution, a flow that is not registered, an outdated schema, a database that cannot be
    reached...) ends the command here with `CODE: message` on stderr and exit code 1, the same
    way for every command and sub-app, present and future."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except FlowMonkeyError as exc:
            raise fail(exc.code, exc.message) from None
        except ArgumentError as exc:  # SQLAlchemy: a database URL it cannot parse
            raise fail(ErrorCode.INVALID_ARGUMENT, f"database URL: {exc}") from None
