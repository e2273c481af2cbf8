"""The built-in `llm` step against an imitation of an OpenAI-compatible chat completions API
(a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from flowmonkey_celery import (
    EventType,
    ExecutionStatus,
    FlowRegistry,
    FlowValidationError,
    HandlerRegistry,
    ManualClock,
)
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.handlers.llm import LLM_ERROR, LlmHandler
from flowmonkey_celery.testing import TestHarness
from tests.integration.handlers.test_http_handler import LocalServer, Reply, Seen, json_reply

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
KEY = "sk-test-123"


def said(request: dict[str, Any]) -> str:
    """The imitation model's answer: it repeats the last user message."""
    last = [m["content"] for m in request["messages"] if m["role"] == "user"][-1]
    return f"You said: {last}"


class ImitationApi:
    """POST /v1/chat/completions: checks the bearer key, answers with `answer(request)`."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.base_url = server.url + "/v1"
        self.answer: Callable[[dict[str, Any]], Any] = said
        server.routes["/v1/chat/completions"] = self.complete

    @property
    def requests(self) -> list[Seen]:
        return self.server.seen

    def complete(self, seen: Seen) -> Reply:
        if seen.method != "POST":
            return json_reply({"error": {"message": "use POST"}}, 405)
        if seen.headers.get("authorization") != f"Bearer {KEY}":
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
            return json_reply({"error": error}, 401)
        request = seen.json()
        return json_reply(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": request["model"] + "-2026-01-01",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.answer(request)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            }
        )


@pytest.fixture
def api() -> Iterator[ImitationApi]:
    with LocalServer() as server:
        yield ImitationApi(server)


def llm_flow(config: dict[str, Any], retry: dict[str, Any] | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"type": "llm", "config": config, "outputKey": "answer"}
    if retry is not None:
        step["retry"] = retry
    return {"id": "asking", "initialStepId": "ask", "steps": {"ask": step}}


def ask(
    api: ImitationApi,
    config: dict[str, Any],
    context: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[TestHarness, Execution]:
    options.setdefault("environ", {"OPENAI_API_KEY": KEY})
    options.setdefault("allow_private_addresses", True)  # the imitation is on 127.0.0.1
    handler = LlmHandler(base_url=api.base_url, **options)
    h = TestHarness(handlers=[handler], flows=[llm_flow(config, retry)], clock=ManualClock(START))
    return h, h.run("asking", context or {}).execution


def test_a_prompt_is_asked_and_the_answer_stored(api: ImitationApi) -> None:
    config = {
        "model": "gpt-test",
        "system": "You help ${team}.",
        "prompt": "Summarise order ${order.id}",
        "temperature": 0.2,
        "max_tokens": 50,
    }
    h, execution = ask(api, config, {"team": "support", "order": {"id": "A-17"}})

    h.assert_completed(execution)
    assert execution.context["answer"] == {
        "content": "You said: Summarise order A-17",
        "model": "gpt-test-2026-01-01",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
    [seen] = api.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["idempotency-key"] == f"{execution.id}:ask:1#1"
    assert seen.json() == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "You help support."},
            {"role": "user", "content": "Summarise order A-17"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
    }


def test_messages_are_templates_too(api: ImitationApi) -> None:
    config = {
        "model": "gpt-test",
        "messages": [
            {"role": "user", "content": "Hi, I am ${name}"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "My basket: ${basket}"},
        ],
    }
    h, execution = ask(api, config, {"name": "Ada", "basket": ["tea", "cake"]})
    h.assert_completed(execution)
    sent = api.requests[0].json()["messages"]
    assert [m["content"] for m in sent] == ["Hi, I am Ada", "Hello!", 'My basket: ["tea","cake"]']
    assert execution.context["answer"]["content"] == 'You said: My basket: ["tea","cake"]'


@pytest.mark.parametrize(
    "content",
    ['{"sentiment": "positive", "score": 0.9}',
     '```json\n{"sentiment": "positive", "score": 0.9}\n```'],
    ids=["plain", "fenced"],
)  # fmt: skip
def test_a_json_response_format_parses_the_answer(api: ImitationApi, content: str) -> None:
    api.answer = lambda request: content
    config = {"model": "gpt-test", "prompt": "Rate: ${text}", "response_format": "json"}
    h, execution = ask(api, config, {"text": "great"})

    h.assert_completed(execution)
    assert execution.context["answer"]["content"] == {"sentiment": "positive", "score": 0.9}
    assert api.requests[0].json()["response_format"] == {"type": "json_object"}


def test_an_answer_that_is_not_json_fails_with_llm_error(api: ImitationApi) -> None:
    config = {"model": "gpt-test", "prompt": "Rate it", "response_format": "json"}
    h, execution = ask(api, config)
    h.assert_failed(execution, LLM_ERROR)
    assert execution.error is not None
    assert "not JSON" in execution.error.message
    assert execution.error.details["content"] == "You said: Rate it"


def test_an_answer_that_is_not_a_completion_fails_with_llm_error(api: ImitationApi) -> None:
    api.server.routes["/v1/chat/completions"] = lambda seen: json_reply({"choices": []})
    h, execution = ask(api, {"model": "gpt-test", "prompt": "Hi"})
    h.assert_failed(execution, LLM_ERROR)
    assert execution.error is not None
    assert "not a chat completion" in execution.error.message


def test_a_key_variable_that_is_not_set_fails_naming_it(api: ImitationApi) -> None:
    h, execution = ask(api, {"model": "gpt-test", "prompt": "Hi"}, environ={})
    h.assert_failed(execution, LLM_ERROR)
    assert execution.error is not None
    assert "OPENAI_API_KEY (api_key_env) is not set" in execution.error.message
    assert api.requests == []


def test_a_key_variable_that_is_not_set_is_left_to_the_retry_policy(api: ImitationApi) -> None:
    environ: dict[str, str] = {}
    handler = LlmHandler(base_url=api.base_url, allow_private_addresses=True, environ=environ)
    retry = {"maxAttempts": 2, "backoffMs": 60_000}
    flow = llm_flow({"model": "gpt-test", "prompt": "Hi"}, retry)
    h = TestHarness(handlers=[handler], flows=[flow], clock=ManualClock(START))
    execution_id = h.engine.create("asking", {}).execution.id

    waiting = h.engine.run(execution_id)  # the call failed; its retry is a minute away
    assert waiting.status is ExecutionStatus.WAITING
    assert api.requests == []

    environ["OPENAI_API_KEY"] = KEY  # the key is deployed meanwhile
    finished = h.engine.run(execution_id, simulate_time=True)
    h.assert_completed(finished)
    assert finished.context["answer"]["content"] == "You said: Hi"


def test_a_key_variable_that_stays_unset_fails_once_the_retries_are_spent(
    api: ImitationApi,
) -> None:
    retry = {"maxAttempts": 2, "backoffMs": 10}
    h, execution = ask(api, {"model": "gpt-test", "prompt": "Hi"}, retry=retry, environ={})
    h.assert_failed(execution, LLM_ERROR)
    started = [e for e in h.history(execution) if e.type is EventType.STEP_STARTED]
    assert len(started) == 3  # the first call and two retries, no more
    assert api.requests == []


def test_the_key_is_read_from_the_variable_the_step_names(api: ImitationApi) -> None:
    config = {"model": "gpt-test", "prompt": "Hi", "api_key_env": "TEAM_LLM_KEY"}
    h, execution = ask(api, config, environ={"TEAM_LLM_KEY": KEY, "OPENAI_API_KEY": "sk-other"})
    h.assert_completed(execution)
    assert api.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_wrong_key_fails_with_http_401_and_is_not_retried(api: ImitationApi) -> None:
    retry = {"maxAttempts": 3, "backoffMs": 10}
    environ = {"OPENAI_API_KEY": "sk-wrong"}
    h, execution = ask(api, {"model": "gpt-test", "prompt": "Hi"}, retry=retry, environ=environ)
    h.assert_failed(execution, "HTTP_401")
    assert execution.error is not None
    assert "Incorrect API key provided" in execution.error.details["body"]
    assert "sk-wrong" not in json.dumps(execution.error.details) + execution.error.message
    assert len(api.requests) == 1


def test_the_api_on_a_private_address_is_refused_by_default(api: ImitationApi) -> None:
    h, execution = ask(api, {"model": "gpt-test", "prompt": "Hi"}, allow_private_addresses=False)
    h.assert_failed(execution, "HTTP_ERROR")
    assert execution.error is not None
    assert "FLOWMONKEY_HTTP_ALLOW_PRIVATE" in execution.error.message
    assert api.requests == []


def test_a_base_url_in_the_step_takes_the_handlers_place(api: ImitationApi) -> None:
    api.server.routes["/other/chat/completions"] = api.complete
    config = {"model": "gpt-test", "prompt": "Hi", "base_url": api.server.url + "/other/"}
    h, execution = ask(api, config)
    h.assert_completed(execution)
    assert api.requests[0].path == "/other/chat/completions"


def test_an_api_key_in_the_config_is_refused_at_registration() -> None:
    flows = FlowRegistry(handlers=HandlerRegistry([LlmHandler()]))
    with pytest.raises(FlowValidationError) as caught:
        flows.register(llm_flow({"model": "gpt-test", "prompt": "Hi", "api_key": "sk-secret"}))
    assert {p for p, _ in caught.value.issues} == {"steps.ask.config"}
    text = str(caught.value)
    assert "the API key never lives in the flow: set api_key_env" in text
    assert "sk-secret" not in text  # the refusal does not copy the key around
    assert "asking" not in flows


@pytest.mark.parametrize(
    ("config", "path", "problem"),
    [
        ({"prompt": "Hi"}, "steps.ask.config", "missing required key 'model'"),
        ({"model": "m"}, "steps.ask.config", "give `prompt` (one user message) or `messages`"),
        ({"model": "m", "prompt": "Hi", "messages": [{"role": "user", "content": "Hi"}]},
         "steps.ask.config", "not both"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]},
         "steps.ask.config.messages.0.role", "robot"),
        ({"model": "m", "prompt": "Hi", "response_format": "yaml"},
         "steps.ask.config.response_format", "yaml"),
        ({"model": "m", "prompt": "Hi", "api_key_env": "my key"},
         "steps.ask.config.api_key_env", "does not match"),
        ({"model": "m", "prompt": "Hi", "api_key_env": "FLOWMONKEY_DATABASE_URL"},
         "steps.ask.config.api_key_env", "does not match"),
        ({"model": "m", "prompt": "Hi", "api_key_env": "AWS_SECRET_ACCESS_KEY_ID"},
         "steps.ask.config.api_key_env", "does not match"),
        ({"model": "m", "prompt": "Hi", "temperature": 7},
         "steps.ask.config.temperature", "7"),
    ],
)  # fmt: skip
def test_a_config_the_schema_refuses_is_refused_at_registration(
    config: dict[str, Any], path: str, problem: str
) -> None:
    flows = FlowRegistry(handlers=HandlerRegistry([LlmHandler()]))
    with pytest.raises(FlowValidationError) as caught:
        flows.register(llm_flow(config))
    assert [p for p, _ in caught.value.issues] == [path]
    assert problem in caught.value.issues[0][1]
