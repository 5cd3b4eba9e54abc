"""Read-side views of the image stores and the blocking queries that build them.

``list_images`` (dockerd's filter semantics), ``inspect_image``, ``image_history`` and
``disk_usage`` read the stores only; the daemon's use cases (``whaled.daemon.images``) run
them in a worker thread, and ``whaled.api.shape.images`` shapes the frozen views for the
wire.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from whaled.errors import InvalidParameter
from whaled.image import filters as flt
from whaled.image.digests import chain_id as compute_chain_id
from whaled.image.filters import Filters
from whaled.image.layers import DRIVER_NAME
from whaled.image.store import DeleteRecord, Image, UsageHook
from whaled.image.stores import ImageStores

LIST_FILTERS = ("dangling", "label", "before", "since", "reference", "until")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageSummary:
    """One row of ``GET /images/json``. ``repo_tags``/``repo_digests`` are empty for
    dangling images (older API versions show ``<none>:<none>``: the shaper adds it)."""

    id: str
    parent_id: str  # "" when none
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    created: int  # Unix seconds
    size: int
    shared_size: int  # -1 unless computed (system df)
    containers: int  # -1 unless computed (system df)
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageDetails:
    """``GET /images/{name}/json``. Mapping fields are the config's JSON as stored."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    parent: str  # "" when none
    comment: str
    created: str  # RFC 3339 as in the config
    container: str
    container_config: Mapping[str, Any] | None
    docker_version: str
    author: str
    config: Mapping[str, Any] | None
    architecture: str
    variant: str | None
    os: str
    os_version: str | None
    size: int
    graph_driver: str
    graph_driver_data: Mapping[str, str]
    rootfs_type: str
    rootfs_layers: tuple[str, ...]
    last_tag_time: str | None
    raw_config: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryItem:
    id: str  # image ID or "<missing>"
    created: int
    created_by: str
    tags: tuple[str, ...]
    size: int
    comment: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneReport:
    deleted: tuple[DeleteRecord, ...]
    space_reclaimed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskUsage:
    images: tuple[ImageSummary, ...]  # shared_size and containers filled in
    layers_size: int  # all layers, each counted once


def image_size(stores: ImageStores, image: Image) -> int:
    return stores.layers.chain_size(image.top_chain)


def tags_and_digests(stores: ImageStores, image_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    tags: list[str] = []
    digests: list[str] = []
    for r in stores.images.references(image_id):
        if r.digest is not None:
            digests.append(r.familiar)
        if r.tag is not None:
            tags.append(r.familiar)
    return tuple(tags), tuple(digests)


def inspect_image(stores: ImageStores, ref_or_id: str) -> ImageDetails:
    image = stores.resolve(ref_or_id)
    cfg = image.config
    tags, digests = tags_and_digests(stores, image.id)
    top = image.top_chain

    def mapping(key: str) -> Mapping[str, Any] | None:
        value = cfg.get(key)
        return value if isinstance(value, dict) else None

    def text(key: str) -> str:
        value = cfg.get(key)
        return value if isinstance(value, str) else ""

    return ImageDetails(
        id=image.id,
        repo_tags=tags,
        repo_digests=digests,
        parent=image.parent or "",
        comment=text("comment"),
        created=image.created,
        container=text("container"),
        container_config=mapping("container_config"),
        docker_version=text("docker_version"),
        author=text("author"),
        config=mapping("config"),
        architecture=text("architecture"),
        variant=cfg.get("variant") if isinstance(cfg.get("variant"), str) else None,
        os=text("os"),
        os_version=cfg.get("os.version") if isinstance(cfg.get("os.version"), str) else None,
        size=image_size(stores, image),
        graph_driver=DRIVER_NAME,
        graph_driver_data=stores.layers.driver_data(top),
        rootfs_type="layers",
        rootfs_layers=image.diff_ids,
        last_tag_time=image.last_tag_time,
        raw_config=cfg,
    )


def image_history(stores: ImageStores, ref_or_id: str) -> list[HistoryItem]:
    """``docker history``: newest first; layers sizes from the layer store."""
    image = stores.resolve(ref_or_id)
    items: list[dict[str, Any]] = []
    diff_ids = image.diff_ids
    layer_index = 0
    chain: str | None = None
    for h in image.history:
        size = 0
        if not h.get("empty_layer"):
            if layer_index >= len(diff_ids):
                raise InvalidParameter("too many non-empty layers in History section")
            chain = compute_chain_id(chain, diff_ids[layer_index])
            size = stores.layers.get(chain).size
            layer_index += 1
        created = h.get("created")
        items.insert(
            0,
            {
                "created": int(flt.parse_rfc3339(created)) if isinstance(created, str) else 0,
                "created_by": str(h.get("created_by") or ""),
                "comment": str(h.get("comment") or ""),
                "size": size,
            },
        )
    out: list[HistoryItem] = []
    current: Image | None = image
    for item in items:
        image_id = "<missing>"
        tags: tuple[str, ...] = ()
        if current is not None:
            image_id = current.id
            tags = tags_and_digests(stores, current.id)[0]
            parent = current.parent
            current = None
            if parent is not None:
                try:
                    current = stores.images.get(parent)
                except Exception:
                    current = None
        out.append(HistoryItem(id=image_id, tags=tags, **item))
    return out


def list_images(
    stores: ImageStores,
    *,
    all: bool = False,
    filters: Filters | None = None,
    shared_size: bool = False,
) -> list[ImageSummary]:
    """``GET /images/json`` with dockerd's filter semantics; newest first."""
    f: Filters = filters or {}
    flt.validate(f, LIST_FILTERS)
    dangling = flt.get_bool(f, "dangling")
    before = _time_filter_ref(stores, f, "before")
    since = _time_filter_ref(stores, f, "since")
    until = None
    if f.get("until"):
        until = flt.parse_timestamp(next(iter(f["until"])), time.time())
    patterns = list(f.get("reference", ()))
    labels = list(f.get("label", ()))
    all_images = stores.images.images()
    children = {i.parent for i in all_images if i.parent is not None}
    refs_by_id = stores.images.all_references()
    layer_users = _layer_users(stores, all_images) if shared_size else {}
    out: list[ImageSummary] = []
    for image in all_images:
        if dangling and image.id in children:
            continue  # dangling=true looks at heads only
        created = image.created_ts
        if before is not None and created >= before:
            continue
        if since is not None and created <= since:
            continue
        if until is not None and created > until:
            continue
        if labels and not flt.match_kv_list(labels, image.labels):
            continue
        tags: list[str] = []
        digests: list[str] = []
        for r in refs_by_id.get(image.id, []):
            if patterns and not any(
                flt.go_path_match(p, r.familiar) or flt.go_path_match(p, r.familiar_name)
                for p in patterns
            ):
                continue
            if r.digest is not None:
                digests.append(r.familiar)
            if r.tag is not None:
                tags.append(r.familiar)
        if not tags and not digests:
            if not all and image.id in children:
                continue
            if dangling is False or patterns:
                continue
        elif dangling and tags:
            continue
        size = image_size(stores, image)
        shared = -1
        if shared_size:
            shared = sum(
                layer.size
                for layer in stores.layers.chain(image.top_chain)
                if layer_users.get(layer.chain_id, 0) > 1
            )
        out.append(
            ImageSummary(
                id=image.id,
                parent_id=image.parent or "",
                repo_tags=tuple(tags),
                repo_digests=tuple(digests),
                created=int(created),
                size=size,
                shared_size=shared,
                containers=-1,
                labels=dict(image.labels),
            )
        )
    out.sort(key=lambda s: s.created, reverse=True)
    return out


def _time_filter_ref(stores: ImageStores, f: Filters, key: str) -> float | None:
    values = list(f.get(key, ()))
    if not values:
        return None
    return stores.resolve(values[-1]).created_ts


def _layer_users(stores: ImageStores, images: Sequence[Image]) -> dict[str, int]:
    users: dict[str, int] = {}
    for image in images:
        for layer in stores.layers.chain(image.top_chain):
            users[layer.chain_id] = users.get(layer.chain_id, 0) + 1
    return users


def disk_usage(stores: ImageStores, usage: UsageHook) -> DiskUsage:
    """``system df``: images with shared size and container counts, total layers size."""
    rows = tuple(
        replace(s, containers=len(usage(s.id)))
        for s in list_images(stores, all=True, shared_size=True)
    )
    layers_size = sum(layer.size for layer in stores.layers.all())
    return DiskUsage(images=rows, layers_size=layers_size)
