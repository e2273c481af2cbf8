"""`HostRules`: which URLs the `http`, `webhook` and `llm` steps may call. Only IP literals
and names the test resolver knows are checked here, so nothing is looked up or connected to."""

from __future__ import annotations

import ipaddress

import pytest

from flowmonkey_celery.handlers.host_rules import Address, HostRules, RequestFailed


class Table:
    """A resolver over a fixed table, recording what it was asked."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[Address]:
        self.lookups.append(host)
        return [ipaddress.ip_address(self.table[host])]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # AWS, Azure, GCP, OCI
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS over IPv6
        "http://169.254.170.2/v2/credentials/task",  # AWS ECS task metadata
        "http://169.254.170.23/v1/credentials",  # AWS EKS Pod Identity
        "http://[fd00:ec2::23]/v1/credentials",
        "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud
        "http://[::ffff:100.100.100.200]/",  # the same, IPv4-mapped
        "http://metadata.google.internal/computeMetadata/v1/",  # GCP, by name
        "http://Metadata.Google.Internal./computeMetadata/v1/",
    ],
)
def test_cloud_metadata_endpoints_stay_refused_when_private_addresses_are_allowed(
    url: str,
) -> None:
    resolver = Table({})
    rules = HostRules(allow_private_addresses=True, resolver=resolver)
    with pytest.raises(RequestFailed) as refused:
        rules.check(url)
    assert "a cloud metadata endpoint, which steps may never call" in str(refused.value)
    assert refused.value.retryable is False
    assert resolver.lookups == []  # refused by address or by name, never looked up


def test_a_name_that_resolves_to_a_metadata_endpoint_is_refused() -> None:
    resolver = Table({"imds.corp.example": "100.100.100.200"})
    rules = HostRules(allow_private_addresses=True, resolver=resolver)
    with pytest.raises(RequestFailed) as refused:
        rules.check("http://imds.corp.example/latest/meta-data/")
    assert "it resolves to 100.100.100.200, a cloud metadata endpoint" in str(refused.value)
    assert refused.value.details["address"] == "100.100.100.200"


def test_the_rest_of_the_shared_address_space_is_private_not_metadata() -> None:
    HostRules(allow_private_addresses=True).check("http://100.64.0.1/")  # allowed
    with pytest.raises(RequestFailed) as refused:
        HostRules().check("http://100.64.0.1/")
    assert "FLOWMONKEY_HTTP_ALLOW_PRIVATE=true" in str(refused.value)


def test_addresses_gives_the_checked_addresses_to_connect_to() -> None:
    rules = HostRules(allow_private_addresses=True, resolver=Table({"api.test": "10.1.2.3"}))
    assert rules.addresses("api.test", 443) == [ipaddress.ip_address("10.1.2.3")]
    with pytest.raises(RequestFailed, match="a private address"):
        HostRules(resolver=Table({"api.test": "10.1.2.3"})).addresses("api.test", 443)
