"""The paths the runtime creates in a container's read-write layer as mount points (pure).

dockerd keeps these in a separate "init" layer under the container's RW layer, so a
container nobody touched has no changes and commits to an empty layer. whaled has no init
layer: runc creates the missing mount targets (the per-container /etc files, /proc, /sys,
/dev and friends) in the RW layer itself, and these helpers hide them from ``docker diff``
and ``docker commit`` the same way.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Protocol, TypeVar

#: Mount points the daemon's own mounts need (dockerd's init layer holds the same set).
INIT_PATHS = frozenset(
    {
        "/.dockerenv",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
        "/etc/mtab",
        "/dev/console",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/proc",
        "/sys",
        "/sys/fs/cgroup",
    }
)

DELETE = 2  # Docker's change kind for a deletion


class ChangeLike(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def kind(self) -> int: ...


C = TypeVar("C", bound=ChangeLike)


def _parents(path: str) -> list[str]:
    out = []
    while path not in ("/", ""):
        path = posixpath.dirname(path)
        if path != "/":
            out.append(path)
    return out


def hide_init_paths(changes: Sequence[C]) -> list[C]:
    """``changes`` without the runtime's mount points, and without the parent directories
    that only changed because of them (a directory that also holds a real change stays)."""
    hidden = [c for c in changes if c.path in INIT_PATHS and c.kind != DELETE]
    if not hidden:
        return list(changes)
    hidden_set = {c.path for c in hidden}
    kept = [c for c in changes if c.path not in hidden_set]
    parents = {p for c in hidden for p in _parents(c.path)}
    out = []
    for c in kept:
        if c.path in parents and c.kind != DELETE:
            prefix = c.path + "/"
            if not any(k.path.startswith(prefix) for k in kept):
                continue
        out.append(c)
    return out


def init_exclusions() -> frozenset[str]:
    """INIT_PATHS as tar member names (no leading slash), for commit's diff."""
    return frozenset(p.lstrip("/") for p in INIT_PATHS)
