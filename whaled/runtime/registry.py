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
from whaled.errors import InvalidParameter

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
