from __future__ import annotations

import hashlib

import pytest

from whaled.config.model import Config, FrozenMap, RuntimeConfig
from whaled.errors import ConfigError, InvalidParameter
from whaled.runtime.registry import (
    RuntimeDescription,
    check_runtimes,
    describe_runtimes,
    known_runtimes,
    resolve_runtime,
    runtime_changes,
    wrapper_for,
)

BUILTIN = {"runc": "/usr/sbin/runc", "crun": None}


def which(name: str) -> str | None:
    return {"runc": "/usr/sbin/runc"}.get(name)


def cfg(**runtimes: RuntimeConfig) -> Config:
    return Config(runtimes=FrozenMap(runtimes))


def test_builtin_and_alias_resolve_to_the_binary() -> None:
    r = resolve_runtime(Config(), "runc", BUILTIN, which)
    assert r.executable("/x") == "/usr/sbin/runc" and r.wrapper is None
    assert (
        resolve_runtime(Config(), "io.containerd.runc.v2", BUILTIN, which).binary
        == "/usr/sbin/runc"
    )
    with pytest.raises(InvalidParameter, match="runtime crun is not installed"):
        resolve_runtime(Config(), "crun", BUILTIN, which)


def test_runtime_with_args_gets_a_content_addressed_wrapper() -> None:
    c = cfg(custom=RuntimeConfig(path="runc", runtime_args=("--debug", "--log-format", "json")))
    r = resolve_runtime(c, "custom", BUILTIN, which)
    assert r.wrapper is not None
    assert r.wrapper.content == b'#!/bin/sh\nexec /usr/sbin/runc --debug --log-format json "$@"\n'
    assert r.wrapper.name == hashlib.sha256(r.wrapper.content).hexdigest()
    assert r.executable("/run/w/runtimes") == f"/run/w/runtimes/{r.wrapper.name}"
    other = resolve_runtime(
        cfg(custom=RuntimeConfig(path="/usr/sbin/runc", runtime_args=("--debug",))),
        "custom",
        BUILTIN,
        which,
    )
    assert other.wrapper is not None and other.wrapper.name != r.wrapper.name


def test_args_are_shell_quoted() -> None:
    w = wrapper_for("/opt/my rt", ("--root", "/a b", "$HOME"))
    assert w.content == b"#!/bin/sh\nexec '/opt/my rt' --root '/a b' '$HOME' \"$@\"\n"


def test_unknown_runtime_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidParameter, match="unknown or invalid runtime name: ghost"):
        resolve_runtime(Config(), "ghost", BUILTIN, which)


def test_known_runtimes() -> None:
    c = cfg(custom=RuntimeConfig(path="/x"))
    assert known_runtimes(c, BUILTIN) == {"runc", "io.containerd.runc.v2", "custom"}


def test_describe_runtimes_is_what_docker_info_lists() -> None:
    c = cfg(
        custom=RuntimeConfig(path="runc", runtime_args=("--debug",)),
        plain=RuntimeConfig(path="/opt/rt"),
    )
    assert describe_runtimes(c, BUILTIN) == (
        RuntimeDescription(name="custom", path="runc", args=("--debug",)),
        RuntimeDescription(name="io.containerd.runc.v2", path="/usr/sbin/runc"),
        RuntimeDescription(name="plain", path="/opt/rt"),
        RuntimeDescription(name="runc", path="/usr/sbin/runc"),
    )
    with_crun = {"runc": "/usr/sbin/runc", "crun": "/usr/bin/crun"}
    assert [d.name for d in describe_runtimes(Config(), with_crun)] == [
        "crun",
        "io.containerd.runc.v2",
        "runc",
    ]
    assert describe_runtimes(Config(), {"runc": None, "crun": None}) == ()


def test_check_runtimes_resolves_every_runtime_and_the_default() -> None:
    c = Config(
        runtimes=FrozenMap(
            {
                "custom": RuntimeConfig(path="runc", runtime_args=("--debug",)),
                "plain": RuntimeConfig(path="/opt/rt"),
            }
        ),
        default_runtime="custom",
    )
    resolved = check_runtimes(c, BUILTIN, which)
    assert [(r.name, r.wrapper is not None) for r in resolved] == [
        ("custom", True),
        ("plain", False),
    ]
    assert check_runtimes(Config(default_runtime="io.containerd.runc.v2"), BUILTIN, which) == ()
    with pytest.raises(ConfigError, match="default runtime crun is not installed on this host"):
        check_runtimes(Config(default_runtime="crun"), BUILTIN, which)
    with pytest.raises(ConfigError, match="specified default runtime 'ghost' does not exist"):
        check_runtimes(Config(default_runtime="ghost"), BUILTIN, which)
    with pytest.raises(ConfigError, match="runtime lost: nowhere not found in PATH"):
        check_runtimes(cfg(lost=RuntimeConfig(path="nowhere")), BUILTIN, which)


def test_runtime_changes_for_the_reload_log() -> None:
    live = Config(
        runtimes=FrozenMap(
            {
                "kept": RuntimeConfig(path="/a"),
                "changed": RuntimeConfig(path="/a", runtime_args=("-x",)),
                "gone": RuntimeConfig(path="/a"),
            }
        )
    )
    new = Config(
        runtimes=FrozenMap(
            {
                "kept": RuntimeConfig(path="/a"),
                "changed": RuntimeConfig(path="/a", runtime_args=("-y",)),
                "new": RuntimeConfig(path="/b"),
            }
        ),
        default_runtime="new",
    )
    changes = runtime_changes(live, new)
    assert (changes.added, changes.removed, changes.changed) == (("new",), ("gone",), ("changed",))
    assert changes.describe() == "added: new; removed: gone; changed: changed; default: runc -> new"
    assert not runtime_changes(live, live) and runtime_changes(live, live).describe() == ""
