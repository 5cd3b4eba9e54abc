"""Command-line flags → daemon.json-shaped values (pure)."""

from __future__ import annotations

import pytest

from whaled.cli import build_parser, flags_to_values, parse_startup
from whaled.config.loader import ConfigSource, load
from whaled.errors import ConfigError


def values(*argv: str) -> dict[str, object]:
    return flags_to_values(build_parser().parse_args(list(argv)))


def test_only_given_flags_are_passed_on() -> None:
    assert values() == {}
    assert values("-D") == {"debug": True}
    assert values("--debug=false") == {"debug": False}
    assert values("--tls=false") == {"tls": False}
    assert values("--live-restore", "--shutdown-timeout", "30") == {
        "live-restore": True,
        "shutdown-timeout": 30,
    }


def test_repeatable_and_shaped_flags() -> None:
    got = values(
        "-H",
        "unix:///a.sock",
        "-H",
        "tcp://127.0.0.1:2375",
        "--label",
        "a=b",
        "--label",
        "c=d",
        "--add-runtime",
        "custom=/usr/sbin/runc",
        "--default-ulimit",
        "nofile=1024:2048",
        "--default-ulimit",
        "nproc=50",
        "--log-opt",
        "max-size=10m",
        "--default-address-pool",
        "base=10.10.0.0/16,size=24",
        "--http-proxy",
        "http://p:1",
        "--insecure-registry",
        "r:5000",
        "--registry-mirror",
        "https://m",
    )
    assert got == {
        "hosts": ["unix:///a.sock", "tcp://127.0.0.1:2375"],
        "labels": ["a=b", "c=d"],
        "runtimes": {"custom": {"path": "/usr/sbin/runc"}},
        "default-ulimits": {
            "nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048},
            "nproc": {"Name": "nproc", "Soft": 50, "Hard": 50},
        },
        "log-opts": {"max-size": "10m"},
        "default-address-pools": [{"base": "10.10.0.0/16", "size": 24}],
        "proxies": {"http-proxy": "http://p:1"},
        "insecure-registries": ["r:5000"],
        "registry-mirrors": ["https://m"],
    }


def test_flag_values_decode_into_config() -> None:
    cfg = load(ConfigSource(flags=values("--add-runtime", "c=/x", "--default-shm-size", "1g")))
    assert cfg.runtimes["c"].path == "/x"
    assert cfg.default_shm_size == 1 << 30


@pytest.mark.parametrize(
    "argv",
    [
        ("--add-runtime", "nopath"),
        ("--default-ulimit", "nofile=a:b"),
        ("--default-address-pool", "base=10.0.0.0/8"),
    ],
)
def test_malformed_shaped_flags(argv: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        values(*argv)


def test_bad_bool_is_an_argument_error() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--debug=maybe"])


def test_config_file_default_and_explicit() -> None:
    _, startup = parse_startup([])
    assert startup.config_file == "/etc/whaled/daemon.json" and not startup.explicit_file
    _, startup = parse_startup(["--config-file", "/tmp/x.json", "--validate"])
    assert startup.config_file == "/tmp/x.json" and startup.explicit_file
