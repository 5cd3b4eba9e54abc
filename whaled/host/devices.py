"""Host device nodes for ``--device`` and ``--privileged`` (reads /dev)."""

from __future__ import annotations

import os
import stat

from whaled.errors import InvalidParameter


def _kind(mode: int) -> str | None:
    if stat.S_ISCHR(mode):
        return "c"
    if stat.S_ISBLK(mode):
        return "b"
    return None


def device_node(host_path: str) -> tuple[str, int, int, int, int, int]:
    """(type, major, minor, mode bits, uid, gid) of a host device node."""
    try:
        st = os.stat(host_path)
    except FileNotFoundError:
        raise InvalidParameter(
            f'error gathering device information while adding custom device "{host_path}": '
            "no such file or directory"
        ) from None
    kind = _kind(st.st_mode)
    if kind is None:
        raise InvalidParameter(
            f'error gathering device information while adding custom device "{host_path}": '
            "not a device node"
        )
    return (
        kind,
        os.major(st.st_rdev),
        os.minor(st.st_rdev),
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
    )


def all_device_nodes(root: str = "/dev") -> list[tuple[str, str, int, int, int, int, int]]:
    """(path, type, major, minor, mode, uid, gid) of every node under /dev (privileged)."""
    out = []
    skip = {os.path.join(root, d) for d in ("pts", "shm", "fd", "mqueue", "console")}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if path in skip or path == os.path.join(root, "ptmx"):
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            kind = _kind(st.st_mode)
            if kind is None:
                continue
            out.append(
                (
                    path,
                    kind,
                    os.major(st.st_rdev),
                    os.minor(st.st_rdev),
                    stat.S_IMODE(st.st_mode),
                    st.st_uid,
                    st.st_gid,
                )
            )
    return out
