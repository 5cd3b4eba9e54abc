from __future__ import annotations

import pytest

from whaled.distribution.endpoints import (
    Endpoint,
    insecure_policy,
    is_insecure,
    nondistributable_allowed,
    plan_endpoints,
    registry_host,
    split_host_port,
)

DEFAULT = insecure_policy([])


@pytest.mark.parametrize(
    "host", ["127.0.0.1:5000", "127.0.0.1", "127.5.6.7:443", "[::1]:5000", "::1"]
)
def test_loopback_is_insecure_by_default(host: str) -> None:
    assert is_insecure(host, DEFAULT)


@pytest.mark.parametrize("host", ["10.0.0.1:5000", "registry.example.com", "[2001:db8::1]:5000"])
def test_other_hosts_are_secure_by_default(host: str) -> None:
    assert not is_insecure(host, DEFAULT)


def test_names_match_exactly_as_written() -> None:
    policy = insecure_policy(["myreg:5000", "other.example"])
    assert is_insecure("myreg:5000", policy)
    assert not is_insecure("myreg:5001", policy)
    assert not is_insecure("myreg", policy)
    assert is_insecure("other.example", policy)


def test_cidrs_match_ip_literals_and_resolved_addresses() -> None:
    policy = insecure_policy(["10.1.0.0/16", "2001:db8::/32"])
    assert is_insecure("10.1.2.3:5000", policy)
    assert not is_insecure("10.2.0.1:5000", policy)
    assert is_insecure("[2001:db8::5]:5000", policy)
    assert is_insecure("reg.lan:5000", policy, addresses=["192.168.1.1", "10.1.9.9"])
    assert not is_insecure("reg.lan:5000", policy, addresses=["192.168.1.1"])
    assert not is_insecure("reg.lan:5000", policy)
    # a host resolving to loopback is insecure (dockerd resolves names for the CIDR check)
    assert is_insecure("localhost:5000", DEFAULT, addresses=["127.0.0.1"])


def test_docker_hub_is_never_insecure() -> None:
    policy = insecure_policy(["docker.io", "0.0.0.0/0"])
    assert not is_insecure("docker.io", policy, addresses=["10.0.0.1"])
    assert not is_insecure("registry-1.docker.io", policy, addresses=["10.0.0.1"])


def test_scheme_prefixes_are_tolerated() -> None:
    policy = insecure_policy(["http://a:5000", "https://10.9.0.0/16"])
    assert is_insecure("a:5000", policy)
    assert is_insecure("10.9.1.1", policy)


def test_split_host_port() -> None:
    assert split_host_port("a:5000") == ("a", 5000)
    assert split_host_port("a") == ("a", None)
    assert split_host_port("[::1]:5000") == ("::1", 5000)
    assert split_host_port("[::1]") == ("::1", None)
    assert split_host_port("::1") == ("::1", None)


def test_plan_endpoints() -> None:
    assert plan_endpoints("reg.example", insecure=False) == [
        Endpoint(scheme="https", host="reg.example", verify=True)
    ]
    assert plan_endpoints("127.0.0.1:5000", insecure=True) == [
        Endpoint(scheme="https", host="127.0.0.1:5000", verify=False),
        Endpoint(scheme="http", host="127.0.0.1:5000", verify=False),
    ]
    assert registry_host("docker.io") == "registry-1.docker.io"
    assert plan_endpoints("docker.io", False)[0].base_url == "https://registry-1.docker.io"


def test_nondistributable_artifacts_list_names_and_networks() -> None:
    entries = ["registry.example:5000", "10.20.0.0/16"]
    assert nondistributable_allowed("registry.example:5000", entries)
    assert not nondistributable_allowed("registry.example", entries)
    assert nondistributable_allowed("10.20.3.4:5000", entries)
    # unlike insecure-registries, loopback is not in it by default
    assert not nondistributable_allowed("127.0.0.1:5000", entries)
    assert not nondistributable_allowed("127.0.0.1:5000", [])
