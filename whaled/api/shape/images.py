"""Wire shapes of the image endpoints (pure functions over the image service's views).

Version differences follow dockerd's image routes:

- ``< 1.43``: a list row without tags or digests shows ``<none>:<none>`` / ``<none>@<none>``;
- ``< 1.44``: ``VirtualSize`` (= ``Size``) in list rows, inspect and ``system df``; inspect's
  ``Created`` is Go's zero time when the config has none;
- ``< 1.45``: inspect carries the deprecated ``Container`` and ``ContainerConfig``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from whaled.api.shape.system import rfc3339_nano as time_ns_text
from whaled.api.streams import status_message, stream_message
from whaled.api.versions import ApiVersion
from whaled.image.archive import ProgressEvent
from whaled.image.store import DeleteRecord
from whaled.image.views import (
    DiskUsage,
    HistoryItem,
    ImageDetails,
    ImageSummary,
    PruneReport,
)

GO_ZERO_TIME = "0001-01-01T00:00:00Z"

# container.Config as dockerd encodes it: these keys are always present...
_CONFIG_ALWAYS: tuple[tuple[str, Any], ...] = (
    ("Hostname", ""),
    ("Domainname", ""),
    ("User", ""),
    ("AttachStdin", False),
    ("AttachStdout", False),
    ("AttachStderr", False),
    ("ExposedPorts", None),
    ("Tty", False),
    ("OpenStdin", False),
    ("StdinOnce", False),
    ("Env", None),
    ("Cmd", None),
    ("Healthcheck", None),
    ("ArgsEscaped", None),
    ("Image", ""),
    ("Volumes", None),
    ("WorkingDir", ""),
    ("Entrypoint", None),
    ("NetworkDisabled", None),
    ("MacAddress", None),
    ("OnBuild", None),
    ("Labels", None),
    ("StopSignal", None),
    ("StopTimeout", None),
    ("Shell", None),
)
# ...and these are ``omitempty``.
_CONFIG_OMITEMPTY = frozenset(
    {
        "ExposedPorts",
        "Healthcheck",
        "ArgsEscaped",
        "NetworkDisabled",
        "MacAddress",
        "StopSignal",
        "StopTimeout",
        "Shell",
    }
)

_RFC3339_FRACTION = re.compile(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$")


def rfc3339_nano(text: str) -> str:
    """Go's ``time.RFC3339Nano`` rendering of a stored RFC 3339 time: trailing zeros of the
    fraction dropped (and the dot with them), offset kept as given, ``Z`` upper-case."""
    match = _RFC3339_FRACTION.match(text)
    if match is None:
        return text
    head, fraction, zone = match.groups()
    fraction = (fraction or "")[:9].rstrip("0")
    if zone in ("z", "+00:00", "-00:00"):
        zone = "Z"  # Go prints a zero offset as Z
    return head + ("." + fraction if fraction else "") + zone


def container_config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An image's ``config`` section shaped as dockerd's ``container.Config``."""
    if config is None:
        return None
    out: dict[str, Any] = {}
    for key, default in _CONFIG_ALWAYS:
        value = config.get(key, default)
        if key in _CONFIG_OMITEMPTY and not value:
            continue
        out[key] = value
    for key, value in config.items():  # keep anything newer we do not know about
        if key not in out and key not in _CONFIG_OMITEMPTY:
            out[key] = value
    return out


def shape_summary(row: ImageSummary, api_version: ApiVersion) -> dict[str, Any]:
    """One row of ``GET /images/json`` (also used by ``system df``)."""
    tags = list(row.repo_tags)
    digests = list(row.repo_digests)
    if api_version < (1, 43) and not tags and not digests:
        tags, digests = ["<none>:<none>"], ["<none>@<none>"]
    body: dict[str, Any] = {
        "Containers": row.containers,
        "Created": row.created,
        "Id": row.id,
        "Labels": dict(row.labels) if row.labels else None,
        "ParentId": row.parent_id,
        "RepoDigests": digests,
        "RepoTags": tags,
        "SharedSize": row.shared_size,
        "Size": row.size,
    }
    if api_version < (1, 44):
        body["VirtualSize"] = row.size
    return body


def shape_image_list(rows: Iterable[ImageSummary], api_version: ApiVersion) -> list[dict[str, Any]]:
    return [shape_summary(r, api_version) for r in rows]


def shape_inspect(view: ImageDetails, api_version: ApiVersion) -> dict[str, Any]:
    """``GET /images/{name}/json``."""
    created = rfc3339_nano(view.created) if view.created else ""
    body: dict[str, Any] = {
        "Id": view.id,
        "RepoTags": list(view.repo_tags),
        "RepoDigests": list(view.repo_digests),
        "Parent": view.parent,
        "Comment": view.comment,
    }
    if created or api_version < (1, 44):
        body["Created"] = created or GO_ZERO_TIME
    if api_version < (1, 45):
        if view.container:
            body["Container"] = view.container
        body["ContainerConfig"] = container_config(view.container_config or {})
    body["DockerVersion"] = view.docker_version
    body["Author"] = view.author
    body["Config"] = container_config(view.config)
    body["Architecture"] = view.architecture
    if view.variant:
        body["Variant"] = view.variant
    body["Os"] = view.os
    if view.os_version:
        body["OsVersion"] = view.os_version
    body["Size"] = view.size
    if api_version < (1, 44):
        body["VirtualSize"] = view.size
    body["GraphDriver"] = {"Data": dict(view.graph_driver_data), "Name": view.graph_driver}
    rootfs: dict[str, Any] = {"Type": view.rootfs_type}
    if view.rootfs_layers:
        rootfs["Layers"] = list(view.rootfs_layers)
    body["RootFS"] = rootfs
    body["Metadata"] = {
        "LastTagTime": rfc3339_nano(view.last_tag_time) if view.last_tag_time else GO_ZERO_TIME
    }
    return body


def shape_history(items: Iterable[HistoryItem]) -> list[dict[str, Any]]:
    """``GET /images/{name}/history``: newest first, as the service orders them."""
    return [
        {
            "Comment": item.comment,
            "Created": item.created,
            "CreatedBy": item.created_by,
            "Id": item.id,
            "Size": item.size,
            "Tags": list(item.tags) if item.tags else None,
        }
        for item in items
    ]


def shape_delete_records(records: Iterable[DeleteRecord]) -> list[dict[str, str]]:
    """``DELETE /images/{name}`` and prune's ``ImagesDeleted``: one key per record."""
    out: list[dict[str, str]] = []
    for rec in records:
        if rec.untagged is not None:
            out.append({"Untagged": rec.untagged})
        elif rec.deleted is not None:
            out.append({"Deleted": rec.deleted})
    return out


def shape_prune(report: PruneReport) -> dict[str, Any]:
    deleted = shape_delete_records(report.deleted)
    return {"ImagesDeleted": deleted or None, "SpaceReclaimed": report.space_reclaimed}


DF_TYPES = ("container", "image", "volume", "build-cache")


def shape_disk_usage(
    usage: DiskUsage | None,
    api_version: ApiVersion,
    types: Sequence[str],
    containers: Sequence[Mapping[str, Any]] = (),
    volumes: Sequence[Mapping[str, Any]] = (),
    build_cache: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """``GET /system/df``. ``usage`` is None when images were not asked for; ``containers``
    are list items with sizes, ``volumes`` volumes with ``UsageData``, ``build_cache``
    records shaped by :func:`shape_build_cache_record`."""
    body: dict[str, Any] = {}
    if "image" in types and usage is not None:
        body["LayersSize"] = usage.layers_size
        body["Images"] = [shape_summary(r, api_version) for r in usage.images]
    else:
        body["Images"] = None
    body["Containers"] = [dict(c) for c in containers] if "container" in types else None
    body["Volumes"] = [dict(v) for v in volumes] if "volume" in types else None
    body["BuildCache"] = [dict(r) for r in build_cache] if "build-cache" in types else None
    if api_version < (1, 42):
        body["BuilderSize"] = 0
    return body


def shape_build_cache_record(
    name: str, size: int, created: float, last_used: float, in_use: bool, usage_count: int
) -> dict[str, Any]:
    """A kept build context as a build cache record (BuildKit's shape for a local source;
    ``docker system df -v`` lists it, ``docker builder prune`` removes it)."""
    return {
        "ID": name,
        "Parent": "",
        "Parents": None,
        "Type": "source.local",
        "Description": "local source for context",
        "InUse": in_use,
        "Shared": False,
        "Size": size,
        "CreatedAt": time_ns_text(int(created * 1e9)),
        "LastUsedAt": time_ns_text(int(last_used * 1e9)),
        "UsageCount": usage_count,
    }


def progress_json(event: ProgressEvent) -> dict[str, Any]:
    """A domain progress event as a JSON-stream message."""
    if event.aux is not None:
        return {"progressDetail": {}, "aux": dict(event.aux)}
    if event.stream:
        return stream_message(event.message)
    return status_message(event.message, id=event.id, current=event.current, total=event.total)
