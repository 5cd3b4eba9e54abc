from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib
from collections.abc import Iterator

import pytest
import zstandard

from whaled.distribution.compression import (
    LayerFormatError,
    detect,
    gzip_stream,
    open_layer,
)
from whaled.distribution.manifest import Compression


def _tar(n_files: int = 3, size: int = 300_000) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(n_files):
            data = os.urandom(size // 2) + b"z" * (size // 2)
            info = tarfile.TarInfo(f"dir/file{i}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Trickle(io.RawIOBase):
    """A source that hands out at most ``step`` bytes per read (like a socket)."""

    def __init__(self, data: bytes, step: int = 997) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self._step if size < 0 else min(size, self._step)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


TAR = _tar()


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(TAR, id="none"),
        pytest.param(gzip.compress(TAR), id="gzip"),
        pytest.param(zstandard.ZstdCompressor().compress(TAR), id="zstd"),
    ],
)
def test_round_trip_streaming(blob: bytes) -> None:
    with open_layer(Trickle(blob)) as r:
        out = b""
        while chunk := r.read(4096):
            out += chunk
    assert out == TAR
    with tarfile.open(fileobj=open_layer(Trickle(blob)), mode="r|") as tf:
        assert [m.name for m in tf] == ["dir/file0", "dir/file1", "dir/file2"]


def test_multi_member_gzip_as_pigz_writes() -> None:
    half = len(TAR) // 2
    blob = gzip.compress(TAR[:half]) + gzip.compress(TAR[half:])
    assert open_layer(Trickle(blob)).read() == TAR


def test_multi_frame_zstd() -> None:
    c = zstandard.ZstdCompressor()
    half = len(TAR) // 2
    blob = c.compress(TAR[:half]) + c.compress(TAR[half:])
    assert open_layer(Trickle(blob)).read() == TAR


def test_detect() -> None:
    assert detect(gzip.compress(b"x")) is Compression.GZIP
    assert detect(zstandard.ZstdCompressor().compress(b"x")) is Compression.ZSTD
    assert detect(TAR) is None
    assert detect(b"") is None


def test_truncated_gzip_raises() -> None:
    blob = gzip.compress(TAR)[:-5000]
    with pytest.raises(LayerFormatError, match="unexpected EOF"):
        open_layer(Trickle(blob)).read()


def test_corrupt_gzip_raises() -> None:
    blob = bytearray(zlib.compress(b"x"))  # zlib, not gzip header after our magic
    blob[:2] = b"\x1f\x8b"
    with pytest.raises(LayerFormatError, match="invalid gzip"):
        open_layer(Trickle(bytes(blob))).read()


def test_corrupt_zstd_raises() -> None:
    # (a truncated zstd stream ends early without an error from the zstandard reader: the
    # blob's size and digest check, which sees every byte first, is what catches truncation)
    blob = bytearray(zstandard.ZstdCompressor().compress(TAR))
    blob[4:8] = b"\xff" * 4  # frame header: unsupported parameters
    with pytest.raises(LayerFormatError, match="invalid zstd"):
        open_layer(Trickle(bytes(blob))).read()


def test_empty_blob() -> None:
    assert open_layer(Trickle(b"")).read() == b""


def test_gzip_stream_is_parallel_multi_member_gzip() -> None:
    compressible = b"whaled " * 300_000  # ~2 MB: three blocks, deflated
    random_data = os.urandom(1_500_000)  # stored, not deflated again
    out = b"".join(gzip_stream(iter([compressible, random_data, b""]), workers=3))
    assert gzip.decompress(out) == compressible + random_data
    assert out.count(b"\x1f\x8b\x08") >= 4  # one member per block
    assert len(out) < len(compressible) // 50 + len(random_data) + 4096
    # read back by whaled's own pull path too
    layer = open_layer(io.BytesIO(out))
    assert layer.read() == compressible + random_data


def test_an_empty_stream_is_still_gzip() -> None:
    assert gzip.decompress(b"".join(gzip_stream(iter([])))) == b""


def test_a_failing_source_fails_the_stream() -> None:
    def broken() -> Iterator[bytes]:
        yield b"a" * 1000
        raise OSError("the layer's tar is damaged")

    with pytest.raises(OSError, match="damaged"):
        b"".join(gzip_stream(broken()))
