"""Pure rules for the images whaled makes itself (``docker commit``, ``docker import``):
the target reference, the requested platform and the committed image's config."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from whaled.errors import InvalidParameter
from whaled.image import reference as refs
from whaled.image.digests import sha256_digest

# The diff ID of an empty tar (two zero blocks): dockerd's "empty layer".
EMPTY_LAYER_DIFF_ID = sha256_digest(b"\0" * 1024)


def target_reference(repo: str | None, tag: str | None) -> refs.Reference | None:
    """The reference an import or commit tags its image with (``repo``/``tag`` query)."""
    if not repo:
        return None
    new = refs.parse_normalized_named(repo)
    if new.digest is not None:
        raise InvalidParameter("cannot import digest reference")
    if tag:
        new = new.with_tag(tag)
    return new.tag_name_only()


def parse_platform(value: str | None) -> tuple[str | None, str | None, str | None]:
    """``os[/arch[/variant]]`` → (os, arch, variant); only linux can be used here."""
    if not value:
        return None, None, None
    parts = value.split("/")
    if len(parts) > 3 or not all(parts):
        raise InvalidParameter(f"invalid platform {value!r}: expected os[/arch[/variant]]")
    os_name = parts[0].lower()
    if os_name != "linux":
        raise InvalidParameter(
            f'image operating system "{os_name}" cannot be used on this platform'
        )
    return os_name, (parts[1] if len(parts) > 1 else None), (parts[2] if len(parts) > 2 else None)


def commit_config(
    *,
    container_id: str,
    parent_config: Mapping[str, Any] | None,
    parent_diff_ids: Sequence[str],
    container_config: Mapping[str, Any] | None,
    new_config: Mapping[str, Any] | None,
    layer_diff_id: str,
    created: str,
    author: str,
    comment: str,
    host_os: str,
    host_arch: str,
    created_by: str | None = None,
) -> bytes:
    """The config of the image ``docker commit`` makes of a container: the parent's config
    with one history entry more (``empty_layer`` when the diff is empty or there is no
    layer, ``layer_diff_id`` ""; no diff ID is added then), ``config`` = the container's
    Config with the changes applied. ``created_by`` defaults to the container's Cmd (the
    builder names its steps itself)."""
    empty = layer_diff_id in (EMPTY_LAYER_DIFF_ID, "")
    base: dict[str, Any] = dict(parent_config) if parent_config else {}
    cmd = (container_config or {}).get("Cmd") or []
    history = [
        *base.get("history", []),
        {
            k: v
            for k, v in {
                "created": created,
                "author": author,
                "created_by": (
                    created_by if created_by is not None else " ".join(str(c) for c in cmd)
                ),
                "comment": comment,
                "empty_layer": True if empty else None,
            }.items()
            if v
        },
    ]
    doc: dict[str, Any] = {
        "architecture": base.get("architecture") or host_arch,
        "author": author,
        "comment": comment,
        "config": new_config,
        "container": container_id,
        "container_config": dict(container_config or {}),
        "created": created,
        "history": history,
        "os": base.get("os") or host_os,
        "rootfs": {
            "type": "layers",
            "diff_ids": [*parent_diff_ids, *([] if empty else [layer_diff_id])],
        },
    }
    if base.get("variant"):
        doc["variant"] = base["variant"]
    return json.dumps({k: v for k, v in doc.items() if v != ""}, separators=(",", ":")).encode()
