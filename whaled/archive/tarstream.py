"""Streaming tar writing: yields header, data and padding chunks, never buffers a file.

- :func:`stream_tar` writes a tar from entries; used by ``save`` (docker-archive), layer
  ``diff`` and anything else that must stream a tar to the API without a temp file;
- :class:`SplitWriter` / :func:`split_chunks` keep a layer's original tar as a *tar-split*
  record next to its unpacked files and rebuild it byte for byte (see below).
"""

from __future__ import annotations

import hashlib
import os
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

BLOCK = 512
CHUNK = 1 << 20


@dataclass(slots=True)
class TarEntry:
    """One member: ``info`` (size already set for regular files) and its data source."""

    info: tarfile.TarInfo
    data: Callable[[], Iterable[bytes]] | None = field(default=None)


def file_info(
    name: str,
    size: int,
    *,
    mode: int = 0o644,
    mtime: float = 0,
    typ: bytes = tarfile.REGTYPE,
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size if typ == tarfile.REGTYPE else 0
    info.mode = mode
    info.mtime = mtime
    info.type = typ
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def dir_info(name: str, *, mode: int = 0o755, mtime: float = 0) -> tarfile.TarInfo:
    return file_info(name.rstrip("/") + "/", 0, mode=mode, mtime=mtime, typ=tarfile.DIRTYPE)


def header(info: tarfile.TarInfo) -> bytes:
    """Header block(s) for ``info`` in PAX format (long names, xattrs, big values)."""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def stream_tar(entries: Iterable[TarEntry]) -> Iterator[bytes]:
    """Yield a complete tar archive for ``entries``; data sizes must match ``info.size``."""
    for entry in entries:
        yield header(entry.info)
        if entry.data is None:
            continue
        written = 0
        for chunk in entry.data():
            if chunk:
                written += len(chunk)
                yield chunk
        if written != entry.info.size:
            raise ValueError(
                f"tar entry {entry.info.name}: wrote {written} bytes, header says {entry.info.size}"
            )
        pad = (-written) % BLOCK
        if pad:
            yield b"\0" * pad
    yield b"\0" * (2 * BLOCK)


def bytes_entry(name: str, data: bytes, *, mode: int = 0o644, mtime: float = 0) -> TarEntry:
    return TarEntry(info=file_info(name, len(data), mode=mode, mtime=mtime), data=lambda: [data])


def file_entry(name: str, path: str, size: int, *, mode: int = 0o644, mtime: float = 0) -> TarEntry:
    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while data := f.read(CHUNK):
                yield data

    return TarEntry(info=file_info(name, size, mode=mode, mtime=mtime), data=chunks)


# ------------------------------------------------------------------------------ tar-split
#
# A layer's original tar is not stored: what cannot be found in the unpacked files is
# recorded while unpacking (see ``tarsafe.SplitRecorder``) and the tar is rebuilt from that
# record plus the files, byte for byte (the layer's diff ID is checked while rebuilding).
# dockerd keeps a layer's tar the same way (its ``tar-split.json.gz``); the format here is
# our own:
#
#   header  8-byte magic, u64 tar size, u64 flags (1: the record contains moves)
#   body    one zlib stream of records:
#           b"R" u32 n, n bytes        raw bytes of the tar (headers, padding, ...)
#           b"F" u64 size, u32 n, path the next ``size`` bytes are the content of ``path``
#           b"M" u32 n, old, u32 m, new    ``old`` (a file or directory that a later member
#                                          replaced) was moved to ``new``: earlier ``F``
#                                          records under ``old`` now read from ``new``
#           b"E"                       end
#
# Paths are relative to the layer's driver directory (``diff/...``, ``shadow/<n>/...``).
# The magic is written last, so a file cut short by a crash is never taken for a record.

SPLIT_MAGIC = b"WHLDTS01"
_SPLIT_HEADER = struct.Struct("<8sQQ")
_FLAG_MOVES = 1
_RAW_FLUSH = 256 << 10
_U32 = struct.Struct("<I")
_FILE = struct.Struct("<QI")
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SplitWriter:
    """Writes the tar-split record of a layer being unpacked into ``<layer_dir>/<content>``
    (implements ``tarsafe.SplitRecorder``). Replaced entries are moved to
    ``<layer_dir>/shadow/``."""

    def __init__(self, layer_dir: str, path: str, *, content: str = "diff") -> None:
        self._layer_dir = layer_dir
        self._prefix = content + "/"
        self._file = open(path, "wb")  # closed by finish / abort
        self._file.write(_SPLIT_HEADER.pack(b"\0" * 8, 0, 0))
        self._z = zlib.compressobj(1)
        self._pending = bytearray()
        self._moves = 0
        self._shadow_fd: int | None = None

    def _emit(self, record: bytes | bytearray) -> None:
        out = self._z.compress(record)
        if out:
            self._file.write(out)

    def _flush_raw(self) -> None:
        if self._pending:
            self._emit(b"R" + _U32.pack(len(self._pending)))
            self._emit(self._pending)
            self._pending.clear()

    def raw(self, data: bytes | bytearray | memoryview, /) -> None:
        self._pending += data
        if len(self._pending) >= _RAW_FLUSH:
            self._flush_raw()

    def file(self, path: str, size: int, /) -> None:
        self._flush_raw()
        encoded = (self._prefix + path).encode("utf-8", "surrogateescape")
        self._emit(b"F" + _FILE.pack(size, len(encoded)) + encoded)

    def shadow(self, dir_fd: int, name: str, path: str, /) -> None:
        if self._shadow_fd is None:
            shadow = os.path.join(self._layer_dir, "shadow")
            os.mkdir(shadow, 0o700)
            self._shadow_fd = os.open(shadow, _OPEN_DIR)
        new = str(self._moves)
        os.rename(name, new, src_dir_fd=dir_fd, dst_dir_fd=self._shadow_fd)
        self._moves += 1
        self._flush_raw()
        old_b = (self._prefix + path).encode("utf-8", "surrogateescape")
        new_b = f"shadow/{new}".encode()
        self._emit(b"M" + _U32.pack(len(old_b)) + old_b + _U32.pack(len(new_b)) + new_b)

    def finish(self, tar_size: int) -> None:
        """Complete the record of a tar of ``tar_size`` bytes."""
        self._flush_raw()
        self._emit(b"E")
        self._file.write(self._z.flush())
        self._file.seek(0)
        flags = _FLAG_MOVES if self._moves else 0
        self._file.write(_SPLIT_HEADER.pack(SPLIT_MAGIC, tar_size, flags))
        self._close()

    def abort(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._shadow_fd is not None:
            os.close(self._shadow_fd)
            self._shadow_fd = None
        self._file.close()


class SplitError(Exception):
    """A tar-split record that cannot be read (or no longer matches the files)."""


def _split_header(f: BinaryIO) -> tuple[int, int]:
    head = f.read(_SPLIT_HEADER.size)
    if len(head) != _SPLIT_HEADER.size:
        raise SplitError("tar-split record is truncated")
    magic, size, flags = _SPLIT_HEADER.unpack(head)
    if magic != SPLIT_MAGIC:
        raise SplitError("tar-split record is incomplete or of an unknown format")
    return size, flags


def split_tar_size(path: str) -> int:
    """Size of the tar that the record at ``path`` rebuilds."""
    with open(path, "rb") as f:
        return _split_header(f)[0]


class _Records:
    """Records of a tar-split file, decompressed as they are read (bounded memory)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._z = zlib.decompressobj()
        self._buf = b""
        self._pos = 0

    def _exact(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            if self._z.eof:
                raise SplitError("tar-split record is truncated")
            tail = self._z.unconsumed_tail
            data = tail if tail else self._f.read(CHUNK)
            if not data:
                raise SplitError("tar-split record is truncated")
            more = self._z.decompress(data, max(n, CHUNK))
            self._buf = self._buf[self._pos :] + more
            self._pos = 0
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def next(self) -> tuple[bytes, int, str, str]:
        """(kind, size, path, new): R → size; F → size, path; M → path (old), new; E."""
        kind = self._exact(1)
        if kind == b"R":
            return kind, _U32.unpack(self._exact(4))[0], "", ""
        if kind == b"F":
            size, n = _FILE.unpack(self._exact(_FILE.size))
            return kind, size, self._exact(n).decode("utf-8", "surrogateescape"), ""
        if kind == b"M":
            old = self._exact(_U32.unpack(self._exact(4))[0]).decode("utf-8", "surrogateescape")
            new = self._exact(_U32.unpack(self._exact(4))[0]).decode("utf-8", "surrogateescape")
            return kind, 0, old, new
        if kind == b"E":
            return kind, 0, "", ""
        raise SplitError(f"tar-split record has an unknown entry {kind!r}")

    def raw(self, n: int) -> Iterator[bytes]:
        while n > 0:
            take = min(n, CHUNK)
            yield self._exact(take)
            n -= take


def _split_moves(path: str) -> list[tuple[int, str, str]]:
    moves: list[tuple[int, str, str]] = []
    with open(path, "rb") as f:
        _split_header(f)
        records = _Records(f)
        index = 0
        while True:
            kind, size, old, new = records.next()
            if kind == b"E":
                return moves
            if kind == b"R":
                for _ in records.raw(size):
                    pass
            elif kind == b"M":
                moves.append((index, old, new))
            index += 1


def _moved(path: str, index: int, moves: list[tuple[int, str, str]]) -> str:
    for at, old, new in moves:
        if at > index and (path == old or path.startswith(old + "/")):
            path = new + path[len(old) :]
    return path


def _open_in(root_fd: int, path: str) -> int:
    """Open regular file ``path`` under ``root_fd`` without following any symlink."""
    parts = [p for p in path.split("/") if p]
    if not parts or any(p == ".." for p in parts):
        raise SplitError(f"tar-split record names a bad path {path!r}")
    fd = root_fd
    try:
        for comp in parts[:-1]:
            nfd = os.open(comp, _OPEN_DIR, dir_fd=fd)
            if fd != root_fd:
                os.close(fd)
            fd = nfd
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        if fd != root_fd:
            os.close(fd)


def split_chunks(layer_dir: str, path: str, *, expected: str | None = None) -> Iterator[bytes]:
    """Rebuild the tar recorded at ``path`` from the files under ``layer_dir``. With
    ``expected`` (``sha256:<hex>``) the bytes are hashed and a mismatch raises SplitError
    after the last chunk."""
    moves: list[tuple[int, str, str]] = []
    with open(path, "rb") as f:
        total, flags = _split_header(f)
        if flags & _FLAG_MOVES:
            moves = _split_moves(path)
        h = hashlib.sha256() if expected is not None else None
        root_fd = os.open(layer_dir, _OPEN_DIR)
        try:
            records = _Records(f)
            index = 0
            written = 0
            while True:
                kind, size, name, _ = records.next()
                if kind == b"E":
                    break
                if kind == b"R":
                    for data in records.raw(size):
                        if h is not None:
                            h.update(data)
                        written += len(data)
                        yield data
                elif kind == b"F":
                    for data in _file_chunks(root_fd, _moved(name, index, moves), size):
                        if h is not None:
                            h.update(data)
                        written += len(data)
                        yield data
                index += 1
        finally:
            os.close(root_fd)
    if written != total:
        raise SplitError(f"rebuilt tar has {written} bytes, the record says {total}")
    if h is not None and expected is not None and "sha256:" + h.hexdigest() != expected:
        raise SplitError(f"rebuilt tar does not match {expected}: the layer files changed")


def _file_chunks(root_fd: int, path: str, size: int) -> Iterator[bytes]:
    try:
        fd = _open_in(root_fd, path)
    except OSError as e:
        raise SplitError(f"cannot read {path!r} of the layer: {e.strerror}") from None
    try:
        left = size
        while left > 0:
            data = os.read(fd, min(CHUNK, left))
            if not data:
                raise SplitError(f"{path!r} of the layer is shorter than recorded")
            left -= len(data)
            yield data
    finally:
        os.close(fd)
