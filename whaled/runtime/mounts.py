"""The mounts of a container's OCI spec: dockerd's default set, user binds and tmpfs, their
options and their order (pure)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from whaled.errors import InvalidParameter

Propagation = Literal["private", "rprivate", "shared", "rshared", "slave", "rslave"]
PROPAGATIONS: frozenset[str] = frozenset(
    {"private", "rprivate", "shared", "rshared", "slave", "rslave"}
)

OciMount = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class BindMount:
    """A host path bound into the container (``-v /src:/dst:ro``, ``--mount type=bind``)."""

    source: str
    destination: str
    readonly: bool = False
    propagation: Propagation = "rprivate"
    #: False for ``bind-recursive=disabled`` (``bind`` instead of ``rbind``).
    recursive: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class TmpfsMount:
    """A tmpfs (``--tmpfs /run:rw,size=64m`` or ``--mount type=tmpfs``)."""

    destination: str
    #: Options as given with ``--tmpfs`` (``exec``, ``size=64m``, ``mode=1777``…).
    options: tuple[str, ...] = ()
    #: ``tmpfs-size`` in bytes.
    size: int | None = None
    #: ``tmpfs-mode``.
    mode: int | None = None
    readonly: bool = False


Mount = BindMount | TmpfsMount

# Flags a tmpfs may carry, each with the flag it cancels.
_TMPFS_FLAG_PAIRS = {
    "rw": "ro",
    "ro": "rw",
    "exec": "noexec",
    "noexec": "exec",
    "suid": "nosuid",
    "nosuid": "suid",
    "dev": "nodev",
    "nodev": "dev",
    "atime": "noatime",
    "noatime": "atime",
    "diratime": "nodiratime",
    "nodiratime": "diratime",
    "relatime": "norelatime",
    "norelatime": "relatime",
    "strictatime": "nostrictatime",
    "nostrictatime": "strictatime",
    "sync": "async",
    "async": "sync",
    "dirsync": "",
    "mand": "nomand",
    "nomand": "mand",
}
_MEMPARSE = r"[0-9]+[kmgtpe]?"
#: What the kernel's tmpfs takes for each ``key=value`` option (a value it refuses would
#: only fail at start, as the runtime's mount error: a 500 for the client's mistake).
_TMPFS_DATA = {
    "size": re.compile(rf"({_MEMPARSE}|[0-9]+%)", re.IGNORECASE),
    "nr_inodes": re.compile(_MEMPARSE, re.IGNORECASE),
    "nr_blocks": re.compile(_MEMPARSE, re.IGNORECASE),
    "mode": re.compile(r"[0-7]{1,4}"),
    "uid": re.compile(r"[0-9]+"),
    "gid": re.compile(r"[0-9]+"),
    "mpol": re.compile(r"(default|prefer|bind|interleave|local)(:[0-9,-]+)?(=\w+)?"),
    "huge": re.compile(r"never|always|within_size|advise|deny|force"),
}
_TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")


def clean_path(path: str) -> str:
    return posixpath.normpath(path) if path else path


def tmpfs_options(m: TmpfsMount) -> list[str]:
    """dockerd's tmpfs options: ``noexec,nosuid,nodev`` unless overridden, then the given
    ones (a later flag cancels its opposite, a later ``key=`` replaces an earlier one)."""
    flags: dict[str, None] = dict.fromkeys(_TMPFS_DEFAULTS)
    data: dict[str, str] = {}
    for opt in m.options:
        opt = opt.strip()
        if not opt:
            continue
        key, sep, value = opt.partition("=")
        if sep:
            pattern = _TMPFS_DATA.get(key)
            if pattern is None or not pattern.fullmatch(value):
                raise InvalidParameter(f'invalid tmpfs option "{opt}"')
            data[key] = value
        elif opt in _TMPFS_FLAG_PAIRS:
            flags.pop(_TMPFS_FLAG_PAIRS[opt], None)
            flags[opt] = None
        else:
            raise InvalidParameter(f'invalid tmpfs option "{opt}"')
    if m.readonly:
        flags.pop("rw", None)
        flags["ro"] = None
    if m.size is not None:
        if m.size < 0:
            raise InvalidParameter(f"invalid tmpfs size {m.size}: must not be negative")
        data["size"] = str(m.size)
    if m.mode is not None:
        data["mode"] = format(m.mode, "o")
    return [*flags, *(f"{k}={v}" for k, v in data.items())]


def bind_options(m: BindMount) -> list[str]:
    opts = ["rbind" if m.recursive else "bind"]
    if m.readonly:
        opts.append("ro")
    opts.append(m.propagation)
    return opts


def validate_mounts(mounts: Sequence[Mount]) -> None:
    """dockerd's checks: absolute destinations other than ``/``, absolute bind sources, no
    destination twice."""
    seen: set[str] = set()
    for m in mounts:
        dest = m.destination
        if not dest.startswith("/"):
            raise InvalidParameter(
                f"invalid mount config: invalid mount path: '{dest}' mount path must be absolute"
            )
        if clean_path(dest) == "/":
            raise InvalidParameter("invalid specification: destination can't be '/'")
        if isinstance(m, BindMount):
            if not m.source.startswith("/"):
                raise InvalidParameter(
                    'invalid mount config for type "bind": invalid mount path: '
                    f"'{m.source}' mount path must be absolute"
                )
            if m.propagation not in PROPAGATIONS:
                raise InvalidParameter(f"invalid propagation mode: {m.propagation}")
        else:
            tmpfs_options(m)
        key = clean_path(dest)
        if key in seen:
            raise InvalidParameter(f"Duplicate mount point: {key}")
        seen.add(key)


def to_oci_mount(m: Mount) -> OciMount:
    if isinstance(m, BindMount):
        return {
            "destination": clean_path(m.destination),
            "type": "bind",
            "source": m.source,
            "options": bind_options(m),
        }
    return {
        "destination": clean_path(m.destination),
        "type": "tmpfs",
        "source": "tmpfs",
        "options": tmpfs_options(m),
    }


def default_mounts(*, privileged: bool, shm: OciMount | None) -> list[OciMount]:
    """dockerd's default mounts. ``shm`` is the /dev/shm mount (None: no /dev/shm, as with
    ``--ipc none``). A privileged container gets /sys and /sys/fs/cgroup read-write."""
    ro: list[str] = [] if privileged else ["ro"]
    mounts: list[OciMount] = [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", *ro],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", *ro],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
    ]
    if shm is not None:
        mounts.append(shm)
    return mounts


def shm_tmpfs(size: int) -> OciMount:
    """A private /dev/shm of ``size`` bytes."""
    if size <= 0:
        raise InvalidParameter("SHM size can not be less than 0")
    return {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"],
    }


def shm_bind(source: str) -> OciMount:
    """/dev/shm shared with the host or another container (a bind of its directory)."""
    return {
        "destination": "/dev/shm",
        "type": "bind",
        "source": source,
        "options": ["rbind", "rprivate"],
    }


def _depth(mount: OciMount) -> int:
    return len(clean_path(str(mount["destination"])).strip("/").split("/"))


def combine_mounts(defaults: Iterable[OciMount], user: Iterable[OciMount]) -> list[OciMount]:
    """Defaults first — without those a user mount replaces (same destination, or anything
    under /dev when the user mounts /dev) — then the user mounts ordered by destination depth
    so that a parent is mounted before its children (stable for equal depths)."""
    user_list = sorted(user, key=_depth)
    user_dests = {clean_path(str(m["destination"])) for m in user_list}
    dev_replaced = "/dev" in user_dests
    kept = [
        m
        for m in defaults
        if m["destination"] not in user_dests
        and not (dev_replaced and str(m["destination"]).startswith("/dev/"))
    ]
    return kept + user_list


def rootfs_propagation(mounts: Iterable[Mount]) -> str | None:
    """Shared or slave bind mounts need the root mount to propagate too (dockerd sets
    ``rshared`` / ``rslave``); the caller must also make sure the bind sources themselves are
    shared or slave mounts on the host."""
    props = {m.propagation for m in mounts if isinstance(m, BindMount)}
    if props & {"shared", "rshared"}:
        return "rshared"
    if props & {"slave", "rslave"}:
        return "rslave"
    return None
