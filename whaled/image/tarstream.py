"""A streaming tar writer: yields header, data and padding chunks, never buffers a file.

Used by ``save`` (docker-archive), layer ``diff`` and anything else that must stream a tar
to the API without a temp file.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

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
