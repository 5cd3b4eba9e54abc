"""Pure volume rules: names, what a container create asks for (``-v name:/dst``, ``-v /dst``,
``--mount type=volume``, the image's ``VOLUME``), and the list/prune filters — with dockerd's
messages."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from whaled.errors import InvalidParameter, NotFound
from whaled.regexp import filter_match
from whaled.volume.model import ANONYMOUS_LABEL, LOCAL_DRIVER, Volume

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_VOLUME_MODES = ("ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated")
LIST_FILTERS = ("dangling", "driver", "label", "name")
PRUNE_FILTERS = ("label", "label!", "all")


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise InvalidParameter(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path"
        )
    return name


def check_driver(driver: str) -> str:
    """Only the ``local`` driver exists here (dockerd's answer for a missing plugin)."""
    driver = driver or LOCAL_DRIVER
    if driver != LOCAL_DRIVER:
        raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
    return driver


def check_driver_opts(opts: Mapping[str, str]) -> None:
    """The local driver knows ``type``, ``device``, ``o`` (and ``size`` on some hosts)."""
    unknown = sorted(set(opts) - {"type", "device", "o"})
    if unknown:
        raise InvalidParameter(f"invalid option: {unknown[0]!r}")
    if opts and not opts.get("type") and not opts.get("device"):
        raise InvalidParameter('missing required option: "device"')


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeRequest:
    """A volume a container wants mounted: ``name`` None for an anonymous one."""

    name: str | None
    destination: str
    rw: bool = True
    mode: str = ""
    nocopy: bool = False
    subpath: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    driver_opts: Mapping[str, str] = field(default_factory=dict)


def _clean_dest(dest: str, spec: str) -> str:
    if not dest.startswith("/"):
        raise InvalidParameter(f"invalid volume specification: '{spec}'")
    cleaned = "/" + "/".join(p for p in dest.split("/") if p and p != ".")
    return cleaned


def _bind_volume(spec: str) -> VolumeRequest | None:
    """A ``Binds`` entry naming a volume (``name:/dst[:mode]``); None for a host path."""
    parts = spec.split(":")
    if parts[0].startswith("/"):
        return None
    if len(parts) < 2 or len(parts) > 3 or not parts[0]:
        raise InvalidParameter(f"invalid volume specification: '{spec}'")
    name, dest = parts[0], _clean_dest(parts[1], spec)
    check_name(name)
    mode = parts[2] if len(parts) == 3 else ""
    opts = [o for o in mode.split(",") if o]
    for opt in opts:
        if opt not in _VOLUME_MODES:
            raise InvalidParameter(f"invalid mode: {mode}")
    return VolumeRequest(
        name=name, destination=dest, rw="ro" not in opts, mode=mode, nocopy="nocopy" in opts
    )


def _mount_volume(m: Mapping[str, Any]) -> VolumeRequest:
    target = str(m.get("Target") or "")
    kind = 'invalid mount config for type "volume"'
    if not target:
        raise InvalidParameter(f"{kind}: field Target must not be empty")
    if not target.startswith("/"):
        raise InvalidParameter(
            f"{kind}: invalid mount path: '{target}' mount path must be absolute"
        )
    if m.get("BindOptions"):
        raise InvalidParameter(f"{kind}: field BindOptions must not be specified")
    if m.get("TmpfsOptions"):
        raise InvalidParameter(f"{kind}: field TmpfsOptions must not be specified")
    source = str(m.get("Source") or "")
    if source:
        check_name(source)
    opts = m.get("VolumeOptions") or {}
    driver_cfg = opts.get("DriverConfig") or {}
    check_driver(str(driver_cfg.get("Name") or ""))
    driver_opts = {str(k): str(v) for k, v in (driver_cfg.get("Options") or {}).items()}
    check_driver_opts(driver_opts)
    subpath = str(opts.get("Subpath") or "")
    if subpath and (subpath.startswith("/") or ".." in subpath.split("/")):
        raise InvalidParameter(f"{kind}: subpath must be a relative path within the volume")
    return VolumeRequest(
        name=source or None,
        destination=_clean_dest(target, target),
        rw=not m.get("ReadOnly"),
        nocopy=bool(opts.get("NoCopy")),
        subpath=subpath,
        labels={str(k): str(v) for k, v in (opts.get("Labels") or {}).items()},
        driver_opts=driver_opts,
    )


def volume_requests(
    config: Mapping[str, Any], host_config: Mapping[str, Any]
) -> list[VolumeRequest]:
    """The volumes a create asks for: named ``Binds``, ``--mount type=volume``, then an
    anonymous volume for each ``Config.Volumes`` path (the image's ``VOLUME`` and the CLI's
    ``-v /path``) no other mount covers. Refuses two mounts on one path, as dockerd."""
    out: list[VolumeRequest] = []
    taken: set[str] = set()

    def claim(dest: str) -> None:
        if dest in taken:
            raise InvalidParameter(f"Duplicate mount point: {dest}")
        taken.add(dest)

    for spec in host_config.get("Binds") or []:
        request = _bind_volume(str(spec))
        if request is None:
            parts = str(spec).split(":")
            if len(parts) >= 2:
                claim(_clean_dest(parts[1], str(spec)))
            continue
        claim(request.destination)
        out.append(request)
    for m in host_config.get("Mounts") or []:
        if m.get("Type") == "volume":
            request = _mount_volume(m)
            claim(request.destination)
            out.append(request)
        elif m.get("Target"):
            claim(_clean_dest(str(m["Target"]), str(m["Target"])))
    for dest in host_config.get("Tmpfs") or {}:
        claim(_clean_dest(str(dest), str(dest)))
    for dest in sorted(config.get("Volumes") or {}):
        cleaned = _clean_dest(str(dest), str(dest))
        if cleaned in taken:
            continue
        taken.add(cleaned)
        out.append(VolumeRequest(name=None, destination=cleaned))
    return out


def anonymous_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**(extra or {}), ANONYMOUS_LABEL: ""}


# ------------------------------------------------------------------ filters


def _label_match(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def check_filters(filters: Mapping[str, Sequence[str]], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for key in filters:
        if key not in allowed:
            raise InvalidParameter(f"invalid filter '{key}'")
    for value in filters.get("dangling", ()):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidParameter(f"invalid filter 'dangling={value}'")


def matches(volume: Volume, filters: Mapping[str, Sequence[str]], in_use: bool) -> bool:
    """``GET /volumes`` filters: ``dangling``, ``driver``, ``label``, ``name`` (a Go regexp
    found in the name, as dockerd's)."""
    for value in filters.get("dangling", ()):
        if (value.lower() in ("true", "1")) == in_use:
            return False
    drivers = filters.get("driver", ())
    if drivers and volume.driver not in drivers:
        return False
    names = filters.get("name", ())
    if names and not filter_match(names, volume.name):
        return False
    return all(_label_match(volume.labels, wanted) for wanted in filters.get("label", ()))


def prunable(volume: Volume, filters: Mapping[str, Sequence[str]], *, all_volumes: bool) -> bool:
    """``POST /volumes/prune`` (API ≥ 1.42): anonymous volumes only unless ``all``."""
    if not all_volumes and not volume.anonymous:
        return False
    if not all(_label_match(volume.labels, w) for w in filters.get("label", ())):
        return False
    return not any(_label_match(volume.labels, w) for w in filters.get("label!", ()))
