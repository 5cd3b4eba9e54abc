"""Which executable a runtime name means (pure).

A runtime without arguments resolves to its binary. A runtime with ``runtimeArgs`` resolves
to a wrapper script ``#!/bin/sh`` + ``exec <binary> <args…> "$@"`` whose file name is the
SHA-256 of its exact contents, so a given name always has the same contents: wrappers are
written once and never changed or deleted while the daemon lives (``whaled.runtime.wrappers``
does the I/O). A container records the resolved path at start and keeps using it whatever
later reloads do to the config.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from whaled.config.model import Config
from whaled.errors import ConfigError, InvalidParameter

BUILTIN_ALIASES = {"io.containerd.runc.v2": "runc"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Wrapper:
    name: str  # file name: the SHA-256 hex of ``content``
    content: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedRuntime:
    name: str
    binary: str  # the runtime binary itself
    args: tuple[str, ...]  # global arguments (runtimeArgs)
    wrapper: Wrapper | None  # set when args are given

    def executable(self, wrappers_dir: str) -> str:
        """The path conmon runs: the wrapper when there are args, else the binary."""
        if self.wrapper is None:
            return self.binary
        return os.path.join(wrappers_dir, self.wrapper.name)


def wrapper_for(binary: str, args: tuple[str, ...]) -> Wrapper:
    words = " ".join(shlex.quote(w) for w in (binary, *args))
    content = f'#!/bin/sh\nexec {words} "$@"\n'.encode()
    return Wrapper(name=hashlib.sha256(content).hexdigest(), content=content)


def resolve_runtime(
    cfg: Config,
    name: str,
    builtin_paths: Mapping[str, str | None],
    which: Callable[[str], str | None],
) -> ResolvedRuntime:
    """Resolve ``name`` against this config snapshot.

    ``builtin_paths`` maps the built-in names (runc, crun) to their binaries (None when not
    installed); ``which`` resolves a bare binary name on PATH.
    """
    target = BUILTIN_ALIASES.get(name, name)
    if target in builtin_paths:
        binary = builtin_paths[target]
        if binary is None:
            raise InvalidParameter(f"runtime {name} is not installed on this host")
        return ResolvedRuntime(name=name, binary=binary, args=(), wrapper=None)
    runtime = cfg.runtimes.get(name)
    if runtime is None:
        raise InvalidParameter(f"unknown or invalid runtime name: {name}")
    binary = runtime.path if os.path.isabs(runtime.path) else (which(runtime.path) or "")
    if not binary:
        raise InvalidParameter(f"runtime {name}: {runtime.path} not found in PATH")
    args = tuple(runtime.runtime_args)
    return ResolvedRuntime(
        name=name, binary=binary, args=args, wrapper=wrapper_for(binary, args) if args else None
    )


def known_runtimes(cfg: Config, builtin_paths: Mapping[str, str | None]) -> frozenset[str]:
    names = {n for n, p in builtin_paths.items() if p is not None}
    names.update(a for a, t in BUILTIN_ALIASES.items() if t in names)
    names.update(cfg.runtimes)
    return frozenset(names)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeDescription:
    """One entry of ``docker info``'s Runtimes, as dockerd shows it.

    ``path`` is the binary as configured (a wrapper script is an internal detail and never
    shown); ``args`` are the configured ``runtimeArgs``.
    """

    name: str
    path: str
    args: tuple[str, ...] = ()


def describe_runtimes(
    cfg: Config, builtin_paths: Mapping[str, str | None]
) -> tuple[RuntimeDescription, ...]:
    """Every runtime ``cfg`` offers (installed built-ins, their aliases, configured ones),
    sorted by name like dockerd's JSON map."""
    out: dict[str, RuntimeDescription] = {}
    for name, binary in builtin_paths.items():
        if binary is not None:
            out[name] = RuntimeDescription(name=name, path=binary)
    for alias, target in BUILTIN_ALIASES.items():
        if target in out:
            out[alias] = RuntimeDescription(name=alias, path=out[target].path)
    for name, runtime in cfg.runtimes.items():
        out[name] = RuntimeDescription(name=name, path=runtime.path, args=runtime.runtime_args)
    return tuple(out[n] for n in sorted(out))


def check_runtimes(
    cfg: Config,
    builtin_paths: Mapping[str, str | None],
    which: Callable[[str], str | None],
) -> tuple[ResolvedRuntime, ...]:
    """Resolve every configured runtime and the default one against the registry; return
    the configured runtimes resolved (their wrappers are what a reload writes ahead).

    Raises ``ConfigError`` with the start-up wording: a runtime whose binary cannot be
    found, a default runtime that is neither configured nor an installed built-in.
    """
    resolved: list[ResolvedRuntime] = []
    for name in cfg.runtimes:
        try:
            resolved.append(resolve_runtime(cfg, name, builtin_paths, which))
        except InvalidParameter as e:
            raise ConfigError(str(e)) from None
    default = cfg.default_runtime
    if default not in known_runtimes(cfg, builtin_paths):
        target = BUILTIN_ALIASES.get(default, default)
        if target in builtin_paths:
            raise ConfigError(f"default runtime {default} is not installed on this host")
        raise ConfigError(f"specified default runtime '{default}' does not exist")
    return tuple(resolved)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeChanges:
    """What a new config does to the runtimes of the live one (for the reload log)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    default: tuple[str, str] | None = None  # (old, new) when default-runtime changes

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.default)

    def describe(self) -> str:
        parts = [
            f"{what}: {', '.join(names)}"
            for what, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if names
        ]
        if self.default is not None:
            parts.append(f"default: {self.default[0]} -> {self.default[1]}")
        return "; ".join(parts)


def runtime_changes(live: Config, new: Config) -> RuntimeChanges:
    old_rt, new_rt = live.runtimes, new.runtimes
    return RuntimeChanges(
        added=tuple(sorted(set(new_rt) - set(old_rt))),
        removed=tuple(sorted(set(old_rt) - set(new_rt))),
        changed=tuple(sorted(n for n in set(old_rt) & set(new_rt) if old_rt[n] != new_rt[n])),
        default=(
            (live.default_runtime, new.default_runtime)
            if live.default_runtime != new.default_runtime
            else None
        ),
    )
