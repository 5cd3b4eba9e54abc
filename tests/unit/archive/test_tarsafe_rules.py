from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from whaled.archive import tarsafe as t
from whaled.errors import InvalidParameter


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("a/b", ("a", "b")),
        ("./a//b/", ("a", "b")),
        ("a/../b", ("b",)),
        (".", ()),
        ("./", ()),
    ],
)
def test_clean_path_ok(name: str, parts: tuple[str, ...]) -> None:
    assert t.clean_path(name) == parts


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape", "a/../../b", "./../x"])
def test_clean_path_refuses(name: str) -> None:
    with pytest.raises(t.UnsafeLayer):
        t.clean_path(name)


def test_link_targets_are_archive_relative() -> None:
    assert t.clean_link_target("/etc/passwd") == ("etc", "passwd")
    with pytest.raises(t.UnsafeLayer):
        t.clean_link_target("../../etc/passwd")


def test_whiteouts() -> None:
    assert t.classify_whiteout(("a", "b")) is None
    assert t.classify_whiteout(("a", ".wh.b")) == t.Whiteout(parent=("a",), target="b")
    assert t.classify_whiteout(("a", ".wh..wh..opq")) == t.Whiteout(parent=("a",), target=None)
    assert t.classify_whiteout((".wh..wh.plnk",)) == t.Whiteout(parent=(), target="")
    with pytest.raises(t.UnsafeLayer):
        t.classify_whiteout(("a", ".wh.."))


def test_detect_compression() -> None:
    assert t.detect_compression(b"\x1f\x8b\x08") is t.Compression.GZIP
    assert t.detect_compression(b"\x28\xb5\x2f\xfd") is t.Compression.ZSTD
    assert t.detect_compression(b"BZh9") is t.Compression.BZIP2
    assert t.detect_compression(b"\xfd7zXZ\x00") is t.Compression.XZ
    assert t.detect_compression(b"usr/\0\0") is t.Compression.NONE


def test_pax_xattrs_restore_bytes() -> None:
    raw = b"\x01\x00\xff"
    headers = {
        "SCHILY.xattr.security.capability": raw.decode("utf-8", "surrogateescape"),
        "mtime": "1",
    }
    assert t.pax_xattrs(headers) == {"security.capability": raw}


def _tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    return buf.getvalue()


def test_layer_reader_hashes_decompressed_stream() -> None:
    import hashlib

    plain = _tar_bytes()
    for data in (
        plain,
        gzip.compress(plain),
        gzip.compress(plain[:100]) + gzip.compress(plain[100:]),
    ):
        reader = t.LayerReader(io.BytesIO(data))
        out = reader.read(-1)
        reader.drain()
        assert out == plain
        assert reader.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()


def test_layer_reader_reads_zstd_frames() -> None:
    import hashlib

    import zstandard

    plain = _tar_bytes()
    cctx = zstandard.ZstdCompressor()
    for data in (cctx.compress(plain), cctx.compress(plain[:100]) + cctx.compress(plain[100:])):
        reader = t.LayerReader(io.BytesIO(data))
        assert reader.compression is t.Compression.ZSTD
        out = reader.read(-1)
        reader.drain()
        assert out == plain
        assert reader.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()


def test_corrupt_zstd_is_invalid_parameter() -> None:
    with pytest.raises(InvalidParameter):
        r = t.LayerReader(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\xff" * 40))
        r.read(-1)


def test_corrupt_gzip_is_invalid_parameter() -> None:
    with pytest.raises(InvalidParameter):
        r = t.LayerReader(io.BytesIO(b"\x1f\x8b\x08\x00garbagegarbage"))
        r.read(-1)
