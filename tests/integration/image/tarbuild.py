"""Build (possibly malicious) tars in memory for tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Sequence


def reg(
    name: str,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_600_000_000,
    xattrs: dict[str, bytes] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, mtime
    if xattrs:
        info.pax_headers = {
            "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
        }
    return info, data


def _info(
    name: str,
    typ: bytes,
    *,
    mode: int = 0o755,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_600_000_000,
    linkname: str = "",
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = typ, mode, uid, gid, mtime
    info.linkname = linkname
    return info, b""


def dir_(name: str, **kw: int) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.DIRTYPE, **kw)


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.SYMTYPE, mode=0o777, linkname=target)


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.LNKTYPE, mode=0o644, linkname=target)


def chr_(name: str, major: int, minor: int) -> tuple[tarfile.TarInfo, bytes]:
    info, data = _info(name, tarfile.CHRTYPE, mode=0o666)
    info.devmajor, info.devminor = major, minor
    return info, data


def fifo(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.FIFOTYPE, mode=0o600)


def build(entries: Sequence[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
