"""Flags + daemon.json merge and decoding (pure)."""

from __future__ import annotations

import dataclasses

import pytest

from whaled.config.loader import ConfigSource, build_config, load, merge
from whaled.config.model import Config, FrozenMap, RuntimeConfig, Ulimit
from whaled.config.options import OPTIONS, OPTIONS_BY_KEY, encode_value, parse_ram_size
from whaled.errors import ConfigError


def test_every_option_has_a_config_field_and_back() -> None:
    fields = {f.name for f in dataclasses.fields(Config)}
    assert {o.field for o in OPTIONS} == fields


def test_empty_sources_give_defaults() -> None:
    assert load(ConfigSource(flags={})) == Config()
    assert load(ConfigSource(flags={}, file_path="/f", file_text="  \n")) == Config()


def test_file_values_are_decoded() -> None:
    text = """{"debug": true, "labels": ["a=b"], "max-concurrent-downloads": 7,
      "runtimes": {"custom": {"path": "/usr/sbin/runc", "runtimeArgs": ["--debug"]}},
      "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048}},
      "default-shm-size": "128M", "log-opts": {"max-size": "10m"}}"""
    cfg = load(ConfigSource(flags={}, file_path="/f", file_text=text))
    assert cfg.debug is True
    assert cfg.labels == ("a=b",)
    assert cfg.max_concurrent_downloads == 7
    assert cfg.runtimes["custom"] == RuntimeConfig(path="/usr/sbin/runc", runtime_args=("--debug",))
    assert cfg.default_ulimits["nofile"] == Ulimit(name="nofile", soft=1024, hard=2048)
    assert cfg.default_shm_size == 128 * 1024 * 1024
    assert cfg.log_opts == FrozenMap({"max-size": "10m"})


def test_flags_and_file_merge_when_disjoint() -> None:
    cfg = load(ConfigSource(flags={"debug": True}, file_path="/f", file_text='{"labels": ["x=y"]}'))
    assert cfg.debug and cfg.labels == ("x=y",)


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError) as e:
        load(ConfigSource(flags={}, file_path="/etc/x.json", file_text='{"foo": 1, "bar": 2}'))
    assert str(e.value) == (
        "unable to configure the whaled daemon with file /etc/x.json: the following directives "
        "don't match any configuration option: bar, foo"
    )


def test_flag_file_conflict_names_the_keys() -> None:
    with pytest.raises(ConfigError) as e:
        merge({"debug": True, "labels": ["a=b"]}, {"debug": False, "labels": ["c=d"]})
    assert str(e.value) == (
        "the following directives are specified both as a flag and in the configuration file: "
        'debug: (from flag: true, from file: false), labels: (from flag: ["a=b"], '
        'from file: ["c=d"])'
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"debug": "yes"}', 'invalid value for "debug": expected a boolean, got string "yes"'),
        ('{"max-concurrent-uploads": true}', '"max-concurrent-uploads": expected an integer'),
        ('{"labels": "a=b"}', '"labels": expected an array of strings'),
        ('{"log-level": "loud"}', 'invalid value for "log-level": "loud"'),
        ('{"runtimes": {"x": {"path": 3}}}', '"runtimes.x.path": expected a string'),
        ('{"runtimes": {"x": {"pth": "/a"}}}', '"runtimes.x": unknown field(s) pth'),
        ('{"default-shm-size": "lots"}', '"default-shm-size": invalid size'),
        ('{"default-ipc-mode": "host"}', '"default-ipc-mode": "host"'),
        ('{"debug": true,}', "invalid JSON in /f"),
        ("[1]", "the top level must be an object"),
    ],
)
def test_bad_values_name_the_key(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(ConfigSource(flags={}, file_path="/f", file_text=text))
    assert fragment in str(e.value)
    assert str(e.value).startswith("unable to configure the whaled daemon with file /f: ")


def test_flag_errors_are_not_blamed_on_a_file() -> None:
    with pytest.raises(ConfigError) as e:
        load(ConfigSource(flags={"mtu": "x"}))
    assert str(e.value).startswith('invalid value for "mtu"')


def test_build_config_rejects_unknown_flag_keys() -> None:
    with pytest.raises(ConfigError):
        build_config({"nope": 1})


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64M", 64 << 20),
        ("1g", 1 << 30),
        ("512kb", 512 << 10),
        ("100", 100),
        ("1.5k", 1536),
        ("2MiB", 2 << 20),
    ],
)
def test_ram_sizes(text: str, size: int) -> None:
    assert parse_ram_size(text) == size


@pytest.mark.parametrize("text", ["", "x", "-1m", "12q"])
def test_bad_ram_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ram_size(text)


def test_encode_round_trips_through_decode() -> None:
    cfg = load(
        ConfigSource(
            flags={},
            file_path="/f",
            file_text="""{"runtimes": {"c": {"path": "/bin/x", "runtimeArgs": ["-a"]}},
            "default-ulimits": {"nproc": {"Name": "nproc", "Soft": 1, "Hard": 2}},
            "proxies": {"http-proxy": "http://p:3128"},
            "default-address-pools": [{"base": "10.10.0.0/16", "size": 24}]}""",
        )
    )
    again = build_config(
        {o.key: encode_value(getattr(cfg, o.field)) for o in OPTIONS if o.key != "tls"}
    )
    assert again == cfg


def test_config_is_immutable_and_hashable() -> None:
    cfg = Config(runtimes=FrozenMap({"a": RuntimeConfig(path="/x")}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.debug = True  # type: ignore[misc]
    assert hash(cfg) == hash(Config(runtimes=FrozenMap({"a": RuntimeConfig(path="/x")})))
    assert OPTIONS_BY_KEY["debug"].reloadable
    assert not OPTIONS_BY_KEY["data-root"].reloadable
