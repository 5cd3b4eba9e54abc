"""Wire shape of a volume (``docker volume inspect``, ``/volumes``, ``system df``)."""

from __future__ import annotations

from typing import Any

from whaled.daemon.volumes import VolumeView


def shape_volume(view: VolumeView, *, usage: bool = False) -> dict[str, Any]:
    v = view.volume
    out: dict[str, Any] = {
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": dict(v.labels) or None,
        "Mountpoint": view.mountpoint,
        "Name": v.name,
        "Options": dict(v.options) or None,
        "Scope": "local",
    }
    if usage:
        out["UsageData"] = {"RefCount": view.ref_count, "Size": view.size}
    return out
