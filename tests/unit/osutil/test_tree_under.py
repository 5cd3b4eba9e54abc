"""open_under / readlink_under reach entries beyond PATH_MAX and never follow a final link."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from whaled.osutil.tree import open_under, readlink_under


def _deep(top: Path, depth: int) -> str:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d" * 20, dir_fd=fd)
        nfd = os.open("d" * 20, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
        f.write("bottom")
    os.symlink("/etc/passwd", "l", dir_fd=fd)
    os.close(fd)
    return "/".join(["d" * 20] * depth)


def test_beyond_path_max(tmp_path: Path) -> None:
    rel = _deep(tmp_path, 300)  # 6300 bytes
    with pytest.raises(OSError) as e:
        os.stat(f"{tmp_path}/{rel}/f")
    assert e.value.errno == errno.ENAMETOOLONG
    with open(open_under(str(tmp_path), f"{rel}/f")) as f:
        assert f.read() == "bottom"
    assert readlink_under(str(tmp_path), f"{rel}/l") == "/etc/passwd"
    with pytest.raises(OSError) as e:
        open_under(str(tmp_path), f"{rel}/l")
    assert e.value.errno == errno.ELOOP


def test_short_paths_and_final_links(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "f")
    os.close(open_under(str(tmp_path), "f"))
    assert readlink_under(str(tmp_path), "l") == str(tmp_path / "f")
    with pytest.raises(OSError):
        open_under(str(tmp_path), "l")
