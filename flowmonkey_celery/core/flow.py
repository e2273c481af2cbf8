"""The flow definition model: flows, steps, transitions, retry policies and input selectors.

FlowMonkey's camelCase JSON loads unchanged and snake_case works too. Building a `Flow` from
user data goes through `flowmonkey_celery.core.validation`, which reports every problem at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class FlowModel(BaseModel):
    """Base for definition models: camelCase or snake_case keys, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        loc_by_alias=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """FlowMonkey's camelCase JSON form (round-trips through `Flow.from_dict`).

        Only fields that were given are written, so an explicit `onResume: null` stays
        distinct from an absent one.
        """
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


# --- input selectors -------------------------------------------------------------------------


class KeySelector(FlowModel):
    """One top-level key of the context (`None` when missing)."""

    type: Literal["key"] = "key"
    key: str = Field(min_length=1)


class KeysSelector(FlowModel):
    """Several top-level keys, as an object; missing keys are left out."""

    type: Literal["keys"] = "keys"
    keys: list[str]


class PathSelector(FlowModel):
    """A dot path into the context, e.g. `user.address.city` (`None` when missing)."""

    type: Literal["path"] = "path"
    path: str = Field(min_length=1)


class TemplateSelector(FlowModel):
    """A JSON-like template whose strings interpolate `${dot.path}` from the context."""

    type: Literal["template"] = "template"
    template: Any


class FullSelector(FlowModel):
    """The whole context (a copy)."""

    type: Literal["full"] = "full"


class StaticSelector(FlowModel):
    """A fixed value from the flow definition."""

    type: Literal["static"] = "static"
    value: Any = None


InputSelector = Annotated[
    KeySelector | KeysSelector | PathSelector | TemplateSelector | FullSelector | StaticSelector,
    Field(discriminator="type"),
]
SELECTOR_MODELS: dict[str, type[FlowModel]] = {
    "key": KeySelector,
    "keys": KeysSelector,
    "path": PathSelector,
    "template": TemplateSelector,
    "full": FullSelector,
    "static": StaticSelector,
}
SELECTOR_TYPES = tuple(SELECTOR_MODELS)


# --- step parts ------------------------------------------------------------------------------


class Transitions(FlowModel):
    """Where to go after a step. `None` ends the flow: completed on success, failed on failure.

    `on_resume` applies when a waiting step is resumed or its timer fires; when it is not
    given at all, `on_success` applies. `on_timeout` applies when the step's wait outlives
    its `wait_timeout_ms`; when it is not given, the timeout is a failure (WAIT_TIMEOUT)
    that goes through the step's retry policy and `on_failure`.
    """

    on_success: str | None = None
    on_failure: str | None = None
    on_resume: str | None = None
    on_timeout: str | None = None

    def resume_target(self) -> str | None:
        """The step after a wait: `on_resume` if it was given (even as null), else `on_success`."""
        if "on_resume" in self.model_fields_set:
            return self.on_resume
        return self.on_success

    @property
    def has_timeout_target(self) -> bool:
        """Whether `on_timeout` was given (an explicit null completes the flow on timeout)."""
        return "on_timeout" in self.model_fields_set


class RetryPolicy(FlowModel):
    """How a failing step is retried.

    `max_attempts` counts retries after the first call (FlowMonkey's meaning): 3 means up to
    four calls. The n-th retry waits `backoff_ms * backoff_multiplier**(n-1)`, capped at
    `max_backoff_ms`; `jitter` (True = 0.5, or a fraction 0..1) shortens each wait by up to
    that fraction at random, so retries of many executions spread out. `retry_on` limits
    retries to those error codes (empty or absent: any code).
    """

    max_attempts: int = Field(default=3, ge=0)
    backoff_ms: int = Field(default=1000, ge=0)
    backoff_multiplier: float = Field(default=2.0, ge=1.0)
    max_backoff_ms: int | None = Field(default=None, ge=0)
    retry_on: list[str] | None = None
    jitter: bool | float = False

    def jitter_fraction(self) -> float:
        if isinstance(self.jitter, bool):
            return 0.5 if self.jitter else 0.0
        return min(max(float(self.jitter), 0.0), 1.0)

    def retries_code(self, code: str) -> bool:
        return not self.retry_on or code in self.retry_on


class Step(FlowModel):
    """One step of a flow: which handler runs, on what input, and where to go next."""

    id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    name: str | None = None
    description: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    input: InputSelector = Field(default_factory=FullSelector)
    output_key: str | None = None
    transitions: Transitions = Field(default_factory=Transitions)
    retry: RetryPolicy | None = None
    timeout_ms: int | None = Field(default=None, gt=0)
    # How long a wait of this step (a signal, a webhook, a Celery task's callback, a timer)
    # may last before `transitions.on_timeout` (or, without it, a WAIT_TIMEOUT failure) runs.
    wait_timeout_ms: int | None = Field(default=None, gt=0)
    queue: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Flow(FlowModel):
    """A workflow definition: steps keyed by id, and the step to start with.

    Build one with `Flow.from_dict()` or `Flow.from_file()`, which validate the whole flow
    and raise `FlowValidationError` listing every problem.
    """

    id: str = Field(min_length=1)
    version: str = "1.0.0"
    name: str | None = None
    description: str | None = None
    initial_step_id: str
    steps: dict[str, Step]
    queue: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Schedule triggers declared with the flow, without flowId (they start this flow); see
    # `flowmonkey_celery.core.triggers.flow_triggers`.
    triggers: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Any) -> Flow:
        """Validate FlowMonkey JSON (camelCase) or snake_case data into a Flow.

        Raises:
            FlowValidationError: code INVALID_FLOW; `.issues` lists every `(path, message)`.
        """
        from flowmonkey_celery.core.validation import build_flow

        return build_flow(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Flow:
        """Load and validate one flow from a `.yaml`, `.yml` or `.json` file.

        Raises:
            FlowValidationError: unreadable file, bad syntax, or an invalid flow.
        """
        from flowmonkey_celery.core.flow_files import load_flow_file

        return load_flow_file(Path(path))

    def step(self, step_id: str) -> Step | None:
        return self.steps.get(step_id)

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.version)
