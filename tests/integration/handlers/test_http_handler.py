"""The built-in `http` step against a real HTTP server (http.server, in a thread, on 127.0.0.1)."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from flowmonkey_celery import (
    EventType,
    FlowRegistry,
    FlowValidationError,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.handlers.http import HTTP_ERROR, Address, HttpHandler
from flowmonkey_celery.testing import TestHarness

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@dataclass
class Seen:
    """One request the test server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)  # as sent, repeats kept

    def values(self, name: str) -> list[str]:
        """Every value sent for the header `name` (any case)."""
        return [value for key, value in self.raw_headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, dict[str, str], bytes]
Route = Callable[[Seen], Reply]


def json_reply(value: Any, status: int = 200, **headers: str) -> Reply:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(value).encode()


def echo(seen: Seen) -> Reply:
    """The default route: the request, described as JSON."""
    text = seen.body.decode()
    return json_reply(
        {"method": seen.method, "path": seen.path, "query": seen.query, "body": text or None}
    )


class LocalServer:
    """A real HTTP server on 127.0.0.1: `routes` by path (default `echo`), `seen` requests.

    A reply with `Connection: close` and no Content-Length is sent without a length (the body
    ends when the connection does). `hold` keeps a request waiting until the server stops.
    With `tls`, it speaks HTTPS and records the name each client asked for (SNI) in
    `server_names`.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.released = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    self.command,
                    split.path,
                    parse_qs(split.query),
                    {name.lower(): value for name, value in self.headers.items()},
                    self.rfile.read(length),
                    list(self.headers.items()),
                )
                owner.seen.append(seen)
                status, headers, content = owner.routes.get(split.path, echo)(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if headers.get("Connection") == "close":
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left: expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_names: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def hold(self, seen: Seen) -> Reply:
        self.released.wait(10)
        return json_reply({"late": True})

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


class Names:
    """A resolver over a table of names, for `HttpHandler(resolver=...)`: each lookup of a
    name takes its next answer, and the last answer stays (a name that answers one way and
    then another, as a rebinding DNS server makes it). `lookups` lists the names looked up."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = {name: list(answers) for name, answers in table.items()}
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[Address]:
        self.lookups.append(host)
        answers = self.table.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return [ipaddress.ip_address(answer)]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for the name `api.test`."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=api.test", "-addext", "subjectAltName=DNS:api.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def http_flow(config: dict[str, Any], retry: dict[str, Any] | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"type": "http", "config": config, "outputKey": "response"}
    if retry is not None:
        step["retry"] = retry
    return {"id": "calling", "initialStepId": "call", "steps": {"call": step}}


def call(
    config: dict[str, Any],
    context: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[TestHarness, Execution]:
    options.setdefault("allow_private_addresses", True)  # the test server is on 127.0.0.1
    h = TestHarness(
        handlers=[HttpHandler(**options)],
        flows=[http_flow(config, retry)],
        clock=ManualClock(START),
    )
    return h, h.run("calling", context or {}).execution


def calls_of(h: TestHarness, execution: Execution) -> list[Any]:
    return [e for e in h.history(execution) if e.type is EventType.STEP_COMPLETED]


def test_a_get_fills_url_query_and_headers_from_the_input_and_parses_json(
    server: LocalServer,
) -> None:
    server.routes["/users/42"] = lambda seen: json_reply(
        {"id": 42, "name": "Ada"}, **{"X-Request-Id": "r-1"}
    )
    config = {
        "url": server.url + "/users/${user.id}",
        "query": {"page": "${page}", "tags": ["a", "${tag}"], "active": True, "gone": "${nope}"},
        "headers": {"X-Tenant": "${tenant}", "Accept": "application/json"},
    }
    context = {"user": {"id": 42}, "page": 2, "tag": "b", "tenant": "acme"}
    h, execution = call(config, context)

    h.assert_completed(execution)
    [seen] = server.seen
    assert seen.method == "GET"
    assert seen.query == {"page": ["2"], "tags": ["a", "b"], "active": ["true"]}
    assert seen.headers["x-tenant"] == "acme"
    response = execution.context["response"]
    assert response["status"] == 200
    assert response["body"] == {"id": 42, "name": "Ada"}
    assert response["headers"]["x-request-id"] == "r-1"  # names lower-cased
    assert response["headers"]["content-type"] == "application/json"


def test_a_post_sends_the_templated_json_keeping_value_types(server: LocalServer) -> None:
    server.routes["/orders"] = lambda seen: json_reply({"created": seen.json()}, status=201)
    config = {
        "method": "POST",
        "url": server.url + "/orders",
        "json": {"customer": "${user.name}", "items": "${items}", "note": "for ${user.name}"},
    }
    context = {"user": {"name": "Ada"}, "items": [{"sku": "A", "qty": 2}]}
    h, execution = call(config, context)

    h.assert_completed(execution)
    [seen] = server.seen
    assert seen.headers["content-type"] == "application/json"
    sent = {"customer": "Ada", "items": [{"sku": "A", "qty": 2}], "note": "for Ada"}
    assert seen.json() == sent
    assert execution.context["response"]["status"] == 201
    assert execution.context["response"]["body"] == {"created": sent}


def test_a_text_body_is_sent_and_a_text_answer_returned_as_text(server: LocalServer) -> None:
    server.routes["/note"] = lambda seen: (
        200, {"Content-Type": "text/plain; charset=utf-8"}, f"got: {seen.body.decode()}".encode()
    )  # fmt: skip
    config = {"method": "PUT", "url": server.url + "/note", "body": "héllo ${name}"}
    h, execution = call(config, {"name": "Ada"})

    h.assert_completed(execution)
    assert server.seen[0].headers["content-type"] == "text/plain; charset=utf-8"
    assert execution.context["response"]["body"] == "got: héllo Ada"


def test_response_modes_override_the_content_type(server: LocalServer) -> None:
    server.routes["/data"] = lambda seen: (200, {"Content-Type": "text/plain"}, b'{"n": 1}')
    h, execution = call({"url": server.url + "/data", "response": "json"})
    h.assert_completed(execution)
    assert execution.context["response"]["body"] == {"n": 1}

    server.routes["/json"] = lambda seen: json_reply({"n": 1})
    h, execution = call({"url": server.url + "/json", "response": "text"})
    h.assert_completed(execution)
    assert execution.context["response"]["body"] == '{"n": 1}'


def test_an_answer_that_is_not_json_fails_when_json_is_asked_for(server: LocalServer) -> None:
    server.routes["/page"] = lambda seen: (200, {"Content-Type": "text/html"}, b"<html>")
    h, execution = call({"url": server.url + "/page", "response": "json"})
    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    assert "is not JSON" in execution.error.message
    assert execution.error.details["body"] == "<html>"


def test_the_idempotency_key_is_the_step_key_and_stays_the_same_on_redelivery(
    server: LocalServer,
) -> None:
    h, execution = call({"url": server.url + "/pay", "method": "POST", "json": {"eur": 5}})
    # The same attempt delivered again (a redelivered Celery message) sends the same key.
    flow = h.flows.get("calling")
    params = HandlerParams(
        input={},
        context={},
        step=flow.steps["call"],
        execution=execution.model_copy(update={"step_count": 0}),  # as it was at the call
        attempt=1,
        step_key=f"{execution.id}:call:1",
        clock=h.clock,
    )
    h.handlers.get("http").execute(params)
    keys = [seen.headers["idempotency-key"] for seen in server.seen]
    assert keys == [f"{execution.id}:call:1#1"] * 2


def test_a_loop_back_to_the_step_sends_a_new_idempotency_key(server: LocalServer) -> None:
    @handler("twice")
    def twice(params: HandlerParams) -> StepResult:
        rounds = params.context.get("rounds", 0) + 1
        return Result.success(rounds, next_step="call" if rounds < 2 else None)

    flow = http_flow({"url": server.url + "/pay", "method": "POST"})
    flow["steps"]["call"]["transitions"] = {"onSuccess": "again"}
    flow["steps"]["again"] = {"type": "twice", "outputKey": "rounds"}
    h = TestHarness(
        handlers=[HttpHandler(allow_private_addresses=True), twice],
        flows=[flow],
        clock=ManualClock(START),
    )
    h.assert_completed(h.run("calling", {}).execution)
    keys = [seen.headers["idempotency-key"] for seen in server.seen]
    assert len(keys) == 2 and len(set(keys)) == 2  # two calls of attempt 1: two keys


def test_a_step_may_set_its_own_idempotency_key(server: LocalServer) -> None:
    config = {"url": server.url + "/pay", "headers": {"idempotency-key": "order-${order}"}}
    h, execution = call(config, {"order": 7})
    h.assert_completed(execution)
    assert server.seen[0].headers["idempotency-key"] == "order-7"


def test_a_404_fails_with_http_404_and_is_not_retried(server: LocalServer) -> None:
    server.routes["/missing"] = lambda seen: (404, {"Content-Type": "text/plain"}, b"x" * 5000)
    retry = {"maxAttempts": 3, "backoffMs": 10}
    h, execution = call({"url": server.url + "/missing"}, retry=retry)

    h.assert_failed(execution, "HTTP_404")
    assert execution.error is not None
    assert f"GET {server.url}/missing answered 404" in execution.error.message
    assert execution.error.details["status"] == 404
    assert execution.error.details["url"] == server.url + "/missing"
    assert execution.error.details["body"] == "x" * 2000  # truncated
    assert len(server.seen) == 1
    assert len(calls_of(h, execution)) == 1


def test_an_expected_status_counts_as_success(server: LocalServer) -> None:
    server.routes["/missing"] = lambda seen: json_reply({"found": False}, status=404)
    h, execution = call({"url": server.url + "/missing", "expect_status": [404]})
    h.assert_completed(execution)
    assert execution.context["response"] == {
        "status": 404,
        "headers": execution.context["response"]["headers"],
        "body": {"found": False},
    }


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [
        ("120", timedelta(seconds=120)),
        (format_datetime(START + timedelta(seconds=90), usegmt=True), timedelta(seconds=90)),
    ],
)
def test_a_503_is_retried_no_sooner_than_its_retry_after(
    server: LocalServer, retry_after: str, wait: timedelta
) -> None:
    answers = [json_reply({"busy": True}, 503, **{"Retry-After": retry_after}), json_reply("ok")]
    server.routes["/busy"] = lambda seen: answers.pop(0)
    retry = {"maxAttempts": 2, "backoffMs": 10}
    h, execution = call({"url": server.url + "/busy"}, retry=retry)

    h.assert_completed(execution)
    assert execution.context["response"]["body"] == "ok"
    [retried] = [e for e in h.history(execution) if e.type is EventType.STEP_RETRY]
    assert retried.error is not None and retried.error.code == "HTTP_503"
    assert retried.data["delay_ms"] == wait / timedelta(milliseconds=1)  # not the 10 ms backoff
    started = [e.started_at for e in calls_of(h, execution)]
    assert started == [START, START + wait]  # the engine's clock, moved by the retry's wake
    keys = [seen.headers["idempotency-key"] for seen in server.seen]
    assert keys == [f"{execution.id}:call:1#1", f"{execution.id}:call:2#2"]  # one per attempt


def test_a_5xx_that_stays_fails_after_the_retries(server: LocalServer) -> None:
    server.routes["/down"] = lambda seen: (502, {}, b"bad gateway")
    h, execution = call({"url": server.url + "/down"}, retry={"maxAttempts": 2, "backoffMs": 10})
    h.assert_failed(execution, "HTTP_502")
    assert len(server.seen) == 3


def test_a_slow_server_fails_with_http_error_after_the_timeout(server: LocalServer) -> None:
    server.routes["/slow"] = server.hold
    h, execution = call({"url": server.url + "/slow", "timeout_ms": 200})
    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    assert "timed out after 200 ms" in execution.error.message


def test_a_server_that_is_down_fails_with_http_error_left_to_the_retry_policy() -> None:
    with LocalServer() as gone:
        url = gone.url + "/x"  # nothing listens there once it has stopped
    h, execution = call({"url": url}, retry={"maxAttempts": 1, "backoffMs": 10})
    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    assert "cannot reach" in execution.error.message
    assert len(calls_of(h, execution)) == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_private_address_is_refused_by_default(server: LocalServer, host: str) -> None:
    url = f"http://{host}:{server.port}/x"
    retry = {"maxAttempts": 3, "backoffMs": 10}
    h, execution = call({"url": url}, retry=retry, allow_private_addresses=False)

    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    message = execution.error.message
    assert f"refused host {host!r}" in message
    assert "loopback address" in message
    assert "FLOWMONKEY_HTTP_ALLOW_PRIVATE" in message
    assert server.seen == []
    assert len(calls_of(h, execution)) == 1  # refused: not retried


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://169.254.1.1/",
        "http://metadata.google.internal/computeMetadata/v1/",  # refused before a lookup
    ],
)
def test_metadata_and_link_local_addresses_are_refused_even_when_private_ones_are_allowed(
    url: str,
) -> None:
    h, execution = call({"url": url})  # allow_private_addresses=True
    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    assert "which steps may never call" in execution.error.message


def test_a_name_that_resolves_elsewhere_when_connecting_is_refused_then(
    server: LocalServer,
) -> None:
    # DNS rebinding: a public address for the check, the worker's loopback a moment later.
    resolver = Names({"localhost": ["93.184.215.14", "127.0.0.1"]})
    url = f"http://localhost:{server.port}/admin"
    retry = {"maxAttempts": 3, "backoffMs": 10}
    h, execution = call({"url": url}, retry=retry, allow_private_addresses=False, resolver=resolver)

    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    message = execution.error.message
    assert "refused host 'localhost': it resolves to 127.0.0.1, a loopback address" in message
    assert execution.error.details["url"] == url
    assert server.seen == []  # nothing reached the server
    assert resolver.lookups == ["localhost", "localhost"]  # the check's, the connection's
    assert len(calls_of(h, execution)) == 1  # refused: not retried


def test_the_connection_goes_to_the_checked_address_under_the_hosts_name(
    server: LocalServer,
) -> None:
    resolver = Names({"api.test": ["127.0.0.1"]})  # a name only this resolver knows
    h, execution = call({"url": f"http://api.test:{server.port}/v1"}, resolver=resolver)
    h.assert_completed(execution)
    [seen] = server.seen
    assert seen.headers["host"] == f"api.test:{server.port}"


def test_https_to_the_checked_address_keeps_sni_and_the_certificate_check_for_the_name(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE would take verify's place
    session.verify = str(cert)  # trust the test certificate, and only it
    resolver = Names({"api.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    with LocalServer(tls) as secure:
        config = {"url": f"https://api.test:{secure.port}/v1"}
        h, execution = call(config, resolver=resolver, session=session)
        h.assert_completed(execution)
        assert secure.seen[0].headers["host"] == f"api.test:{secure.port}"

        # The same address under a name the certificate is not for: refused by the check.
        config = {"url": f"https://other.test:{secure.port}/v1"}
        h, execution = call(config, resolver=resolver, session=session)
        h.assert_failed(execution, HTTP_ERROR)
        assert execution.error is not None
        assert "SSLError" in execution.error.message
        assert "other.test" in execution.error.message
        assert len(secure.seen) == 1
        assert secure.server_names == ["api.test", "other.test"]


def test_a_host_outside_the_allowed_hosts_is_refused(server: LocalServer) -> None:
    allowed = ["api.example.com", "*.example.org"]
    h, execution = call({"url": server.url + "/x"}, allowed_hosts=allowed)
    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    assert "refused host '127.0.0.1': it is not in the allowed hosts" in execution.error.message
    assert "FLOWMONKEY_HTTP_ALLOWED_HOSTS" in execution.error.message
    assert server.seen == []

    h, execution = call({"url": server.url + "/x"}, allowed_hosts=["127.0.0.1"])
    h.assert_completed(execution)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/",  # "*.example.org" is for sub-domains only
        "http://badexample.org/",
        "http://example.org.evil.test/",
        "ftp://api.example.com/",
    ],
)
def test_allowed_host_patterns_match_whole_labels_and_http_only(url: str) -> None:
    h, execution = call({"url": url}, allowed_hosts=["*.example.org", "api.example.com"])
    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    assert execution.error.details["url"] == url
    assert "refused" in execution.error.message


def test_a_redirect_is_followed_and_each_target_checked(server: LocalServer) -> None:
    server.routes["/old"] = lambda seen: (307, {"Location": "/new?x=1"}, b"")
    server.routes["/new"] = lambda seen: json_reply({"got": seen.json(), "q": seen.query})
    config = {"method": "POST", "url": server.url + "/old", "json": {"a": 1}}
    h, execution = call(config)
    h.assert_completed(execution)
    assert execution.context["response"]["body"] == {"got": {"a": 1}, "q": {"x": ["1"]}}
    assert [seen.path for seen in server.seen] == ["/old", "/new"]


def test_a_303_after_a_post_is_followed_with_a_get_without_the_body(server: LocalServer) -> None:
    server.routes["/orders"] = lambda seen: (303, {"Location": "/orders/7"}, b"")
    server.routes["/orders/7"] = lambda seen: (404, {}, b"gone")
    h, execution = call({"method": "POST", "url": server.url + "/orders", "json": {"a": 1}})
    h.assert_failed(execution, "HTTP_404")
    assert execution.error is not None
    assert f"GET {server.url}/orders/7 answered 404" in execution.error.message
    followed = server.seen[1]
    assert (followed.method, followed.body) == ("GET", b"")
    assert "content-type" not in followed.headers
    assert followed.headers["idempotency-key"] == f"{execution.id}:call:1#1"


def test_a_redirect_to_another_origin_does_not_carry_the_credentials(
    server: LocalServer,
) -> None:
    server.routes["/here"] = lambda seen: (
        307, {"Location": f"http://localhost:{server.port}/there"}, b""
    )  # fmt: skip
    config = {"url": server.url + "/here", "headers": {"Authorization": "Bearer s3cret"}}
    h, execution = call(config)
    h.assert_completed(execution)
    first, second = server.seen
    assert first.headers["authorization"] == "Bearer s3cret"
    assert "authorization" not in second.headers
    assert second.headers["idempotency-key"] == first.headers["idempotency-key"]


def test_a_redirect_to_a_refused_host_is_refused(server: LocalServer) -> None:
    server.routes["/meta"] = lambda seen: (302, {"Location": "http://169.254.169.254/"}, b"")
    server.routes["/elsewhere"] = lambda seen: (
        302, {"Location": f"http://localhost:{server.port}/x"}, b""
    )  # fmt: skip
    h, execution = call({"url": server.url + "/meta"})
    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    assert "refused host '169.254.169.254'" in execution.error.message

    h, execution = call({"url": server.url + "/elsewhere"}, allowed_hosts=["127.0.0.1"])
    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    assert "refused host 'localhost'" in execution.error.message
    assert [seen.path for seen in server.seen] == ["/meta", "/elsewhere"]


def test_redirects_are_limited_or_not_followed_at_all(server: LocalServer) -> None:
    server.routes["/loop"] = lambda seen: (302, {"Location": "/loop"}, b"")
    h, execution = call({"url": server.url + "/loop"})
    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    assert "more than 5 redirects" in execution.error.message
    assert len(server.seen) == 6

    h, execution = call({"url": server.url + "/loop", "allow_redirects": False})
    h.assert_failed(execution, "HTTP_302")


@pytest.mark.parametrize("headers", [{}, {"Connection": "close"}], ids=["length", "no-length"])
def test_a_response_over_the_size_limit_fails(server: LocalServer, headers: dict[str, str]) -> None:
    server.routes["/big"] = lambda seen: (200, headers, b"x" * 5000)
    h, execution = call({"url": server.url + "/big"}, max_response_bytes=1000)
    h.assert_failed(execution, HTTP_ERROR)
    assert execution.error is not None
    assert "larger than 1000 bytes" in execution.error.message

    h, execution = call({"url": server.url + "/big"}, max_response_bytes=5000)
    h.assert_completed(execution)


def test_a_head_answer_is_not_judged_by_the_length_it_declares(server: LocalServer) -> None:
    server.routes["/big"] = lambda seen: (200, {"Content-Type": "text/plain"}, b"x" * 5000)
    config = {"method": "HEAD", "url": server.url + "/big"}
    h, execution = call(config, max_response_bytes=1000)
    h.assert_completed(execution)
    assert execution.context["response"]["headers"]["content-length"] == "5000"
    assert execution.context["response"]["body"] == ""


def test_a_url_the_input_does_not_fill_fails_with_input_error(server: LocalServer) -> None:
    h, execution = call({"url": "${target}"}, {})
    h.assert_failed(execution, "INPUT_ERROR")
    assert execution.error is not None
    assert "url must be text" in execution.error.message


@pytest.mark.parametrize(
    ("config", "path", "problem"),
    [
        ({"url": "http://x.test", "json": {}, "body": "b"}, "steps.call.config",
         "give json or body, not both"),
        ({"method": "GET"}, "steps.call.config", "missing required key 'url'"),
        ({"url": "http://x.test", "method": "FETCH"}, "steps.call.config.method", "FETCH"),
        ({"url": "http://x.test", "timeout_ms": 0}, "steps.call.config.timeout_ms", "0"),
        ({"url": "http://x.test", "response": "xml"}, "steps.call.config.response", "xml"),
        ({"url": "http://x.test", "retries": 3}, "steps.call.config",
         "unknown key 'retries'; allowed: method, url"),
        ({"url": "http://x.test", "headers": {"X": 1}}, "steps.call.config.headers.X",
         "must be a string, not 1"),
        ({"url": "http://x.test", "expect_status": [99]}, "steps.call.config.expect_status.0",
         "99"),
    ],
)  # fmt: skip
def test_a_config_the_schema_refuses_is_refused_at_registration(
    config: dict[str, Any], path: str, problem: str
) -> None:
    flows = FlowRegistry(handlers=HandlerRegistry([HttpHandler()]))
    with pytest.raises(FlowValidationError) as caught:
        flows.register(http_flow(config))
    assert [p for p, _ in caught.value.issues] == [path]
    assert problem in caught.value.issues[0][1]
    assert "calling" not in flows


def test_an_allowed_hosts_pattern_that_is_not_one_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="is not a host or"):
        HttpHandler(allowed_hosts=["api.*.com"])
    with pytest.raises(ValueError, match="not one string"):
        HttpHandler(allowed_hosts="api.example.com")
