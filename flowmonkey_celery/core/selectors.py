"""Resolving a step's input from the execution context."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from flowmonkey_celery.core.flow import (
    FullSelector,
    InputSelector,
    KeySelector,
    KeysSelector,
    PathSelector,
    StaticSelector,
    TemplateSelector,
)
from flowmonkey_celery.core.json_values import copy_json
from flowmonkey_celery.core.paths import MISSING, get_path

_PLACEHOLDER = re.compile(r"\$\{\s*([^}]*?)\s*\}")


def resolve_input(selector: InputSelector, context: dict[str, Any]) -> Any:
    """The handler input selected from `context`. Always a copy: handlers cannot alter context.

    Raises:
        ValueError: a template placeholder holds an invalid path (e.g. `${}`).
    """
    if isinstance(selector, KeySelector):
        return copy_json(context.get(selector.key))
    if isinstance(selector, KeysSelector):
        return {k: copy_json(context[k]) for k in selector.keys if k in context}
    if isinstance(selector, PathSelector):
        value = get_path(context, selector.path)
        return None if value is MISSING else copy_json(value)
    if isinstance(selector, TemplateSelector):
        return render_template(selector.template, context)
    if isinstance(selector, FullSelector):
        return copy_json(context)
    if isinstance(selector, StaticSelector):
        return copy_json(selector.value)
    raise ValueError(f"unknown selector {selector!r}")


def render_template(template: Any, context: dict[str, Any]) -> Any:
    """Interpolate `${dot.path}` in every string of a JSON-like template.

    A string that is exactly one placeholder keeps the value's type (a number stays a number,
    an object stays an object; missing gives None). Inside a longer string a missing or null
    value renders as "", a string as itself, anything else as JSON.
    """
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            value = _lookup(context, whole.group(1))
            return None if value is MISSING else copy_json(value)
        return _PLACEHOLDER.sub(lambda m: _as_text(_lookup(context, m.group(1))), template)
    if isinstance(template, dict):
        return {key: render_template(value, context) for key, value in template.items()}
    if isinstance(template, list):
        return [render_template(item, context) for item in template]
    return copy_json(template)


def _lookup(context: dict[str, Any], path: str) -> Any:
    if not path:
        raise ValueError("template placeholder ${} names no path")
    return get_path(context, path)


def _as_text(value: Any) -> str:
    if value is MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


def template_context(step_input: Any) -> dict[str, Any]:
    """What a step's `${path}` templates are filled from: its input if that is an object,
    else `{"input": <value>}` (a copy either way)."""
    return dict(step_input) if isinstance(step_input, Mapping) else {"input": step_input}
