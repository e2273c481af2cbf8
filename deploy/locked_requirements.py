"""Print the part of requirements.lock a production install needs, hashes and markers kept.

requirements.lock pins everything `./dev` installs: the run-time dependencies and the dev tools
(pytest, mypy, playwright...). An image should carry only the first, at exactly the locked
versions: this keeps the lock's entries for the project's dependencies, the chosen extras and
dependency groups, and everything they pull in (the lock's `# via` annotations name who needs
each entry). Standard library only: it runs in the Dockerfile before anything is installed.

    python deploy/locked_requirements.py --extra api --extra otel --group build > runtime.lock
    pip install --require-hashes --no-deps -r runtime.lock
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: `PyYAML`, `pyyaml` and `py_yaml` match."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class LockEntry:
    """One pinned package of the lock: its lines as written, and who needs it."""

    name: str
    lines: list[str] = field(default_factory=list)
    needed_by: set[str] = field(default_factory=set)


def parse_lock(text: str) -> dict[str, LockEntry]:
    """The lock's entries by normalized name, in file order (uv's `pip compile` format)."""
    entries: dict[str, LockEntry] = {}
    current: LockEntry | None = None
    in_via = False
    for line in text.splitlines():
        if match := _NAME.match(line):
            current = entries.setdefault(normalize(match.group()), LockEntry(match.group()))
            current.lines.append(line)
            in_via = False
        elif current is None:
            continue  # the header
        elif line.startswith("    --hash") or (current.lines[-1].endswith("\\") and line.strip()):
            current.lines.append(line)
        elif via := re.match(r"\s*# via\s*(.*)$", line):
            in_via = True
            if via.group(1):
                current.needed_by.add(via.group(1).strip())
        elif in_via and (parent := re.match(r"\s*#\s{2,}(\S.*)$", line)):
            current.needed_by.add(parent.group(1).strip())
        else:
            in_via = False
    return entries


def requirement_names(requirements: Iterable[str]) -> set[str]:
    """Normalized names of PEP 508 requirement strings (`fastapi>=0.110` -> `fastapi`)."""
    names = set()
    for requirement in requirements:
        match = _NAME.match(requirement.strip())
        if match:
            names.add(normalize(match.group()))
    return names


def runtime_entries(
    lock: dict[str, LockEntry],
    pyproject: dict[str, object],
    extras: list[str],
    groups: list[str],
    packages: tuple[str, ...] = (),
) -> list[LockEntry]:
    """The entries an install of the project with `extras` (plus `groups`, and the locked
    `packages` named besides) needs, in lock order.

    Raises:
        SystemExit: an extra or group is not declared, or a requirement is not in the lock.
    """
    project = pyproject["project"]
    assert isinstance(project, dict)
    optional = project.get("optional-dependencies", {})
    declared_groups = pyproject.get("dependency-groups", {})
    assert isinstance(optional, dict) and isinstance(declared_groups, dict)
    roots = requirement_names(project.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            raise SystemExit(
                f"pyproject.toml declares no extra {extra!r} (it has {sorted(optional)})"
            )
        roots |= requirement_names(optional[extra])
    for group in groups:
        if group not in declared_groups:
            raise SystemExit(
                f"pyproject.toml declares no dependency group {group!r} "
                f"(it has {sorted(declared_groups)})"
            )
        roots |= requirement_names(declared_groups[group])
    roots |= requirement_names(packages)
    missing = sorted(roots - lock.keys())
    if missing:
        raise SystemExit(f"requirements.lock has no entry for {', '.join(missing)}: run ./dev lock")
    needs: dict[str, set[str]] = {}  # parent -> the entries it pulls in
    for name, entry in lock.items():
        for parent in entry.needed_by:
            needs.setdefault(normalize(parent.split()[0]), set()).add(name)
    wanted, todo = set(roots), list(roots)
    while todo:
        for child in needs.get(todo.pop(), set()) - wanted:
            wanted.add(child)
            todo.append(child)
    return [entry for name, entry in lock.items() if name in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", nargs="?", type=Path, default=REPO / "requirements.lock")
    parser.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml")
    parser.add_argument("--extra", action="append", default=[], help="an optional-dependencies key")
    parser.add_argument("--group", action="append", default=[], help="a dependency-groups key")
    parser.add_argument("--package", action="append", default=[], help="a locked package besides")
    args = parser.parse_args(argv)
    with args.pyproject.open("rb") as f:
        pyproject = tomllib.load(f)
    lock = parse_lock(args.lock.read_text(encoding="utf-8"))
    entries = runtime_entries(lock, pyproject, args.extra, args.group, tuple(args.package))
    chosen = " ".join(
        [
            *(f"--extra {e}" for e in args.extra),
            *(f"--group {g}" for g in args.group),
            *(f"--package {p}" for p in args.package),
        ]
    )
    print(f"# {args.lock.name}, only what the project needs at run time ({chosen or 'no extras'})")
    for entry in entries:
        print("\n".join(entry.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
