"""Containers' read-write layers, on top of the read-only layers of a :class:`LayerStore`.

On disk::

    <data-root>/overlay2/<mount-id>/{diff,work,merged[,empty],link[,lower]}   one RW layer
    <data-root>/overlay2/l/<26 chars> -> ../<mount-id>/diff
    <data-root>/overlay2/.trash-<mount-id>      a removed RW layer waiting for ``empty_trash``
    <data-root>/image/layerdb/mounts/<container id>.json   its record (the commit point)

A container's rootfs is an overlay mount of its ``diff`` (the upper dir) over the ``diff``
dirs of its parent chain (``lowerdir``; ``empty`` when the container has no image layers).
Mounts are reference-counted in memory; a mount found at start counts once it is taken again
(``mount`` of a mounted rootfs does not mount it twice).

What this uses of the :class:`LayerStore` (its whole interface to the read-only side): the
store's ``lock`` (an RW layer holds a reference on its parent chain, so both sides change
under one lock), ``acquire`` / ``release`` / ``exists`` of the parent chain, and its
overlay2 driver directory helpers (``driver_dir``, ``lower_links``, ``lower_dirs``,
``write_link_and_lowers``, ``remove_driver_dir``, ``root``, ``link_dir``). The store builds
this object and restores it between its own restore and the sweep of orphaned driver
directories (an RW layer's directory is not an orphan).

Record mutability: ``RWLayer`` is immutable once written.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import tarfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from whaled.archive.files import OnDisk, disk_entry, info_from_stat
from whaled.archive.tarsafe import (
    OPAQUE_XATTR,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    is_whiteout_device,
)
from whaled.archive.tarstream import TarEntry, stream_tar
from whaled.errors import Conflict, InvalidParameter, NotFound, SystemFailure, WhaledError
from whaled.image import mounts
from whaled.osutil.atomic import atomic_write_json
from whaled.osutil.tree import (
    Walked,
    load_json_records,
    lstat_under,
    names_or_none,
    remove_tree,
    walk_fd,
)

if TYPE_CHECKING:
    from whaled.image.layers import LayerStore

log = logging.getLogger(__name__)

#: Driver dirs of removed RW layers waiting for ``empty_trash``.
TRASH_PREFIX = ".trash-"


class ChangeKind(IntEnum):
    """Docker's ``/containers/{id}/changes`` kinds."""

    MODIFY = 0
    ADD = 1
    DELETE = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    path: str
    kind: ChangeKind


@dataclass(frozen=True, slots=True, kw_only=True)
class RWLayer:
    container_id: str
    mount_id: str
    parent: str | None  # chain ID of the image's top layer (None: no layers)


class NoSuchRWLayer(NotFound):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"read-write layer does not exist for container {container_id}")


def _rw_record(raw: Any) -> RWLayer:
    return RWLayer(container_id=raw["container_id"], mount_id=raw["mount_id"], parent=raw["parent"])


class RWLayerStore:
    """The read-write layers of containers, by container ID."""

    def __init__(self, layers: LayerStore, data_root: str) -> None:
        self._layers = layers
        self._lock = layers.lock
        self.meta_dir = os.path.join(data_root, "image", "layerdb", "mounts")
        os.makedirs(self.meta_dir, exist_ok=True)
        self._rw: dict[str, RWLayer] = {}
        self._mounts: dict[str, int] = {}
        self._index_off = os.path.exists("/sys/module/overlay/parameters/index")
        #: False when the records could not be listed at start (then no driver dir may be
        #: taken for an orphan).
        self.listed = self._restore()

    def _restore(self) -> bool:
        """Rebuild the records and mount counts from disk; what cannot be read is dropped."""
        records = load_json_records(self.meta_dir, _rw_record, "RW layer metadata")
        for _, rw in records or ():
            if rw.parent is not None and not self._layers.exists(rw.parent):
                log.warning("RW layer of %s lost its parent layer %s", rw.container_id, rw.parent)
            elif rw.parent is not None:
                self._layers.acquire(rw.parent)
            self._rw[rw.container_id] = rw
        # No mount is counted: a count is a user's, and a rootfs found mounted at start has
        # none until a re-adopted container takes it (``mount`` counts it without mounting
        # again); one counted here too would outlive that container's exit.
        return records is not None

    def mount_ids(self) -> set[str]:
        """The driver directories of the RW layers."""
        with self._lock:
            return {rw.mount_id for rw in self._rw.values()}

    def _has(self, chain: str | None) -> bool:
        return chain is not None and self._layers.exists(chain)

    def _merged(self, rw: RWLayer) -> str:
        return os.path.join(self._layers.driver_dir(rw.mount_id), "merged")

    def create(self, container_id: str, parent: str | None) -> RWLayer:
        """Create the RW layer of a container on top of chain ``parent`` (None: empty)."""
        if not container_id or "/" in container_id or container_id.startswith("."):
            raise InvalidParameter(f"invalid container id {container_id!r}")
        with self._lock:
            if container_id in self._rw:
                raise Conflict(f"read-write layer for container {container_id} already exists")
            if parent is not None:
                self._layers.acquire(parent)
            mount_id = secrets.token_hex(32)
            tmp = os.path.join(self._layers.root, ".tmp-" + mount_id)
            try:
                os.mkdir(tmp, 0o700)
                for sub in ("diff", "work", "merged"):
                    os.mkdir(os.path.join(tmp, sub), 0o755 if sub == "diff" else 0o700)
                link = self._layers.write_link_and_lowers(tmp, parent)
                if parent is None:
                    os.mkdir(os.path.join(tmp, "empty"), 0o755)
                os.rename(tmp, self._layers.driver_dir(mount_id))
                os.symlink(f"../{mount_id}/diff", os.path.join(self._layers.link_dir, link))
                rw = RWLayer(container_id=container_id, mount_id=mount_id, parent=parent)
                atomic_write_json(
                    os.path.join(self.meta_dir, container_id + ".json"),
                    {"container_id": container_id, "mount_id": mount_id, "parent": parent},
                )
            except BaseException:
                remove_tree(tmp, ignore_errors=True)
                with contextlib.suppress(OSError, SystemFailure):  # else swept at start
                    self._layers.remove_driver_dir(self._layers.driver_dir(mount_id))
                if parent is not None:
                    self._layers.release(parent)
                raise
            self._rw[container_id] = rw
            return rw

    def get(self, container_id: str) -> RWLayer:
        with self._lock:
            rw = self._rw.get(container_id)
        if rw is None:
            raise NoSuchRWLayer(container_id)
        return rw

    def all(self) -> list[RWLayer]:
        with self._lock:
            return list(self._rw.values())

    def paths(self, container_id: str) -> dict[str, str]:
        """GraphDriver.Data of a container (LowerDir, MergedDir, UpperDir, WorkDir)."""
        with self._lock:
            rw = self.get(container_id)
            lowers = self._layers.lower_dirs(rw.parent) if self._has(rw.parent) else []
        d = self._layers.driver_dir(rw.mount_id)
        data = {
            "MergedDir": os.path.join(d, "merged"),
            "UpperDir": os.path.join(d, "diff"),
            "WorkDir": os.path.join(d, "work"),
        }
        if lowers:
            data["LowerDir"] = ":".join(lowers)
        return data

    def mount(self, container_id: str, *, force_relative: bool = False) -> str:
        """Mount the container's rootfs (ref-counted); returns the merged path."""
        with self._lock:
            rw = self.get(container_id)
            merged = self._merged(rw)
            count = self._mounts.get(container_id, 0)
            if count == 0 and not mounts.is_mounted(merged):
                self._do_mount(rw, force_relative=force_relative)
            self._mounts[container_id] = count + 1
            return merged

    def _do_mount(self, rw: RWLayer, *, force_relative: bool) -> None:
        d = self._layers.driver_dir(rw.mount_id)
        if rw.parent is not None:
            self._layers.get(rw.parent)  # NoSuchLayer when it is gone
        rel_lowers = self._layers.lower_links(rw.parent)
        extra = ",index=off" if self._index_off else ""
        merged = os.path.join(d, "merged")
        if rel_lowers:
            abs_lower = ":".join(os.path.join(self._layers.root, x) for x in rel_lowers)
        else:
            abs_lower = os.path.join(d, "empty")
        data = f"lowerdir={abs_lower},upperdir={d}/diff,workdir={d}/work{extra}"
        if len(data) <= mounts.max_mount_data() and not force_relative:
            mounts.mount("overlay", merged, "overlay", data)
            return
        rel = ":".join(rel_lowers) if rel_lowers else f"{rw.mount_id}/empty"
        data = f"lowerdir={rel},upperdir={rw.mount_id}/diff,workdir={rw.mount_id}/work{extra}"
        if len(data) > mounts.max_mount_data():
            raise SystemFailure(
                f"too many layers to mount ({len(rel_lowers)}): overlay options exceed one page"
            )
        mounts.mount_from(self._layers.root, "overlay", merged, "overlay", data)

    def unmount(self, container_id: str) -> None:
        with self._lock:
            rw = self.get(container_id)
            count = self._mounts.get(container_id, 0)
            if count > 1:
                self._mounts[container_id] = count - 1
                return
            self._mounts.pop(container_id, None)
            mounts.unmount(self._merged(rw))

    def is_mounted(self, container_id: str) -> bool:
        rw = self.get(container_id)
        return mounts.is_mounted(self._merged(rw))

    def remove(self, container_id: str) -> None:
        """Unmount (if needed) and delete a container's RW layer; releases its parent."""
        with self._lock:
            rw = self.get(container_id)
            self._mounts.pop(container_id, None)
            try:
                os.unlink(os.path.join(self.meta_dir, container_id + ".json"))
            except FileNotFoundError:
                pass
            d = self._layers.driver_dir(rw.mount_id)
            try:
                with open(os.path.join(d, "link"), encoding="ascii") as f:
                    os.unlink(os.path.join(self._layers.link_dir, f.read().strip()))
            except FileNotFoundError:
                pass
            mounts.unmount_all(os.path.join(d, "merged"))
            # One rename now; the files go with ``empty_trash`` (or at the next start: an
            # unknown driver dir is removed then).
            with contextlib.suppress(FileNotFoundError):  # a half-removed one
                os.rename(d, os.path.join(self._layers.root, TRASH_PREFIX + rw.mount_id))
            del self._rw[container_id]
            if rw.parent is not None and self._layers.exists(rw.parent):
                self._layers.release(rw.parent)

    def remove_orphans(self, owners: Collection[str]) -> list[str]:
        """At start: delete the RW layers (driver dir and mount record) of containers not in
        ``owners`` — left by a crash between :meth:`create` and the container's record.
        What cannot be removed is logged and left. Returns their container IDs."""
        removed: list[str] = []
        for rw in self.all():
            if rw.container_id in owners:
                continue
            try:
                self.remove(rw.container_id)
            except (OSError, WhaledError) as e:
                log.warning("cannot remove the orphaned RW layer of %s: %s", rw.container_id, e)
                continue
            log.info("removed the RW layer of %s: no such container", rw.container_id)
            removed.append(rw.container_id)
        if removed:
            self.empty_trash()
        return removed

    def empty_trash(self) -> None:
        """Delete the driver dirs ``remove`` moved aside; one that cannot be removed is
        logged and left (for the next start), the others still go."""
        for name in names_or_none(self._layers.root) or ():
            if name.startswith(TRASH_PREFIX):
                try:
                    self._layers.remove_driver_dir(os.path.join(self._layers.root, name))
                except (OSError, SystemFailure) as e:
                    log.warning("cannot remove the removed RW layer %s: %s", name, e)

    def changes(self, container_id: str) -> list[Change]:
        with self._lock:
            rw = self.get(container_id)
            lowers = self._layers.lower_dirs(rw.parent) if self._has(rw.parent) else []
        return compute_changes(os.path.join(self._layers.driver_dir(rw.mount_id), "diff"), lowers)

    def size(self, container_id: str) -> int:
        """Bytes of regular-file content in the container's upper dir (SizeRw)."""
        rw = self.get(container_id)
        return dir_size(os.path.join(self._layers.driver_dir(rw.mount_id), "diff"))

    def diff(self, container_id: str, exclude: Collection[str] = ()) -> Iterator[bytes]:
        """Tar stream of the container's changes, whiteouts in ``.wh.`` form, without the
        members named in ``exclude`` (tar names, no leading slash)."""
        rw = self.get(container_id)
        entries = upper_entries(os.path.join(self._layers.driver_dir(rw.mount_id), "diff"))
        if exclude:
            skip = frozenset(exclude)
            entries = (e for e in entries if e.info.name.rstrip("/") not in skip)
        return stream_tar(entries)


# ---------------------------------------------------------------------- upper-dir walking


def _is_opaque(w: Walked) -> bool:
    try:
        return (
            os.getxattr(
                f"/proc/self/fd/{w.parent_fd}/{w.name}", OPAQUE_XATTR, follow_symlinks=False
            )
            == b"y"
        )
    except OSError:
        return False


def compute_changes(upper: str, lowers: list[str]) -> list[Change]:
    """dockerd's overlay changes: walk the upper dir, compare with the lower dirs."""
    out: list[Change] = []
    changed_dirs: set[str] = set()
    # Per lower, a directory found missing there: nothing below it is looked up again (a
    # deep new tree costs one lookup per lower, not one per level).
    missing: list[str | None] = [None] * len(lowers)
    for w in walk_fd(upper):
        path = "/" + w.path
        is_dir = stat.S_ISDIR(w.st.st_mode)
        if is_whiteout_device(w.st) or (is_dir and _is_opaque(w)):
            kind = ChangeKind.DELETE
        else:
            kind = ChangeKind.ADD
            skip = False
            for i, lower in enumerate(lowers):
                gone = missing[i]
                if gone is not None and w.path.startswith(gone + "/"):
                    continue
                try:
                    lst = lstat_under(lower, w.path)
                except OSError as e:
                    if is_dir and e.errno in (errno.ENOENT, errno.ENOTDIR):
                        missing[i] = w.path
                    continue
                if is_whiteout_device(lst):
                    break
                if (
                    is_dir
                    and stat.S_ISDIR(lst.st_mode)
                    and lst.st_size == w.st.st_size
                    and lst.st_mode == w.st.st_mode
                    and lst.st_mtime_ns == w.st.st_mtime_ns
                ):
                    skip = True
                kind = ChangeKind.MODIFY
                break
            if skip:
                continue
        if is_dir:
            changed_dirs.add(path)
        if kind in (ChangeKind.ADD, ChangeKind.DELETE):
            parent = os.path.dirname(path)
            if parent != "/" and parent not in changed_dirs:
                out.append(Change(path=parent, kind=ChangeKind.MODIFY))
                changed_dirs.add(parent)
        out.append(Change(path=path, kind=kind))
    return out


def dir_size(root: str) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for w in walk_fd(root):
        if stat.S_ISREG(w.st.st_mode):
            key = (w.st.st_dev, w.st.st_ino)
            if w.st.st_nlink > 1:
                if key in seen:
                    continue
                seen.add(key)
            total += w.st.st_size
    return total


def upper_entries(upper: str) -> Iterator[TarEntry]:
    """Tar entries of an overlay upper dir, overlay whiteouts converted to ``.wh.`` form."""
    hardlinks: dict[tuple[int, int], str] = {}
    for w in walk_fd(upper):
        st = w.st
        parent = os.path.dirname(w.path)
        if is_whiteout_device(st):
            info = info_from_stat((parent + "/" if parent else "") + WHITEOUT_PREFIX + w.name, st)
            info.type = tarfile.REGTYPE
            info.mode = 0o600
            info.size = 0
            yield TarEntry(info=info)
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        name = w.path + "/" if is_dir else w.path
        entry = disk_entry(name, st, OnDisk(w.parent_fd, w.name), hardlinks)
        if entry is not None:
            yield entry
        if is_dir and _is_opaque(w):
            wo = info_from_stat(w.path + "/" + WHITEOUT_OPAQUE, st)
            wo.type = tarfile.REGTYPE
            wo.size = 0
            yield TarEntry(info=wo)
