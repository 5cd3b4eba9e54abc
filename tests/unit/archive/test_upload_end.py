"""An upload that ends right after its last member's data (no padding, no end-of-archive
blocks, as the docker CLI sends build contexts) is whole; one whose data is cut short is
not."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from whaled.container import archive as cp
from whaled.errors import InvalidParameter


def _tar(data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _extract(root: Path, body: bytes) -> None:
    cp.extract_to(str(root), {}, "/", io.BytesIO(body), container="t",
                  no_overwrite_dir_non_dir=False, copy_uid_gid=False)  # fmt: skip


def test_the_end_blocks_may_be_missing(tmp_path: Path) -> None:
    _extract(tmp_path, _tar(b"x" * 700)[: 512 + 700])
    assert (tmp_path / "f").read_bytes() == b"x" * 700


def test_data_cut_short_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="unexpected end of data"):
        _extract(tmp_path, _tar(b"x" * 700)[: 512 + 600])
