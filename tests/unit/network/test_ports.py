"""Published-port rules: PortBindings / PublishAllPorts → mappings, the Ports shape, and
what a create on a user network may publish."""

from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.network.mode import check_network_config
from whaled.network.ports import (
    PortMapping,
    PublishedPort,
    check_ports,
    port_mappings,
    ports_json,
)


def test_mappings() -> None:
    hc = {
        "PortBindings": {
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}, {"HostPort": ""}],
            "53": [{}],
        },
        "PublishAllPorts": True,
    }
    config = {"ExposedPorts": {"80/tcp": {}, "9000/tcp": {}}}
    assert port_mappings(hc, config) == [
        PortMapping(proto="tcp", container_port=80, host_ip="127.0.0.1", host_port=8080),
        PortMapping(proto="tcp", container_port=80, host_ip="", host_port=0),
        PortMapping(proto="tcp", container_port=53, host_ip="", host_port=0),
        PortMapping(proto="tcp", container_port=9000, host_ip="", host_port=0),
    ]
    with pytest.raises(InvalidParameter, match="invalid proto"):
        port_mappings({"PortBindings": {"80/xyz": [{}]}}, {})
    with pytest.raises(InvalidParameter, match="invalid port specification"):
        port_mappings({"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}, {})


def test_host_port_ranges() -> None:
    (m,) = port_mappings({"PortBindings": {"53/udp": [{"HostPort": "8000-8002"}]}}, {})
    assert (m.proto, m.host_port, m.host_port_end) == ("udp", 8000, 8002)
    assert list(m.candidates()) == [8000, 8001, 8002]
    (one,) = port_mappings({"PortBindings": {"80": [{"HostPort": "8080"}]}}, {})
    assert list(one.candidates()) == [8080]
    (anyport,) = port_mappings({"PortBindings": {"80": [{}]}}, {})
    assert list(anyport.candidates()) == [0]
    for bad in ("8002-8000", "1-99999", "a-b", "-5"):
        with pytest.raises(InvalidParameter):
            port_mappings({"PortBindings": {"80/tcp": [{"HostPort": bad}]}}, {})


def test_ports_shape() -> None:
    p = PublishedPort(proto="tcp", container_port=80, host_ip="0.0.0.0", host_port=32768)
    u = PublishedPort(proto="udp", container_port=53, host_ip="127.0.0.1", host_port=5353)
    assert ports_json(["80/tcp", "7000/tcp"], [p, u]) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
        "7000/tcp": None,
    }
    assert PublishedPort.from_json(u.to_json()) == u


def test_publishing_needs_a_bridge_and_tcp_or_udp() -> None:
    hc = {"NetworkMode": "mynet", "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}
    assert check_network_config(hc, wired=True) == []
    with pytest.raises(InvalidParameter, match="needs a network with a bridge"):
        check_network_config({**hc, "NetworkMode": "default"})
    assert check_network_config({**hc, "NetworkMode": "default"}, wired=True) == []
    assert check_network_config(
        {"NetworkMode": "mynet", "PortBindings": {"53/udp": [{}]}}, wired=True
    ) == []
    with pytest.raises(InvalidParameter, match="tcp and udp are"):
        check_network_config(
            {"NetworkMode": "mynet", "PortBindings": {"53/sctp": [{}]}}, wired=True
        )


@pytest.mark.parametrize(
    ("host_config", "config", "message"),
    [
        ({"PortBindings": {"abc/tcp": None}}, {}, 'invalid port specification: "abc/tcp"'),
        ({"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}, {}, '"99999"'),
        ({}, {"ExposedPorts": {"99999/tcp": {}}}, 'invalid port specification: "99999/tcp"'),
    ],
)
def test_check_ports_refuses_at_create(
    host_config: dict[str, object], config: dict[str, object], message: str
) -> None:
    """Issue 17: invalid ports were stored at create and refused only at start."""
    with pytest.raises(InvalidParameter, match=message):
        check_ports(host_config, config)


def test_check_ports_passes_good_ports() -> None:
    check_ports(
        {"PortBindings": {"80/tcp": [{"HostPort": "8080"}], "53/udp": None}},
        {"ExposedPorts": {"80/tcp": {}, "9000": {}}},
    )
