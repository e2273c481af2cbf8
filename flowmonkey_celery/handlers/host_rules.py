"""Which URLs the `http`, `webhook` and `llm` steps may call (`HostRules`), and the requests
transport adapter that holds every connection to them (`CheckedAdapter`).

The rules are checked on each URL before it is called, and again by the adapter on each new
connection: it resolves the host once, checks every address and opens the socket to a checked
one, so a name cannot resolve to a public address for the check and to a private one for the
connection (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, LocationParseError, NewConnectionError
from urllib3.util import connection, parse_url

# Cloud metadata and credential endpoints, refused even where private addresses are allowed.
# Some are link-local (refused as such anyway) and named here for the clearer message; the
# others sit in ranges a private network may use.
_METADATA = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, Azure, GCP, OCI, OpenStack instance metadata
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS Pod Identity credentials
        "fd00:ec2::23",  # the same over IPv6
        "100.100.100.200",  # Alibaba Cloud instance metadata (in 100.64.0.0/10)
    )
)
# Names of metadata endpoints, refused before they are looked up (one may resolve to a
# private address where a split-horizon DNS or a hosts file maps it).
_METADATA_HOSTS = frozenset({"metadata.google.internal"})
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[Address]]
"""Turns a host name and port into the addresses to connect to; raises OSError (such as
`socket.gaierror`) when the name does not resolve. `system_resolver` is the default."""


def system_resolver(host: str, port: int) -> list[Address]:
    """The addresses `host` resolves to (getaddrinfo, TCP), in the order given, once each."""
    found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    # A scoped IPv6 address (fe80::1%eth0) keeps its zone after the "%".
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in found))


class RequestFailed(Exception):
    """No usable answer: the request was refused by the host rules, could not be made, or
    its response could not be read. `retryable` is passed on to the step's failure."""

    def __init__(
        self, problem: str, details: dict[str, Any] | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(problem)
        self.details = dict(details or {})
        self.retryable = retryable


@dataclass(frozen=True)
class HostRules:
    """Which URLs a step may call.

    Args:
        allowed_hosts: host names (`api.example.com`) or suffix patterns (`*.example.com`,
            which matches sub-domains only); None allows any host, an empty collection none.
        allow_private_addresses: allow hosts resolving to private, loopback, unspecified,
            multicast or reserved addresses. Link-local addresses and cloud metadata
            endpoints are refused whatever the rules.
        resolver: how host names become addresses (default `system_resolver`); a test can
            map names to a local server with its own.

    Raises:
        ValueError: a pattern that is neither a host name nor `*.` and a domain.
    """

    allowed_hosts: Collection[str] | None = None
    allow_private_addresses: bool = False
    resolver: Resolver = field(default=system_resolver, repr=False, compare=False)
    _patterns: tuple[str, ...] = field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        if self.allowed_hosts is None:
            return
        if isinstance(self.allowed_hosts, str):
            raise ValueError("allowed_hosts must be a collection of host names, not one string")
        patterns = tuple(_normal_host(host) for host in self.allowed_hosts)
        for pattern in patterns:
            if not pattern or "*" in pattern.removeprefix("*."):
                raise ValueError(f"allowed_hosts: {pattern!r} is not a host or *.domain pattern")
        object.__setattr__(self, "_patterns", patterns)

    def check(self, url: str) -> None:
        """Refuse `url` unless its scheme, host and every address the host resolves to pass.

        Raises:
            RequestFailed: refused (retryable False), or the host does not resolve.
        """
        try:
            parsed = parse_url(url)
        except LocationParseError:
            raise RequestFailed(f"invalid URL {url!r}", {"url": url}, False) from None
        if parsed.scheme not in ("http", "https"):
            raise RequestFailed(
                f"refused {url!r}: the scheme must be http or https", {"url": url}, False
            )
        if not _normal_host(parsed.host or ""):
            raise RequestFailed(f"invalid URL {url!r}: no host", {"url": url}, False)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.addresses(parsed.host or "", port, {"url": url})

    def addresses(
        self, host: str, port: int, details: Mapping[str, Any] | None = None
    ) -> list[Address]:
        """The addresses to connect to for `host`, each one checked: the host must be allowed
        and every address it resolves to must be, or none is returned.

        Raises:
            RequestFailed: refused (retryable False), or the host does not resolve.
        """
        host = _normal_host(host)
        details = {**(details or {}), "host": host}
        if self.allowed_hosts is not None and not any(
            _host_matches(host, p) for p in self._patterns
        ):
            raise RequestFailed(
                f"refused host {host!r}: it is not in the allowed hosts "
                f"({', '.join(self._patterns) or 'none'}); add it to "
                "FLOWMONKEY_HTTP_ALLOWED_HOSTS to allow it",
                details,
                False,
            )
        if host in _METADATA_HOSTS:
            raise RequestFailed(
                f"refused host {host!r}: a cloud metadata endpoint, which steps may never call",
                details,
                False,
            )
        found = self._resolve(host, port, details)
        for address in found:
            why = self._refusal(address)
            if why is not None:
                raise RequestFailed(
                    f"refused host {host!r}: it resolves to {address}, {why}",
                    {**details, "address": str(address)},
                    False,
                )
        return found

    def _resolve(self, host: str, port: int, details: dict[str, Any]) -> list[Address]:
        try:
            return [ipaddress.ip_address(host)]  # a literal needs no resolver
        except ValueError:
            pass
        try:
            found = list(self.resolver(host, port))
        except (OSError, UnicodeError) as exc:
            raise RequestFailed(f"cannot resolve host {host!r}: {exc}", details) from None
        if not found:
            raise RequestFailed(f"cannot resolve host {host!r}: no address", details)
        return found

    def _refusal(self, address: Address) -> str | None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address in _METADATA:
            return "a cloud metadata endpoint, which steps may never call"
        if any(address in network for network in _LINK_LOCAL):
            return "a link-local address, which steps may never call"
        if self.allow_private_addresses:
            return None
        for kind in ("loopback", "unspecified", "multicast", "private", "reserved"):
            if getattr(address, f"is_{kind}"):
                break
        else:
            if address.is_global:
                return None
            kind = "non-public"
        return (
            f"a {kind} address; set FLOWMONKEY_HTTP_ALLOW_PRIVATE=true to allow private addresses"
        )


class CheckedAdapter(HTTPAdapter):
    """A requests transport adapter that connects only to addresses `rules` allow.

    Each new connection resolves its host once, checks the host and every address (as
    `HostRules.addresses` does) and opens the socket to a checked address; the URL, the Host
    header, TLS SNI and the certificate check keep the host's name. A request through a
    proxy connects to the proxy instead, which resolves the name itself.

    Args:
        rules: the host rules every connection is checked against.
        **kwargs: passed to `requests.adapters.HTTPAdapter` (pool sizes, retries).
    """

    __attrs__ = [*HTTPAdapter.__attrs__, "rules"]

    def __init__(self, rules: HostRules, **kwargs: Any) -> None:
        self.rules = rules  # before super().__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _CheckedPoolManager(
            self.rules, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )


class _CheckedPoolManager(PoolManager):
    def __init__(self, rules: HostRules, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rules = rules
        self.pool_classes_by_scheme = {"http": _CheckedHTTPPool, "https": _CheckedHTTPSPool}

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        if isinstance(pool, _CheckedHTTPPool | _CheckedHTTPSPool):
            pool.rules = self.rules
        return pool


class _CheckedHTTPConnection(HTTPConnection):
    rules: HostRules | None = None

    def _new_conn(self) -> socket.socket:
        if self.rules is None:
            return super()._new_conn()
        return _checked_socket(self, self.rules)


class _CheckedHTTPSConnection(HTTPSConnection):
    rules: HostRules | None = None

    def _new_conn(self) -> socket.socket:
        if self.rules is None:
            return super()._new_conn()
        return _checked_socket(self, self.rules)


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection
    rules: HostRules | None = None

    def _new_conn(self) -> _CheckedHTTPConnection:
        conn = cast(_CheckedHTTPConnection, super()._new_conn())
        conn.rules = self.rules
        return conn


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection
    rules: HostRules | None = None

    def _new_conn(self) -> _CheckedHTTPSConnection:
        conn = cast(_CheckedHTTPSConnection, super()._new_conn())
        conn.rules = self.rules
        return conn


def _checked_socket(conn: HTTPConnection, rules: HostRules) -> socket.socket:
    """A socket to one of the checked addresses of `conn`'s host, tried in order, as
    urllib3's own `_new_conn` would open one (same timeout, options and errors)."""
    # One resolution, checked and connected to: a second lookup could answer differently.
    addresses = rules.addresses(conn.host, conn.port)
    error: OSError | None = None
    for address in addresses:
        try:
            sock = connection.create_connection(
                (str(address), conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except OSError as exc:
            error = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
        ) from error
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern
