"""Copy-up of a directory tree into an empty volume: what arrives is what was there, whether
a file is filled by the walker or by a worker thread."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from whaled.volume import copyup
from whaled.volume.copyup import PARALLEL_MIN_SIZE, copy_tree


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _snapshot(top: Path) -> dict[str, tuple[object, ...]]:
    """Path → what a copy must keep; hard links as the sorted group of their paths."""
    paths = [Path(d, n) for d, dirs, files in os.walk(top) for n in dirs + files]
    groups: dict[int, list[str]] = {}
    for p in paths:
        groups.setdefault(p.lstat().st_ino, []).append(str(p.relative_to(top)))
    out: dict[str, tuple[object, ...]] = {}
    for p in paths:
        st = p.lstat()
        rel = str(p.relative_to(top))
        link_to = sorted(groups[st.st_ino]) if st.st_nlink > 1 else None
        body: object = None
        if stat.S_ISREG(st.st_mode):
            body = p.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            body = os.readlink(p)
        xattrs = {} if stat.S_ISLNK(st.st_mode) else {
            n: os.getxattr(p, n) for n in os.listxattr(p)
        }  # fmt: skip
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, body, link_to,
                    sorted(xattrs.items()))  # fmt: skip
    return out


def _make_tree(src: Path, big_files: int) -> None:
    (src / "d" / "e").mkdir(parents=True)
    for i in range(big_files):
        f = src / "d" / f"big{i}"
        f.write_bytes(os.urandom(PARALLEL_MIN_SIZE + i * 4097))
        os.chown(f, 1000 + i, 2000 + i)
        os.chmod(f, 0o640 if i % 2 else 0o751)
        os.setxattr(f, "user.n", str(i).encode())
        os.utime(f, ns=(1_000_000_000 * i, 2_000_000_000 + i))
    (src / "d" / "small").write_bytes(b"tiny")
    if big_files:
        os.link(src / "d" / "big0", src / "d" / "e" / "big0-link")
    os.link(src / "d" / "small", src / "small-link")
    os.symlink("../d/big1", src / "d" / "e" / "sym")
    os.mkfifo(src / "d" / "fifo", 0o620)
    os.chmod(src / "d" / "e", 0o705)
    os.chown(src / "d" / "e", 7, 8)
    os.utime(src / "d" / "e", ns=(5, 6_000_000_000))
    os.utime(src / "d", ns=(5, 7_000_000_000))


@pytest.mark.skipif(os.geteuid() != 0, reason="owners need root")
@pytest.mark.parametrize("big_files", [0, 3, copyup.MAX_IN_FLIGHT * 5])
def test_copy_is_exact_whoever_fills_the_files(tmp_path: Path, big_files: int) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    _make_tree(src, big_files)
    before = _open_fds()
    copy_tree(str(src), str(dst))
    assert _open_fds() == before
    assert _snapshot(dst) == _snapshot(src)


@pytest.mark.skipif(os.geteuid() != 0, reason="owners need root")
def test_a_failing_worker_stops_the_copy_and_leaks_no_fd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    _make_tree(src, 20)
    real = copyup._copy_data

    def flaky(sfd: int, dfd: int, size: int) -> None:
        if size == PARALLEL_MIN_SIZE + 7 * 4097:
            raise OSError(28, "No space left on device")
        real(sfd, dfd, size)

    monkeypatch.setattr(copyup, "_copy_data", flaky)
    before = _open_fds()
    with pytest.raises(OSError, match="No space left"):
        copy_tree(str(src), str(dst))
    assert _open_fds() == before
