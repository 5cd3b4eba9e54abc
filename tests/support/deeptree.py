"""Directory trees deeper than Python's recursion limit and longer than PATH_MAX, made and
checked relative to directory fds (a full path to their bottom is refused by the kernel)."""

from __future__ import annotations

import os

from whaled.osutil.tree import lstat_under

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def deep_rel(depth: int, leaf: str = "f") -> str:
    """``d/d/.../d/<leaf>`` with ``depth`` directories."""
    return "d/" * depth + leaf


def make_deep(
    top: str | os.PathLike[str], depth: int, *, leaf: str = "f", data: bytes = b"x"
) -> None:
    """``top/d/d/.../d/<leaf>`` (``depth`` directories, ``leaf`` a file holding ``data``)."""
    fd = os.open(top, _OPEN_DIR)
    try:
        for _ in range(depth):
            try:
                os.mkdir("d", dir_fd=fd)
            except FileExistsError:
                pass
            nfd = os.open("d", _OPEN_DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
        with open(wfd, "wb") as f:
            f.write(data)
    finally:
        os.close(fd)


def exists_under(top: str, rel: str) -> bool:
    try:
        lstat_under(top, rel)
    except FileNotFoundError:
        return False
    return True
