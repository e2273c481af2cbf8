"""The built-in `http` step: one HTTP request (requests), with the host rules that keep a flow
from reaching what it should not (a cloud metadata endpoint, the worker's own network).

`HttpClient` makes the request, following redirects itself so that every hop is checked
against the same `HostRules`, and connecting through a `CheckedAdapter` (see `host_rules`);
the `webhook` and `llm` steps use it too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin

import requests
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import parse_url

from flowmonkey_celery.core.handlers import HandlerParams
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.core.selectors import render_template, template_context
from flowmonkey_celery.errors import ErrorCode
from flowmonkey_celery.handlers.host_rules import (
    Address,
    CheckedAdapter,
    HostRules,
    RequestFailed,
    Resolver,
    system_resolver,
)

HTTP = "http"
HTTP_ERROR = ErrorCode.HTTP_ERROR.value
MAX_REDIRECTS = 5
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
_ERROR_BODY_CHARS = 2000
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Headers that belong to the origin they were meant for, dropped when a redirect leaves it.
_ORIGIN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_BODY_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding"})
__all__ = [
    "HEADERS_SCHEMA",
    "Address",
    "BadInput",
    "CheckedAdapter",
    "HostRules",
    "HttpAnswer",
    "HttpClient",
    "HttpHandler",
    "HttpRequest",
    "RequestFailed",
    "Resolver",
    "default_header",
    "header_text",
    "render_headers",
    "retry_after",
    "status_failure",
    "system_resolver",
]
# A `headers` config: names are HTTP tokens, values templates that must give text.
HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": "^[!#-'*+.0-9A-Z^-z|~-]+$"},
    "additionalProperties": {"type": "string"},
}


class BadInput(ValueError):
    """The step's config and input do not make a request: an INPUT_ERROR, never retried."""


@dataclass(frozen=True)
class HttpRequest:
    """One request to make. `url` may still get `params` appended as its query."""

    method: str
    url: str
    headers: Mapping[str, str]
    params: Mapping[str, Any] | None = None
    body: bytes | None = None
    timeout_s: float = 30.0
    allow_redirects: bool = True


@dataclass(frozen=True)
class HttpAnswer:
    """A response read in full (within the size limit); `method` and `url` are those of the
    request that got it (the last one, after redirects)."""

    method: str
    status: int
    reason: str
    url: str
    headers: Mapping[str, str]  # lower-cased names
    content: bytes

    @property
    def is_json(self) -> bool:
        mime = self.headers.get("content-type", "").split(";")[0].strip().lower()
        return mime == "application/json" or mime.endswith("+json")

    def text(self) -> str:
        charset = requests.utils.get_encoding_from_headers(dict(self.headers))
        # requests' ISO-8859-1 default for text/* without a charset is rarely what is meant.
        if charset is None or "charset" not in self.headers.get("content-type", "").lower():
            charset = "utf-8"
        try:
            return self.content.decode(charset, "replace")
        except LookupError:
            return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (None when empty).

        Raises:
            RequestFailed: it is not JSON (retryable None: the next answer may be).
        """
        if not self.content.strip():
            return None
        try:
            return json.loads(self.content)
        except ValueError as exc:
            raise RequestFailed(
                f"the response of {self.url} is not JSON ({exc})",
                {"url": self.url, "status": self.status, "body": self.text()[:_ERROR_BODY_CHARS]},
            ) from None

    def body(self, mode: str = "auto") -> Any:
        """The body as `mode` asks: "json", "text", or "auto" (JSON when the response says it
        is JSON and parses as JSON, text otherwise).

        Raises:
            RequestFailed: "json" and the body is not JSON.
        """
        if mode == "json":
            return self.json()
        if mode == "auto" and self.is_json:
            try:
                return self.json()
            except RequestFailed:
                pass  # a body that only claims to be JSON is shown as the text it is
        return self.text()


class HttpClient:
    """Makes `HttpRequest`s under `HostRules`, following redirects itself (each target is
    checked again) and reading at most `max_response_bytes` of a response.

    Args:
        rules: which hosts may be called.
        session: a requests session to use; by default one of its own that keeps no cookies,
            so no execution sees another's. Its `http://` and `https://` adapters are
            replaced by `CheckedAdapter`s, so it connects only to checked addresses.
        max_response_bytes: a longer response (after decompression) fails the request.
    """

    def __init__(
        self,
        rules: HostRules,
        session: requests.Session | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be at least 1")
        if session is None:
            session = requests.Session()
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        for prefix in ("http://", "https://"):
            session.mount(prefix, CheckedAdapter(rules))
        self.rules = rules
        self.session = session
        self.max_response_bytes = max_response_bytes

    def send(self, request: HttpRequest) -> HttpAnswer:
        """Make the request; any status is an answer.

        Raises:
            RequestFailed: refused, invalid URL, network error, timeout, too many redirects or
                a response over the size limit.
        """
        # timeout_s bounds the whole call (every hop and the body), not each socket read.
        deadline = time.monotonic() + request.timeout_s
        method, headers, body = request.method, dict(request.headers), request.body
        url = _prepared_url(request.url, request.params)
        for _hop in range(MAX_REDIRECTS + 1):
            # Checked here too (the adapter checks again when it connects): a refused URL
            # fails before anything is sent, and the target of a proxied request is checked.
            self.rules.check(url)
            response = self._request(method, url, headers, body, deadline, request.timeout_s)
            with response:
                location = response.headers.get("location")
                if not (
                    request.allow_redirects and response.status_code in _REDIRECTS and location
                ):
                    return self._read(response, method, url, deadline, request.timeout_s)
                target = _prepared_url(urljoin(url, location), None)
                method, body, headers = _redirected(response.status_code, method, body, headers)
                if _origin(target) != _origin(url):
                    headers = {k: v for k, v in headers.items() if k.lower() not in _ORIGIN_HEADERS}
                url = target
        raise RequestFailed(
            f"more than {MAX_REDIRECTS} redirects, the last to {url}", {"url": url}, False
        )

    def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        deadline: float,
        timeout_s: float,
    ) -> requests.Response:
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            return self.session.request(
                method,
                url,
                headers=headers,
                data=body,
                timeout=remaining,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise _failure(exc, url, timeout_s) from None
        except RequestFailed as exc:  # refused by the adapter when it connected
            exc.details.setdefault("url", url)
            raise

    def _read(
        self,
        response: requests.Response,
        method: str,
        url: str,
        deadline: float,
        timeout_s: float,
    ) -> HttpAnswer:
        limit = self.max_response_bytes
        # A HEAD answer declares the length of a body it does not send.
        declared = response.headers.get("content-length", "") if method != "HEAD" else ""
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(url, limit)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise _too_large(url, limit)
                if time.monotonic() > deadline:
                    raise requests.Timeout("reading the response took too long")
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise _failure(exc, url, timeout_s) from None
        return HttpAnswer(
            method=method,
            status=response.status_code,
            reason=response.reason or "",
            url=url,
            headers={name.lower(): value for name, value in response.headers.items()},
            content=b"".join(chunks),
        )


def status_failure(answer: HttpAnswer, now: datetime, what: str) -> StepResult:
    """The failure for an answer with an unwanted status: HTTP_<status>; 5xx and 429 left to
    the retry policy (with the answer's Retry-After as the least wait), anything else not
    retryable. `what` names the step in the message."""
    status = answer.status
    retryable = status >= 500 or status == 429
    return Result.failure(
        f"HTTP_{status}",
        f"{what}: {answer.method} {answer.url} answered {status} {answer.reason}".rstrip(),
        {"status": status, "url": answer.url, "body": answer.text()[:_ERROR_BODY_CHARS]},
        retryable=None if retryable else False,
        retry_after=retry_after(answer.headers.get("retry-after"), now) if retryable else None,
    )


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A Retry-After header (seconds, or an HTTP date compared with `now`) as a wait."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        if value.isdigit():
            return timedelta(seconds=int(value))
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    wait = when - now
    return wait if wait > timedelta(0) else None


class HttpHandler:
    """`http` steps: one request to `url` (a `${path}` template over the step's input, like
    `headers`, `query`, `json` and `body`). The `Idempotency-Key` header is the step key
    unless the step sets its own, so a redelivered attempt repeats the same key.

    Output: `{"status", "headers" (lower-cased names), "body"}`; the body is parsed as JSON
    when the response says it is JSON (`response: auto`), or as `response` asks.

    Failures: HTTP_<status> for an answer that is not 2xx nor in `expect_status` (5xx and 429
    left to the retry policy, honouring Retry-After; other statuses not retried); HTTP_ERROR
    when there is no usable answer (network, timeout, a refused host, a response too large).

    Args:
        allowed_hosts: the hosts steps may call (`api.example.com`, `*.example.com`); None
            for any host with a public address.
        allow_private_addresses: allow private, loopback and other non-public addresses.
            Link-local addresses and cloud metadata endpoints are refused regardless.
        session: the requests session to use (connection pooling, proxies, client certs);
            its http:// and https:// adapters are replaced (see `HttpClient`).
        max_response_bytes: a longer response body fails the step.
        resolver: how host names become addresses (default: the system's); see `HostRules`.
    """

    type = HTTP
    metadata: dict[str, Any] = {
        "type": HTTP,
        "name": "HTTP request",
        "description": "Call an HTTP API",
        "category": "integration",
        "stateful": False,
        "config_schema": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "method": {"enum": _METHODS},
                "url": {"type": "string", "minLength": 1},
                "headers": HEADERS_SCHEMA,
                "query": {"type": "object"},
                "json": {},
                "body": {"type": "string"},
                "timeout_ms": {"type": "number", "exclusiveMinimum": 0},
                "response": {"enum": ["auto", "json", "text"]},
                "allow_redirects": {"type": "boolean"},
                "expect_status": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 100, "maximum": 599},
                    "minItems": 1,
                },
            },
            "additionalProperties": False,
            # jsonschema's message quotes this schema, description included.
            "not": {"required": ["json", "body"], "description": "give json or body, not both"},
        },
    }

    def __init__(
        self,
        allowed_hosts: Collection[str] | None = None,
        allow_private_addresses: bool = False,
        session: requests.Session | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.client = HttpClient(
            HostRules(allowed_hosts, allow_private_addresses, resolver),
            session,
            max_response_bytes,
        )

    def __repr__(self) -> str:
        return f"<HttpHandler {self.client.rules!r}>"

    def execute(self, params: HandlerParams) -> StepResult:
        what = f"http step {params.step.id!r}"
        config = params.config
        try:
            request = _build(config, params)
        except ValueError as exc:  # BadInput, or a `${}` placeholder
            return Result.failure(ErrorCode.INPUT_ERROR.value, f"{what}: {exc}", retryable=False)
        try:
            answer = self.client.send(request)
            wanted = config.get("expect_status") or []
            if not (200 <= answer.status < 300 or answer.status in wanted):
                return status_failure(answer, params.clock.now(), what)
            body = answer.body(config.get("response", "auto"))
        except RequestFailed as exc:
            return Result.failure(
                HTTP_ERROR, f"{what}: {exc}", exc.details, retryable=exc.retryable
            )
        return Result.success(
            {"status": answer.status, "headers": dict(answer.headers), "body": body}
        )


def _build(config: Mapping[str, Any], params: HandlerParams) -> HttpRequest:
    context = template_context(params.input)
    url = render_template(config["url"], context)
    if not isinstance(url, str) or not url:
        raise BadInput(f"url must be text, got {url!r} (from {config['url']!r})")
    headers = render_headers(config.get("headers") or {}, context)
    body: bytes | None = None
    if "json" in config:
        body = json.dumps(render_template(config["json"], context)).encode()
        default_header(headers, "Content-Type", "application/json")
    elif "body" in config:
        text = render_template(config["body"], context)
        if text is None:
            raise BadInput(f"body is empty: its placeholder {config['body']!r} found nothing")
        body = (text if isinstance(text, str) else json.dumps(text)).encode()
        default_header(headers, "Content-Type", "text/plain; charset=utf-8")
    default_header(headers, "Idempotency-Key", params.call_key)
    query = {
        name: _query_value(value)
        for name, value in render_template(config.get("query") or {}, context).items()
        if value is not None
    }
    return HttpRequest(
        method=config.get("method", "GET"),
        url=url,
        headers=headers,
        params=query or None,
        body=body,
        timeout_s=float(config.get("timeout_ms", 30000)) / 1000,
        allow_redirects=config.get("allow_redirects", True),
    )


def render_headers(template: Mapping[str, Any], context: dict[str, Any]) -> dict[str, str]:
    """A `headers` config (see `HEADERS_SCHEMA`) filled from `context`: every value a
    `${path}` template, made text by `header_text`.

    Raises:
        BadInput: a value that is not text or holds a line break.
        ValueError: a `${}` placeholder.
    """
    rendered = render_template(dict(template), context)
    return {name: header_text(name, value) for name, value in rendered.items()}


def header_text(name: str, value: Any) -> str:
    """A rendered header value as text: a number or a boolean (`true`, `false`) as written
    in JSON; anything else that is not text, or text with a line break, is refused.

    Raises:
        BadInput: the value cannot be a header.
    """
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise BadInput(f"header {name!r} must be text, got {value!r}")
    if "\r" in value or "\n" in value:
        raise BadInput(f"header {name!r} holds a line break: {value!r}")
    return value


def default_header(headers: dict[str, str], name: str, value: str) -> None:
    """Set `name` unless `headers` has it already, in any case (`idempotency-key` counts)."""
    if not any(existing.lower() == name.lower() for existing in headers):
        headers[name] = value


def _query_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_query_value(item) for item in value if item is not None]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _prepared_url(url: str, params: Mapping[str, Any] | None) -> str:
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, dict(params) if params else None)
    except requests.RequestException as exc:
        raise RequestFailed(f"invalid URL {url!r}: {exc}", {"url": url}, False) from None
    return str(prepared.url)


def _origin(url: str) -> tuple[str | None, str | None, int | None]:
    parsed = parse_url(url)
    return parsed.scheme, parsed.host, parsed.port


def _redirected(
    status: int, method: str, body: bytes | None, headers: dict[str, str]
) -> tuple[str, bytes | None, dict[str, str]]:
    """The method, body and headers of the request a redirect asks for (as browsers do:
    303, and 301/302 after a POST, become a GET without the body)."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        kept = {k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}
        return "GET", None, kept
    return method, body, headers


def _failure(exc: requests.RequestException, url: str, timeout_s: float) -> RequestFailed:
    details = {"url": url}
    cause = exc.args[0] if exc.args else None
    if isinstance(exc, requests.Timeout) or isinstance(cause, Urllib3Timeout):
        return RequestFailed(f"{url} timed out after {timeout_s * 1000:.0f} ms", details)
    invalid = (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
               requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader)  # fmt: skip
    if isinstance(exc, invalid):
        return RequestFailed(f"invalid request to {url!r}: {exc}", details, False)
    return RequestFailed(f"cannot reach {url}: {type(exc).__name__}: {exc}", details)


def _too_large(url: str, limit: int) -> RequestFailed:
    return RequestFailed(
        f"the response of {url} is larger than {limit} bytes (max_response_bytes)",
        {"url": url, "max_response_bytes": limit},
        False,
    )
