"""The built-in `llm` step: one chat completion from an OpenAI-compatible API.

The API key never sits in the flow: a step names the environment variable that holds it
(`api_key_env`), read when the call is made. The request goes through the `http` step's
`HttpClient`, so the same host rules, redirect checks and size limit apply.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from typing import Any

import requests

from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.selectors import render_template, template_context
from flowmonkey_celery.errors import ErrorCode
from flowmonkey_celery.handlers.http import (
    HostRules,
    HttpClient,
    HttpRequest,
    RequestFailed,
    Resolver,
    status_failure,
    system_resolver,
)

LLM = "llm"
LLM_ERROR = ErrorCode.LLM_ERROR.value
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
_SHOWN_CHARS = 2000
# Only variables named like an API key: a flow must not be able to send any secret of the
# worker (FLOWMONKEY_DATABASE_URL, cloud credentials) as a bearer token to a host it chooses.
_ENV_NAME = r"^(?!FLOWMONKEY_)[A-Za-z_][A-Za-z0-9_]*_(API_KEY|KEY|TOKEN)$"
# A model asked for JSON often wraps it in a Markdown code fence anyway.
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*?)\n?```$", re.DOTALL | re.IGNORECASE)
_NO_KEY = (
    "the API key never lives in the flow: set api_key_env to the name of the environment "
    "variable that holds it (default OPENAI_API_KEY)"
)


class LlmHandler:
    """`llm` steps: send `prompt` (one user message) or `messages` (`{role, content}`), after
    an optional `system` message, to `model`, and return the answer. `prompt`, `system` and
    every message's content are `${path}` templates over the step's input.

    Output: `{"content", "model", "finish_reason", "usage"}`; with `response_format: json`
    the content is the answer parsed as JSON.

    Failures: HTTP_<status> for an API answer that is not 2xx (5xx and 429 left to the retry
    policy, honouring Retry-After); HTTP_ERROR when the API cannot be reached or is refused
    by the host rules; LLM_ERROR when the key's environment variable is not set (nothing is
    sent; left to the retry policy, like the `email` step's missing password, so a step can
    still succeed once the key is deployed), or the answer is not a chat completion (or not
    JSON when JSON was asked for).

    Args:
        base_url: the API's base URL, for steps that give none (default OpenAI's).
        allowed_hosts: the hosts steps may call (see `HttpHandler`).
        allow_private_addresses: allow private and loopback addresses (a local model server).
        session: the requests session to use.
        environ: where `api_key_env` is looked up; defaults to `os.environ`.
        resolver: how host names become addresses (see `HostRules`).
    """

    type = LLM
    metadata: dict[str, Any] = {
        "type": LLM,
        "name": "LLM chat completion",
        "description": "Ask an OpenAI-compatible chat model",
        "category": "ai",
        "stateful": False,
        "config_schema": {
            "type": "object",
            "required": ["model"],
            "properties": {
                "model": {"type": "string", "minLength": 1},
                "prompt": {"type": "string", "minLength": 1},
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "role": {"enum": ["system", "developer", "user", "assistant"]},
                            "content": {"type": "string"},
                        },
                        "additionalProperties": False,
                    },
                },
                "system": {"type": "string"},
                "base_url": {"type": "string", "pattern": "^https?://"},
                "api_key_env": {"type": "string", "pattern": _ENV_NAME},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "max_tokens": {"type": "integer", "minimum": 1},
                "response_format": {"enum": ["text", "json"]},
                "timeout_ms": {"type": "number", "exclusiveMinimum": 0},
            },
            # The key itself is refused by name; jsonschema's message quotes this schema (so
            # the reason is shown) and not the value (so the key is not copied into errors).
            "propertyNames": {"not": {"enum": ["api_key", "apiKey"], "description": _NO_KEY}},
            "additionalProperties": False,
        },
    }

    def __init__(
        self,
        base_url: str | None = None,
        allowed_hosts: Collection[str] | None = None,
        allow_private_addresses: bool = False,
        session: requests.Session | None = None,
        environ: Mapping[str, str] | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.base_url = base_url or DEFAULT_BASE_URL
        self.client = HttpClient(
            HostRules(allowed_hosts, allow_private_addresses, resolver), session
        )
        self.environ = environ

    def __repr__(self) -> str:
        return f"<LlmHandler {self.base_url}>"

    @staticmethod
    def config_issues(config: Mapping[str, Any]) -> list[tuple[str, str]]:
        """What the schema cannot say clearly: exactly one of `prompt` and `messages`."""
        given = [name for name in ("prompt", "messages") if name in config]
        if len(given) == 1:
            return []
        if given:
            return [("", "give `prompt` or `messages`, not both")]
        return [("", "give `prompt` (one user message) or `messages` (a list of {role, content})")]

    def execute(self, params: HandlerParams) -> StepResult:
        what = f"llm step {params.step.id!r}"
        config = params.config
        key_env = config.get("api_key_env", DEFAULT_API_KEY_ENV)
        api_key = (os.environ if self.environ is None else self.environ).get(key_env)
        if not api_key:
            # A deployment problem, but one a retry can outlive: left to the step's retry
            # policy (bounded by its max_attempts), as the email step's missing password is.
            return Result.failure(
                LLM_ERROR,
                f"{what}: the environment variable {key_env} (api_key_env) is not set; set it "
                "to the API key on the workers",
                {"api_key_env": key_env},
            )
        try:
            payload = _payload(config, template_context(params.input))
        except (_BadInput, ValueError) as exc:  # ValueError: a `${}` placeholder
            return Result.failure(ErrorCode.INPUT_ERROR.value, f"{what}: {exc}", retryable=False)
        base_url = config.get("base_url") or self.base_url
        request = HttpRequest(
            method="POST",
            url=f"{base_url.rstrip('/')}/chat/completions",
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Idempotency-Key": params.call_key,
            },
            body=json.dumps(payload).encode(),
            timeout_s=float(config.get("timeout_ms", 120_000)) / 1000,
        )
        try:
            answer = self.client.send(request)
        except RequestFailed as exc:
            return Result.failure(
                ErrorCode.HTTP_ERROR.value, f"{what}: {exc}", exc.details, retryable=exc.retryable
            )
        if not 200 <= answer.status < 300:
            return status_failure(answer, params.clock.now(), what)
        try:
            completion = answer.json()
        except RequestFailed as exc:
            return _bad_answer(what, str(exc), exc.details)
        return _output(what, completion, config.get("response_format", "text"))


class _BadInput(Exception):
    pass


def _payload(config: Mapping[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if "system" in config:
        messages.append({"role": "system", "content": _text(config["system"], context, "system")})
    if "prompt" in config:
        messages.append({"role": "user", "content": _text(config["prompt"], context, "prompt")})
    for index, message in enumerate(config.get("messages") or []):
        where = f"messages[{index}].content"
        messages.append(
            {"role": message["role"], "content": _text(message["content"], context, where)}
        )
    payload: dict[str, Any] = {"model": config["model"], "messages": messages}
    for option in ("temperature", "max_tokens"):
        if option in config:
            payload[option] = config[option]
    if config.get("response_format") == "json":
        payload["response_format"] = {"type": "json_object"}
    return payload


def _text(template: str, context: dict[str, Any], where: str) -> str:
    value = render_template(template, context)
    if value is None:
        raise _BadInput(f"{where} is empty: its placeholder {template!r} found nothing")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _output(what: str, completion: Any, response_format: str) -> StepResult:
    try:
        choice = completion["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        shown = json.dumps(completion)[:_SHOWN_CHARS]
        return _bad_answer(
            what, "the API's answer is not a chat completion (no choices[0].message.content)",
            {"answer": shown},
        )  # fmt: skip
    if not isinstance(content, str):
        return _bad_answer(what, f"the answer's content is {content!r}, not text", {})
    result: Any = content
    if response_format == "json":
        fenced = _FENCE.match(content.strip())
        try:
            result = json.loads(fenced.group(1) if fenced else content)
        except ValueError as exc:
            return _bad_answer(
                what,
                f"the model's answer is not JSON ({exc}), though response_format is json",
                {"content": content[:_SHOWN_CHARS]},
            )
    return Result.success(
        {
            "content": result,
            "model": completion.get("model"),
            "finish_reason": choice.get("finish_reason"),
            "usage": completion.get("usage"),
        }
    )


def _bad_answer(what: str, problem: str, details: dict[str, Any]) -> StepResult:
    # Left to the retry policy: a model may well answer properly the next time.
    return Result.failure(LLM_ERROR, f"{what}: {problem}", details)
