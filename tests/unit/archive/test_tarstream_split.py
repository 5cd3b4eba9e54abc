"""The tar-split record: written while a layer is unpacked, read to rebuild its tar."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from whaled.archive import tarstream as ts


def layer_dir(tmp_path: Path, files: dict[str, bytes]) -> str:
    root = tmp_path / "layer"
    for name, data in files.items():
        path = root / "diff" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "diff").mkdir(parents=True, exist_ok=True)
    return str(root)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rebuild(root: str, expected: str | None = None) -> bytes:
    return b"".join(ts.split_chunks(root, os.path.join(root, "tar-split"), expected=expected))


def test_round_trip_of_raw_bytes_and_files(tmp_path: Path) -> None:
    big = os.urandom(3 << 20)
    root = layer_dir(tmp_path, {"a/big": big, "small": b"xy"})
    w = ts.SplitWriter(root, os.path.join(root, "tar-split"))
    w.raw(b"H" * 512)
    w.file("a/big", len(big))
    w.raw(memoryview(b"P" * 100))
    w.raw(b"Q" * (600 << 10))  # crosses the raw flush size
    w.file("small", 2)
    w.raw(b"\0" * 1024)
    expected = b"H" * 512 + big + b"P" * 100 + b"Q" * (600 << 10) + b"xy" + b"\0" * 1024
    w.finish(len(expected))
    assert ts.split_tar_size(os.path.join(root, "tar-split")) == len(expected)
    assert rebuild(root, digest(expected)) == expected


def test_moves_apply_to_earlier_records_only(tmp_path: Path) -> None:
    root = layer_dir(tmp_path, {"d/x": b"first", "f": b"one"})
    w = ts.SplitWriter(root, os.path.join(root, "tar-split"))
    w.file("d/x", 5)
    w.file("f", 3)
    dfd = os.open(os.path.join(root, "diff"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        w.shadow(dfd, "d", "d")  # a later member replaces directory d ...
        w.shadow(dfd, "f", "f")  # ... and file f
    finally:
        os.close(dfd)
    (Path(root) / "diff" / "f").write_bytes(b"two!")
    (Path(root) / "diff" / "d").mkdir()
    (Path(root) / "diff" / "d" / "x").write_bytes(b"second")
    w.file("f", 4)
    w.file("d/x", 6)
    w.finish(5 + 3 + 4 + 6)
    assert sorted(os.listdir(os.path.join(root, "shadow"))) == ["0", "1"]
    assert rebuild(root) == b"firstonetwo!second"


def test_changed_files_and_incomplete_records_are_detected(tmp_path: Path) -> None:
    root = layer_dir(tmp_path, {"f": b"content"})
    split = os.path.join(root, "tar-split")
    w = ts.SplitWriter(root, split)
    w.raw(b"head")
    w.file("f", 7)
    w.finish(11)
    assert rebuild(root, digest(b"headcontent")) == b"headcontent"
    (Path(root) / "diff" / "f").write_bytes(b"CONTENT")
    with pytest.raises(ts.SplitError, match="does not match"):
        rebuild(root, digest(b"headcontent"))
    (Path(root) / "diff" / "f").write_bytes(b"short")
    with pytest.raises(ts.SplitError, match="shorter"):
        rebuild(root)
    os.unlink(os.path.join(root, "diff", "f"))
    os.symlink("/etc/passwd", os.path.join(root, "diff", "f"))
    with pytest.raises(ts.SplitError, match="cannot read"):
        rebuild(root)  # never follows a symlink out of the layer
    # a record whose writing did not finish (no magic yet) is refused
    w = ts.SplitWriter(root, split)
    w.raw(b"x")
    w.abort()
    with pytest.raises(ts.SplitError, match="incomplete"):
        rebuild(root)
