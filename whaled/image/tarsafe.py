"""Safe tar unpacking for layers (we run as root) and the stream reader that feeds it.

Rules (the pure ones are functions at the top and unit tested):

- a member name is cleaned lexically (``./a//b`` → ``a/b``); an absolute name or one whose
  ``..`` climbs above the root is refused;
- every parent directory is opened component by component with ``O_NOFOLLOW`` relative to
  the layer root (``openat``-style); a parent that is a symlink is refused, so no write can
  follow a link out of the layer; missing parents are created ``0755``;
- a hard link's target is cleaned the same way (a leading ``/`` means the archive root) and
  must already exist in *this* layer, reached without symlinks;
- whiteouts: ``.wh.<name>`` becomes an overlay whiteout (char device 0/0), ``.wh..wh..opq``
  marks its directory opaque (xattr ``trusted.overlay.opaque=y``), other ``.wh..wh.`` meta
  entries are skipped;
- ``trusted.overlay.*`` xattrs inside the tar are dropped (they would steer overlayfs);
- ownership (numeric uid/gid), modes incl. setuid, mtimes, PAX ``SCHILY.xattr.*``, device
  nodes, fifos and symlinks are preserved; directory mtimes are set after their content.

On any refusal :class:`UnsafeLayer` (InvalidParameter) is raised; the caller removes the
partial layer directory (see :mod:`whaled.image.layers`).
"""

from __future__ import annotations

import bz2
import errno
import hashlib
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from whaled.errors import InvalidParameter, SystemFailure

CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR_PAX_PREFIX = "SCHILY.xattr."
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeLayer(InvalidParameter):
    """A tar entry that would write outside the layer (or is otherwise refused)."""


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


# ----------------------------------------------------------------------------- pure rules


def detect_compression(head: bytes) -> Compression:
    """Compression from magic bytes (plain tar when nothing matches)."""
    if head.startswith(b"\x1f\x8b"):
        return Compression.GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return Compression.ZSTD
    if head.startswith(b"BZh"):
        return Compression.BZIP2
    if head.startswith(b"\xfd7zXZ\x00"):
        return Compression.XZ
    return Compression.NONE


def clean_path(name: str, *, what: str = "entry") -> tuple[str, ...]:
    """Lexically cleaned components of a member name; refuses absolute / escaping names."""
    if name.startswith("/"):
        raise UnsafeLayer(f"refusing to unpack {what} {name!r}: absolute path")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise UnsafeLayer(
                    f"refusing to unpack {what} {name!r}: path escapes the layer root"
                )
            parts.pop()
        else:
            parts.append(comp)
    return tuple(parts)


def clean_link_target(linkname: str) -> tuple[str, ...]:
    """Hard-link targets name archive members: a leading ``/`` means the archive root."""
    return clean_path(linkname.lstrip("/"), what="hard link target")


@dataclass(frozen=True, slots=True, kw_only=True)
class Whiteout:
    """What a ``.wh.`` entry means: ``target`` is None for an opaque-directory marker."""

    parent: tuple[str, ...]
    target: str | None


def classify_whiteout(parts: tuple[str, ...]) -> Whiteout | None:
    """None if ``parts`` is not a whiteout; else what it whites out. Meta entries → target ''."""
    if not parts:
        return None
    base = parts[-1]
    if not base.startswith(WHITEOUT_PREFIX):
        return None
    if base == WHITEOUT_OPAQUE:
        return Whiteout(parent=parts[:-1], target=None)
    if base.startswith(WHITEOUT_META_PREFIX):
        return Whiteout(parent=parts[:-1], target="")
    target = base[len(WHITEOUT_PREFIX) :]
    if target in ("", ".", ".."):
        raise UnsafeLayer(f"refusing whiteout entry {'/'.join(parts)!r}: invalid target")
    return Whiteout(parent=parts[:-1], target=target)


def pax_xattrs(pax_headers: Mapping[str, str]) -> dict[str, bytes]:
    """xattrs carried as PAX ``SCHILY.xattr.<name>`` records (raw bytes restored)."""
    out: dict[str, bytes] = {}
    for key, value in pax_headers.items():
        if key.startswith(_XATTR_PAX_PREFIX):
            out[key[len(_XATTR_PAX_PREFIX) :]] = value.encode("utf-8", "surrogateescape")
    return out


# ----------------------------------------------------------------------------- stream reader


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class LayerReader:
    """File-like reader of the *decompressed* tar stream of ``raw``.

    Detects gzip / zstd / bzip2 / xz by magic bytes. Hashes the decompressed bytes (the diff
    ID) and optionally the raw bytes (a compressed blob digest); ``tee`` receives every
    decompressed byte (to keep the uncompressed tar in the content store).
    """

    def __init__(
        self,
        raw: Readable,
        *,
        tee: Callable[[bytes], Any] | None = None,
        hash_raw: bool = False,
    ) -> None:
        self._raw = raw
        self._tee = tee
        self._hash = hashlib.sha256()
        self._raw_hash = hashlib.sha256() if hash_raw else None
        self._buf = bytearray()
        self._eof = False
        self.uncompressed_size = 0
        head = self._read_raw(8)
        self.compression = detect_compression(head)
        self._dec: _Decompressor | None = self._new_decompressor()
        self._feed(head)

    def _new_decompressor(self) -> _Decompressor | None:
        c = self.compression
        if c is Compression.NONE:
            return None
        if c is Compression.GZIP:
            return zlib.decompressobj(wbits=31)
        if c is Compression.BZIP2:
            return bz2.BZ2Decompressor()
        if c is Compression.XZ:
            return lzma.LZMADecompressor()
        try:
            import zstandard  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise InvalidParameter(
                "layer is compressed with zstd, which this whaled cannot decompress: "
                "the Python module 'zstandard' is not installed"
            ) from None
        dec: _Decompressor = zstandard.ZstdDecompressor().decompressobj()
        return dec

    def _read_raw(self, n: int) -> bytes:
        data = self._raw.read(n)
        if data and self._raw_hash is not None:
            self._raw_hash.update(data)
        return data or b""

    def _emit(self, data: bytes) -> None:
        if data:
            self._hash.update(data)
            if self._tee is not None:
                self._tee(data)
            self.uncompressed_size += len(data)
            self._buf += data

    def _feed(self, data: bytes) -> None:
        dec = self._dec
        if dec is None:
            self._emit(data)
            return
        try:
            while data:
                self._emit(dec.decompress(data))
                # gzip streams may have several members: restart on the unused tail.
                unused = getattr(dec, "unused_data", b"")
                if self.compression is Compression.GZIP and getattr(dec, "eof", False):
                    dec = zlib.decompressobj(wbits=31)
                    self._dec = dec
                    data = bytes(unused)
                    if data.strip(b"\x00") == b"":
                        data = b""
                else:
                    data = b""
        except (zlib.error, OSError, lzma.LZMAError, EOFError) as e:
            raise InvalidParameter(f"invalid {self.compression} layer data: {e}") from None
        except InvalidParameter:
            raise
        except Exception as e:  # zstandard.ZstdError and friends
            raise InvalidParameter(f"invalid {self.compression} layer data: {e}") from None

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buf) < n):
            data = self._read_raw(CHUNK)
            if not data:
                self._eof = True
                break
            self._feed(data)
        if n < 0 or n >= len(self._buf):
            out = bytes(self._buf)
            self._buf.clear()
        else:
            out = bytes(self._buf[:n])
            del self._buf[:n]
        return out

    def drain(self) -> None:
        """Consume the rest of the stream (padding after the end-of-archive blocks)."""
        while self.read(CHUNK):
            pass

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    @property
    def raw_digest(self) -> str | None:
        return None if self._raw_hash is None else "sha256:" + self._raw_hash.hexdigest()


# ----------------------------------------------------------------------------- unpacking


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackPolicy:
    """What the unpacker does besides the safety rules (which always apply)."""

    whiteouts: bool = True  # convert .wh. entries to overlay form
    owners: bool = True  # apply uid/gid
    xattrs: bool = True
    devices: bool = True  # allow char/block devices


LAYER_POLICY = UnpackPolicy()
# For unpacking a docker-archive into a scratch dir: plain files, dirs and symlinks only.
ARCHIVE_POLICY = UnpackPolicy(whiteouts=False, owners=False, xattrs=False, devices=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackResult:
    size: int  # bytes of regular-file content (hard links counted once)
    entries: int


class _Dirs:
    """Directory fds under one root, opened component by component with O_NOFOLLOW."""

    MAX = 512

    def __init__(self, root_fd: int, label: str) -> None:
        self.root_fd = root_fd
        self._cache: dict[tuple[str, ...], int] = {}
        self._label = label

    def close(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()

    def trim(self) -> None:
        """Bound the number of open fds; only called between members (no fd in use)."""
        if len(self._cache) >= self.MAX:
            self.close()

    def forget(self, prefix: tuple[str, ...]) -> None:
        n = len(prefix)
        for key in [k for k in self._cache if k[:n] == prefix]:
            os.close(self._cache.pop(key))

    def get(self, parts: tuple[str, ...], *, create: bool, entry: str) -> int:
        if not parts:
            return self.root_fd
        cached = self._cache.get(parts)
        if cached is not None:
            return cached
        parent = self.get(parts[:-1], create=create, entry=entry)
        comp = parts[-1]
        try:
            fd = os.open(comp, _OPEN_DIR, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(comp, 0o755, dir_fd=parent)
            fd = os.open(comp, _OPEN_DIR, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.lstat(comp, dir_fd=parent)
            where = "/".join(parts)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeLayer(
                    f"refusing to unpack {entry!r}: parent {where!r} is a symbolic link"
                ) from None
            raise UnsafeLayer(
                f"refusing to unpack {entry!r}: parent {where!r} is not a directory"
            ) from None
        self._cache[parts] = fd
        return fd


def _proc_path(dir_fd: int, name: str) -> str:
    return f"/proc/self/fd/{dir_fd}/{name}"


def _set_xattrs(target: int | str, xattrs: dict[str, bytes], *, follow: bool) -> None:
    for key, value in xattrs.items():
        if key.startswith("trusted.overlay."):
            continue
        try:
            if isinstance(target, int):
                os.setxattr(target, key, value)
            else:
                os.setxattr(target, key, value, follow_symlinks=follow)
        except OSError as e:
            # Best effort like dockerd for filesystems / link types that refuse xattrs.
            if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                raise


def _remove_existing(pfd: int, base: str) -> os.stat_result | None:
    try:
        st = os.lstat(base, dir_fd=pfd)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(base, dir_fd=pfd)
    else:
        os.unlink(base, dir_fd=pfd)
    return st


def _mtime_ns(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(float(member.mtime) * 1_000_000_000)
    atime_s = member.pax_headers.get("atime")
    atime = int(float(atime_s) * 1_000_000_000) if atime_s else mtime
    return atime, mtime


def unpack(reader: Any, dest: str, policy: UnpackPolicy = LAYER_POLICY) -> UnpackResult:
    """Unpack the tar stream ``reader`` (file-like, ``read(n)``) into existing dir ``dest``.

    Raises UnsafeLayer / InvalidParameter for refused or malformed input, SystemFailure for
    host errors. Leaves cleanup of ``dest`` to the caller.
    """
    root_fd = os.open(dest, _OPEN_DIR)
    dirs = _Dirs(root_fd, dest)
    deferred_dirs: list[tuple[tuple[str, ...], tuple[int, int]]] = []
    size = 0
    entries = 0
    current = ""
    try:
        with tarfile.open(fileobj=reader, mode="r|", bufsize=CHUNK) as tf:
            for member in tf:
                current = member.name
                entries += 1
                dirs.trim()
                size += _unpack_member(tf, member, dirs, policy, deferred_dirs)
        for parts, times in reversed(deferred_dirs):
            try:
                if parts:
                    pfd = dirs.get(parts[:-1], create=False, entry="/".join(parts))
                    os.utime(parts[-1], ns=times, dir_fd=pfd, follow_symlinks=False)
                else:
                    os.utime(root_fd, ns=times)
            except FileNotFoundError:
                pass  # removed by a later entry
    except InvalidParameter:
        raise
    except tarfile.TarError as e:
        raise InvalidParameter(f"invalid tar archive: {e}") from None
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.EEXIST, errno.EPERM, errno.EISDIR):
            raise InvalidParameter(f"cannot unpack entry {current!r}: {e.strerror}") from None
        raise SystemFailure(f"failed to unpack layer entry {current!r}: {e}") from e
    finally:
        dirs.close()
        os.close(root_fd)
    return UnpackResult(size=size, entries=entries)


def _unpack_member(
    tf: tarfile.TarFile,
    member: tarfile.TarInfo,
    dirs: _Dirs,
    policy: UnpackPolicy,
    deferred_dirs: list[tuple[tuple[str, ...], tuple[int, int]]],
) -> int:
    name = member.name
    parts = clean_path(name)
    if policy.whiteouts:
        wh = classify_whiteout(parts)
        if wh is not None:
            _apply_whiteout(wh, member, dirs, name)
            return 0
    times = _mtime_ns(member)
    mode = member.mode & 0o7777
    xattrs = pax_xattrs(member.pax_headers) if policy.xattrs else {}

    if not parts:
        if not member.isdir():
            raise UnsafeLayer(f"refusing to unpack {name!r}: the layer root must be a directory")
        if policy.owners:
            os.fchown(dirs.root_fd, member.uid, member.gid)
        os.fchmod(dirs.root_fd, mode)
        _set_xattrs(dirs.root_fd, xattrs, follow=False)
        deferred_dirs.append(((), times))
        return 0

    pfd = dirs.get(parts[:-1], create=True, entry=name)
    base = parts[-1]

    if member.isdir():
        try:
            st: os.stat_result | None = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            os.unlink(base, dir_fd=pfd)
            st = None
        if st is None:
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, _OPEN_DIR, dir_fd=pfd)
        try:
            if policy.owners:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, mode)
            _set_xattrs(fd, xattrs, follow=False)
        finally:
            os.close(fd)
        deferred_dirs.append((parts, times))
        return 0

    existing = _remove_existing(pfd, base)
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        dirs.forget(parts)

    if member.isreg():
        fd = os.open(
            base,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=pfd,
        )
        try:
            src = tf.extractfile(member)
            if src is not None:
                while data := src.read(CHUNK):
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
            if policy.owners:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, mode)
            _set_xattrs(fd, xattrs, follow=False)
            os.utime(fd, ns=times)
        finally:
            os.close(fd)
        return member.size

    if member.issym():
        os.symlink(member.linkname, base, dir_fd=pfd)
        if policy.owners:
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        _set_xattrs(_proc_path(pfd, base), xattrs, follow=False)
        os.utime(base, ns=times, dir_fd=pfd, follow_symlinks=False)
        return 0

    if member.islnk():
        tparts = clean_link_target(member.linkname)
        if not tparts:
            raise UnsafeLayer(f"refusing hard link {name!r}: target is the layer root")
        try:
            tpfd = dirs.get(tparts[:-1], create=False, entry=name)
            os.lstat(tparts[-1], dir_fd=tpfd)
        except FileNotFoundError:
            raise UnsafeLayer(
                f"refusing hard link {name!r} -> {member.linkname!r}: target is not in this layer"
            ) from None
        try:
            os.link(tparts[-1], base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        except PermissionError:
            raise UnsafeLayer(
                f"refusing hard link {name!r} -> {member.linkname!r}: cannot link a directory"
            ) from None
        return 0

    if member.ischr() or member.isblk() or member.isfifo():
        if member.isfifo():
            kind = stat.S_IFIFO
        elif not policy.devices:
            raise UnsafeLayer(f"refusing device node {name!r} here")
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
        if policy.owners:
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        # Just created by us in a private directory: not a symlink, chmod cannot be redirected.
        os.chmod(base, mode, dir_fd=pfd)
        _set_xattrs(_proc_path(pfd, base), xattrs, follow=False)
        os.utime(base, ns=times, dir_fd=pfd, follow_symlinks=False)
        return 0

    raise UnsafeLayer(f"refusing to unpack {name!r}: unsupported tar entry type {member.type!r}")


def _apply_whiteout(wh: Whiteout, member: tarfile.TarInfo, dirs: _Dirs, name: str) -> None:
    pfd = dirs.get(wh.parent, create=True, entry=name)
    if wh.target is None:
        os.setxattr(pfd, OPAQUE_XATTR, b"y")
        return
    if wh.target == "":
        return  # other aufs meta entries (.wh..wh.plnk etc.) carry nothing for overlay
    existing = _remove_existing(pfd, wh.target)
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        dirs.forget((*wh.parent, wh.target))
    os.mknod(wh.target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
    os.chown(wh.target, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)


def is_whiteout_device(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
