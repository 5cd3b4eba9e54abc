"""Devices of a container: the nodes created in its /dev and the device-cgroup rules (pure).

The caller stats host device nodes (``--device``, or all of /dev for a privileged
container) and passes them as :class:`Device` values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from whaled.errors import InvalidParameter

DeviceType = Literal["c", "b", "u", "p"]

_ACCESS_RE = re.compile(r"^[rwm]{1,3}$")
_RULE_RE = re.compile(r"^([acb]) (\d+|\*):(\d+|\*) ([rwm]{1,3})$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """A device node to create in the container (resolved from a host node)."""

    #: Path inside the container.
    path: str
    type: DeviceType
    major: int
    minor: int
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    #: Device-cgroup access granted for it (``--device /dev/x:/dev/x:rw``).
    permissions: str = "rwm"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRule:
    """One device-cgroup rule; None for major/minor is the ``*`` wildcard."""

    allow: bool
    type: Literal["a", "c", "b"] = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allow": self.allow}
        if self.type != "a":
            out["type"] = self.type
        if self.major is not None:
            out["major"] = self.major
        if self.minor is not None:
            out["minor"] = self.minor
        out["access"] = self.access
        return out


def _allow_c(major: int | None, minor: int | None, access: str = "rwm") -> DeviceRule:
    return DeviceRule(allow=True, type="c", major=major, minor=minor, access=access)


#: dockerd's device cgroup for an unprivileged container: deny everything, let mknod create
#: any node (opening it is still denied), and allow the standard character devices.
DEFAULT_DEVICE_RULES: tuple[DeviceRule, ...] = (
    DeviceRule(allow=False),
    _allow_c(None, None, "m"),
    DeviceRule(allow=True, type="b", access="m"),
    _allow_c(1, 3),  # /dev/null
    _allow_c(1, 5),  # /dev/zero
    _allow_c(1, 7),  # /dev/full
    _allow_c(1, 8),  # /dev/random
    _allow_c(1, 9),  # /dev/urandom
    _allow_c(5, 0),  # /dev/tty
    _allow_c(5, 1),  # /dev/console
    _allow_c(5, 2),  # /dev/ptmx
    _allow_c(136, None),  # /dev/pts/*
)

#: The device cgroup of a privileged container: everything.
PRIVILEGED_DEVICE_RULES: tuple[DeviceRule, ...] = (DeviceRule(allow=True),)


def _rule_type(kind: str) -> Literal["a", "c", "b"]:
    if kind == "c":
        return "c"
    if kind == "b":
        return "b"
    return "a"


def parse_device_cgroup_rule(text: str) -> DeviceRule:
    """``--device-cgroup-rule`` syntax: ``c 1:3 rwm``, ``b 8:* r``, ``a *:* m``."""
    m = _RULE_RE.match(text.strip())
    if m is None:
        raise InvalidParameter(f"invalid device cgroup format '{text}'")
    kind, major, minor, access = m.groups()
    return DeviceRule(
        allow=True,
        type=_rule_type(kind),
        major=None if major == "*" else int(major),
        minor=None if minor == "*" else int(minor),
        access=access,
    )


def validate_device(device: Device) -> Device:
    if not device.path.startswith("/"):
        raise InvalidParameter(f"{device.path} is not an absolute path")
    if not _ACCESS_RE.match(device.permissions):
        raise InvalidParameter(f"invalid device mode: {device.permissions}")
    return device


def device_to_oci(device: Device) -> dict[str, Any]:
    """An entry of ``linux.devices``."""
    out: dict[str, Any] = {
        "path": device.path,
        "type": device.type,
        "major": device.major,
        "minor": device.minor,
    }
    if device.file_mode is not None:
        out["fileMode"] = device.file_mode
    if device.uid is not None:
        out["uid"] = device.uid
    if device.gid is not None:
        out["gid"] = device.gid
    return out


def device_rules_for(
    devices: Iterable[Device], rules: Iterable[DeviceRule], *, privileged: bool
) -> list[dict[str, Any]]:
    """``linux.resources.devices``: the defaults, then each device's and each explicit rule."""
    if privileged:
        return [r.to_oci() for r in PRIVILEGED_DEVICE_RULES]
    out = [r.to_oci() for r in DEFAULT_DEVICE_RULES]
    for d in devices:
        if d.type in ("c", "b"):
            out.append(
                DeviceRule(
                    allow=True,
                    type=_rule_type(d.type),
                    major=d.major,
                    minor=d.minor,
                    access=d.permissions,
                ).to_oci()
            )
    out.extend(r.to_oci() for r in rules)
    return out
