"""Content-addressed blob store: ``<data-root>/image/blobs/sha256/<hex>``.

Write protocol (same guarantee as :mod:`whaled.osutil.atomic`, but streaming): bytes go to a
temp file under ``image/blobs/ingest/`` while being hashed; the file is fsync-ed, the digest
checked against the expected one (mismatch → :class:`DigestMismatch`, temp file removed),
then renamed to its final name and the directory fsync-ed. A blob path therefore either does
not exist or holds exactly the bytes its name says. Blobs are immutable; two writers of the
same content race harmlessly (the rename of identical bytes is idempotent).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from whaled.errors import InvalidParameter, NotFound
from whaled.image.digests import SHA256_PREFIX, check_digest, digest_hex
from whaled.osutil.atomic import fsync_dir
from whaled.osutil.tree import sweep

CHUNK = 1 << 20


class DigestMismatch(InvalidParameter):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class BlobNotFound(NotFound):
    def __init__(self, digest: str) -> None:
        super().__init__(f"blob not found: {digest}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    digest: str
    size: int


class BlobWriter:
    """An open ingest: write bytes, then :meth:`commit` (or :meth:`abort`).

    Usable as a context manager: leaving the block without commit aborts.
    """

    def __init__(self, store: ContentStore, *, fsync: bool = True) -> None:
        self._store = store
        self._fsync = fsync
        fd, self._tmp = tempfile.mkstemp(prefix="ingest-", dir=store.ingest_dir)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._file is None:
            raise ValueError("blob writer is closed")
        self._hash.update(data)
        n = self._file.write(data)
        self.size += len(data)
        return n

    @property
    def digest(self) -> str:
        return SHA256_PREFIX + self._hash.hexdigest()

    def commit(self, expected: str | None = None) -> Descriptor:
        f = self._file
        if f is None:
            raise ValueError("blob writer is closed")
        self._file = None
        actual = self.digest
        try:
            f.flush()
            if self._fsync:
                os.fsync(f.fileno())
            f.close()
            if expected is not None and expected != actual:
                raise DigestMismatch(expected, actual)
            self._store.install(self._tmp, actual)
        except BaseException:
            _unlink(self._tmp)
            raise
        return Descriptor(digest=actual, size=self.size)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            _unlink(self._tmp)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class ContentStore:
    def __init__(self, data_root: str) -> None:
        self.root = os.path.join(data_root, "image", "blobs")
        self.blob_dir = os.path.join(self.root, "sha256")
        self.ingest_dir = os.path.join(self.root, "ingest")
        os.makedirs(self.blob_dir, exist_ok=True)
        os.makedirs(self.ingest_dir, exist_ok=True)
        # Leftover ingests from a crash are garbage (whatever they are).
        sweep(self.ingest_dir, lambda _: True)

    def path(self, digest: str) -> str:
        return os.path.join(self.blob_dir, digest_hex(digest))

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def iter_chunks(self, digest: str, chunk: int = CHUNK) -> Iterator[bytes]:
        with self.open(digest) as f:
            while data := f.read(chunk):
                yield data

    def writer(self, *, fsync: bool = True) -> BlobWriter:
        return BlobWriter(self, fsync=fsync)

    def ingest(self, source: BinaryIO | Iterable[bytes], expected: str | None = None) -> Descriptor:
        """Store everything ``source`` yields; verify ``expected`` if given."""
        if expected is not None:
            check_digest(expected)
        with self.writer() as w:
            if isinstance(source, (list, tuple)):
                for data in source:
                    w.write(data)
            elif hasattr(source, "read"):
                while data := source.read(CHUNK):
                    w.write(data)
            else:
                for data in source:
                    w.write(data)
            return w.commit(expected)

    def put(self, data: bytes, expected: str | None = None) -> Descriptor:
        return self.ingest([data], expected)

    def install(self, tmp_path: str, digest: str) -> None:
        """Rename an already verified file (same filesystem) into place."""
        final = self.path(digest)
        os.rename(tmp_path, final)
        fsync_dir(self.blob_dir)

    def delete(self, digest: str) -> bool:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def list(self) -> list[str]:
        return sorted(SHA256_PREFIX + name for name in os.listdir(self.blob_dir))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
