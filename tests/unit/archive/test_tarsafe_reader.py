"""The streaming tar reader, the decompressing stream and the pure PAX helpers of tarsafe."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from typing import Any

import pytest

from whaled.archive import tarsafe as t
from whaled.errors import InvalidParameter


def build(entries: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def reg(name: str, data: bytes = b"", **pax: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_600_000_000
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def dir_(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, b""


class Recorder:
    """A SplitRecorder that keeps everything in memory (file content read back from fds)."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, Any]] = []

    def raw(self, data: Any, /) -> None:
        self.parts.append(("raw", bytes(data)))

    def file(self, path: str, size: int, /) -> None:
        self.parts.append(("file", (path, size)))

    def shadow(self, dir_fd: int, name: str, path: str, /) -> None:
        raise AssertionError("no unpacking here")


class Chunky:
    """A source that returns at most ``n`` bytes per read (short reads everywhere)."""

    def __init__(self, data: bytes, n: int) -> None:
        self._f = io.BytesIO(data)
        self._n = n

    def read(self, n: int = -1, /) -> bytes:
        return self._f.read(self._n if n < 0 else min(n, self._n))


# ------------------------------------------------------------------ pure helpers


def test_parse_pax_records() -> None:
    raw = b"\x01\xff"
    value = b"26 SCHILY.xattr.user.a=" + raw + b"\n"
    assert len(value) == 26
    buf = b"14 path=a/b/c\n" + value + b"\0" * 20
    out = t.parse_pax(buf)
    assert out["path"] == "a/b/c"
    assert out["SCHILY.xattr.user.a"].encode("utf-8", "surrogateescape") == raw
    with pytest.raises(InvalidParameter, match="PAX"):
        t.parse_pax(b"99 path=x\n")
    with pytest.raises(InvalidParameter, match="PAX"):
        t.parse_pax(b"0 path=x\n")


def test_apply_pax_like_tarfile() -> None:
    info = tarfile.TarInfo("short")
    t.apply_pax(info, {"path": "long/name/", "size": "12", "uid": "x", "mtime": "1.5"})
    assert (info.name, info.size, info.uid, info.mtime) == ("long/name", 12, 0, 1.5)
    assert info.pax_headers["size"] == "12"


def test_looks_like_tar() -> None:
    tar = build([reg("a", b"1")])
    assert t.looks_like_tar(tar[:512])
    assert t.looks_like_tar(b"\0" * 1024)
    assert t.looks_like_tar(gzip.compress(b"anything")[:512])
    assert not t.looks_like_tar(b'{"config": 1}')
    assert not t.looks_like_tar(b"{" + b" " * 600)
    assert not t.looks_like_tar(b"1.0")


# ------------------------------------------------------------------ parser


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("chunk", [1, 7, 512, 1 << 20])
def test_parser_reads_members_and_records_every_byte(fmt: int, chunk: int) -> None:
    long = "d/" + "x" * 120 if fmt != tarfile.USTAR_FORMAT else "d/" + "x" * 90
    data = build(
        [dir_("d"), reg(long, b"hello" * 300), reg("d/empty"), reg("d/b", b"b" * 513)], fmt
    )
    data += b"\0" * 3000 + b"trailing garbage"
    rec = Recorder()
    parser = t.TarParser(t.TarInput(Chunky(data, chunk), chunk=4096), rec)
    got: list[tuple[str, bytes]] = []
    while (m := parser.next()) is not None:
        content = b""
        if m.name == long:
            rfd, wfd = os.pipe()
            try:
                assert parser.copy_data(wfd, "recorded") == 1500
                os.close(wfd)
                wfd = -1
                with os.fdopen(rfd, "rb") as f:
                    rfd = -1
                    content = f.read()
            finally:
                for fd in (rfd, wfd):
                    if fd >= 0:
                        os.close(fd)
        else:
            content = b"".join(bytes(v) for v in iter(parser.read_data, b""))
        got.append((m.name, content))
    tail = parser.drain()
    assert got == [("d", b""), (long, b"hello" * 300), ("d/empty", b""), ("d/b", b"b" * 513)]
    assert tail > 0 and parser.inp.offset == len(data)
    # raw records + the file's bytes, in order, are the original stream
    rebuilt = b"".join(
        d if kind == "raw" else b"hello" * 300
        for kind, d in rec.parts  # one file recorded
    )
    assert rebuilt == data
    assert [d for kind, d in rec.parts if kind == "file"] == [("recorded", 1500)]


def test_parser_applies_global_and_extended_headers() -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}
    ) as tf:
        info, data = reg("a", b"12", **{"SCHILY.xattr.user.k": "v"})
        tf.addfile(info, io.BytesIO(data))
    parser = t.TarParser(t.TarInput(io.BytesIO(buf.getvalue())))
    m = parser.next()
    assert m is not None and m.name == "a"
    assert m.pax_headers["comment"] == "global"
    assert t.pax_xattrs(m.pax_headers) == {"user.k": b"v"}
    assert parser.next() is None


def test_parser_refusals_and_leniency() -> None:
    with pytest.raises(InvalidParameter, match="empty file"):
        t.TarParser(t.TarInput(io.BytesIO(b""))).next()
    with pytest.raises(InvalidParameter, match="invalid tar archive"):
        t.TarParser(t.TarInput(io.BytesIO(b"not a tar" * 100))).next()
    data = build([reg("a", b"x" * 2000)])
    parser = t.TarParser(t.TarInput(io.BytesIO(data[:1200])))
    assert parser.next() is not None
    with pytest.raises(InvalidParameter, match="unexpected end"):
        parser.next()
    # a damaged header after the first member ends the archive, as with tarfile
    two = build([reg("a", b"1"), reg("b", b"2")])
    damaged = two[:1024] + b"\x01" * 512 + two[1536:]
    parser = t.TarParser(t.TarInput(io.BytesIO(damaged)))
    assert [m.name for m in parser] == ["a"]
    # sparse members are refused
    sparse = tarfile.TarInfo("s")
    sparse.type = tarfile.GNUTYPE_SPARSE
    with pytest.raises(InvalidParameter, match="sparse"):
        t.TarParser(t.TarInput(io.BytesIO(build([(sparse, b"")], tarfile.GNU_FORMAT)))).next()


def test_peek_does_not_consume() -> None:
    data = build([reg("a", b"0123456789")])
    parser = t.TarParser(t.TarInput(Chunky(data, 5)))
    assert parser.next() is not None
    assert parser.peek_data(4) == b"0123"
    assert parser.peek_data(100) == b"0123456789"
    assert bytes(parser.read_data(3)) == b"012"


# ------------------------------------------------------------------ decompression


def read_all(src: t.Source) -> bytes:
    out = []
    while data := src.read(1 << 16):
        assert len(data) <= 1 << 16
        out.append(bytes(data))
    return b"".join(out)


@pytest.mark.parametrize(
    ("compress", "kind"),
    [
        (gzip.compress, t.Compression.GZIP),
        (bz2.compress, t.Compression.BZIP2),
        (lzma.compress, t.Compression.XZ),
        (lambda d: d, t.Compression.NONE),
    ],
)
def test_open_stream_decompresses_concatenated_streams(compress: Any, kind: Any) -> None:
    plain = os.urandom(100_000) + b"\0" * 300_000
    blob = compress(plain[:1000]) + compress(plain[1000:])
    if kind is not t.Compression.NONE:
        blob += b"\0" * 700  # padding after the last stream is ignored
    raw: list[bytes] = []
    src, found = t.open_stream(Chunky(blob, 999), on_raw=lambda d: raw.append(bytes(d)))
    assert found is kind
    out = read_all(src)
    assert out == (plain if kind is not t.Compression.NONE else blob)
    assert b"".join(raw) == blob


def test_decompression_output_is_bounded_per_read() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))
    src, _ = t.open_stream(io.BytesIO(bomb))
    sizes = []
    while data := src.read(1 << 20):
        sizes.append(len(data))
    assert max(sizes) <= 1 << 20 and sum(sizes) == 64 << 20


def test_truncated_or_corrupt_compressed_stream_is_refused() -> None:
    blob = gzip.compress(os.urandom(5000))
    with pytest.raises(InvalidParameter, match="unexpected end"):
        read_all(t.open_stream(io.BytesIO(blob[:-100]))[0])
    with pytest.raises(InvalidParameter, match="gzip"):
        read_all(t.open_stream(io.BytesIO(blob[:20] + b"\xff" * 200 + blob[220:]))[0])


def test_layer_reader_reads_exact_sizes() -> None:
    plain = build([reg("f", b"x" * 5000)])
    reader = t.LayerReader(Chunky(gzip.compress(plain), 100), hash_raw=True)
    assert reader.read(512) == plain[:512]
    assert reader.read(5000) == plain[512:5512]
    rest = reader.read(-1)
    assert plain[:5512] + rest == plain
    assert reader.uncompressed_size == len(plain)
    assert reader.raw_digest is not None and reader.raw_digest != reader.diff_id


def test_open_upload_empty_plain_gzip_and_cut_after_the_data() -> None:
    with t.open_upload(io.BytesIO(b"")) as tar:
        assert tar is None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        info = tarfile.TarInfo("a")
        info.size = 2
        out.addfile(info, io.BytesIO(b"hi"))
    whole = buf.getvalue()
    cut = whole[: 512 + 2]  # the header and the data: no padding, no end-of-archive blocks
    for body in (whole, gzip.compress(whole), cut):
        with t.open_upload(io.BytesIO(body)) as tar:
            assert tar is not None
            names = []
            for member in tar:
                names.append(member.name)
                assert bytes(tar.read_data()) == b"hi"
        assert names == ["a"]
    with t.open_upload(io.BytesIO(whole[: 512 + 1])) as tar, pytest.raises(InvalidParameter):
        assert tar is not None
        for _ in tar:
            assert bytes(tar.read_data()) == b"h"
            tar.read_data()
