"""`flowmonkey worker` and `flowmonkey beat`: `celery worker` and `celery beat` on flowmonkey's
apps, configured from the FLOWMONKEY_* variables."""

from __future__ import annotations

import os
import sys

import typer

from flowmonkey_celery.cli.wiring import load_settings

CELERY_APPS = "flowmonkey_celery.cli.celery_apps"

# Everything after the command name goes to Celery untouched, `--help` included.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def celery_argv(app: str, subcommand: str, args: list[str]) -> list[str]:
    """The command line `flowmonkey <subcommand>` replaces itself with."""
    return [sys.executable, "-m", "celery", "-A", f"{CELERY_APPS}:{app}", subcommand, *args]


def _exec_celery(app: str, subcommand: str, args: list[str]) -> None:
    # A bad FLOWMONKEY_* value is reported here, as `CODE: message`, not as Celery's traceback
    # of a failed app import; the app itself is built by Celery, in the exec'd process.
    load_settings()
    argv = celery_argv(app, subcommand, args)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child process: signals (TERM for a warm shutdown, QUIT, INT) and the exit
    # status are Celery's own, exactly as with `celery -A workers.app worker`.
    os.execv(argv[0], argv)


def worker(ctx: typer.Context) -> None:
    """Run a Celery worker: `celery -A workers.app worker`, no source checkout needed.

    Every argument goes to `celery worker` (`-c 8`, `-Q payments`, `-l info`...;
    `flowmonkey worker --help` shows Celery's list).
    """
    _exec_celery("worker", "worker", list(ctx.args))


def beat(ctx: typer.Context) -> None:
    """Run Celery beat with flowmonkey's tick: `celery -A beat.app beat`, no checkout needed.

    The tick wakes due executions, enforces timeouts, re-sends stalled ones and fires cron
    triggers. Every argument goes to `celery beat` (`flowmonkey beat --help` shows them).
    """
    _exec_celery("beat", "beat", list(ctx.args))
