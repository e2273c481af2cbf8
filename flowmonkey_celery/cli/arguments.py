"""What operators type: JSON values (inline or `@file`), durations such as `30d` or `1h30m`."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print JSON on stdout (and nothing else there).")
]

FlowArgument = Annotated[
    str,
    typer.Argument(
        metavar="FLOW", help="The flow's id (stored, or in FLOWMONKEY_FLOWS).", show_default=False
    ),
]
ExecutionArgument = Annotated[
    str, typer.Argument(metavar="ID", help="The execution's id.", show_default=False)
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_json(text: str | None, option: str) -> Any:
    """The JSON value of an option (`@path` reads it from a file); None if not given.

    Raises:
        typer.BadParameter: not valid JSON, or an unreadable file (a usage error, exit 2).
    """
    if text is None:
        return None
    source = text
    if text.startswith("@"):
        try:
            source = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {text[1:]}: {exc.strerror}", param_hint=option
            ) from None
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            """quote it for the shell, e.g. '{"order": {"id": 1}}', or pass @file.json""",
            param_hint=option,
        ) from None


def parse_duration(text: str, option: str) -> timedelta:
    """`30d`, `12h`, `1h30m`, `90s`, `2w`: one or more number-and-unit parts, summed.

    Raises:
        typer.BadParameter: anything else, or a duration of zero.
    """
    cleaned = text.strip().lower()
    parts = _DURATION_PART.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise typer.BadParameter(
            f"{text!r} is not a duration; use a number and a unit (s, m, h, d, w), e.g. 30d, "
            "12h or 1h30m",
            param_hint=option,
        )
    duration = timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))
    if duration <= timedelta(0):
        raise typer.BadParameter("the duration must be more than zero", param_hint=option)
    return duration
