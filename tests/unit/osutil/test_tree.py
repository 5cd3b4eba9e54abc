"""Iterative, fd-relative tree walking and removal (any depth, also beyond PATH_MAX)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deeptree import deep_rel, make_deep
from whaled.osutil import tree
from whaled.osutil.tree import lstat_under, remove_tree, walk_fd

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """pytest's own clean-up of old temp dirs recurses: never leave a deep tree behind."""
    yield tmp_path
    remove_tree(str(tmp_path), ignore_errors=True)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


DEEP = max(2500, sys.getrecursionlimit() + 500)  # beyond the recursion limit and PATH_MAX


def test_remove_tree_deeper_than_recursion_limit_and_path_max(tmp_path: Path) -> None:
    top = tmp_path / "top"
    top.mkdir()
    make_deep(top, DEEP)
    assert len("d/" * DEEP) > 4096
    before = open_fds()
    remove_tree(str(top))
    assert not top.exists()
    assert open_fds() == before


def test_remove_tree_relative_to_dir_fd(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    fd = os.open(tmp_path, _OPEN_DIR)
    try:
        remove_tree("a", dir_fd=fd)
    finally:
        os.close(fd)
    assert os.listdir(tmp_path) == []


def test_remove_tree_missing_and_file(tmp_path: Path) -> None:
    remove_tree(str(tmp_path / "nothing"))
    (tmp_path / "file").write_text("x")
    remove_tree(str(tmp_path / "file"))
    assert os.listdir(tmp_path) == []


def test_remove_tree_never_follows_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "link").symlink_to(outside)
    (top / "dirlink").symlink_to(outside, target_is_directory=True)
    remove_tree(str(top))
    assert not top.exists()
    assert (outside / "keep").read_text() == "x"
    link = tmp_path / "toplink"
    link.symlink_to(outside)
    remove_tree(str(link))
    assert not link.is_symlink()
    assert (outside / "keep").exists()


def test_remove_tree_reports_the_first_error_and_removes_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "top"
    (top / "bad").mkdir(parents=True)
    (top / "ok").mkdir()
    (top / "ok" / "f").write_text("x")
    real_rmdir = os.rmdir

    def rmdir(path: str, *, dir_fd: int | None = None) -> None:
        if path == "bad":
            raise PermissionError(1, "refused", path)
        real_rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(tree.os, "rmdir", rmdir)
    with pytest.raises(PermissionError):
        remove_tree(str(top))
    assert sorted(os.listdir(top)) == ["bad"]
    remove_tree(str(top), ignore_errors=True)  # no raise
    monkeypatch.undo()
    remove_tree(str(top))
    assert not top.exists()


def test_walk_fd_order_paths_and_bounded_fds(tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "b" / "c").mkdir(parents=True)
    (top / "a").write_text("x")
    (top / "b" / "c" / "z").write_text("y")
    (top / "b" / "l").symlink_to("/etc")
    got = [w.path for w in walk_fd(str(top))]
    assert got == ["a", "b", "b/c", "b/c/z", "b/l"]

    deep = tmp_path / "deep"
    deep.mkdir()
    make_deep(deep, DEEP, leaf="end")
    before = open_fds()
    most = 0
    last = None
    count = 0
    for w in walk_fd(str(deep)):
        count += 1
        last = w
        if w.name == "end":
            fd = os.open(w.name, os.O_RDONLY, dir_fd=w.parent_fd)
            assert os.read(fd, 1) == b"x"
            os.close(fd)
        if count % 500 == 0:
            most = max(most, open_fds() - before)
    assert count == DEEP + 1
    assert last is not None and last.path == "d/" * DEEP + "end"
    assert most <= tree.KEEP_OPEN + 4
    assert open_fds() == before
    remove_tree(str(deep))


def test_walk_fd_stops_when_a_deep_directory_is_moved(tmp_path: Path) -> None:
    top = tmp_path / "top"
    top.mkdir()
    depth = tree.KEEP_OPEN + 10
    make_deep(top, depth)
    moved = False
    with pytest.raises(tree.TreeMoved):
        for w in walk_fd(str(top)):
            if not moved and w.name == "f":
                # Move the level above the leaf's parent elsewhere: ".." no longer leads back.
                os.rename(str(top) + "/d" * (depth - 1), str(tmp_path / "elsewhere"))
                moved = True
    remove_tree(str(top))
    remove_tree(str(tmp_path / "elsewhere"))


def test_lstat_under_beyond_path_max(tmp_path: Path) -> None:
    make_deep(tmp_path, DEEP, data=b"abc")
    assert lstat_under(str(tmp_path), deep_rel(DEEP)).st_size == 3
    assert lstat_under(str(tmp_path), "d").st_size > 0
    with pytest.raises(FileNotFoundError):
        lstat_under(str(tmp_path), deep_rel(DEEP, "nope"))
    (tmp_path / "d" / "l").symlink_to(".")
    with pytest.raises(OSError):  # not followed on the long path
        lstat_under(str(tmp_path), "d/l/" + deep_rel(DEEP - 1))


def test_load_json_records_drops_temp_and_bad_records(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text('{"n": 1}')
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "wrong.json").write_text('{"m": 1}')
    (tmp_path / ".tmp-x").write_text("half")
    (tmp_path / "dir.json").mkdir()
    records = tree.load_json_records(str(tmp_path), lambda raw: int(raw["n"]), "test record")
    assert records == [(str(tmp_path / "good.json"), 1)]
    assert sorted(os.listdir(tmp_path)) == ["good.json"]
    assert tree.load_json_records(str(tmp_path / "missing"), lambda raw: raw, "x") is None
