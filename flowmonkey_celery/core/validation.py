"""Flow validation that reports every problem with its path, not just the first."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from flowmonkey_celery.core.child_steps import PARALLEL, parallel_config_issues
from flowmonkey_celery.core.flow import SELECTOR_MODELS, SELECTOR_TYPES, Flow, Step
from flowmonkey_celery.core.paths import split_path
from flowmonkey_celery.core.routing import CONDITIONAL, SWITCH, routing_config_issues
from flowmonkey_celery.core.triggers import TRIGGER_MODELS, TRIGGER_TYPES
from flowmonkey_celery.core.versions import parse_version
from flowmonkey_celery.errors import FlowValidationError

Issue = tuple[str, str]
# Checks each valid step's config against its handler's schema (HandlerRegistry's).
ConfigCheck = Callable[[Iterable[Step]], list[Issue]]


def build_flow(data: Any, config_issues: ConfigCheck | None = None) -> Flow:
    """Validate `data` (camelCase or snake_case) and return the Flow. With `config_issues`
    (`HandlerRegistry.step_config_issues`), step configs are checked against their handlers'
    schemas in the same pass, so one report holds every problem.

    Raises:
        FlowValidationError: lists every `(path, message)` problem found.
    """
    if isinstance(data, Flow):
        # exclude_unset keeps "on_resume not given" distinct from "on_resume: null".
        data = data.model_dump(mode="python", exclude_unset=True)
    if not isinstance(data, Mapping):
        raise FlowValidationError(
            f"a flow must be an object with id, initialStepId and steps, not {type(data).__name__}",
            [("", "not an object")],
        )
    issues: list[Issue] = []
    flow_label = data.get("id") if isinstance(data.get("id"), str) else "<unnamed>"

    raw_steps = data.get("steps")
    step_data, step_issues = _normalise_steps(raw_steps)
    issues += step_issues

    steps: dict[str, Step] = {}
    for key, raw in step_data.items():
        try:
            steps[key] = Step.model_validate(raw)
        except ValidationError as exc:
            issues += _pydantic_issues(exc, f"steps.{key}", Step)
    if config_issues is not None:
        issues += config_issues(steps.values())

    header = {k: v for k, v in data.items() if k != "steps"}
    flow: Flow | None = None
    try:
        flow = Flow.model_validate({**header, "steps": {}})
    except ValidationError as exc:
        issues += _pydantic_issues(exc, "", Flow)

    issues += _graph_issues(data, step_data)
    issues += _trigger_issues(data.get("triggers"), data.get("id"))
    if flow is not None and parse_version(flow.version) is None:
        issues.append(("version", f"{flow.version!r} is not a version like 1.0.0"))

    if issues:
        count = f"{len(issues)} problem{'s' if len(issues) != 1 else ''}"
        raise FlowValidationError(f"flow {flow_label!r} is invalid ({count})", issues)
    assert flow is not None
    return flow.model_copy(update={"steps": steps})


def _normalise_steps(raw_steps: Any) -> tuple[dict[str, Any], list[Issue]]:
    """Steps keyed by id. A list of steps (each with an id) is accepted for YAML's sake."""
    issues: list[Issue] = []
    if raw_steps is None:
        return {}, [("steps", "a flow needs at least one step")]
    if isinstance(raw_steps, list):
        keyed: dict[str, Any] = {}
        for index, raw in enumerate(raw_steps):
            step_id = raw.get("id") if isinstance(raw, Mapping) else None
            if not isinstance(step_id, str) or not step_id:
                issues.append((f"steps.{index}.id", "a step in a list needs an id"))
            elif step_id in keyed:
                issues.append((f"steps.{index}.id", f"duplicate step id {step_id!r}"))
            else:
                keyed[step_id] = raw
        raw_steps = keyed
    if not isinstance(raw_steps, Mapping):
        return {}, [
            ("steps", f"must be an object of step id: step, not {type(raw_steps).__name__}")
        ]
    if not raw_steps and not issues:
        issues.append(("steps", "a flow needs at least one step"))
    normalised: dict[str, Any] = {}
    for key, raw in raw_steps.items():
        if isinstance(raw, Mapping) and "id" not in raw:
            raw = {**raw, "id": key}  # the key names the step; repeating it is optional
        normalised[str(key)] = raw
    return normalised, issues


def _graph_issues(data: Mapping[str, Any], step_data: Mapping[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    step_ids = set(step_data)
    listing = ", ".join(sorted(step_ids)) or "none"
    initial = data.get("initial_step_id", data.get("initialStepId"))
    if isinstance(initial, str) and step_ids and initial not in step_ids:
        issues.append(
            ("initial_step_id", f"{initial!r} is not a step of this flow (steps: {listing})")
        )

    for key, raw in step_data.items():
        if not isinstance(raw, Mapping):
            continue  # pydantic already reported it
        where = f"steps.{key}"
        if raw.get("id") != key:
            issues.append(
                (f"{where}.id", f"step id {raw.get('id')!r} differs from its key {key!r}")
            )
        transitions = raw.get("transitions")
        if isinstance(transitions, Mapping):
            for name in ("on_success", "on_failure", "on_resume", "on_timeout"):
                target = transitions.get(name, transitions.get(to_camel(name)))
                if target is not None and target not in step_ids:
                    issues.append(
                        (
                            f"{where}.transitions.{name}",
                            f"{target!r} is not a step of this flow (steps: {listing})",
                        )
                    )

        output_key = raw.get("output_key", raw.get("outputKey"))
        if isinstance(output_key, str):
            try:
                split_path(output_key)
            except ValueError as exc:
                issues.append((f"{where}.output_key", str(exc)))
        step_type, config = raw.get("type"), raw.get("config", {})
        if step_type in (CONDITIONAL, SWITCH) and isinstance(config, Mapping):
            issues += routing_config_issues(step_type, config, f"{where}.config", step_ids)
        if step_type == PARALLEL and isinstance(config, Mapping):
            issues += parallel_config_issues(config, f"{where}.config", step_ids)
    return issues


def _trigger_issues(raw_triggers: Any, flow_id: Any) -> list[Issue]:
    """Problems with the flow's own triggers (a list; pydantic reports a non-list or a
    non-object entry). Cron syntax is checked where croniter lives, when triggers are saved."""
    if not isinstance(raw_triggers, list):
        return []
    issues: list[Issue] = []
    seen: set[str] = set()
    expected = ", ".join(TRIGGER_TYPES)
    for index, raw in enumerate(raw_triggers):
        where = f"triggers.{index}"
        if not isinstance(raw, Mapping):
            continue
        kind = raw.get("type")
        if kind is None:
            issues.append((f"{where}.type", f"a trigger needs a type: one of {expected}"))
            continue
        if kind not in TRIGGER_TYPES:
            issues.append((f"{where}.type", f"unknown trigger type {kind!r}; expected {expected}"))
            continue
        given = raw.get("flow_id", raw.get("flowId"))
        if given is not None and given != flow_id:
            issues.append(
                (
                    f"{where}.flow_id",
                    f"a flow's trigger starts that flow ({flow_id!r}), not {given!r}; "
                    "leave flowId out",
                )
            )
        data = {k: v for k, v in raw.items() if k not in ("flow_id", "flowId")}
        data["flow_id"] = flow_id if isinstance(flow_id, str) and flow_id else "?"  # reported
        model = TRIGGER_MODELS[kind]
        try:
            trigger = model.model_validate(data)
        except ValidationError as exc:
            issues += _pydantic_issues(exc, where, model)
            continue
        if trigger.id in seen:
            issues.append((f"{where}.id", f"duplicate trigger id {trigger.id!r}"))
        seen.add(trigger.id)
    return issues


def _pydantic_issues(exc: ValidationError, prefix: str, model: type[BaseModel]) -> list[Issue]:
    issues: list[Issue] = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        # A discriminated union puts the tag in the location: input.key.key -> input.key
        owner = model
        if len(loc) > 1 and loc[0] == "input" and loc[1] in SELECTOR_TYPES:
            owner = SELECTOR_MODELS[loc[1]]
            loc = loc[2:]  # suggestions come from the selector the user chose
            path = ".".join(part for part in [prefix, "input", *loc] if part)
        else:
            path = ".".join(part for part in [prefix, *loc] if part)
        issues.append((path, _message(error, owner, loc)))
    return issues


def _message(error: Any, model: type[BaseModel], loc: list[str]) -> str:
    kind = error["type"]
    if kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        return f"unknown selector type {tag!r}; expected one of {', '.join(SELECTOR_TYPES)}"
    if kind == "union_tag_not_found":
        return f"an input selector needs a type: one of {', '.join(SELECTOR_TYPES)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_type" and loc == ["version"]:
        return (
            f'must be a string like "1.0.0", not {error.get("input")!r}; quote it in YAML '
            '(version: "1.10"), or 1.10 is read as the number 1.1'
        )
    if kind == "extra_forbidden":
        suggestion = _did_you_mean(loc[-1] if loc else "", model, loc)
        return "unknown field" + (f" (did you mean {suggestion!r}?)" if suggestion else "")
    return str(error["msg"])


def _did_you_mean(name: str, model: type[BaseModel], loc: list[str]) -> str | None:
    owner: type[BaseModel] = model
    for part in loc[:-1]:  # walk into nested models (e.g. transitions, retry)
        field = owner.model_fields.get(part)
        annotation = getattr(field, "annotation", None) if field else None
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not None]
        nested = next(
            (a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if nested is None:
            break
        owner = nested
    known = [*owner.model_fields, *(to_camel(f) for f in owner.model_fields)]
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return match[0] if match else None
