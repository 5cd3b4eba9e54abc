"""Layer store with an ``overlay2``-style driver: the read-only layers of images.

Containers' read-write layers are in :mod:`whaled.image.rwlayers`; the store builds that
part (``LayerStore.rw``) and shares its lock and driver directory helpers with it.

On disk::

    <data-root>/overlay2/<cache-id>/diff      unpacked layer content (overlay form)
    <data-root>/overlay2/<cache-id>/link      the layer's short link name
    <data-root>/overlay2/<cache-id>/lower     "l/<parent link>:l/<grandparent link>:..."
    <data-root>/overlay2/<cache-id>/tar-split how to rebuild the layer's tar (+ shadow/)
    <data-root>/overlay2/<rw-id>/{diff,work,merged}   a container's read-write layer (rwlayers)
    <data-root>/overlay2/l/<26 chars> -> ../<cache-id>/diff
    <data-root>/image/layerdb/sha256/<chain hex>.json  layer metadata (commit point)
    <data-root>/image/layerdb/mounts/<container id>.json  RW layer metadata (rwlayers)

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

Record mutability: ``Layer`` is immutable once written.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from whaled.archive.tarsafe import (
    LAYER_POLICY,
    Buffer,
    Compression,
    Source,
    TarInput,
    TarParser,
    UnpackPolicy,
    open_stream,
    space_budget,
    unpack_tar,
)
from whaled.archive.tarstream import (
    SplitError,
    SplitWriter,
    split_chunks,
    split_tar_size,
)
from whaled.errors import InvalidParameter, NotFound, SystemFailure
from whaled.image import mounts
from whaled.image.content import ContentStore
from whaled.image.digests import chain_id as compute_chain_id
from whaled.image.digests import digest_hex, is_digest
from whaled.image.rwlayers import RWLayerStore
from whaled.osutil.atomic import atomic_write_json
from whaled.osutil.tree import load_json_records, names_or_none, remove_tree, sweep_path

log = logging.getLogger(__name__)

DRIVER_NAME = "overlay2"
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20
TAR_SPLIT = "tar-split"


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


class NoSuchLayer(NotFound):
    def __init__(self, chain: str) -> None:
        super().__init__(f"layer does not exist: {chain}")


class DiffIDMismatch(InvalidParameter):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"invalid diffID for layer: expected {expected!r}, got {actual!r}")


def _new_link() -> str:
    return base64.b32encode(os.urandom(16)).decode().rstrip("=")


def _layer_record(raw: Any) -> Layer:
    return Layer(
        chain_id=raw["chain_id"],
        diff_id=raw["diff_id"],
        parent=raw["parent"],
        size=int(raw["size"]),
        cache_id=raw["cache_id"],
        link=raw["link"],
    )


class LayerStore:
    def __init__(self, data_root: str, content: ContentStore, *, fsync_blobs: bool = True) -> None:
        self.root = os.path.join(data_root, DRIVER_NAME)
        self.link_dir = os.path.join(self.root, "l")
        self.meta_dir = os.path.join(data_root, "image", "layerdb", "sha256")
        for d in (self.root, self.link_dir, self.meta_dir):
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
        listed = self._restore()
        #: The containers' read-write layers (they hold references on their parent chains).
        self.rw = RWLayerStore(self, data_root)
        # Without the full list of what exists, no directory can be called an orphan.
        if listed and self.rw.listed:
            self._sweep_driver_dirs(self.rw.mount_ids())

    # ------------------------------------------------------------------ restore / gc

    @property
    def lock(self) -> threading.RLock:
        """The store's lock, shared with its RW layers (they hold references on layers)."""
        return self._lock

    def _restore(self) -> bool:
        """Rebuild the in-memory state of the read-only layers from disk and sweep what a
        crash left. Nothing met on disk stops the start: what cannot be read is dropped,
        what cannot be removed is logged and left. False when the metadata directory could
        not be listed."""
        records = load_json_records(self.meta_dir, _layer_record, "layer metadata")
        for path, layer in records or ():
            if not os.path.isdir(self._diff_dir(layer.cache_id)):
                log.warning("dropping layer %s: its directory is missing", layer.chain_id)
                sweep_path(path, "layer metadata")
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
        return records is not None

    def _sweep_driver_dirs(self, rw_mount_ids: Collection[str]) -> None:
        """Orphaned driver dirs (crash between unpack and metadata commit, removed RW layers
        moved aside) and dead links."""
        known = {layer.cache_id for layer in self._layers.values()}
        known |= set(rw_mount_ids)
        for name in names_or_none(self.root) or ():
            if name == "l" or name in known:
                continue
            try:
                self.remove_driver_dir(os.path.join(self.root, name))
            except Exception as e:  # the daemon must start
                log.warning("cannot remove leftover layer directory %s: %s", name, e)
        for name in names_or_none(self.link_dir) or ():
            path = os.path.join(self.link_dir, name)
            if not os.path.exists(path):
                sweep_path(path, "dead layer link")

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

    def driver_dir(self, cache_id: str) -> str:
        return os.path.join(self.root, cache_id)

    def _diff_dir(self, cache_id: str) -> str:
        return os.path.join(self.root, cache_id, "diff")

    def _merged_dir(self, cache_id: str) -> str:
        return os.path.join(self.root, cache_id, "merged")

    def lower_links(self, chain: str | None) -> list[str]:
        """``l/<link>`` entries for ``chain`` and its ancestors, top first."""
        out: list[str] = []
        while chain is not None:
            layer = self._layers[chain]
            out.append(f"l/{layer.link}")
            chain = layer.parent
        return out

    def lower_dirs(self, chain: str | None) -> list[str]:
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
            self.remove_driver_dir(self.driver_dir(layer.cache_id))
        except (OSError, SystemFailure) as e:  # an orphan dir now: it goes at the next start
            log.warning("cannot remove the directory of layer %s: %s", layer.chain_id, e)
        if not any(other.diff_id == layer.diff_id for other in self._layers.values()):
            self._content.delete(layer.diff_id)

    def remove_driver_dir(self, path: str) -> None:
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
        # what is unpacked is bounded by the space there (a decompression bomb stops with
        # ArchiveLimit; the temp dir goes below)
        stream, compression = open_stream(
            src, on_raw=raw_hash.update, limit=space_budget(self.root)
        )
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

    def write_link_and_lowers(self, driver_dir: str, parent: str | None) -> str:
        """A fresh short link name in ``driver_dir/link`` and the parent chain's links in
        ``driver_dir/lower`` (none without a parent); returns the link name."""
        link = _new_link()
        with open(os.path.join(driver_dir, "link"), "w", encoding="ascii") as f:
            f.write(link)
        lowers = self.lower_links(parent)
        if lowers:
            with open(os.path.join(driver_dir, "lower"), "w", encoding="ascii") as f:
                f.write(":".join(lowers))
        return link

    def _install(self, ingest: LayerIngest, parent: str | None, chain: str) -> Layer:
        """Move an unpacked ingest into place as ``chain`` (store lock held)."""
        tmp_dir = ingest.tmp_dir
        assert tmp_dir is not None
        cache_id = ingest.cache_id
        link = self.write_link_and_lowers(tmp_dir, parent)
        os.mkdir(os.path.join(tmp_dir, "work"), 0o700)
        os.mkdir(os.path.join(tmp_dir, "merged"), 0o700)
        final_dir = self.driver_dir(cache_id)
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
        return os.path.join(self.driver_dir(layer.cache_id), TAR_SPLIT)

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
            return _split_tar(self.driver_dir(layer.cache_id), split, layer.diff_id)
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
                "WorkDir": os.path.join(self.driver_dir(layer.cache_id), "work"),
            }
            lowers = self.lower_dirs(layer.parent)
        if lowers:
            data["LowerDir"] = ":".join(lowers)
        return data


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
