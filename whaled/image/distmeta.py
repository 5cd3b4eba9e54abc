"""Which registry blob each layer was pulled as or pushed as (dockerd's "v2 metadata").

A layer is stored uncompressed; a registry knows it by the digest of a compressed blob. So
that a push re-uses the blob a layer came from (same digest, no recompression, a
cross-repository mount when the registry has it elsewhere), every pull and push records,
per diff ID, the blob digest and the repository (``domain/path``) it was seen in, and the
media type it was described with (``MediaType``, whaled's addition to dockerd's entries: a
layer pulled as a zstd blob must be named as one when a push re-uses that blob).

On disk: ``image/distribution/v2metadata-by-diffid/sha256/<hex>`` (a JSON list, written
atomically), as dockerd lays it out. Entries are hints: a push checks with the registry
before it trusts one.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

from whaled.image.digests import digest_hex
from whaled.osutil.atomic import atomic_write_json

#: At most this many (digest, repository) pairs are kept per layer (newest first).
MAX_ENTRIES = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobSource:
    digest: str  # the compressed blob's digest in the registry
    repository: str  # fully qualified: domain/path
    media_type: str = ""  # as described when pulled or pushed; "" for entries without one


@dataclass(frozen=True, slots=True, kw_only=True)
class ForeignLayer:
    """How a foreign (non-distributable) layer was described when it was pulled: a push
    names it the same way (with its URLs) instead of uploading it."""

    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...]


class DistributionMetadata:
    def __init__(self, data_root: str) -> None:
        base = os.path.join(data_root, "image", "distribution")
        self.root = os.path.join(base, "v2metadata-by-diffid")
        self.foreign_root = os.path.join(base, "foreign-by-diffid")
        os.makedirs(os.path.join(self.root, "sha256"), exist_ok=True)
        os.makedirs(os.path.join(self.foreign_root, "sha256"), exist_ok=True)
        self._lock = threading.Lock()

    def set_foreign(self, diff_id: str, layer: ForeignLayer) -> None:
        atomic_write_json(
            os.path.join(self.foreign_root, "sha256", digest_hex(diff_id)),
            {
                "mediaType": layer.media_type,
                "digest": layer.digest,
                "size": layer.size,
                "urls": list(layer.urls),
            },
        )

    def foreign(self, diff_id: str) -> ForeignLayer | None:
        try:
            with open(
                os.path.join(self.foreign_root, "sha256", digest_hex(diff_id)), encoding="utf-8"
            ) as f:
                doc = json.load(f)
            return ForeignLayer(
                media_type=str(doc["mediaType"]),
                digest=str(doc["digest"]),
                size=int(doc["size"]),
                urls=tuple(str(u) for u in doc.get("urls") or ()),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _path(self, diff_id: str) -> str:
        return os.path.join(self.root, "sha256", digest_hex(diff_id))

    def get(self, diff_id: str) -> list[BlobSource]:
        try:
            with open(self._path(diff_id), encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return []
        out: list[BlobSource] = []
        for entry in doc if isinstance(doc, list) else []:
            if isinstance(entry, dict):
                digest, repo = entry.get("Digest"), entry.get("SourceRepository")
                media_type = entry.get("MediaType", "")
                if isinstance(digest, str) and isinstance(repo, str):
                    out.append(
                        BlobSource(
                            digest=digest,
                            repository=repo,
                            media_type=media_type if isinstance(media_type, str) else "",
                        )
                    )
        return out

    def add(self, diff_id: str, source: BlobSource) -> None:
        with self._lock:
            key = (source.digest, source.repository)
            entries = [source] + [e for e in self.get(diff_id) if (e.digest, e.repository) != key]
            atomic_write_json(
                self._path(diff_id),
                [
                    {"Digest": e.digest, "SourceRepository": e.repository}
                    | ({"MediaType": e.media_type} if e.media_type else {})
                    for e in entries[:MAX_ENTRIES]
                ],
            )
