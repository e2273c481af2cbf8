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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from flowmonkey_celery.core.flow import Flow
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
    flow: Flow,
    validators: Mapping[str, Draft202012Validator | None],
    handlers: Mapping[str, Any] | None = None,
) -> list[Issue]:
    """Every place a step's config breaks its handler's schema, as `(path, message)` with
    paths like `steps.fetch.config.timeout`. Steps whose type has no validator are skipped.

    A handler may also check what a schema cannot (a JMESPath expression that does not
    parse, say) with a `config_issues(config) -> [(path, message)]` method, paths relative to
    the config; it is only asked about a config its schema accepts."""
    issues: list[Issue] = []
    for step in flow.steps.values():
        validator = validators.get(step.type)
        schema_errors = (
            sorted(validator.iter_errors(step.config), key=lambda e: list(map(str, e.path)))
            if validator is not None
            else []
        )
        for error in schema_errors:
            path = ".".join(["steps", step.id, "config", *map(str, error.absolute_path)])
            issues.append((path, f"{error.message} (step type {step.type!r})"))
        check = getattr((handlers or {}).get(step.type), "config_issues", None)
        if schema_errors or not callable(check):
            continue
        for where, message in check(step.config):
            path = ".".join(part for part in ("steps", step.id, "config", where) if part)
            issues.append((path, f"{message} (step type {step.type!r})"))
    return issues
