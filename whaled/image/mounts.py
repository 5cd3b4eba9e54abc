"""mount(2) / umount2(2) for overlay mounts, and reading /proc/self/mountinfo.

Overlay mount data is limited to one page. When the absolute lowerdir list does not fit,
the mount is done by ``mount(8)`` in a child whose working directory is the driver root so
that the short relative ``l/<id>`` links can be used (the trick dockerd uses with a
re-exec'd helper); the daemon never changes its own working directory (it is threaded).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import subprocess

from whaled.errors import SystemFailure

MNT_DETACH = 2
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def max_mount_data() -> int:
    return _PAGE - 1


def mount(source: str, target: str, fstype: str, data: str, flags: int = 0) -> None:
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode())
    if rc != 0:
        err = ctypes.get_errno()
        raise SystemFailure(
            f"error mounting {fstype} on {target}: {os.strerror(err)} (options: {data})"
        )


def mount_from(cwd: str, source: str, target: str, fstype: str, data: str) -> None:
    """Mount with ``data`` interpreted relative to ``cwd`` (via mount(8) in a child)."""
    binary = shutil.which("mount")
    if binary is None:
        raise SystemFailure(
            "too many layers for one overlay mount without the mount(8) helper "
            "(util-linux 'mount' not found)"
        )
    proc = subprocess.run(
        [binary, "-t", fstype, "-o", data, source, target],
        cwd=cwd,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemFailure(
            f"error mounting {fstype} on {target}: {proc.stderr.decode(errors='replace').strip()}"
        )


def _umount2(target: str, flags: int) -> bool:
    """One ``umount2``: ``True`` if a mount was undone, ``False`` if ``target`` is no mount
    point (any more); other errors raise."""
    if _libc.umount2(target.encode(), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return False
    raise SystemFailure(f"error unmounting {target}: {os.strerror(err)}")


def unmount(target: str, *, detach: bool = True) -> None:
    _umount2(target, MNT_DETACH if detach else 0)


def unmount_all(target: str, limit: int = 16) -> None:
    """Undo every mount stacked on ``target`` (lazily); a directory that is no mount point
    costs one failed ``umount2``, no read of the mount table."""
    for _ in range(limit):
        if not _umount2(target, MNT_DETACH):
            return
    raise SystemFailure(f"error unmounting {target}: more than {limit} mounts stacked on it")


def _unescape(field: str) -> str:
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points() -> set[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return {_unescape(line.split()[4]) for line in f if line.strip()}


def is_mounted(path: str) -> bool:
    return os.path.realpath(path) in mount_points()
