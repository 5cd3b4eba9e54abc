"""Volumes and a container's volume mounts, as records (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The label dockerd (≥ 23) puts on volumes made for ``-v /path`` and an image's ``VOLUME``.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
LOCAL_DRIVER = "local"


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume:
    name: str
    driver: str = LOCAL_DRIVER
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)  # driver_opts (type, device, o)
    created_at: str = ""
    #: The container an anonymous volume was made for, while that container may still
    #: remove it (``rm -v``, ``--rm``); cleared when it is removed without ``-v`` (the
    #: volume is then kept). An owner that does not exist at daemon start means a create
    #: or a removal was cut short: the volume is an orphan. whaled's own; not in the API.
    owner: str = ""

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "Name": self.name,
            "Driver": self.driver,
            "Labels": dict(self.labels),
            "Options": dict(self.options),
            "CreatedAt": self.created_at,
        }
        if self.owner:
            doc["WhaledOwner"] = self.owner
        return doc

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> Volume:
        return Volume(
            name=str(doc["Name"]),
            driver=str(doc.get("Driver") or LOCAL_DRIVER),
            labels={str(k): str(v) for k, v in (doc.get("Labels") or {}).items()},
            options={str(k): str(v) for k, v in (doc.get("Options") or {}).items()},
            created_at=str(doc.get("CreatedAt") or ""),
            owner=str(doc.get("WhaledOwner") or ""),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MountPoint:
    """A volume mounted into a container (kept in the container's record)."""

    name: str
    destination: str
    source: str = ""  # the volume's data directory on the host
    rw: bool = True
    mode: str = ""  # the options as given (``ro,nocopy``, ``z``...), shown in inspect
    nocopy: bool = False
    subpath: str = ""
    anonymous: bool = False
    driver: str = LOCAL_DRIVER

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "destination": self.destination,
            "source": self.source,
            "rw": self.rw,
            "mode": self.mode,
            "nocopy": self.nocopy,
            "subpath": self.subpath,
            "anonymous": self.anonymous,
            "driver": self.driver,
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> MountPoint:
        return MountPoint(
            name=str(doc["name"]),
            destination=str(doc["destination"]),
            source=str(doc.get("source") or ""),
            rw=bool(doc.get("rw", True)),
            mode=str(doc.get("mode") or ""),
            nocopy=bool(doc.get("nocopy")),
            subpath=str(doc.get("subpath") or ""),
            anonymous=bool(doc.get("anonymous")),
            driver=str(doc.get("driver") or LOCAL_DRIVER),
        )
