"""A container's user mounts (pure): HostConfig ``Binds``, ``Mounts`` and ``Tmpfs`` → the
runtime's mount list, and what a create may ask for (binds of absolute host paths, bind and
tmpfs ``--mount``s; volumes are resolved by ``whaled.volume.rules`` and the daemon).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whaled.errors import InvalidParameter
from whaled.runtime.mounts import BindMount, Mount, Propagation, TmpfsMount

_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


def check_mount_config(hc: Mapping[str, Any]) -> None:
    """Refuse the mount types whaled cannot make (dockerd's wording for an unknown type)."""
    for mount in hc.get("Mounts") or []:
        kind = mount.get("Type")
        if kind not in ("bind", "tmpfs", "volume"):
            raise InvalidParameter(f"mount type '{kind}' is not supported by whaled yet")


def parse_bind(text: str) -> BindMount:
    """``/src:/dst[:ro|rw|z|Z|propagation,...]``."""
    parts = text.split(":")
    if len(parts) < 2 or not parts[0].startswith("/") or not parts[1].startswith("/"):
        raise InvalidParameter(f"invalid volume specification: '{text}'")
    readonly = False
    propagation: Propagation = "rprivate"
    for opt in parts[2].split(",") if len(parts) > 2 and parts[2] else []:
        if opt in ("ro", "rw"):
            readonly = opt == "ro"
        elif opt in _PROPAGATIONS:
            propagation = opt  # type: ignore[assignment]
        elif opt in ("z", "Z", "nocopy", "consistent", "cached", "delegated"):
            continue
        else:
            raise InvalidParameter(f"invalid mode: {opt}")
    return BindMount(
        source=parts[0], destination=parts[1], readonly=readonly, propagation=propagation
    )


def _api_mount(m: Mapping[str, Any]) -> Mount:
    target = str(m.get("Target", ""))
    if m.get("Type") == "tmpfs":
        opts = m.get("TmpfsOptions") or {}
        return TmpfsMount(
            destination=target,
            size=opts.get("SizeBytes") or None,
            mode=opts.get("Mode") or None,
            readonly=bool(m.get("ReadOnly")),
        )
    bind = m.get("BindOptions") or {}
    return BindMount(
        source=str(m.get("Source", "")),
        destination=target,
        readonly=bool(m.get("ReadOnly")),
        propagation=bind.get("Propagation") or "rprivate",
        recursive=not bind.get("NonRecursive", False),
    )


def user_mounts(hc: Mapping[str, Any]) -> tuple[Mount, ...]:
    """Host binds and tmpfs mounts (volumes come from the container's mount points)."""
    mounts: list[Mount] = [parse_bind(b) for b in hc.get("Binds") or [] if str(b).startswith("/")]
    mounts.extend(_api_mount(m) for m in hc.get("Mounts") or [] if m.get("Type") != "volume")
    for dest, options in (hc.get("Tmpfs") or {}).items():
        opts = tuple(o for o in str(options).split(",") if o)
        mounts.append(TmpfsMount(destination=dest, options=opts))
    return tuple(mounts)
