"""What an example's demo gets to run with, and what it hands back (`flowmonkey demo NAME`).

An example runs its flows on an engine of its own over the given store and tells a
`Presenter` what happens; the command line implements the presenter (per-step progress lines,
a summary table). Examples never print themselves, so they stay free of the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.stores.sql import SqlStore

FLOWS_DIR = Path(__file__).parent / "flows"


class Presenter(Protocol):
    """Where a demo reports what it does (the CLI prints it)."""

    def heading(self, text: str) -> None:
        """A title for the next part of the demo (the CLI prints the demo's own)."""

    def say(self, text: str) -> None:
        """A line of narration (plain text; an empty string is a blank line)."""

    def label(self, execution_id: str, name: str) -> None:
        """Show this execution as `name` (a few characters) in the progress lines."""

    def watch(self, engine: Engine) -> None:
        """Show every committed step of this engine's executions as it happens."""


@dataclass(frozen=True)
class DemoRun:
    """One run of an example's demo.

    Attributes:
        store: the configured store (the embedded SQLite file under `home` by default).
        home: FLOWMONKEY_HOME, where the embedded store and broker live, and where examples
            write their files.
        embedded: True when no database URL is configured (the store is under `home`).
        presenter: where to report progress.
        options: the demo's own options, such as the approval demo's `decide`.
    """

    store: SqlStore
    home: Path
    embedded: bool
    presenter: Presenter
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    """What a demo shows at the end: a table (one row per execution, say) and notes below it."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Example:
    """One runnable example: `flowmonkey demo NAME`."""

    name: str
    description: str
    run: Callable[[DemoRun], Summary]


def short_id(execution_id: str) -> str:
    """The start of an execution id, as the progress lines show it."""
    return execution_id[:8]
