"""Atomic file writes.

Guarantee: after ``atomic_write(path, data)`` returns, ``path`` holds exactly ``data``;
if the process dies at any moment before that, ``path`` holds its previous contents (or
does not exist) — never a partial file. Achieved by writing a temp file in the same
directory, fsync-ing it, renaming it over ``path`` and fsync-ing the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)


def replace_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` through a temp file and a rename, without fsync: readers never see a
    half-written file, but a power loss may lose it. Only for files derived from state
    that is itself written with :func:`atomic_write` (regenerated, never recovered)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, mode)  # the umask may have narrowed it
            f.write(data)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str, value: Any, mode: int = 0o644) -> None:
    atomic_write(path, json.dumps(value, separators=(",", ":")).encode(), mode)


def fsync_dir(directory: str) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
