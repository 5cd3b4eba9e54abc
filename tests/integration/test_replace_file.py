"""``replace_file``: temp + rename without fsync (files derived from fsynced state)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from whaled.osutil.atomic import replace_file


def test_replace_file_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "hosts"
    replace_file(str(target), b"one\n", 0o644)
    old = os.stat(target).st_ino
    replace_file(str(target), b"two\n" * 10000, 0o600)
    assert target.read_bytes() == b"two\n" * 10000
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert os.stat(target).st_ino != old  # a new inode: readers holding the old see it whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts"]


def test_replace_file_into_a_missing_dir_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replace_file(str(tmp_path / "nope" / "x"), b"data")
    assert list(tmp_path.iterdir()) == []
