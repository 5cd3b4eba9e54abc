from __future__ import annotations

import hashlib

import pytest

from whaled.config.model import Config, FrozenMap, RuntimeConfig
from whaled.errors import InvalidParameter
from whaled.runtime.registry import known_runtimes, resolve_runtime, wrapper_for

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
