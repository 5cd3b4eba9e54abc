"""Image store: configs by ID, repositories (tags/digests), and dockerd's delete rules.

On disk::

    <data-root>/image/imagedb/content/sha256/<hex>      exact config bytes (ID = sha256)
    <data-root>/image/imagedb/metadata/sha256/<hex>.json  {"parent": ..., "last_tag_time": ...}
    <data-root>/image/repositories.json                 {"Repositories": {name: {ref: id}}}

Every write goes through :func:`whaled.osutil.atomic.atomic_write`. The repositories file is
rewritten whole on every change (one file, one rename: the set of tags is always consistent).

Mutable fields: an image's ``parent`` is fixed at creation; ``last_tag_time`` changes on tag.
The config bytes never change (they *are* the ID).

The delete algorithm is :func:`plan_delete`, a pure port of dockerd's ``ImageDelete`` over a
:class:`DeleteState` snapshot; :meth:`ImageStore.apply` executes the plan.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from whaled.errors import Conflict, InvalidParameter, NoSuchImage
from whaled.image import reference as refs
from whaled.image.digests import (
    SHA256_PREFIX,
    digest_hex,
    is_digest,
    sha256_digest,
    short_id,
    top_chain_id,
)
from whaled.image.filters import format_rfc3339_nano, parse_rfc3339
from whaled.image.reference import ImageIDRef, Reference
from whaled.osutil.atomic import atomic_write, atomic_write_json
from whaled.osutil.tree import is_temp_name, sweep

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    """An image: the exact config bytes, the parsed config and store metadata."""

    id: str  # "sha256:<hex>" == sha256(raw)
    raw: bytes
    config: Mapping[str, Any]
    parent: str | None = None
    last_tag_time: str | None = None

    @property
    def diff_ids(self) -> tuple[str, ...]:
        rootfs = self.config.get("rootfs") or {}
        return tuple(rootfs.get("diff_ids") or ())

    @property
    def top_chain(self) -> str | None:
        return top_chain_id(self.diff_ids)

    @property
    def created(self) -> str:
        value = self.config.get("created")
        return value if isinstance(value, str) else "0001-01-01T00:00:00Z"

    @property
    def created_ts(self) -> float:
        try:
            return parse_rfc3339(self.created)
        except ValueError:
            return 0.0

    @property
    def container_config(self) -> Mapping[str, Any]:
        cfg = self.config.get("config")
        return cfg if isinstance(cfg, dict) else {}

    @property
    def labels(self) -> Mapping[str, str]:
        labels = self.container_config.get("Labels")
        return labels if isinstance(labels, dict) else {}

    @property
    def history(self) -> list[Mapping[str, Any]]:
        h = self.config.get("history")
        return [x for x in h if isinstance(x, dict)] if isinstance(h, list) else []


def parse_config(raw: bytes) -> dict[str, Any]:
    """Validate image config JSON enough to store it (like dockerd's ``NewFromJSON``)."""
    try:
        cfg = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidParameter(f"invalid image JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise InvalidParameter("invalid image JSON: not an object")
    rootfs = cfg.get("rootfs")
    if not isinstance(rootfs, dict):
        raise InvalidParameter("invalid image JSON, no RootFS key")
    if rootfs.get("type") != "layers":
        raise InvalidParameter(
            f"invalid image JSON: unsupported rootfs type {rootfs.get('type')!r}"
        )
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(
        isinstance(d, str) and is_digest(d) for d in diff_ids
    ):
        raise InvalidParameter("invalid image JSON: bad rootfs.diff_ids")
    history = cfg.get("history") or []
    if isinstance(history, list):
        non_empty = sum(1 for h in history if isinstance(h, dict) and not h.get("empty_layer"))
        if history and non_empty > len(diff_ids):
            raise InvalidParameter("too many non-empty layers in History section")
    return cfg


# ----------------------------------------------------------------------------- layer refs


class LayerRefs(Protocol):
    """What the image store needs from the layer store (a fake in unit tests)."""

    def acquire(self, chain: str) -> Any: ...

    def release(self, chain: str) -> Sequence[Any]: ...


# ----------------------------------------------------------------------------- delete planning


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageUser:
    """A container that uses an image (reported by the container subsystem)."""

    container_id: str
    running: bool


UsageHook = Callable[[str], Sequence[ImageUser]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Untag:
    ref: Reference


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteImage:
    image_id: str


DeleteAction = Untag | DeleteImage


@dataclass(slots=True)
class DeleteState:
    """A mutable snapshot the planner works on (never the live store)."""

    refs: dict[str, list[Reference]] = field(default_factory=dict)  # id → refs
    parents: dict[str, str | None] = field(default_factory=dict)  # id → parent id
    users: dict[str, list[ImageUser]] = field(default_factory=dict)  # id → containers

    def references(self, image_id: str) -> list[Reference]:
        return list(self.refs.get(image_id, ()))

    def children(self, image_id: str) -> list[str]:
        return [i for i, p in self.parents.items() if p == image_id]

    def remove_ref(self, ref: Reference) -> None:
        for image_id, lst in self.refs.items():
            if ref in lst:
                lst.remove(ref)
                if not lst:
                    del self.refs[image_id]
                return

    def remove_image(self, image_id: str) -> None:
        self.parents.pop(image_id, None)
        self.refs.pop(image_id, None)

    def is_dangling(self, image_id: str) -> bool:
        return not self.references(image_id) and not self.children(image_id)


_CONFLICT_CHILD = 1
_CONFLICT_RUNNING = 2
_CONFLICT_ACTIVE_REF = 4
_CONFLICT_STOPPED = 8
_CONFLICT_HARD = _CONFLICT_CHILD | _CONFLICT_RUNNING
_CONFLICT_SOFT = _CONFLICT_ACTIVE_REF | _CONFLICT_STOPPED


class ImageDeleteConflict(Conflict):
    def __init__(self, image_id: str, *, hard: bool, used: bool, message: str) -> None:
        forced = "cannot be forced" if hard else "must be forced"
        super().__init__(f"conflict: unable to delete {short_id(image_id)} ({forced}) - {message}")
        self.hard = hard
        self.used = used


def _check_conflict(state: DeleteState, image_id: str, mask: int) -> ImageDeleteConflict | None:
    if mask & _CONFLICT_CHILD and state.children(image_id):
        return ImageDeleteConflict(
            image_id, hard=True, used=False, message="image has dependent child images"
        )
    users = state.users.get(image_id, [])
    if mask & _CONFLICT_RUNNING:
        running = [u for u in users if u.running]
        if running:
            return ImageDeleteConflict(
                image_id,
                hard=True,
                used=True,
                message="image is being used by running container "
                + short_id(running[0].container_id),
            )
    if mask & _CONFLICT_ACTIVE_REF and state.references(image_id):
        return ImageDeleteConflict(
            image_id, hard=False, used=False, message="image is referenced in multiple repositories"
        )
    if mask & _CONFLICT_STOPPED:
        stopped = [u for u in users if not u.running]
        if stopped:
            return ImageDeleteConflict(
                image_id,
                hard=False,
                used=True,
                message="image is being used by stopped container "
                + short_id(stopped[0].container_id),
            )
    return None


def is_single_reference(repo_refs: Sequence[Reference]) -> bool:
    """dockerd's ``isSingleReference``: one tag (plus digests of that same repository)."""
    if len(repo_refs) <= 1:
        return len(repo_refs) == 1
    single: Reference | None = None
    canonical: set[str] = set()
    for r in repo_refs:
        if r.is_canonical:
            canonical.add(r.name)
        elif single is None:
            single = r
        else:
            return False
    if single is None:
        single = repo_refs[0]
    return len(canonical) == 1 and single.name in canonical


def plan_delete(
    state: DeleteState, image_ref: str, image_id: str, *, force: bool, prune: bool
) -> list[DeleteAction]:
    """Port of dockerd's ``ImageDelete``: the untag/delete actions, or a Conflict raised."""
    actions: list[DeleteAction] = []

    def untag(r: Reference) -> None:
        state.remove_ref(r)
        actions.append(Untag(ref=r))

    repo_refs = state.references(image_id)
    removed_repo_ref = False
    if not refs.is_id_prefix(image_id, image_ref):
        if not force and is_single_reference(repo_refs):
            users = state.users.get(image_id, [])
            if users:
                raise Conflict(
                    f'conflict: unable to remove repository reference "{image_ref}" (must force)'
                    f" - container {short_id(users[0].container_id)} is using its referenced"
                    f" image {short_id(image_id)}"
                )
        parsed = refs.parse_normalized_named(image_ref).tag_name_only()
        if parsed not in repo_refs:
            raise NoSuchImage(parsed.familiar)
        untag(parsed)
        repo_refs = state.references(image_id)
        if not parsed.is_canonical:
            found_tag = any(not r.is_canonical and r.name == parsed.name for r in repo_refs)
            if not found_tag:
                remaining: list[Reference] = []
                for r in repo_refs:
                    if r.is_canonical and r.name == parsed.name:
                        untag(r)
                    else:
                        remaining.append(r)
                repo_refs = remaining
        if repo_refs:
            return actions
        removed_repo_ref = True
    elif is_single_reference(repo_refs):
        mask = _CONFLICT_HARD
        if not force:
            mask |= _CONFLICT_SOFT & ~_CONFLICT_ACTIVE_REF
        conflict = _check_conflict(state, image_id, mask)
        if conflict is not None:
            raise conflict
        for r in repo_refs:
            untag(r)
    _delete_helper(
        state, image_id, actions, force=force, prune=prune, quiet=removed_repo_ref, untag=untag
    )
    return actions


def _delete_helper(
    state: DeleteState,
    image_id: str,
    actions: list[DeleteAction],
    *,
    force: bool,
    prune: bool,
    quiet: bool,
    untag: Callable[[Reference], None],
) -> None:
    mask = _CONFLICT_HARD if force else _CONFLICT_HARD | _CONFLICT_SOFT
    conflict = _check_conflict(state, image_id, mask)
    if conflict is not None:
        if quiet and (not state.is_dangling(image_id) or conflict.used):
            return
        raise conflict
    parent = state.parents.get(image_id)
    for r in state.references(image_id):
        untag(r)
    state.remove_image(image_id)
    actions.append(DeleteImage(image_id=image_id))
    if not prune or parent is None or parent not in state.parents:
        return
    _delete_helper(state, parent, actions, force=False, prune=True, quiet=True, untag=untag)


# ----------------------------------------------------------------------------- the store


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecord:
    """One line of dockerd's delete response: exactly one field is set."""

    untagged: str | None = None
    deleted: str | None = None


class ImageStore:
    def __init__(self, data_root: str, layers: LayerRefs) -> None:
        base = os.path.join(data_root, "image")
        self.content_dir = os.path.join(base, "imagedb", "content", "sha256")
        self.meta_dir = os.path.join(base, "imagedb", "metadata", "sha256")
        self.repos_path = os.path.join(base, "repositories.json")
        os.makedirs(self.content_dir, exist_ok=True)
        os.makedirs(self.meta_dir, exist_ok=True)
        self._layers = layers
        self._lock = threading.RLock()
        self._images: dict[str, Image] = {}
        self._refs: dict[str, str] = {}  # full ref string → image id
        self._parsed: dict[str, Reference] = {}
        self._restore()

    # ------------------------------------------------------------------ restore

    def _restore(self) -> None:
        # Temp files of writes a crash interrupted (repositories.json's sit next to it).
        for directory in (os.path.dirname(self.repos_path), self.content_dir, self.meta_dir):
            sweep(directory)
        for name in os.listdir(self.content_dir):
            if is_temp_name(name):
                continue
            path = os.path.join(self.content_dir, name)
            try:
                with open(path, "rb") as f:
                    raw = f.read()
                image_id = sha256_digest(raw)
                if image_id != SHA256_PREFIX + name:
                    raise ValueError("content does not match its ID")
                cfg = parse_config(raw)
                meta = self._read_meta(image_id)
                image = Image(
                    id=image_id,
                    raw=raw,
                    config=cfg,
                    parent=meta.get("parent"),
                    last_tag_time=meta.get("last_tag_time"),
                )
                top = image.top_chain
                if top is not None:
                    self._layers.acquire(top)
            except Exception as e:  # one broken image must not stop the daemon
                log.warning("skipping image %s: %s", name, e)
                continue
            self._images[image_id] = image
        try:
            with open(self.repos_path, encoding="utf-8") as f:
                repos = json.load(f).get("Repositories", {})
        except FileNotFoundError:
            repos = {}
        for by_ref in repos.values():
            for ref_str, image_id in by_ref.items():
                if image_id not in self._images:
                    continue
                try:
                    parsed = refs.parse_normalized_named(ref_str)
                except InvalidParameter:
                    continue
                self._refs[str(parsed)] = image_id
                self._parsed[str(parsed)] = parsed

    def _read_meta(self, image_id: str) -> dict[str, Any]:
        try:
            with open(
                os.path.join(self.meta_dir, digest_hex(image_id) + ".json"), encoding="utf-8"
            ) as f:
                meta = json.load(f)
            return meta if isinstance(meta, dict) else {}
        except FileNotFoundError:
            return {}

    def _write_meta(self, image: Image) -> None:
        atomic_write_json(
            os.path.join(self.meta_dir, digest_hex(image.id) + ".json"),
            {"parent": image.parent, "last_tag_time": image.last_tag_time},
        )

    def _save_refs(self) -> None:
        repos: dict[str, dict[str, str]] = {}
        for ref_str, image_id in sorted(self._refs.items()):
            repos.setdefault(self._parsed[ref_str].name, {})[ref_str] = image_id
        atomic_write(self.repos_path, json.dumps({"Repositories": repos}, indent=1).encode())

    # ------------------------------------------------------------------ images

    def create(self, raw: bytes, *, parent: str | None = None) -> Image:
        """Store a config (its layers must exist); idempotent for the same bytes."""
        cfg = parse_config(raw)
        image_id = sha256_digest(raw)
        with self._lock:
            existing = self._images.get(image_id)
            if existing is not None:
                return existing
            if parent is not None and parent not in self._images:
                raise NoSuchImage(parent)
            image = Image(id=image_id, raw=raw, config=cfg, parent=parent)
            top = image.top_chain
            if top is not None:
                self._layers.acquire(top)
            try:
                if parent is not None:
                    self._write_meta(image)
                atomic_write(os.path.join(self.content_dir, digest_hex(image_id)), raw)
            except BaseException:
                if top is not None:
                    self._layers.release(top)
                raise
            self._images[image_id] = image
            return image

    def get(self, image_id: str) -> Image:
        with self._lock:
            image = self._images.get(image_id)
        if image is None:
            raise NoSuchImage(image_id)
        return image

    def images(self) -> list[Image]:
        with self._lock:
            return list(self._images.values())

    def children(self, image_id: str) -> list[str]:
        with self._lock:
            return [i.id for i in self._images.values() if i.parent == image_id]

    def search(self, prefix: str) -> Image | None:
        """Image whose ID hex starts with ``prefix``; ambiguous or none → None."""
        hexpart = prefix[len(SHA256_PREFIX) :] if prefix.startswith(SHA256_PREFIX) else prefix
        if not hexpart:
            return None
        with self._lock:
            found = [
                i for i in self._images.values() if i.id[len(SHA256_PREFIX) :].startswith(hexpart)
            ]
        return found[0] if len(found) == 1 else None

    def resolve(self, ref_or_id: str) -> Image:
        """dockerd's ``GetImage``: full ID, tag/digest reference, then ID prefix."""
        parsed = refs.parse_any(ref_or_id)
        if isinstance(parsed, ImageIDRef):
            with self._lock:
                image = self._images.get(parsed.id)
            if image is None:
                raise NoSuchImage(parsed.id)
            return image
        named = parsed.tag_name_only()
        with self._lock:
            image_id = self._refs.get(str(named))
            if image_id is not None and image_id in self._images:
                return self._images[image_id]
        if refs.id_prefix(ref_or_id) is not None:
            found = self.search(ref_or_id)
            if found is not None:
                return found
        raise NoSuchImage(named.familiar)

    # ------------------------------------------------------------------ references

    def references(self, image_id: str) -> list[Reference]:
        with self._lock:
            out = [self._parsed[r] for r, i in self._refs.items() if i == image_id]
        return sorted(out, key=lambda r: r.familiar)

    def all_references(self) -> dict[str, list[Reference]]:
        out: dict[str, list[Reference]] = {}
        with self._lock:
            for r, i in self._refs.items():
                out.setdefault(i, []).append(self._parsed[r])
        for lst in out.values():
            lst.sort(key=lambda r: r.familiar)
        return out

    def lookup_ref(self, ref: Reference) -> str | None:
        with self._lock:
            return self._refs.get(str(ref))

    def add_reference(self, ref: Reference, image_id: str, *, force: bool = True) -> str | None:
        """Point ``ref`` (tag or digest) at ``image_id``; returns the previous image ID."""
        if ref.familiar_name == "sha256":
            raise InvalidParameter(
                "refusing to create an ambiguous tag using digest algorithm as name"
            )
        if ref.tag is not None and ref.digest is not None:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        if ref.tag is None and ref.digest is None:
            ref = ref.tag_name_only()
        key = str(ref)
        with self._lock:
            if image_id not in self._images:
                raise NoSuchImage(image_id)
            old = self._refs.get(key)
            if old == image_id:
                return None
            if old is not None:
                if ref.digest is not None:
                    raise Conflict(f"Cannot overwrite digest {ref.digest}")
                if not force:
                    raise Conflict(
                        f"Conflict: Tag {ref.familiar} is already set to image {old}, if you "
                        "want to replace it, please use the force option"
                    )
            self._refs[key] = image_id
            self._parsed[key] = ref
            try:
                self._save_refs()
            except BaseException:
                if old is None:
                    del self._refs[key]
                else:
                    self._refs[key] = old
                raise
            if ref.tag is not None:
                image = self._images[image_id]
                image = Image(
                    id=image.id,
                    raw=image.raw,
                    config=image.config,
                    parent=image.parent,
                    last_tag_time=format_rfc3339_nano(time.time()),
                )
                self._images[image_id] = image
                self._write_meta(image)
            return old

    def remove_reference(self, ref: Reference) -> str | None:
        key = str(ref)
        with self._lock:
            old = self._refs.pop(key, None)
            if old is None:
                return None
            try:
                self._save_refs()
            except BaseException:
                self._refs[key] = old
                raise
            return old

    # ------------------------------------------------------------------ delete

    def delete_state(self, usage: UsageHook | None) -> DeleteState:
        with self._lock:
            state = DeleteState(
                refs=self.all_references(),
                parents={i.id: i.parent for i in self._images.values()},
            )
        if usage is not None:
            for image_id in state.parents:
                users = list(usage(image_id))
                if users:
                    state.users[image_id] = users
        return state

    def delete_image(self, image_id: str) -> list[Any]:
        """Remove the image record and release its layers; returns the removed layers."""
        with self._lock:
            image = self._images.pop(image_id, None)
            if image is None:
                raise NoSuchImage(image_id)
            for r in [r for r, i in self._refs.items() if i == image_id]:
                del self._refs[r]
            self._save_refs()
            hexpart = digest_hex(image_id)
            for path in (
                os.path.join(self.content_dir, hexpart),
                os.path.join(self.meta_dir, hexpart + ".json"),
            ):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            top = image.top_chain
            return list(self._layers.release(top)) if top is not None else []

    def apply(self, actions: Sequence[DeleteAction]) -> list[DeleteRecord]:
        """Execute a :func:`plan_delete` plan; records in dockerd's order."""
        records: list[DeleteRecord] = []
        for action in actions:
            if isinstance(action, Untag):
                self.remove_reference(action.ref)
                records.append(DeleteRecord(untagged=action.ref.familiar))
            else:
                removed = self.delete_image(action.image_id)
                records.append(DeleteRecord(deleted=action.image_id))
                records.extend(DeleteRecord(deleted=layer.chain_id) for layer in removed)
        return records
