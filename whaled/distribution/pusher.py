"""Push one tag of a local image to a registry: blocking, run in a worker thread.

Per layer (at most ``max_concurrent`` at once), cheapest first:
1. a blob this layer was pulled as or pushed as before, in the same repository, that the
   registry still has: ``Layer already exists`` (nothing sent);
2. such a blob in another repository of the same registry: a cross-repository mount
   (``Mounted from <repo>``, nothing sent);
3. otherwise the layer's tar (rebuilt from the layer store) is gzip-compressed in parallel
   blocks (already-compressed data stored, not deflated again) and uploaded in chunks as it
   comes, its digest computed on the way (``Pushing`` with byte progress, then ``Pushed``).
Each blob used is recorded in :class:`~whaled.image.distmeta.DistributionMetadata`, so the
next push of the layer re-uses it. Then the config blob and a Docker v2 schema 2 manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from whaled.distribution.client import RegistryClient
from whaled.distribution.compression import gzip_stream
from whaled.distribution.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    LAYER_TYPES,
    OCI_LAYER,
    OCI_LAYER_ZSTD,
    Compression,
)
from whaled.errors import WhaledError
from whaled.image.archive import ProgressEvent, ProgressFn
from whaled.image.digests import chain_ids, short_id
from whaled.image.distmeta import BlobSource, DistributionMetadata
from whaled.image.layers import LayerStore
from whaled.image.reference import Reference, parse_normalized_named
from whaled.image.store import Image

#: a locally made layer is sent in chunks of this size while it is being compressed
UPLOAD_CHUNK = 8 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PushedBlob:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()  # a foreign layer's, named instead of uploaded


@dataclass(frozen=True, slots=True, kw_only=True)
class PushedTag:
    reference: Reference
    digest: str  # the manifest's
    size: int  # the manifest's length in bytes


def build_manifest(config: PushedBlob, layers: Sequence[PushedBlob]) -> bytes:
    """A Docker v2 schema 2 manifest, indented as dockerd writes it."""
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": config.media_type, "size": config.size, "digest": config.digest},
        "layers": [
            {"mediaType": b.media_type, "size": b.size, "digest": b.digest}
            | ({"urls": list(b.urls)} if b.urls else {})
            for b in layers
        ],
    }
    return json.dumps(doc, indent=3).encode()


def reused_layer_type(recorded: str) -> str:
    """The media type a manifest names a re-used blob with: the Docker gzip type for a gzip
    blob, the OCI type of its compression for a zstd or uncompressed one, so that a blob is
    never named with a compression it does not have. Entries recorded without a type (by
    whaled before it recorded them) are taken as gzip, as they always were."""
    compression = LAYER_TYPES.get(recorded, (Compression.GZIP, False))[0]
    if compression is Compression.ZSTD:
        return OCI_LAYER_ZSTD
    if compression is Compression.NONE:
        return OCI_LAYER
    return DOCKER_LAYER_GZIP


class Pusher:
    def __init__(
        self,
        client: RegistryClient,
        layers: LayerStore,
        meta: DistributionMetadata,
        max_concurrent: int,
        progress: ProgressFn,
        *,
        nondistributable: bool = False,
    ) -> None:
        self._client = client
        self._layers = layers
        self._meta = meta
        self._max = max(1, max_concurrent)
        self._progress = progress
        self._nondistributable = nondistributable

    def _say(self, message: str, id: str | None = None, **kw: Any) -> None:
        self._progress(ProgressEvent(message=message, id=id, **kw))

    def push(self, ref: Reference, image: Image) -> PushedTag:
        """Push ``image`` as ``ref`` (a tagged reference)."""
        assert ref.tag is not None
        diff_ids = list(image.diff_ids)
        chains = chain_ids(diff_ids)
        order = list(reversed(range(len(diff_ids))))  # dockerd lists the top layer first
        for i in order:
            self._say("Preparing", id=short_id(diff_ids[i]))
        for i in order[self._max :]:
            self._say("Waiting", id=short_id(diff_ids[i]))
        for chain in chains:
            self._layers.acquire(chain)  # nothing removes them while they are read
        try:
            with ThreadPoolExecutor(max_workers=self._max, thread_name_prefix="push") as pool:
                futures = {
                    i: pool.submit(self._push_layer, ref, diff_ids[i], chains[i]) for i in order
                }
                blobs = [futures[i].result() for i in range(len(diff_ids))]
        finally:
            for chain in chains:
                self._layers.release(chain)
        config = self._push_config(ref, image.raw)
        manifest = build_manifest(config, blobs)
        digest = self._client.put_manifest(ref.path, ref.tag, manifest, DOCKER_MANIFEST)
        self._say(f"{ref.tag}: digest: {digest} size: {len(manifest)}")
        return PushedTag(reference=ref, digest=digest, size=len(manifest))

    def _push_config(self, ref: Reference, raw: bytes) -> PushedBlob:
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if self._client.blob_size(ref.path, digest) is None:
            location = self._client.start_upload(ref.path)
            assert location is not None
            self._client.finish_upload(ref.path, location, digest, raw, len(raw))
        return PushedBlob(media_type=DOCKER_CONFIG, digest=digest, size=len(raw))

    def _known_blob(self, ref: Reference, diff_id: str, lid: str) -> PushedBlob | None:
        """A blob this layer already is in the registry (same repository or mountable)."""
        sources = [s for s in self._meta.get(diff_id) if s.repository.startswith(ref.domain + "/")]
        sources.sort(key=lambda s: s.repository != ref.name)  # this repository first
        for source in sources:
            try:
                if source.repository == ref.name:
                    size = self._client.blob_size(ref.path, source.digest)
                    if size is not None:
                        self._say("Layer already exists", id=lid)
                        return PushedBlob(
                            media_type=reused_layer_type(source.media_type),
                            digest=source.digest,
                            size=size,
                        )
                    continue
                from_ref = parse_normalized_named(source.repository)
                location = self._client.start_upload(
                    ref.path, mount=source.digest, source=from_ref.path
                )
                if location is not None:
                    continue  # not mounted: the upload session just expires
                size = self._client.blob_size(ref.path, source.digest)
                if size is None:
                    continue
                self._say(f"Mounted from {from_ref.path}", id=lid)
                self._meta.add(
                    diff_id,
                    BlobSource(
                        digest=source.digest,
                        repository=ref.name,
                        media_type=source.media_type,
                    ),
                )
                return PushedBlob(
                    media_type=reused_layer_type(source.media_type),
                    digest=source.digest,
                    size=size,
                )
            except WhaledError:
                continue  # a hint only: fall back to an upload
        return None

    def _push_layer(self, ref: Reference, diff_id: str, chain: str) -> PushedBlob:
        lid = short_id(diff_id)
        foreign = self._meta.foreign(diff_id)
        if foreign is not None and not self._nondistributable:
            # named with its URLs, as it was pulled; uploaded only to a registry that
            # allow-nondistributable-artifacts names
            self._say("Skipped foreign layer", id=lid)
            return PushedBlob(
                media_type=foreign.media_type,
                digest=foreign.digest,
                size=foreign.size,
                urls=foreign.urls,
            )
        known = self._known_blob(ref, diff_id, lid)
        if known is not None:
            return known
        digest, size = self._upload_compressed(ref, chain, lid)
        self._say("Pushed", id=lid)
        self._meta.add(
            diff_id, BlobSource(digest=digest, repository=ref.name, media_type=DOCKER_LAYER_GZIP)
        )
        return PushedBlob(media_type=DOCKER_LAYER_GZIP, digest=digest, size=size)

    def _upload_compressed(self, ref: Reference, chain: str, lid: str) -> tuple[str, int]:
        """gzip the layer's tar while it is uploaded in ``UPLOAD_CHUNK`` pieces (a chunked
        upload: compression, hashing and sending overlap; at most one chunk in memory);
        the compressed digest and size. ``Pushing`` reports the tar bytes read, of the
        tar's size, as dockerd does."""
        total = self._layers.layer_tar_size(chain)
        read = 0

        def counted() -> Iterator[bytes]:
            nonlocal read
            for chunk in self._layers.layer_tar(chain):
                read += len(chunk)
                yield chunk

        location = self._client.start_upload(ref.path)
        assert location is not None
        h = hashlib.sha256()
        sent = 0
        pending = bytearray()
        stream = gzip_stream(counted())
        try:
            for piece in stream:
                h.update(piece)
                pending += piece
                if len(pending) >= UPLOAD_CHUNK:
                    location = self._client.upload_chunk(ref.path, location, bytes(pending), sent)
                    sent += len(pending)
                    pending.clear()
                    self._say("Pushing", id=lid, current=read, total=total)
        finally:
            stream.close()
        if pending or not sent:
            location = self._client.upload_chunk(ref.path, location, bytes(pending), sent)
            sent += len(pending)
        self._say("Pushing", id=lid, current=read, total=total)
        digest = "sha256:" + h.hexdigest()
        self._client.finish_upload(ref.path, location, digest, b"", 0)
        return digest, sent
