"""A minimal inotify watch on one directory (Linux), through libc with ctypes.

Used to act on a file's growth as it happens instead of polling (log rotation). When
inotify is unavailable, :func:`open_dir_watch` returns None and callers poll.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct

IN_MODIFY = 0x00000002
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        _libc = ctypes.CDLL(name, use_errno=True)
    return _libc


class DirWatch:
    """Events of the files in one directory; :meth:`names` drains what arrived."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def names(self) -> set[str]:
        """Names of the files with events since the last call (non-blocking)."""
        out: set[str] = set()
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            if not data:
                return out
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, _, _, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
                out.add(raw.rstrip(b"\0").decode("utf-8", "surrogateescape"))
                offset += _EVENT.size + length

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_dir_watch(directory: str, mask: int = IN_MODIFY) -> DirWatch | None:
    lib = _lib()
    if lib is None:
        return None
    fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        return None
    if lib.inotify_add_watch(fd, os.fsencode(directory), ctypes.c_uint32(mask)) < 0:
        os.close(fd)
        return None
    return DirWatch(fd)
