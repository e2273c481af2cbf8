"""Terminal output for every command."""

from __future__ import annotations

import sys

from rich.console import Console


def console() -> Console:
    """A console that never hard-wraps plain lines (so logs and pipes can be grepped), and
    gives piped output (CI logs, files) a fixed width instead of rich's 80-column fallback."""
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
