"""``ImageService``: the facade the API and container layers call.

Every method is synchronous, blocking and thread-safe; the API layer runs them in a worker
thread (``asyncio.to_thread``) and shapes the returned frozen views for the wire. Methods
that stream (``save``) validate everything *before* returning the iterator, so the API can
still answer with a status code; iterating then does the I/O.

Plug points, wired by ``whaled.wiring``:

- ``usage`` (``set_usage_hook``): ``image_id -> [ImageUser(container_id, running)]``, the
  containers using an image (for delete conflicts, prune and ``system df``);
- ``on_event``: receives :class:`ImageEvent` (tag, untag, delete, import, load, save,
  commit, prune) for the event bus.

Container read-write layers (create / mount / unmount / remove / changes / diff / size) are
on ``service.layers`` (:class:`whaled.image.layers.LayerStore`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from whaled.archive.tarsafe import Readable
from whaled.errors import Conflict, InvalidParameter
from whaled.image import archive
from whaled.image import filters as flt
from whaled.image import reference as refs
from whaled.image.archive import LoadedImage, ProgressEvent, ProgressFn, SaveItem
from whaled.image.changes import apply_changes
from whaled.image.content import ContentStore
from whaled.image.digests import chain_id as compute_chain_id
from whaled.image.digests import sha256_digest, short_id
from whaled.image.filters import Filters
from whaled.image.layers import DRIVER_NAME, LayerStore
from whaled.image.store import (
    DeleteRecord,
    Image,
    ImageStore,
    ImageUser,
    UsageHook,
    plan_delete,
)

log = logging.getLogger(__name__)

# The diff ID of an empty tar (two zero blocks): dockerd's "empty layer".
EMPTY_LAYER_DIFF_ID = sha256_digest(b"\0" * 1024)
LIST_FILTERS = ("dangling", "label", "before", "since", "reference", "until")
PRUNE_FILTERS = ("dangling", "label", "label!", "until")


# ------------------------------------------------------------------------------ views


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageEvent:
    action: str  # tag, untag, delete, import, load, save, commit
    image_id: str
    name: str  # the reference involved (familiar) or the image ID


EventHook = Callable[[ImageEvent], None]


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


# ------------------------------------------------------------------------------ service


class ImageService:
    def __init__(
        self,
        data_root: str,
        *,
        usage: UsageHook | None = None,
        on_event: EventHook | None = None,
        fsync_blobs: bool = True,
    ) -> None:
        self.data_root = data_root
        os.makedirs(data_root, exist_ok=True)
        self.content = ContentStore(data_root)
        self.layers = LayerStore(data_root, self.content, fsync_blobs=fsync_blobs)
        self.images = ImageStore(data_root, self.layers)
        for layer in self.layers.gc():
            log.info("removed unreferenced layer %s", layer.chain_id)
        self._loader = archive.Loader(data_root, self.images, self.layers)
        self._usage = usage
        self._on_event = on_event

    # ------------------------------------------------------------------ wiring

    def set_usage_hook(self, usage: UsageHook | None) -> None:
        self._usage = usage

    def set_event_hook(self, on_event: EventHook | None) -> None:
        self._on_event = on_event

    def _event(self, action: str, image_id: str, name: str | None = None) -> None:
        if self._on_event is not None:
            try:
                self._on_event(ImageEvent(action=action, image_id=image_id, name=name or image_id))
            except Exception:  # an event subscriber must not break an image operation
                log.exception("image event hook failed")

    def _users(self, image_id: str) -> Sequence[ImageUser]:
        return self._usage(image_id) if self._usage is not None else ()

    # ------------------------------------------------------------------ lookups

    def resolve(self, ref_or_id: str) -> Image:
        """Image by full ID, reference (``busybox`` means ``:latest``) or ID prefix."""
        return self.images.resolve(ref_or_id)

    def image_size(self, image: Image) -> int:
        return self.layers.chain_size(image.top_chain)

    def count(self) -> int:
        """Number of images (``/info`` ``Images``)."""
        return len(self.images.images())

    def _tags_digests(self, image_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        tags: list[str] = []
        digests: list[str] = []
        for r in self.images.references(image_id):
            if r.digest is not None:
                digests.append(r.familiar)
            if r.tag is not None:
                tags.append(r.familiar)
        return tuple(tags), tuple(digests)

    def inspect(self, ref_or_id: str) -> ImageDetails:
        image = self.resolve(ref_or_id)
        cfg = image.config
        tags, digests = self._tags_digests(image.id)
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
            size=self.image_size(image),
            graph_driver=DRIVER_NAME,
            graph_driver_data=self.layers.driver_data(top),
            rootfs_type="layers",
            rootfs_layers=image.diff_ids,
            last_tag_time=image.last_tag_time,
            raw_config=cfg,
        )

    def history(self, ref_or_id: str) -> list[HistoryItem]:
        """``docker history``: newest first; layers sizes from the layer store."""
        image = self.resolve(ref_or_id)
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
                size = self.layers.get(chain).size
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
                tags = self._tags_digests(current.id)[0]
                parent = current.parent
                current = None
                if parent is not None:
                    try:
                        current = self.images.get(parent)
                    except Exception:
                        current = None
            out.append(HistoryItem(id=image_id, tags=tags, **item))
        return out

    # ------------------------------------------------------------------ list

    def list_images(
        self, *, all: bool = False, filters: Filters | None = None, shared_size: bool = False
    ) -> list[ImageSummary]:
        """``GET /images/json`` with dockerd's filter semantics; newest first."""
        f: Filters = filters or {}
        flt.validate(f, LIST_FILTERS)
        dangling = flt.get_bool(f, "dangling")
        before = self._time_filter_ref(f, "before")
        since = self._time_filter_ref(f, "since")
        until = None
        if f.get("until"):
            until = flt.parse_timestamp(next(iter(f["until"])), time.time())
        patterns = list(f.get("reference", ()))
        labels = list(f.get("label", ()))
        all_images = self.images.images()
        children = {i.parent for i in all_images if i.parent is not None}
        refs_by_id = self.images.all_references()
        layer_users = self._layer_users(all_images) if shared_size else {}
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
            size = self.image_size(image)
            shared = -1
            if shared_size:
                shared = sum(
                    layer.size
                    for layer in self.layers.chain(image.top_chain)
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

    def _time_filter_ref(self, f: Filters, key: str) -> float | None:
        values = list(f.get(key, ()))
        if not values:
            return None
        return self.resolve(values[-1]).created_ts

    def _layer_users(self, images: Sequence[Image]) -> dict[str, int]:
        users: dict[str, int] = {}
        for image in images:
            for layer in self.layers.chain(image.top_chain):
                users[layer.chain_id] = users.get(layer.chain_id, 0) + 1
        return users

    def disk_usage(self) -> DiskUsage:
        """``system df``: images with shared size and container counts, total layers size."""
        rows = []
        for s in self.list_images(all=True, shared_size=True):
            rows.append(
                ImageSummary(
                    id=s.id,
                    parent_id=s.parent_id,
                    repo_tags=s.repo_tags,
                    repo_digests=s.repo_digests,
                    created=s.created,
                    size=s.size,
                    shared_size=s.shared_size,
                    containers=len(self._users(s.id)),
                    labels=s.labels,
                )
            )
        layers_size = sum(layer.size for layer in self.layers.all())
        return DiskUsage(images=tuple(rows), layers_size=layers_size)

    # ------------------------------------------------------------------ tag / delete / prune

    def tag(self, source: str, repo: str, tag: str | None = None) -> str:
        """``POST /images/{name}/tag``; returns the familiar new reference."""
        image = self.resolve(source)
        new = refs.parse_normalized_named(repo)
        if tag:
            if new.digest is not None:
                raise InvalidParameter("refusing to create a tag with a digest reference")
            new = new.with_tag(tag)
        if new.digest is not None:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        new = new.tag_name_only()
        self.images.add_reference(new, image.id, force=True)
        self._event("tag", image.id, new.familiar)
        return new.familiar

    def remove(
        self, ref_or_id: str, *, force: bool = False, prune: bool = True
    ) -> list[DeleteRecord]:
        """``DELETE /images/{name}``: dockerd's untag-vs-delete rules (``prune`` = not
        ``noprune``). Conflicts raise ``Conflict`` with dockerd's wording."""
        image = self.resolve(ref_or_id)
        state = self.images.delete_state(self._usage)
        actions = plan_delete(state, ref_or_id, image.id, force=force, prune=prune)
        records = self.images.apply(actions)
        for rec in records:
            if rec.untagged is not None:
                self._event("untag", image.id, image.id)
            elif rec.deleted is not None and self._is_image_record(rec.deleted, actions):
                self._event("delete", rec.deleted, rec.deleted)
        return records

    @staticmethod
    def _is_image_record(value: str, actions: Sequence[object]) -> bool:
        return any(getattr(a, "image_id", None) == value for a in actions)

    def prune(self, filters: Filters | None = None) -> PruneReport:
        """``POST /images/prune``: dangling only unless ``dangling=false``."""
        f: Filters = filters or {}
        flt.validate(f, PRUNE_FILTERS)
        dangling = flt.get_bool(f, "dangling")
        dangling_only = dangling is not False
        until = None
        if f.get("until"):
            until = flt.parse_timestamp(next(iter(f["until"])), time.time())
        all_images = self.images.images()
        children = {i.parent for i in all_images if i.parent is not None}
        layer_sizes = {layer.chain_id: layer.size for layer in self.layers.all()}
        deleted: list[DeleteRecord] = []
        for image in all_images:
            if dangling_only and image.id in children:
                continue
            references = self.images.references(image.id)
            if not references and image.id in children:
                continue
            if until is not None and image.created_ts > until:
                continue
            if not flt.match_labels(f, image.labels):
                continue
            try:
                if references:
                    has_tag = any(r.tag is not None for r in references)
                    if dangling_only and has_tag:
                        continue
                    for r in references:
                        deleted += self.remove(str(r), force=False, prune=True)
                else:
                    deleted += self.remove(image.id.split(":", 1)[1], force=False, prune=True)
            except (Conflict, InvalidParameter) as e:
                log.debug("prune: skipping %s: %s", short_id(image.id), e)
            except Exception as e:  # keep pruning the others, like dockerd
                log.warning("prune: failed to delete %s: %s", short_id(image.id), e)
        reclaimed = sum(layer_sizes.get(r.deleted, 0) for r in deleted if r.deleted)
        return PruneReport(deleted=tuple(deleted), space_reclaimed=reclaimed)

    # ------------------------------------------------------------------ load / save / import

    def load(
        self,
        stream: BinaryIO | Readable,
        *,
        quiet: bool = False,
        progress: ProgressFn | None = None,
    ) -> list[LoadedImage]:
        """``POST /images/load``: docker-archive (classic or docker 25+) or OCI layout."""
        loaded = self._loader.load(stream, progress=progress or _noop, quiet=quiet)
        for item in loaded:
            self._event("load", item.image_id, item.tags[0] if item.tags else item.image_id)
        return loaded

    def save(self, names: Sequence[str]) -> Iterator[bytes]:
        """``GET /images/get`` / ``/images/{name}/get``: resolves now, streams when iterated."""
        items: list[SaveItem] = archive.plan_save(self.images, names)
        for item in items:  # fail before the first byte if a layer tar is missing
            for layer in self.layers.chain(item.image.top_chain):
                self.layers.layer_tar_size(layer.chain_id)
        for item in items:
            self._event(
                "save", item.image.id, item.tags[0].familiar if item.tags else item.image.id
            )
        return archive.save_stream(self.layers, items)

    def _target_ref(self, repo: str | None, tag: str | None) -> refs.Reference | None:
        if not repo:
            return None
        new = refs.parse_normalized_named(repo)
        if new.digest is not None:
            raise InvalidParameter("cannot import digest reference")
        if tag:
            new = new.with_tag(tag)
        return new.tag_name_only()

    def import_rootfs(
        self,
        stream: BinaryIO | Readable,
        *,
        repo: str | None = None,
        tag: str | None = None,
        changes: Sequence[str] = (),
        message: str = "",
        source: str = "-",
        platform: str | None = None,
        progress: ProgressFn | None = None,
    ) -> str:
        """``POST /images/create?fromSrc=-``: one layer from a rootfs tar; returns the ID."""
        target = self._target_ref(repo, tag)
        apply_changes(None, changes)  # validate before reading the body
        os_name, arch, variant = _parse_platform(platform)
        cb = progress or _noop

        def report(n: int) -> None:
            cb(ProgressEvent(message="Importing", current=n))

        layer = self.layers.register(stream, None, on_progress=report)
        try:
            raw = archive.import_config(
                layer.diff_id,
                changes=changes,
                message=message,
                source=source,
                os_name=os_name,
                architecture=arch,
                variant=variant,
            )
            image = self.images.create(raw)
        finally:
            self.layers.release(layer.chain_id)
        if target is not None:
            self.images.add_reference(target, image.id, force=True)
        self._event("import", image.id, image.id)
        return image.id

    def commit(
        self,
        container_id: str,
        *,
        parent_image: str | None,
        container_config: Mapping[str, Any] | None,
        changes: Sequence[str] = (),
        author: str = "",
        comment: str = "",
        repo: str | None = None,
        tag: str | None = None,
        exclude: Collection[str] = (),
    ) -> str:
        """``POST /commit``: the container's RW layer diff becomes a new image.

        ``container_config`` is the container's Config (becomes ``container_config`` and,
        with ``changes`` applied, ``config``). Pausing is the caller's job.
        """
        target = self._target_ref(repo, tag)
        new_config = apply_changes(container_config, changes)
        parent = self.images.get(parent_image) if parent_image else None
        rw = self.layers.rw.get(container_id)
        parent_diffs = list(parent.diff_ids) if parent else []
        if rw.parent != (parent.top_chain if parent else None):
            raise Conflict("the container's read-write layer does not sit on its image")
        diff_stream = _IterReader(self.layers.rw.diff(container_id, exclude))
        layer = self.layers.register(diff_stream, rw.parent)
        try:
            empty = layer.diff_id == EMPTY_LAYER_DIFF_ID
            created = flt.format_rfc3339_nano(time.time())
            base: dict[str, Any] = dict(parent.config) if parent else {}
            host_os, host_arch, _ = archive.host_platform()
            cmd = (container_config or {}).get("Cmd") or []
            history = [
                *base.get("history", []),
                {
                    k: v
                    for k, v in {
                        "created": created,
                        "author": author,
                        "created_by": " ".join(str(c) for c in cmd),
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
                    "diff_ids": parent_diffs + ([] if empty else [layer.diff_id]),
                },
            }
            if base.get("variant"):
                doc["variant"] = base["variant"]
            raw = json.dumps(
                {k: v for k, v in doc.items() if v != ""}, separators=(",", ":")
            ).encode()
            image = self.images.create(raw, parent=parent.id if parent else None)
        finally:
            self.layers.release(layer.chain_id)
        if target is not None:
            self.images.add_reference(target, image.id, force=True)
        self._event("commit", image.id, image.id)
        return image.id


def _noop(_: ProgressEvent) -> None:
    pass


def _parse_platform(value: str | None) -> tuple[str | None, str | None, str | None]:
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


class _IterReader:
    """A ``read(n)`` file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out
