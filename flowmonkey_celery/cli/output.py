"""Terminal output for every command: rich consoles, JSON on stdout, errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console


def console() -> Console:
    """A console that never hard-wraps plain lines (so logs and pipes can be grepped), and
    gives piped output (CI logs, files) a fixed width instead of rich's 80-column fallback."""
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)


def error_console() -> Console:
    """The same on stderr: errors and notes, kept off stdout so `--json` output stays clean."""
    return Console(
        stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 120
    )


def print_json(data: Any) -> None:
    """`data` as indented JSON on stdout, and nothing else (what `--json` prints)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def report_error(code: str, message: str) -> None:
    """One error line on stderr: `CODE: message`, the engine's code first, so scripts can grep
    for it."""
    error_console().print(f"{code}: {message}", style="red", markup=False)


def note(message: str) -> None:
    """A remark for the person at the terminal, on stderr (stdout may be parsed)."""
    error_console().print(message, style="dim", markup=False)
