"""A busybox root filesystem tar built from Debian's ``busybox-static``.

``build_rootfs_tar`` writes an uncompressed tar that is byte-for-byte reproducible for a given
busybox binary and ``extra_files``: entries are sorted, every mtime is ``FIXED_MTIME``, owners
are root (uid/gid 0, names "root") and no PAX time records are written.

Layout: the usual top-level directories (``tmp`` 1777, ``root`` 0700), ``bin/busybox`` 0755,
one absolute symlink to ``/bin/busybox`` per applet of ``busybox --list-full`` (so ``bin/sh``
exists), and ``etc/passwd``, ``etc/group`` (users root, daemon, nobody 65534, test 1000; group
``extra`` 2000 with member ``test``) and ``etc/hostname``.

Integration tests turn the tar into an image (``docker import`` / ``POST /images/create?
fromSrc=-``); ``busybox_tar_cached`` builds it once per test session.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

BUSYBOX_PATH = "/bin/busybox"
BUSYBOX_TARGET = "/bin/busybox"
FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z
TAR_FORMAT = tarfile.PAX_FORMAT

DIRECTORIES: Mapping[str, int] = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o755,
    "root": 0o700,
    "run": 0o755,
    "sbin": 0o755,
    "sys": 0o755,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
}

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "test:x:1000:1000:test:/home/test:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\ntest:x:1000:\nextra:x:2000:test\nnogroup:x:65534:\n"
HOSTNAME = "busybox\n"

DEFAULT_FILES: Mapping[str, bytes] = {
    "etc/group": GROUP.encode(),
    "etc/hostname": HOSTNAME.encode(),
    "etc/passwd": PASSWD.encode(),
}


class BusyboxMissing(RuntimeError):
    """The busybox binary is not installed (Debian package ``busybox-static``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    info: tarfile.TarInfo
    data: bytes | None = None


def list_applets(busybox_path: str = BUSYBOX_PATH) -> list[str]:
    """Paths (relative, e.g. ``bin/sh``) of the applets that ``busybox --list-full`` names."""
    if not os.path.isfile(busybox_path):
        raise BusyboxMissing(
            f"{busybox_path} not found: install Debian's busybox-static (make sys-deps)"
        )
    out = subprocess.run(
        [busybox_path, "--list-full"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    return sorted({line.strip().lstrip("/") for line in out.splitlines() if line.strip()})


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = FIXED_MTIME
    return info


def _normalise(path: str) -> str:
    norm = os.path.normpath(path.lstrip("/"))
    if norm in ("", ".") or norm.startswith(".."):
        raise ValueError(f"invalid path in root filesystem: {path!r}")
    return norm


def _parents(path: str) -> Iterable[str]:
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def rootfs_entries(
    busybox_binary: bytes,
    applets: Iterable[str],
    extra_files: Mapping[str, bytes] | None = None,
) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The sorted tar entries of the root filesystem (pure: no file or process access).

    ``extra_files`` (paths relative to ``/``, mode 0644) are added after the defaults and
    replace them on equal paths; missing parent directories are created with mode 0755.
    """
    entries: dict[str, _Entry] = {}

    def add_dir(path: str, mode: int = 0o755) -> None:
        if path not in entries:
            entries[path] = _Entry(info=_info(path, tarfile.DIRTYPE, mode))

    def add_file(path: str, data: bytes, mode: int) -> None:
        for parent in _parents(path):
            add_dir(parent)
        info = _info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        entries[path] = _Entry(info=info, data=data)

    for path, mode in DIRECTORIES.items():
        add_dir(path, mode)
    add_file("bin/busybox", busybox_binary, 0o755)
    for applet in applets:
        path = _normalise(applet)
        if path == "bin/busybox":
            continue
        for parent in _parents(path):
            add_dir(parent)
        info = _info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = BUSYBOX_TARGET
        entries[path] = _Entry(info=info)
    for path, data in {**DEFAULT_FILES, **(extra_files or {})}.items():
        add_file(_normalise(path), data, 0o644)
    return [(entries[p].info, entries[p].data) for p in sorted(entries)]


def write_tar(dest_path: str, entries: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    """Write ``entries`` to ``dest_path`` (via a temp file and rename)."""
    tmp = f"{dest_path}.tmp-{os.getpid()}"
    try:
        with tarfile.open(tmp, "w", format=TAR_FORMAT) as tar:
            for info, data in entries:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        os.replace(tmp, dest_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_rootfs_tar(
    dest_path: str,
    busybox_path: str = BUSYBOX_PATH,
    extra_files: Mapping[str, bytes] | None = None,
) -> str:
    """Write the busybox root filesystem tar to ``dest_path`` and return ``dest_path``."""
    applets = list_applets(busybox_path)
    with open(busybox_path, "rb") as f:
        binary = f.read()
    write_tar(dest_path, rootfs_entries(binary, applets, extra_files))
    return dest_path


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class TempDirFactory(Protocol):
    """What ``busybox_tar_cached`` needs of pytest's ``tmp_path_factory``."""

    def mktemp(self, basename: str, numbered: bool = True) -> os.PathLike[str]: ...


_cache: dict[str, str] = {}


def busybox_tar_cached(tmp_path_factory: TempDirFactory, busybox_path: str = BUSYBOX_PATH) -> str:
    """Build the default rootfs tar once per process (session) and return its path."""
    cached = _cache.get(busybox_path)
    if cached is not None and os.path.exists(cached):
        return cached
    directory = os.fspath(tmp_path_factory.mktemp("busybox"))
    path = build_rootfs_tar(os.path.join(directory, "busybox-rootfs.tar"), busybox_path)
    _cache[busybox_path] = path
    return path


def busybox_available(busybox_path: str = BUSYBOX_PATH) -> bool:
    return os.path.isfile(busybox_path) and os.access(busybox_path, os.X_OK)
