"""Files on disk and tar members: the one helper behind cp/export and layer diffs."""

from __future__ import annotations

import os
import socket
import tarfile
from pathlib import Path

import pytest

from whaled.archive.files import (
    OnDisk,
    disk_entry,
    exact_chunks,
    member_times_ns,
    set_xattrs,
    write_file,
    xattr_pax,
)


def _entry(tmp_path: Path, name: str, hardlinks: dict[tuple[int, int], str]) -> tarfile.TarInfo:
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.lstat(name, dir_fd=dfd)
        entry = disk_entry(name, st, OnDisk(dfd, name), hardlinks)
        assert entry is not None
        if entry.data is not None:
            assert b"".join(entry.data()) == (tmp_path / name).read_bytes()
        return entry.info
    finally:
        os.close(dfd)


def test_exact_chunks_pads_a_shrunk_file_and_cuts_a_grown_one(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")

    def opener() -> int:
        return os.open(path, os.O_RDONLY)

    assert b"".join(exact_chunks(opener, 5)()) == b"abc\0\0"
    assert b"".join(exact_chunks(opener, 2)()) == b"ab"


def test_disk_entry_types_and_hard_links(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    os.chmod(tmp_path / "f", 0o4750)
    os.link(tmp_path / "f", tmp_path / "g")
    os.symlink("f", tmp_path / "l")
    os.mkfifo(tmp_path / "p")
    (tmp_path / "d").mkdir()
    links: dict[tuple[int, int], str] = {}
    f = _entry(tmp_path, "f", links)
    assert (f.type, f.size, f.mode) == (tarfile.REGTYPE, 4, 0o4750)
    g = _entry(tmp_path, "g", links)
    assert (g.type, g.linkname, g.size) == (tarfile.LNKTYPE, "f", 0)
    lnk = _entry(tmp_path, "l", links)
    assert (lnk.type, lnk.linkname) == (tarfile.SYMTYPE, "f")
    assert _entry(tmp_path, "p", links).type == tarfile.FIFOTYPE
    assert _entry(tmp_path, "d", links).type == tarfile.DIRTYPE


def test_disk_entry_of_an_o_path_fd_and_sockets_skipped(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"xyz")
    fd = os.open(tmp_path / "f", os.O_PATH)
    try:
        entry = disk_entry("f", os.fstat(fd), OnDisk(fd), {})
        assert entry is not None and entry.data is not None
        assert b"".join(entry.data()) == b"xyz"
    finally:
        os.close(fd)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s"))
        assert disk_entry("s", os.lstat(tmp_path / "s"), OnDisk(-1, "s"), {}) is None


def test_xattrs_round_trip_without_overlay_ones(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    try:
        set_xattrs(str(path), {"user.a": b"1", "trusted.overlay.opaque": b"y"})
    except OSError as e:  # pragma: no cover - file system without user xattrs
        pytest.skip(f"no user xattrs here: {e}")
    assert "trusted.overlay.opaque" not in os.listxattr(path)
    assert xattr_pax(str(path)) == {"SCHILY.xattr.user.a": "1"}


def test_member_times_fall_back_to_mtime() -> None:
    member = tarfile.TarInfo("x")
    member.mtime = 2
    assert member_times_ns(member) == (2_000_000_000, 2_000_000_000)
    member.pax_headers = {"atime": "1.5"}
    assert member_times_ns(member) == (1_500_000_000, 2_000_000_000)
    member.pax_headers = {"atime": "bogus"}
    assert member_times_ns(member) == (2_000_000_000, 2_000_000_000)


def test_write_file_never_follows_and_sets_metadata(tmp_path: Path) -> None:
    os.symlink("/etc/passwd", tmp_path / "l")
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            write_file(dfd, "l", lambda fd: None, owner=None, mode=0o644, xattrs={}, times=(0, 0))
        write_file(
            dfd,
            "f",
            lambda fd: os.write(fd, b"hi"),
            owner=(os.getuid(), os.getgid()),
            mode=0o4751,
            xattrs={},
            times=(1_000_000_000, 2_000_000_000),
        )
    finally:
        os.close(dfd)
    st = os.stat(tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"hi"
    assert (st.st_mode & 0o7777, st.st_atime_ns, st.st_mtime_ns) == (0o4751, 10**9, 2 * 10**9)
