"""The busybox rootfs tar builder: layout, reproducibility (pure part needs no busybox)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.support import busybox

FAKE_BINARY = b"\x7fELF fake busybox"
FAKE_APPLETS = ["bin/sh", "bin/ls", "usr/bin/env", "sbin/ifconfig", "bin/busybox", "linuxrc"]


def _tar_bytes(tmp_path: Path, name: str, extra_files: Mapping[str, bytes] | None = None) -> bytes:
    dest = tmp_path / name
    entries = busybox.rootfs_entries(FAKE_BINARY, FAKE_APPLETS, extra_files)
    busybox.write_tar(str(dest), entries)
    return dest.read_bytes()


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def _read(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def test_tar_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    a = _tar_bytes(tmp_path, "a.tar")
    b = _tar_bytes(tmp_path, "b.tar")
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()


def test_layout_modes_and_owners(tmp_path: Path) -> None:
    data = _tar_bytes(tmp_path, "a.tar")
    members = _members(data)
    names = list(members)
    assert names == sorted(names)
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "dev",
        "proc",
        "sys",
        "home",
        "var",
        "run",
    ):
        assert members[d].isdir() and members[d].mode == 0o755, d
    assert members["tmp"].mode == 0o1777
    assert members["root"].mode == 0o700
    bb = members["bin/busybox"]
    assert bb.isfile() and bb.mode == 0o755 and (bb.uid, bb.gid) == (0, 0)
    assert _read(data, "bin/busybox") == FAKE_BINARY
    sh = members["bin/sh"]
    assert sh.issym() and sh.linkname == "/bin/busybox"
    assert members["usr/bin/env"].linkname == "/bin/busybox"
    assert all(m.mtime == busybox.FIXED_MTIME for m in members.values())
    assert all((m.uid, m.gid) == (0, 0) for m in members.values())


def test_users_and_groups(tmp_path: Path) -> None:
    data = _tar_bytes(tmp_path, "a.tar")
    passwd = _read(data, "etc/passwd").decode().splitlines()
    group = _read(data, "etc/group").decode().splitlines()
    assert "root:x:0:0:root:/root:/bin/sh" in passwd
    assert any(line.startswith("daemon:x:1:1:") for line in passwd)
    assert any(line.startswith("nobody:x:65534:65534:") for line in passwd)
    assert any(line.startswith("test:x:1000:1000:") for line in passwd)
    assert {"root:x:0:", "nogroup:x:65534:", "test:x:1000:", "extra:x:2000:test"} <= set(group)
    assert _read(data, "etc/hostname") == b"busybox\n"


def test_extra_files_override_and_create_parents(tmp_path: Path) -> None:
    extra = {"/etc/hostname": b"other\n", "opt/app/run.sh": b"#!/bin/sh\n"}
    data = _tar_bytes(tmp_path, "a.tar", extra_files=extra)
    members = _members(data)
    assert _read(data, "etc/hostname") == b"other\n"
    assert members["opt"].isdir() and members["opt/app"].isdir()
    assert _read(data, "opt/app/run.sh") == b"#!/bin/sh\n"


def test_rejects_paths_outside_the_root() -> None:
    with pytest.raises(ValueError):
        busybox.rootfs_entries(FAKE_BINARY, [], {"../escape": b""})


@pytest.mark.skipif(not busybox.busybox_available(), reason="busybox-static not installed")
def test_real_busybox_tar_is_reproducible_and_has_sh(tmp_path: Path) -> None:
    a = busybox.build_rootfs_tar(str(tmp_path / "a.tar"))
    b = busybox.build_rootfs_tar(str(tmp_path / "b.tar"))
    assert busybox.sha256_file(a) == busybox.sha256_file(b)
    with tarfile.open(a) as tar:
        sh = tar.getmember("bin/sh")
        assert sh.issym() and sh.linkname == "/bin/busybox"
        assert tar.getmember("bin/busybox").size == Path(busybox.BUSYBOX_PATH).stat().st_size
