"""What a handler says about itself: its type, description, whether it is stateful, and the
JSON Schema its steps' `config` must match (checked when a flow is registered).

A handler describes itself with a `metadata` dict (FlowMonkey's shape):

    metadata = {"type": "http", "name": "HTTP request", "description": "...",
                "category": "integration", "stateful": False,
                "config_schema": {"type": "object", "required": ["url"], ...}}

JSON Schema validation is pure computation (the `jsonschema` library, no I/O), so it lives
with the rest of the domain rules.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from flowmonkey_celery.core.flow import Flow, Step
from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError

Issue = tuple[str, str]


@dataclass(frozen=True)
class HandlerInfo:
    """A handler's description, as `flowmonkey handlers` lists it."""

    type: str
    name: str | None = None
    description: str | None = None
    category: str | None = None
    stateful: bool = False
    config_schema: dict[str, Any] | None = None

    @classmethod
    def of(cls, handler: Any) -> HandlerInfo:
        """Read a handler's `metadata` (missing keys take their defaults)."""
        metadata = getattr(handler, "metadata", None)
        meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
        schema = meta.get("config_schema", meta.get("configSchema"))
        return cls(
            type=str(handler.type),
            name=meta.get("name"),
            description=meta.get("description"),
            category=meta.get("category"),
            stateful=bool(meta.get("stateful", False)),
            config_schema=dict(schema) if isinstance(schema, Mapping) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "stateful": self.stateful,
            "config_schema": self.config_schema,
        }


def check_input_schema(schema: dict[str, Any]) -> None:
    """Refuse a JSON Schema that is not valid (an HTTP trigger's input_schema, say).

    Raises:
        FlowMonkeyError: INVALID_ARGUMENT naming what is wrong with it.
    """
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(map(str, exc.absolute_path)) or "<schema>"
        raise FlowMonkeyError(
            f"input_schema is not a valid JSON Schema at {where}: {exc.message}",
            ErrorCode.INVALID_ARGUMENT,
        ) from None


def input_issues(schema: dict[str, Any], value: Any) -> list[Issue]:
    """Every place `value` breaks `schema`, as `(path, message)` (path "" for the top),
    in a flow author's words (see `describe_schema_error`)."""
    validator = Draft202012Validator(schema)
    issues: list[Issue] = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path))):
        error = _most_relevant(error)
        issues.append((".".join(map(str, error.absolute_path)), describe_schema_error(error)))
    return issues


def config_validator(info: HandlerInfo) -> Draft202012Validator | None:
    """A validator for the handler's config schema (None if it declares none).

    Raises:
        FlowMonkeyError: INVALID_ARGUMENT if the schema itself is not valid JSON Schema.
    """
    if info.config_schema is None:
        return None
    try:
        Draft202012Validator.check_schema(info.config_schema)
    except SchemaError as exc:
        raise FlowMonkeyError(
            f"handler {info.type!r} declares an invalid config_schema: {exc.message}",
            ErrorCode.INVALID_ARGUMENT,
            {"type": info.type},
        ) from None
    return Draft202012Validator(info.config_schema)


def step_config_issues(
    flow: Flow | Iterable[Step],
    validators: Mapping[str, Draft202012Validator | None],
    handlers: Mapping[str, Any] | None = None,
) -> list[Issue]:
    """Every place a step's config breaks its handler's schema, as `(path, message)` with
    paths like `steps.fetch.config.timeout`. Steps whose type has no validator are skipped.

    A handler may also check what a schema cannot (a JMESPath expression that does not
    parse, say) with a `config_issues(config) -> [(path, message)]` method, paths relative to
    the config; it is only asked about a config its schema accepts."""
    issues: list[Issue] = []
    steps = flow.steps.values() if isinstance(flow, Flow) else flow
    for step in steps:
        validator = validators.get(step.type)
        schema_errors = (
            sorted(validator.iter_errors(step.config), key=lambda e: list(map(str, e.path)))
            if validator is not None
            else []
        )
        for error in schema_errors:
            error = _most_relevant(error)
            path = ".".join(["steps", step.id, "config", *map(str, error.absolute_path)])
            issues.append((path, f"{describe_schema_error(error)} (step type {step.type!r})"))
        check = getattr((handlers or {}).get(step.type), "config_issues", None)
        if schema_errors or not callable(check):
            continue
        for where, message in check(step.config):
            path = ".".join(part for part in ("steps", step.id, "config", where) if part)
            issues.append((path, f"{message} (step type {step.type!r})"))
    return issues


_TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _most_relevant(error: ValidationError) -> ValidationError:
    """For "matches none of oneOf/anyOf", the alternative's error that says most (jsonschema's
    `best_match`): "'url' is required" rather than "not valid under any of the given schemas"."""
    while error.validator in ("oneOf", "anyOf") and error.context:
        # An alternative of another type altogether says least ("must be a number" about an
        # object): look at those of the value's own type first.
        depth = len(error.absolute_path)
        wrong_type = {
            e.relative_schema_path[0]
            for e in error.context
            if e.validator == "type" and len(e.absolute_path) == depth
        }
        closer = [e for e in error.context if e.relative_schema_path[0] not in wrong_type]
        error = best_match(closer or error.context)
    return error


def describe_schema_error(error: ValidationError) -> str:
    """jsonschema's message in a flow author's words, with a suggestion for a misspelt key."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = list((schema.get("properties") or {}).keys())
        unknown = [key for key in error.instance if key not in known]
        described = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            described.append(f"{key!r}{hint}")
        allowed = f"; allowed: {', '.join(known)}" if known else ""
        noun = "key" if len(unknown) == 1 else "keys"
        return f"unknown {noun} {', '.join(described)}{allowed}"
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        return f"missing required key {missing!r}"
    if error.validator == "type":
        wanted = error.validator_value
        names = [wanted] if isinstance(wanted, str) else list(wanted)  # type: ignore[arg-type]
        expected = " or ".join(_TYPE_NAMES.get(name, name) for name in names)
        return f"must be {expected}, not {_shown(error.instance)}"
    if error.validator == "enum":
        choices = list(error.validator_value)  # type: ignore[arg-type]
        close = difflib.get_close_matches(str(error.instance), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{_shown(error.instance)} is not one of {choices}{hint}"
    return str(error.message)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
