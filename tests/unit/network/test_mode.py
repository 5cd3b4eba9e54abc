from __future__ import annotations

from typing import Any

import pytest

from whaled.errors import InvalidParameter, NotFound
from whaled.network.mode import (
    HOST_PORTS_WARNING,
    NO_BRIDGE_WARNING,
    check_join,
    check_network_config,
    default_hostname,
    joined_container,
)


@pytest.mark.parametrize(
    ("hc", "error", "message"),
    [
        ({"NetworkMode": "mynet"}, NotFound, "network mynet not found"),
        (
            {"NetworkMode": "none", "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}},
            InvalidParameter,
            "port publishing",
        ),
        (
            {"NetworkMode": "container:abc", "PublishAllPorts": True},
            InvalidParameter,
            "conflicting options: port publishing and the container type network mode",
        ),
    ],
)
def test_refused_network_configs(hc: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        check_network_config(hc)


def test_modes_and_warnings() -> None:
    assert check_network_config({"NetworkMode": "default"}) == [NO_BRIDGE_WARNING]
    assert check_network_config({"NetworkMode": "bridge"}) == [NO_BRIDGE_WARNING]
    assert check_network_config({"NetworkMode": "host"}) == []
    assert check_network_config({"NetworkMode": "container:abc"}) == []
    published = {"NetworkMode": "host", "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}
    assert check_network_config(published) == [HOST_PORTS_WARNING]


def test_joins() -> None:
    assert joined_container("container:web") == "web"
    assert joined_container("host") is None
    with pytest.raises(InvalidParameter, match="cannot join a container that joins another"):
        check_join("NetworkMode", "container:third")
    check_join("PidMode", "container:third")  # only the network join is refused
    check_join("NetworkMode", "default")


def test_default_hostname() -> None:
    assert default_hostname("host", "a" * 64, "myhost") == "myhost"
    assert default_hostname("none", "a" * 64, "myhost") == "a" * 12
