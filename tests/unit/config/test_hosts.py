from __future__ import annotations

import pytest

from whaled.config.hosts import ListenAddress, parse_host
from whaled.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "tls", "expected"),
    [
        ("", False, ListenAddress(proto="unix", path="/run/whaled.sock")),
        ("unix://", False, ListenAddress(proto="unix", path="/run/whaled.sock")),
        ("unix:///tmp/a.sock", False, ListenAddress(proto="unix", path="/tmp/a.sock")),
        ("tcp://127.0.0.1:2375", False, ListenAddress(proto="tcp", host="127.0.0.1", port=2375)),
        ("tcp://0.0.0.0", False, ListenAddress(proto="tcp", host="", port=2375)),
        ("tcp://:2376", True, ListenAddress(proto="tcp", host="", port=2376)),
        ("tcp://host.example", True, ListenAddress(proto="tcp", host="host.example", port=2376)),
        ("127.0.0.1:99", False, ListenAddress(proto="tcp", host="127.0.0.1", port=99)),
        ("tcp://[::1]:2375", False, ListenAddress(proto="tcp", host="::1", port=2375)),
    ],
)
def test_parse_host(text: str, tls: bool, expected: ListenAddress) -> None:
    assert parse_host(text, tls) == expected


@pytest.mark.parametrize(
    "text",
    [
        "unix://rel.sock",
        "fd://",
        "http://x:1",
        "tcp://h:port",
        "tcp://h:70000",
        "tcp://h:1/path",
        "tcp://::1:2375",
    ],
)
def test_bad_hosts(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid bind address"):
        parse_host(text)


def test_urls() -> None:
    assert parse_host("tcp://[::1]:7").url() == "tcp://[::1]:7"
