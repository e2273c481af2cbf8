"""Reading flows from YAML and JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.validation import ConfigCheck, build_flow
from flowmonkey_celery.errors import FlowValidationError

FLOW_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def read_flow_data(path: Path) -> Any:
    """Parse a flow file into plain data; errors name the file (and line, for YAML)."""
    if path.suffix.lower() not in FLOW_FILE_SUFFIXES:
        raise FlowValidationError(
            f"{path}: unsupported flow file type; use .yaml, .yml or .json",
            [(str(path), "bad suffix")],
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowValidationError(
            f"{path}: cannot read flow file: {exc.strerror}", [(str(path), str(exc))]
        ) from exc
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise FlowValidationError(
            f"{path}: not valid {path.suffix[1:].upper()}: {exc}", [(str(path), str(exc))]
        ) from exc


def load_flow_file(path: Path, config_issues: ConfigCheck | None = None) -> Flow:
    """Load and validate one flow file (step configs too, with `config_issues`: see
    `build_flow`); validation messages are prefixed with the file name."""
    data = read_flow_data(path)
    try:
        return build_flow(data, config_issues)
    except FlowValidationError as exc:
        raise FlowValidationError(f"{path}: {exc.message}", exc.issues) from None


def load_flow_folder(folder: Path, config_issues: ConfigCheck | None = None) -> list[Flow]:
    """Every flow file in `folder`, sorted by name; reports the problems of all bad files."""
    if not folder.is_dir():
        raise FlowValidationError(
            f"{folder}: flow folder does not exist", [(str(folder), "not a folder")]
        )
    flows: list[Flow] = []
    issues: list[tuple[str, str]] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in FLOW_FILE_SUFFIXES):
        try:
            flows.append(load_flow_file(path, config_issues))
        except FlowValidationError as exc:
            issues += [
                (f"{path.name}:{p}" if p != str(path) else path.name, m) for p, m in exc.issues
            ]
    if issues:
        raise FlowValidationError(f"{folder}: {len(issues)} problem(s) in flow files", issues)
    return flows
