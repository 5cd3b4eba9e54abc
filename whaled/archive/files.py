"""Files on disk and tar members, for every tar writer and unpacker of whaled.

Writing (``docker cp`` / export of a container, the diff of a read-write layer):
:func:`disk_entry` is the tar member of a file met on disk, its header from the file's stat,
its xattrs as PAX ``SCHILY.xattr.*`` headers (:func:`xattr_pax`), further names of a file
with several links as hard links, and exactly the stat'ed size of content
(:func:`exact_chunks`: the header must stay honest when the file changes while it is read).

Unpacking (layers, ``docker cp`` into a container): :func:`write_file` creates a member's
regular file, :func:`set_xattrs` and :func:`member_times_ns` put a member's xattrs and times
on what was created for it.

Overlay's own ``trusted.overlay.*`` xattrs never cross: they are not archived and not
applied (they would steer overlayfs).
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from whaled.archive.tarstream import TarEntry
from whaled.errors import InvalidParameter

#: Bytes read or padded at a time.
CHUNK = 1 << 20
OVERLAY_XATTR_PREFIX = "trusted.overlay."
_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY


@dataclass(frozen=True, slots=True)
class OnDisk:
    """How to reach a file met in a walk without following a final symlink: ``name`` in
    the directory open as ``dir_fd``, or (``name`` empty) the ``O_PATH`` descriptor
    ``dir_fd`` of the file itself. The descriptor must stay open until the entry's data
    was read."""

    dir_fd: int
    name: str = ""

    def readlink(self) -> str:
        return os.readlink(self.name, dir_fd=self.dir_fd)

    def xattr_pax(self) -> dict[str, str]:
        if self.name:
            return xattr_pax(f"/proc/self/fd/{self.dir_fd}/{self.name}")
        # The fd's magic link must be followed to reach the file (never a symlink here).
        return xattr_pax(f"/proc/self/fd/{self.dir_fd}", follow_symlinks=True)

    def open_read(self) -> int:
        if self.name:
            return os.open(self.name, _READ | os.O_NOFOLLOW, dir_fd=self.dir_fd)
        return os.open(f"/proc/self/fd/{self.dir_fd}", _READ)


def xattr_pax(target: str | int, *, follow_symlinks: bool = False) -> dict[str, str]:
    """PAX headers (``SCHILY.xattr.*``) for the xattrs of a file given by fd or path,
    overlay's own ``trusted.overlay.*`` left out. ``follow_symlinks`` applies to paths only
    (e.g. ``/proc/self/fd/N`` of an O_PATH fd must be followed)."""
    out: dict[str, str] = {}
    follow: dict[str, bool] = (
        {} if isinstance(target, int) else {"follow_symlinks": follow_symlinks}
    )
    try:
        names = os.listxattr(target, **follow)
    except OSError:
        return out
    for key in names:
        if key.startswith(OVERLAY_XATTR_PREFIX):
            continue
        try:
            value = os.getxattr(target, key, **follow)
        except OSError:
            continue
        out["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    if any(not _is_utf8(v) for v in out.values()):
        out["hdrcharset"] = "BINARY"
    return out


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def info_from_stat(name: str, st: os.stat_result) -> tarfile.TarInfo:
    """A header with the mode bits, numeric owner and mtime (whole seconds) of ``st``."""
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = st.st_mtime_ns // 1_000_000_000
    return info


def exact_chunks(open_fd: Callable[[], int], size: int) -> Callable[[], Iterator[bytes]]:
    """The content of the file ``open_fd()`` opens, exactly ``size`` bytes: zero-padded if
    it shrank, cut if it grew, since its header already announced ``size``."""

    def chunks() -> Iterator[bytes]:
        fd = open_fd()
        try:
            left = size
            while left > 0:
                data = os.read(fd, min(CHUNK, left))
                if not data:
                    break
                left -= len(data)
                yield data
            while left > 0:
                pad = min(CHUNK, left)
                left -= pad
                yield b"\0" * pad
        finally:
            os.close(fd)

    return chunks


def disk_entry(
    name: str, st: os.stat_result, where: OnDisk, hardlinks: dict[tuple[int, int], str]
) -> TarEntry | None:
    """The tar member named ``name`` for the file ``where`` whose stat is ``st``; None for
    a socket or an unknown type (dockerd skips them). A regular file with several links met
    again becomes a hard link to the first name (``hardlinks`` keeps them per walk)."""
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFSOCK:
        return None
    info = info_from_stat(name, st)
    if fmt == stat.S_IFLNK:
        info.type = tarfile.SYMTYPE
        info.linkname = where.readlink()
        return TarEntry(info=info)
    info.pax_headers = where.xattr_pax()
    if fmt == stat.S_IFDIR:
        info.type = tarfile.DIRTYPE
        return TarEntry(info=info)
    if fmt == stat.S_IFREG:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            first = hardlinks.get(key)
            if first is not None:
                info.type = tarfile.LNKTYPE
                info.linkname = first
                return TarEntry(info=info)
            hardlinks[key] = name
        info.type = tarfile.REGTYPE
        info.size = st.st_size
        return TarEntry(info=info, data=exact_chunks(where.open_read, st.st_size))
    if fmt in (stat.S_IFCHR, stat.S_IFBLK):
        info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        return TarEntry(info=info)
    if fmt == stat.S_IFIFO:
        info.type = tarfile.FIFOTYPE
        return TarEntry(info=info)
    return None


#: setxattr errors that say the archive's xattr is bad (too long a name or value, a value
#: the kernel refuses such as a malformed capability or ACL, no room left in the inode)
_BAD_XATTR = (errno.E2BIG, errno.ERANGE, errno.EINVAL, errno.ENOSPC, errno.EDQUOT)


def set_xattrs(target: int | str, xattrs: Mapping[str, bytes], *, follow: bool = True) -> None:
    """Best effort like dockerd: file systems and link types that refuse some namespaces
    are skipped; ``trusted.overlay.*`` is never set. ``follow`` applies to paths only. An
    xattr the kernel refuses is a bad archive (InvalidParameter), not a daemon error."""
    for key, value in xattrs.items():
        if key.startswith(OVERLAY_XATTR_PREFIX):
            continue
        try:
            if isinstance(target, int):
                os.setxattr(target, key, value)
            else:
                os.setxattr(target, key, value, follow_symlinks=follow)
        except OSError as e:
            if e.errno in _BAD_XATTR:
                raise InvalidParameter(
                    f"cannot set extended attribute {key[:256]!r}: {e.strerror}"
                ) from None
            if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                raise


def write_file(
    dir_fd: int,
    name: str,
    fill: Callable[[int], object],
    *,
    owner: tuple[int, int] | None,
    mode: int,
    xattrs: Mapping[str, bytes],
    times: tuple[int, int],
) -> None:
    """Create the regular file ``name`` in ``dir_fd`` (nothing may be there: a symlink is
    never followed), ``fill`` its content through the fd, then set its owner (None: keep
    ours), mode (after the owner: chown clears set-id bits), xattrs and times."""
    fd = os.open(
        name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=dir_fd,
    )
    try:
        fill(fd)
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        set_xattrs(fd, xattrs)
        os.utime(fd, ns=times)
    finally:
        os.close(fd)


#: The last time in ns that fits the int64 the kernel and Go keep (year 2262).
_MAX_NS = (1 << 63) - 1


def _time_ns(value: object) -> int | None:
    """Seconds (a number or PAX text) as ns; None for what is not a time: not a number,
    not finite, before the epoch or after :data:`_MAX_NS` (dockerd's ``Chtimes`` puts those
    at the epoch; unchecked they were a 500: OverflowError / ValueError from os.utime)."""
    try:
        ns = int(float(value) * 1_000_000_000)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return ns if 0 <= ns <= _MAX_NS else None


def member_times_ns(member: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in ns: the PAX ``atime`` when there is a valid one, else the mtime; a
    time out of range is the epoch, as dockerd makes it."""
    mtime = _time_ns(member.mtime)
    if mtime is None:
        mtime = 0
    atime_s = member.pax_headers.get("atime")
    atime = _time_ns(atime_s) if atime_s else None
    return (mtime if atime is None else atime), mtime
