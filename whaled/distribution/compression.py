"""Decompressing layer blobs as streams (no blob is ever held whole), and gzip-compressing
layers for a push (:func:`gzip_stream`: parallel, multi-member, as pigz does).

:func:`open_layer` wraps a readable binary stream (a blob being downloaded) in a reader of the
uncompressed tar; the compression is read from the stream's first bytes, as dockerd does (the
media type of a layer is not trusted for it). gzip uses ``zlib`` (multi-member streams, as
pigz writes), zstd the ``zstandard`` stream reader (multi-frame). A truncated zstd stream just
ends early (the zstandard reader raises nothing): truncation is caught before, by the blob's
size and digest verification, which sees every byte first.
"""

from __future__ import annotations

import collections
import io
import os
import zlib
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Protocol, cast

import zstandard

from whaled.distribution.manifest import Compression

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 16


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class LayerFormatError(ValueError):
    pass


def detect(head: bytes) -> Compression | None:
    """Compression named by a stream's first bytes; None when they name none."""
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    return None


class _Prefixed(io.RawIOBase):
    """``head`` followed by the rest of ``src``."""

    def __init__(self, head: bytes, src: Readable) -> None:
        self._head = head
        self._src = src

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._src.read(len(b))
        b[: len(data)] = data
        return len(data)


class _GzipReader(io.RawIOBase):
    def __init__(self, src: Readable) -> None:
        self._src = src
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._eof = False
        self._members = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._eof:
            self._fill()
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _fill(self) -> None:
        # end of a member first: zlib leaves a stale unconsumed_tail behind once it reached
        # the end (what follows the member is in unused_data), and feeding that tail again
        # returns nothing, for ever
        if self._d.unconsumed_tail and not self._d.eof:
            self._pending = self._d.decompress(self._d.unconsumed_tail, CHUNK)
            return
        if self._d.eof:
            rest = self._d.unused_data
            if not rest:
                rest = self._src.read(CHUNK)
            if not rest:
                self._eof = True
                return
            if not rest.startswith(GZIP_MAGIC[: len(rest)]):
                # trailing garbage after a member: gzip(1) warns and ignores it, so do we
                self._eof = True
                return
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._pending = self._d.decompress(rest, CHUNK)
            return
        data = self._src.read(CHUNK)
        if not data:
            raise LayerFormatError("unexpected EOF in gzip layer")
        try:
            self._pending = self._d.decompress(data, CHUNK)
        except zlib.error as e:
            raise LayerFormatError(f"invalid gzip layer: {e}") from None


class _ZstdReader(io.RawIOBase):
    def __init__(self, src: Readable) -> None:
        dctx = zstandard.ZstdDecompressor()
        self._r = dctx.stream_reader(cast(BinaryIO, src), read_size=CHUNK, read_across_frames=True)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._r.read(len(b))
        except zstandard.ZstdError as e:
            raise LayerFormatError(f"invalid zstd layer: {e}") from None
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._r.close()  # type: ignore[no-untyped-call]
        super().close()


def open_layer(src: Readable) -> BinaryIO:
    """A buffered reader of the uncompressed contents of layer blob ``src``.

    The compression is read from the first bytes, as dockerd does (its ``DecompressStream``),
    rather than trusted from the media type: a layer typed ``tar+gzip`` that is a plain tar
    unpacks, and a zstd layer is read as zstd whatever its descriptor says.
    """
    head = b""
    while len(head) < len(ZSTD_MAGIC):
        data = src.read(len(ZSTD_MAGIC) - len(head))
        if not data:
            break
        head += data
    stream = _Prefixed(head, src)
    kind = detect(head)
    raw: io.RawIOBase
    if kind is Compression.GZIP:
        raw = _GzipReader(stream)
    elif kind is Compression.ZSTD:
        raw = _ZstdReader(stream)
    else:
        raw = stream
    return io.BufferedReader(raw, CHUNK)


# ---------------------------------------------------------------------------- compressing

#: gzip level for pushed layers (Go's default, which dockerd uses)
GZIP_LEVEL = 6
#: a layer is compressed in blocks of this size, each a gzip member of its own
GZIP_BLOCK = 1 << 20
#: a block whose sample shrinks less than this (already compressed data) is stored
STORE_RATIO = 0.97
_SAMPLE = 64 << 10


def _member(block: bytes) -> bytes:
    """One gzip member: deflated at ``GZIP_LEVEL``, or stored (level 0) when a sample of
    the block does not compress (deflating random or compressed data costs CPU for
    nothing)."""
    sample = block[:_SAMPLE]
    level = GZIP_LEVEL
    if len(sample) >= 4096 and len(zlib.compress(sample, 1)) > STORE_RATIO * len(sample):
        level = 0
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    return comp.compress(block) + comp.flush()


def _blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        while len(pending) >= GZIP_BLOCK:
            yield bytes(pending[:GZIP_BLOCK])
            del pending[:GZIP_BLOCK]
    if pending:
        yield bytes(pending)


def gzip_stream(chunks: Iterable[bytes], *, workers: int = 0) -> Generator[bytes, None, None]:
    """gzip ``chunks`` as a multi-member stream (what pigz writes, and what every gzip
    reader — Go's, containerd's, Python's — reads as one): ``GZIP_BLOCK`` blocks
    compressed on ``workers`` threads at once (zlib releases the GIL), in order, at most
    two per worker in memory; already-compressed blocks are stored, not deflated again."""
    workers = workers or max(1, os.cpu_count() or 1)
    blocks = _blocks(chunks)
    with ThreadPoolExecutor(workers, thread_name_prefix="gzip") as pool:
        pending: collections.deque[Future[bytes]] = collections.deque()
        try:
            empty = True
            for block in blocks:
                empty = False
                pending.append(pool.submit(_member, block))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
            if empty:
                yield _member(b"")  # still one member: an empty stream is not gzip
        finally:
            for f in pending:
                f.cancel()
