"""Published-port rules: PortBindings / PublishAllPorts → mappings, the Ports shape, and
what a create on a user network may publish."""

from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.network.mode import check_network_config
from whaled.network.ports import PortMapping, port_mappings, ports_json


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


def test_ports_shape() -> None:
    m = PortMapping(proto="tcp", container_port=80, host_ip="", host_port=0)
    assert ports_json(["80/tcp", "7000/tcp"], [(m, "0.0.0.0", 32768)]) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}],
        "7000/tcp": None,
    }


def test_publishing_needs_a_bridge_and_tcp() -> None:
    hc = {"NetworkMode": "mynet", "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}
    assert check_network_config(hc, wired=True) == []
    with pytest.raises(InvalidParameter, match="needs a network with a bridge"):
        check_network_config({**hc, "NetworkMode": "default"})
    assert check_network_config({**hc, "NetworkMode": "default"}, wired=True) == []
    with pytest.raises(InvalidParameter, match="tcp only"):
        check_network_config(
            {"NetworkMode": "mynet", "PortBindings": {"53/udp": [{}]}}, wired=True
        )
