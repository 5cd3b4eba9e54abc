"""Layer store with an ``overlay2``-style driver, and container read-write layers.

On disk::

    <data-root>/overlay2/<cache-id>/diff      unpacked layer content (overlay form)
    <data-root>/overlay2/<cache-id>/link      the layer's short link name
    <data-root>/overlay2/<cache-id>/lower     "l/<parent link>:l/<grandparent link>:..."
    <data-root>/overlay2/<cache-id>/tar-split how to rebuild the layer's tar (+ shadow/)
    <data-root>/overlay2/<rw-id>/{diff,work,merged}   a container's read-write layer
    <data-root>/overlay2/l/<26 chars> -> ../<cache-id>/diff
    <data-root>/image/layerdb/sha256/<chain hex>.json  layer metadata (commit point)
    <data-root>/image/layerdb/mounts/<container id>.json  RW layer metadata

Read-only layers are identified by chain ID (``digests.chain_id``) and unpacked once.
Reference counts are in memory and rebuilt at start: a layer is referenced by each image
whose top layer it is (``acquire``), by each child layer and by each RW layer on top of it.
When the count drops to zero the layer is deleted (``release``), then its parent released.

Layer tars: ``docker save`` must emit tars whose sha256 equals the diff ID, and a tar
regenerated from the unpacked directory is not byte-identical to what the image author
produced. So while a layer is unpacked, everything of its tar that is not file content
(headers, padding, the end blocks...) is recorded in ``<cache-id>/tar-split`` and the tar is
rebuilt from that record and the files in ``diff`` (see ``whaled.archive.tarstream``; dockerd
does the same with its ``tar-split.json.gz``). The tar is therefore neither copied nor stored twice;
entries that a later member of the same tar replaced are kept under ``<cache-id>/shadow``.
Layers stored by earlier versions keep their tar in the content store under the diff ID.

Unpacking happens in ``<data-root>/overlay2/.tmp-<cache-id>`` (an *ingest*: see
``ingest`` / ``commit`` / ``discard``); the directory becomes the layer by one rename, and
leftovers of a crash are removed at start with the other orphaned driver directories.

Record mutability: ``Layer`` and ``RWLayer`` are immutable once written.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import stat
import tarfile
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from enum import IntEnum

from whaled.archive.files import OnDisk, disk_entry, info_from_stat
from whaled.archive.tarsafe import (
    LAYER_POLICY,
    OPAQUE_XATTR,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    Buffer,
    Compression,
    Source,
    TarInput,
    TarParser,
    UnpackPolicy,
    is_whiteout_device,
    open_stream,
    unpack_tar,
)
from whaled.archive.tarstream import (
    SplitError,
    SplitWriter,
    TarEntry,
    split_chunks,
    split_tar_size,
    stream_tar,
)
from whaled.errors import Conflict, InvalidParameter, NotFound, SystemFailure, WhaledError
from whaled.image import mounts
from whaled.image.content import ContentStore
from whaled.image.digests import chain_id as compute_chain_id
from whaled.image.digests import digest_hex, is_digest
from whaled.osutil.atomic import atomic_write_json
from whaled.osutil.tree import Walked, lstat_under, remove_tree, walk_fd

log = logging.getLogger(__name__)

DRIVER_NAME = "overlay2"
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20
TAR_SPLIT = "tar-split"


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
class Layer:
    chain_id: str
    diff_id: str
    parent: str | None  # parent chain ID
    size: int  # bytes of content in this layer alone
    cache_id: str
    link: str


@dataclass(slots=True, kw_only=True)
class LayerIngest:
    """A layer tar unpacked into a temp dir (or only hashed), not yet a layer.

    Mutable: ``tmp_dir`` becomes None once the directory was moved into place or dropped;
    ``donor`` is the chain ID of a stored layer with the same content that the ingest keeps
    pinned (a layer it already became, or the one a hash-only ingest matched)."""

    cache_id: str
    tmp_dir: str | None
    diff_id: str
    raw_digest: str  # sha256 of the bytes as read (the compressed blob); diff ID when plain
    size: int  # bytes of regular-file content
    tar_size: int  # bytes of the uncompressed tar
    donor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RWLayer:
    container_id: str
    mount_id: str
    parent: str | None  # chain ID of the image's top layer (None: no layers)


class NoSuchLayer(NotFound):
    def __init__(self, chain: str) -> None:
        super().__init__(f"layer does not exist: {chain}")


class NoSuchRWLayer(NotFound):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"read-write layer does not exist for container {container_id}")


class DiffIDMismatch(InvalidParameter):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"invalid diffID for layer: expected {expected!r}, got {actual!r}")


def _new_link() -> str:
    return base64.b32encode(os.urandom(16)).decode().rstrip("=")


class LayerStore:
    def __init__(self, data_root: str, content: ContentStore, *, fsync_blobs: bool = True) -> None:
        self.root = os.path.join(data_root, DRIVER_NAME)
        self.link_dir = os.path.join(self.root, "l")
        self.meta_dir = os.path.join(data_root, "image", "layerdb", "sha256")
        self.rw_meta_dir = os.path.join(data_root, "image", "layerdb", "mounts")
        for d in (self.root, self.link_dir, self.meta_dir, self.rw_meta_dir):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.root, 0o710)
        self._content = content
        # Accepted for compatibility: layer tars are no longer written to the content store,
        # and layer content is not fsync-ed (as with dockerd; a layer damaged by a power
        # loss is detected by the digest check when its tar is rebuilt).
        del fsync_blobs
        self._lock = threading.RLock()
        self._layers: dict[str, Layer] = {}
        self._refs: dict[str, int] = {}
        self._rw: dict[str, RWLayer] = {}
        self._mounts: dict[str, int] = {}
        self._index_off = os.path.exists("/sys/module/overlay/parameters/index")
        self._restore()

    # ------------------------------------------------------------------ restore / gc

    def _restore(self) -> None:
        """Rebuild the in-memory state from disk and sweep what a crash left. Nothing met on
        disk stops the start: what cannot be read is dropped, what cannot be removed is
        logged and left."""
        layer_names = _names(self.meta_dir)
        rw_names = _names(self.rw_meta_dir)
        # Without the full list of what exists, no directory can be called an orphan.
        complete = layer_names is not None and rw_names is not None
        for name in layer_names or ():
            path = os.path.join(self.meta_dir, name)
            if name.startswith(".tmp-"):
                _sweep(path, "temp file")
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    raw = json.load(f)
                layer = Layer(
                    chain_id=raw["chain_id"],
                    diff_id=raw["diff_id"],
                    parent=raw["parent"],
                    size=int(raw["size"]),
                    cache_id=raw["cache_id"],
                    link=raw["link"],
                )
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("dropping unreadable layer metadata %s: %s", path, e)
                _sweep(path, "unreadable layer metadata")
                continue
            if not os.path.isdir(self._diff_dir(layer.cache_id)):
                log.warning("dropping layer %s: its directory is missing", layer.chain_id)
                _sweep(path, "layer metadata")
                continue
            self._layers[layer.chain_id] = layer
            self._refs[layer.chain_id] = 0
        # Drop layers whose parent is gone (cannot be mounted any more).
        changed = True
        while changed:
            changed = False
            for chain, layer in list(self._layers.items()):
                if layer.parent is not None and layer.parent not in self._layers:
                    log.warning("dropping layer %s: parent %s is missing", chain, layer.parent)
                    try:
                        self._delete_layer_files(layer)
                    except Exception as e:  # the daemon must start
                        log.warning("cannot remove the files of layer %s: %s", chain, e)
                    del self._layers[chain]
                    del self._refs[chain]
                    changed = True
        for layer in self._layers.values():
            if layer.parent is not None:
                self._refs[layer.parent] += 1
        for name in rw_names or ():
            path = os.path.join(self.rw_meta_dir, name)
            if name.startswith(".tmp-"):
                _sweep(path, "temp file")
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    raw = json.load(f)
                rw = RWLayer(
                    container_id=raw["container_id"],
                    mount_id=raw["mount_id"],
                    parent=raw["parent"],
                )
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("dropping unreadable RW layer metadata %s: %s", path, e)
                _sweep(path, "unreadable RW layer metadata")
                continue
            if rw.parent is not None and rw.parent not in self._layers:
                log.warning("RW layer of %s lost its parent layer %s", rw.container_id, rw.parent)
            elif rw.parent is not None:
                self._refs[rw.parent] += 1
            self._rw[rw.container_id] = rw
            if mounts.is_mounted(self._merged_dir(rw.mount_id)):
                self._mounts[rw.container_id] = 1
        # Orphaned driver dirs (crash between unpack and metadata commit, removed RW layers
        # moved aside) and dead links.
        known = {layer.cache_id for layer in self._layers.values()}
        known |= {rw.mount_id for rw in self._rw.values()}
        for name in (_names(self.root) or ()) if complete else ():
            if name == "l" or name in known:
                continue
            try:
                self._remove_driver_dir(os.path.join(self.root, name))
            except Exception as e:  # the daemon must start
                log.warning("cannot remove leftover layer directory %s: %s", name, e)
        for name in _names(self.link_dir) or ():
            path = os.path.join(self.link_dir, name)
            if not os.path.exists(path):
                _sweep(path, "dead layer link")

    def gc(self) -> list[Layer]:
        """Delete layers nobody references (call after images re-acquired theirs at start)."""
        removed: list[Layer] = []
        with self._lock:
            for chain in [c for c, n in self._refs.items() if n == 0]:
                if chain in self._layers and self._refs.get(chain) == 0:
                    self._refs[chain] = 1
                    removed += self.release(chain)
        return removed

    # ------------------------------------------------------------------ paths

    def _dir(self, cache_id: str) -> str:
        return os.path.join(self.root, cache_id)

    def _diff_dir(self, cache_id: str) -> str:
        return os.path.join(self.root, cache_id, "diff")

    def _merged_dir(self, cache_id: str) -> str:
        return os.path.join(self.root, cache_id, "merged")

    def _lower_links(self, chain: str | None) -> list[str]:
        """``l/<link>`` entries for ``chain`` and its ancestors, top first."""
        out: list[str] = []
        while chain is not None:
            layer = self._layers[chain]
            out.append(f"l/{layer.link}")
            chain = layer.parent
        return out

    def _lower_dirs(self, chain: str | None) -> list[str]:
        out: list[str] = []
        while chain is not None:
            layer = self._layers[chain]
            out.append(self._diff_dir(layer.cache_id))
            chain = layer.parent
        return out

    # ------------------------------------------------------------------ read-only layers

    def get(self, chain: str) -> Layer:
        with self._lock:
            layer = self._layers.get(chain)
        if layer is None:
            raise NoSuchLayer(chain)
        return layer

    def exists(self, chain: str) -> bool:
        with self._lock:
            return chain in self._layers

    def all(self) -> list[Layer]:
        with self._lock:
            return list(self._layers.values())

    def refcount(self, chain: str) -> int:
        with self._lock:
            return self._refs.get(chain, 0)

    def chain(self, chain: str | None) -> list[Layer]:
        """``chain`` and its ancestors, bottom (base) first."""
        out: list[Layer] = []
        with self._lock:
            while chain is not None:
                layer = self._layers.get(chain)
                if layer is None:
                    raise NoSuchLayer(chain)
                out.append(layer)
                chain = layer.parent
        out.reverse()
        return out

    def chain_size(self, chain: str | None) -> int:
        return sum(layer.size for layer in self.chain(chain))

    def acquire(self, chain: str) -> Layer:
        with self._lock:
            layer = self._layers.get(chain)
            if layer is None:
                raise NoSuchLayer(chain)
            self._refs[chain] += 1
            return layer

    def release(self, chain: str) -> list[Layer]:
        """Drop one reference; returns the layers actually deleted (top first)."""
        removed: list[Layer] = []
        with self._lock:
            current: str | None = chain
            while current is not None:
                if current not in self._layers:
                    raise NoSuchLayer(current)
                self._refs[current] -= 1
                if self._refs[current] > 0:
                    break
                layer = self._layers.pop(current)
                del self._refs[current]
                self._delete_layer_files(layer)
                removed.append(layer)
                current = layer.parent
        return removed

    def _delete_layer_files(self, layer: Layer) -> None:
        meta = os.path.join(self.meta_dir, digest_hex(layer.chain_id) + ".json")
        try:
            os.unlink(meta)  # the commit point goes first: a crash leaves only an orphan dir
        except FileNotFoundError:
            pass
        try:
            os.unlink(os.path.join(self.link_dir, layer.link))
        except FileNotFoundError:
            pass
        try:
            self._remove_driver_dir(self._dir(layer.cache_id))
        except (OSError, SystemFailure) as e:  # an orphan dir now: it goes at the next start
            log.warning("cannot remove the directory of layer %s: %s", layer.chain_id, e)
        if not any(other.diff_id == layer.diff_id for other in self._layers.values()):
            self._content.delete(layer.diff_id)

    def _remove_driver_dir(self, path: str) -> None:
        """Unmount and delete a driver dir; raises (OSError, SystemFailure) when something
        in it cannot be removed (the rest goes)."""
        mounts.unmount_all(os.path.join(path, "merged"))
        remove_tree(path)

    def register(
        self,
        source: Source,
        parent: str | None,
        *,
        expected_diff_id: str | None = None,
        policy: UnpackPolicy = LAYER_POLICY,
        on_progress: Callable[[int], None] | None = None,
    ) -> Layer:
        """Unpack a layer tar (gzip/zstd/bzip2/xz/plain) on top of ``parent``; the caller
        gets one ref.

        ``expected_diff_id``: verify it (DiffIDMismatch otherwise) and skip the work when the
        chain already exists. ``on_progress`` receives bytes read so far. Nothing is left
        behind on failure.
        """
        if expected_diff_id is not None and not is_digest(expected_diff_id):
            raise InvalidParameter(f"invalid diff ID {expected_diff_id!r}")
        with self._lock:
            if parent is not None:
                self.acquire(parent)  # pin the parent during the unpack
            if expected_diff_id is not None:
                chain = compute_chain_id(parent, expected_diff_id)
                if chain in self._layers:
                    self._refs[chain] += 1
                    if parent is not None:
                        self.release(parent)
                    return self._layers[chain]
        try:
            ingest = self.ingest(source, policy=policy, on_progress=on_progress)
            try:
                return self.commit(ingest, parent, expected_diff_id=expected_diff_id)
            finally:
                self.discard(ingest)
        finally:
            if parent is not None:
                self.release(parent)

    def ingest(
        self,
        source: Source,
        *,
        policy: UnpackPolicy = LAYER_POLICY,
        on_progress: Callable[[int], None] | None = None,
        known_diff_id: str | None = None,
    ) -> LayerIngest:
        """Unpack a layer tar into a temp dir under the driver root (removed at start if a
        crash leaves it) and compute its diff ID; :meth:`commit` makes it a layer.

        ``known_diff_id``: the stream should be the (uncompressed) tar of that diff ID; if
        a stored layer has it, the bytes are only hashed, not unpacked (InvalidParameter if
        the digest differs). Raises like :meth:`register`; nothing is left behind on
        failure. The caller must :meth:`discard` the result.
        """
        src: Source = source if on_progress is None else _ProgressReader(source, on_progress)
        donor: Layer | None = None
        if known_diff_id is not None:
            with self._lock:
                donor = next((x for x in self._layers.values() if x.diff_id == known_diff_id), None)
                if donor is not None:
                    self._refs[donor.chain_id] += 1  # pinned until discard
        if donor is not None:
            try:
                return self._hash_only(src, donor)
            except BaseException:
                self.release(donor.chain_id)
                raise
        raw_hash = _RawHash()
        stream, compression = open_stream(src, on_raw=raw_hash.update)
        raw_hash.active = compression is not Compression.NONE
        cache_id = secrets.token_hex(32)
        tmp_dir = os.path.join(self.root, ".tmp-" + cache_id)
        diff_dir = os.path.join(tmp_dir, "diff")
        os.mkdir(tmp_dir, 0o700)
        writer: SplitWriter | None = None
        try:
            os.mkdir(diff_dir, 0o755)
            writer = SplitWriter(tmp_dir, os.path.join(tmp_dir, TAR_SPLIT))
            digest = _Hasher()
            inp = TarInput(stream, on_data=digest.update)
            parser = TarParser(inp, writer)
            result = unpack_tar(parser, diff_dir, policy, writer)
            parser.drain()
            writer.finish(inp.offset)
            diff_id = digest.hexdigest()
        except BaseException:
            if writer is not None:
                writer.abort()
            remove_tree(tmp_dir, ignore_errors=True)
            raise
        return LayerIngest(
            cache_id=cache_id,
            tmp_dir=tmp_dir,
            diff_id=diff_id,
            raw_digest=raw_hash.hexdigest() if raw_hash.active else diff_id,
            size=result.size,
            tar_size=inp.offset,
        )

    def _hash_only(self, src: Source, donor: Layer) -> LayerIngest:
        raw_hash = _RawHash()
        stream, compression = open_stream(src, on_raw=raw_hash.update)
        raw_hash.active = compression is not Compression.NONE
        digest = _Hasher()
        inp = TarInput(stream, on_data=digest.update)
        while inp.read_some(CHUNK):
            pass
        diff_id = digest.hexdigest()
        if diff_id != donor.diff_id:
            raise InvalidParameter(
                f"invalid image archive: the layer blob named {donor.diff_id} does not match "
                f"its digest ({diff_id})"
            )
        return LayerIngest(
            cache_id="",
            tmp_dir=None,
            diff_id=diff_id,
            raw_digest=raw_hash.hexdigest() if raw_hash.active else diff_id,
            size=donor.size,
            tar_size=inp.offset,
            donor=donor.chain_id,
        )

    def commit(
        self, ingest: LayerIngest, parent: str | None, *, expected_diff_id: str | None = None
    ) -> Layer:
        """Make ``ingest`` the layer on top of ``parent``; the caller gets one ref.

        An existing layer for the chain is used as is (the ingest stays unused). Otherwise
        the ingest's directory is moved into place (no copy); an ingest whose content was
        already used (or only hashed) is rebuilt from the stored layer it keeps pinned.
        """
        if expected_diff_id is not None and ingest.diff_id != expected_diff_id:
            raise DiffIDMismatch(expected_diff_id, ingest.diff_id)
        chain = compute_chain_id(parent, ingest.diff_id)
        with self._lock:
            if parent is not None:
                self.acquire(parent)
            try:
                existing = self._layers.get(chain)
                if existing is not None:
                    self._refs[chain] += 1
                    return existing
                if ingest.tmp_dir is not None:
                    return self._install(ingest, parent, chain)
            finally:
                if parent is not None:
                    self.release(parent)
        if ingest.donor is None:
            raise SystemFailure(f"the content of layer {ingest.diff_id} is not available")
        fresh = self.ingest(_IterReader(self.layer_tar(ingest.donor)))
        try:
            return self.commit(fresh, parent, expected_diff_id=ingest.diff_id)
        finally:
            self.discard(fresh)

    def _write_link_and_lowers(self, driver_dir: str, parent: str | None) -> str:
        """A fresh short link name in ``driver_dir/link`` and the parent chain's links in
        ``driver_dir/lower`` (none without a parent); returns the link name."""
        link = _new_link()
        with open(os.path.join(driver_dir, "link"), "w", encoding="ascii") as f:
            f.write(link)
        lowers = self._lower_links(parent)
        if lowers:
            with open(os.path.join(driver_dir, "lower"), "w", encoding="ascii") as f:
                f.write(":".join(lowers))
        return link

    def _install(self, ingest: LayerIngest, parent: str | None, chain: str) -> Layer:
        """Move an unpacked ingest into place as ``chain`` (store lock held)."""
        tmp_dir = ingest.tmp_dir
        assert tmp_dir is not None
        cache_id = ingest.cache_id
        link = self._write_link_and_lowers(tmp_dir, parent)
        os.mkdir(os.path.join(tmp_dir, "work"), 0o700)
        os.mkdir(os.path.join(tmp_dir, "merged"), 0o700)
        final_dir = self._dir(cache_id)
        os.rename(tmp_dir, final_dir)
        ingest.tmp_dir = None
        os.symlink(f"../{cache_id}/diff", os.path.join(self.link_dir, link))
        layer = Layer(
            chain_id=chain,
            diff_id=ingest.diff_id,
            parent=parent,
            size=ingest.size,
            cache_id=cache_id,
            link=link,
        )
        try:
            atomic_write_json(
                os.path.join(self.meta_dir, digest_hex(chain) + ".json"),
                {
                    "chain_id": chain,
                    "diff_id": ingest.diff_id,
                    "parent": parent,
                    "size": ingest.size,
                    "cache_id": cache_id,
                    "link": link,
                },
            )
        except BaseException:
            os.unlink(os.path.join(self.link_dir, link))
            remove_tree(final_dir, ignore_errors=True)
            raise
        self._layers[chain] = layer
        self._refs[chain] = 2  # the caller's, and the ingest's pin (for another parent)
        if parent is not None:
            self._refs[parent] += 1
        ingest.donor = chain
        return layer

    def discard(self, ingest: LayerIngest) -> None:
        """Drop what an ingest still holds (its temp dir, its pin on a stored layer)."""
        if ingest.tmp_dir is not None:
            remove_tree(ingest.tmp_dir, ignore_errors=True)
            ingest.tmp_dir = None
        donor, ingest.donor = ingest.donor, None
        if donor is not None:
            self.release(donor)

    def _split_path(self, layer: Layer) -> str:
        return os.path.join(self._dir(layer.cache_id), TAR_SPLIT)

    def layer_tar_size(self, chain: str) -> int:
        """Size of the layer's original tar; SystemFailure when it cannot be produced."""
        layer = self.get(chain)
        try:
            return split_tar_size(self._split_path(layer))
        except FileNotFoundError:
            pass
        except (OSError, SplitError) as e:
            raise SystemFailure(f"the tar of layer {layer.diff_id} is damaged: {e}") from None
        if self._content.exists(layer.diff_id):  # layers stored by earlier whaled versions
            return self._content.size(layer.diff_id)
        raise SystemFailure(f"the tar of layer {layer.diff_id} is missing")

    def layer_tar(self, chain: str) -> Iterator[bytes]:
        """The layer's original uncompressed tar; its sha256 is the diff ID (checked while
        the tar is rebuilt: a mismatch raises SystemFailure after the last chunk)."""
        layer = self.get(chain)
        split = self._split_path(layer)
        if os.path.exists(split):
            return _split_tar(self._dir(layer.cache_id), split, layer.diff_id)
        if not self._content.exists(layer.diff_id):
            raise SystemFailure(f"the tar of layer {layer.diff_id} is missing")
        return self._content.iter_chunks(layer.diff_id)

    def driver_data(self, chain: str | None) -> dict[str, str]:
        """GraphDriver.Data of an image whose top layer is ``chain`` (like dockerd)."""
        if chain is None:
            return {}
        with self._lock:
            layer = self.get(chain)
            data = {
                "MergedDir": self._merged_dir(layer.cache_id),
                "UpperDir": self._diff_dir(layer.cache_id),
                "WorkDir": os.path.join(self._dir(layer.cache_id), "work"),
            }
            lowers = self._lower_dirs(layer.parent)
        if lowers:
            data["LowerDir"] = ":".join(lowers)
        return data

    # ------------------------------------------------------------------ read-write layers

    def create_rw(self, container_id: str, parent: str | None) -> RWLayer:
        """Create the RW layer of a container on top of chain ``parent`` (None: empty)."""
        if not container_id or "/" in container_id or container_id.startswith("."):
            raise InvalidParameter(f"invalid container id {container_id!r}")
        with self._lock:
            if container_id in self._rw:
                raise Conflict(f"read-write layer for container {container_id} already exists")
            if parent is not None:
                self.acquire(parent)
            mount_id = secrets.token_hex(32)
            tmp = os.path.join(self.root, ".tmp-" + mount_id)
            try:
                os.mkdir(tmp, 0o700)
                for sub in ("diff", "work", "merged"):
                    os.mkdir(os.path.join(tmp, sub), 0o755 if sub == "diff" else 0o700)
                link = self._write_link_and_lowers(tmp, parent)
                if parent is None:
                    os.mkdir(os.path.join(tmp, "empty"), 0o755)
                os.rename(tmp, self._dir(mount_id))
                os.symlink(f"../{mount_id}/diff", os.path.join(self.link_dir, link))
                rw = RWLayer(container_id=container_id, mount_id=mount_id, parent=parent)
                atomic_write_json(
                    os.path.join(self.rw_meta_dir, container_id + ".json"),
                    {"container_id": container_id, "mount_id": mount_id, "parent": parent},
                )
            except BaseException:
                remove_tree(tmp, ignore_errors=True)
                with contextlib.suppress(OSError, SystemFailure):  # else swept at start
                    self._remove_driver_dir(self._dir(mount_id))
                if parent is not None:
                    self.release(parent)
                raise
            self._rw[container_id] = rw
            return rw

    def get_rw(self, container_id: str) -> RWLayer:
        with self._lock:
            rw = self._rw.get(container_id)
        if rw is None:
            raise NoSuchRWLayer(container_id)
        return rw

    def rw_layers(self) -> list[RWLayer]:
        with self._lock:
            return list(self._rw.values())

    def rw_paths(self, container_id: str) -> dict[str, str]:
        """GraphDriver.Data of a container (LowerDir, MergedDir, UpperDir, WorkDir)."""
        with self._lock:
            rw = self.get_rw(container_id)
            lowers = self._lower_dirs(rw.parent) if rw.parent in self._layers else []
        d = self._dir(rw.mount_id)
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
            rw = self.get_rw(container_id)
            merged = self._merged_dir(rw.mount_id)
            count = self._mounts.get(container_id, 0)
            if count == 0 and not mounts.is_mounted(merged):
                self._do_mount(rw, force_relative=force_relative)
            self._mounts[container_id] = count + 1
            return merged

    def _do_mount(self, rw: RWLayer, *, force_relative: bool) -> None:
        d = self._dir(rw.mount_id)
        rel_lowers = self._lower_links(rw.parent) if rw.parent is not None else []
        if rw.parent is not None and not rel_lowers:
            raise NoSuchLayer(rw.parent)
        extra = ",index=off" if self._index_off else ""
        merged = os.path.join(d, "merged")
        if rel_lowers:
            abs_lower = ":".join(os.path.join(self.root, x) for x in rel_lowers)
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
        mounts.mount_from(self.root, "overlay", merged, "overlay", data)

    def unmount(self, container_id: str) -> None:
        with self._lock:
            rw = self.get_rw(container_id)
            count = self._mounts.get(container_id, 0)
            if count > 1:
                self._mounts[container_id] = count - 1
                return
            self._mounts.pop(container_id, None)
            mounts.unmount(self._merged_dir(rw.mount_id))

    def is_mounted(self, container_id: str) -> bool:
        rw = self.get_rw(container_id)
        return mounts.is_mounted(self._merged_dir(rw.mount_id))

    def remove_rw(self, container_id: str) -> None:
        """Unmount (if needed) and delete a container's RW layer; releases its parent."""
        with self._lock:
            rw = self.get_rw(container_id)
            self._mounts.pop(container_id, None)
            try:
                os.unlink(os.path.join(self.rw_meta_dir, container_id + ".json"))
            except FileNotFoundError:
                pass
            d = self._dir(rw.mount_id)
            try:
                with open(os.path.join(d, "link"), encoding="ascii") as f:
                    os.unlink(os.path.join(self.link_dir, f.read().strip()))
            except FileNotFoundError:
                pass
            mounts.unmount_all(os.path.join(d, "merged"))
            # One rename now; the files go with ``empty_trash`` (or at the next start: an
            # unknown driver dir is removed then).
            with contextlib.suppress(FileNotFoundError):  # a half-removed one
                os.rename(d, os.path.join(self.root, TRASH_PREFIX + rw.mount_id))
            del self._rw[container_id]
            if rw.parent is not None and rw.parent in self._layers:
                self.release(rw.parent)

    def remove_orphan_rw(self, owners: Collection[str]) -> list[str]:
        """At start: delete the RW layers (driver dir and mount record) of containers not in
        ``owners`` — left by a crash between :meth:`create_rw` and the container's record.
        What cannot be removed is logged and left. Returns their container IDs."""
        removed: list[str] = []
        for rw in self.rw_layers():
            if rw.container_id in owners:
                continue
            try:
                self.remove_rw(rw.container_id)
            except (OSError, WhaledError) as e:
                log.warning("cannot remove the orphaned RW layer of %s: %s", rw.container_id, e)
                continue
            log.info("removed the RW layer of %s: no such container", rw.container_id)
            removed.append(rw.container_id)
        if removed:
            self.empty_trash()
        return removed

    def empty_trash(self) -> None:
        """Delete the driver dirs ``remove_rw`` moved aside; one that cannot be removed is
        logged and left (for the next start), the others still go."""
        for name in _names(self.root) or ():
            if name.startswith(TRASH_PREFIX):
                try:
                    self._remove_driver_dir(os.path.join(self.root, name))
                except (OSError, SystemFailure) as e:
                    log.warning("cannot remove the removed RW layer %s: %s", name, e)

    def changes(self, container_id: str) -> list[Change]:
        with self._lock:
            rw = self.get_rw(container_id)
            lowers = self._lower_dirs(rw.parent) if rw.parent in self._layers else []
        return compute_changes(os.path.join(self._dir(rw.mount_id), "diff"), lowers)

    def rw_size(self, container_id: str) -> int:
        """Bytes of regular-file content in the container's upper dir (SizeRw)."""
        rw = self.get_rw(container_id)
        return dir_size(os.path.join(self._dir(rw.mount_id), "diff"))

    def diff(self, container_id: str, exclude: Collection[str] = ()) -> Iterator[bytes]:
        """Tar stream of the container's changes, whiteouts in ``.wh.`` form, without the
        members named in ``exclude`` (tar names, no leading slash)."""
        rw = self.get_rw(container_id)
        entries = upper_entries(os.path.join(self._dir(rw.mount_id), "diff"))
        if exclude:
            skip = frozenset(exclude)
            entries = (e for e in entries if e.info.name.rstrip("/") not in skip)
        return stream_tar(entries)


def _names(directory: str) -> list[str] | None:
    """Entries of a store directory; None (logged) when it cannot be read."""
    try:
        return os.listdir(directory)
    except OSError as e:
        log.warning("cannot read %s: %s", directory, e)
        return None


def _sweep(path: str, what: str) -> None:
    """Remove a leftover found at start; log and go on when that fails."""
    try:
        remove_tree(path)
    except Exception as e:  # the daemon must start
        log.warning("cannot remove %s %s: %s", what, path, e)


def _split_tar(layer_dir: str, split: str, diff_id: str) -> Iterator[bytes]:
    try:
        yield from split_chunks(layer_dir, split, expected=diff_id)
    except (OSError, SplitError) as e:
        raise SystemFailure(f"cannot rebuild the tar of layer {diff_id}: {e}") from None


class _Hasher:
    """sha256 of everything ``update`` sees; ``hexdigest`` as ``sha256:<hex>``."""

    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, data: Buffer) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return "sha256:" + self._h.hexdigest()


class _RawHash(_Hasher):
    """Hashes the raw (possibly compressed) bytes only while ``active``."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        super().__init__()
        self.active = True

    def update(self, data: Buffer) -> None:
        if self.active:
            self._h.update(data)


class _IterReader:
    """A ``read(n)`` source over an iterator of byte chunks (chunks are passed on whole)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1, /) -> bytes:
        if not self._buf:
            self._buf = next(self._chunks, b"")
        if n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


class _ProgressReader:
    def __init__(self, raw: Source, cb: Callable[[int], None] | None) -> None:
        self._raw = raw
        self._cb = cb
        self.count = 0

    def read(self, n: int = -1, /) -> Buffer:
        data = self._raw.read(n)
        if data and self._cb is not None:
            self.count += len(data)
            self._cb(self.count)
        return data


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
