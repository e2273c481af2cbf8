"""The API's first look at a request (plain ASGI, before FastAPI parses anything): bodies
capped at 1 MiB however they are sent (Content-Length or chunked), read as JSON whatever
their content type, and refused with a clear 400 when they are not JSON or hold what no store
can keep (NUL characters, unpaired surrogates, absurd nesting); NUL in a path or query is
refused too. Webhooks have their own per-trigger cap and checks."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

from flowmonkey_celery.api.errors import error_body
from flowmonkey_celery.core.json_values import json_problem
from flowmonkey_celery.errors import ErrorCode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_REQUEST_BYTES = 1024 * 1024
_WITH_BODY = ("POST", "PUT", "PATCH")


class RequestGuard:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = _bad_target(scope)
        if refused is not None:
            await _answer(send, 400, ErrorCode.INVALID_ARGUMENT, refused)
            return
        path = scope.get("path", "")
        webhook = path.startswith(f"{scope.get('root_path', '')}/webhooks/") or "/webhooks/" in path
        if webhook or scope.get("method") not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        body, complete = await _read(receive, self.max_bytes)
        if not complete:
            await _answer(
                send,
                413,
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"the request body is larger than the API takes ({self.max_bytes} bytes)",
            )
            return
        if body.strip():
            problem = _json_body_problem(body)
            if problem is not None:
                code, message = problem
                await _answer(send, 400, code, message)
                return
        _as_json(scope)
        await self.app(scope, _replay(body), send)


def _bad_target(scope: Scope) -> str | None:
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    query = scope.get("query_string", b"")
    if b"\x00" in unquote_to_bytes(raw_path) or b"\x00" in unquote_to_bytes(query):
        return "the URL holds a NUL character (%00)"
    return None


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False  # stop reading: the rest is never buffered
        chunks.append(chunk)
        more = bool(message.get("more_body", False))
    return b"".join(chunks), True


def _json_body_problem(body: bytes) -> tuple[ErrorCode, str] | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ErrorCode.INVALID_JSON, f"the body is not UTF-8 text (byte {exc.start})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        return ErrorCode.INVALID_JSON, f"the body is not valid JSON at {where}: {exc.msg}"
    except RecursionError:
        return ErrorCode.INVALID_JSON, "the body is nested too deeply to read"
    except ValueError as exc:  # an integer of thousands of digits, say
        return ErrorCode.INVALID_JSON, f"the body is not JSON: {exc}"
    problem = json_problem(value)
    if problem is not None:
        return ErrorCode.INVALID_INPUT, f"the body cannot be stored: {problem}"
    return None


def _as_json(scope: Scope) -> None:
    """Every body here is JSON; one sent without saying so (curl -d sends a form's content
    type) is read as JSON rather than refused as "not a dictionary"."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
    scope["headers"] = [*headers, (b"content-type", b"application/json")]


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _answer(send: Send, status: int, code: ErrorCode | str, message: str) -> None:
    payload = json.dumps(error_body(str(code), message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
