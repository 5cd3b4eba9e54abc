"""Directory trees deeper than Python's recursion limit and longer than PATH_MAX, made and
checked relative to directory fds (a full path to their bottom is refused by the kernel)."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator

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


@contextlib.contextmanager
def fd_limit(soft: int) -> Iterator[None]:
    """Run with at most ``soft`` open files (the soft RLIMIT_NOFILE), as a daemon started
    from a plain shell would: deep trees must not need one fd per level."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
