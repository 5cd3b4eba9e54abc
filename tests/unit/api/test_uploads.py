"""The upload tap's pure parts: chunked decoding fed in any pieces, request heads, the head
an upload is passed on with, and the pipe between the tap and a worker."""

from __future__ import annotations

import itertools
import threading

import pytest

from whaled.api.uploads import (
    PIPE_HIGH_WATER,
    ChunkDecoder,
    ChunkError,
    LengthDecoder,
    UploadPipe,
    rewrite_head,
    scan_head,
)
from whaled.errors import SystemFailure


def _chunked(parts: list[bytes], trailer: bytes = b"") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return out + b"0\r\n" + trailer + b"\r\n"


def _decode(stream: bytes, cuts: list[int]) -> tuple[bytes, int, bool]:
    decoder = ChunkDecoder()
    out: list[memoryview] = []
    bounds = [0, *cuts, len(stream)]
    stop = len(stream)
    for a, b in itertools.pairwise(bounds):
        piece = stream[a:b]
        at = decoder.feed(piece, 0, out)
        if decoder.done:
            stop = a + at
            break
    return b"".join(bytes(v) for v in out), stop, decoder.done


BODY = [b"hello ", b"x" * 40000, b"end"]


def test_chunks_decode_whatever_the_pieces() -> None:
    stream = _chunked(BODY) + b"GET /next"
    expected = b"".join(BODY)
    for cut in range(len(stream)):
        data, stop, done = _decode(stream, [cut])
        assert done and data == expected and stream[stop:] == b"GET /next", cut
    assert _decode(stream, list(range(1, len(stream))))[0] == expected  # a byte at a time


def test_extensions_trailers_and_upper_case_sizes() -> None:
    stream = b"A;name=value\r\n0123456789\r\n0;last\r\nX-Trailer: 1\r\n\r\n"
    assert _decode(stream, []) == (b"0123456789", len(stream), True)
    assert _decode(stream, [5, 20, 35]) == (b"0123456789", len(stream), True)


@pytest.mark.parametrize(
    "stream",
    [b"zz\r\n", b"3\r\nabcd\r\n", b"3\nabc\r\n", b"12345678901234567\r\n", b";x\r\n",
     b"3\r\nabc\r\n0\r\n" + b"x" * 5000],
)  # fmt: skip
def test_malformed_framing_is_a_chunk_error(stream: bytes) -> None:
    with pytest.raises(ChunkError):
        _decode(stream, [])


def test_scan_head_follows_framing_and_picks_uploads() -> None:
    build = b"POST /v1.45/build?t=x HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked"
    facts = scan_head(build)
    assert facts.framing == "chunked" and facts.upload
    put = b"PUT /containers/abc/archive?path=/ HTTP/1.1\r\nTransfer-Encoding: Chunked"
    assert scan_head(put).upload
    assert not scan_head(b"POST /containers/create HTTP/1.1\r\nTransfer-Encoding: chunked").upload
    assert scan_head(b"GET /_ping HTTP/1.1\r\nHost: d").framing == "none"
    assert scan_head(b"POST /x HTTP/1.1\r\nContent-Length: 12").length == 12
    load = scan_head(b"POST /v1.41/images/load?quiet=1 HTTP/1.1\r\nContent-Length: 12")
    assert load.framing == "length" and load.length == 12 and load.upload
    assert scan_head(b"POST /x HTTP/1.1\r\nContent-Length: 0").framing == "none"
    for odd in (
        b"POST /build HTTP/1.1\r\nTransfer-Encoding: gzip, chunked",
        b"POST /build HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3",
        b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4",
        b"POST /x HTTP/1.1\r\nContent-Length: -3",
        b"POST /x HTTP/1.1\r\nX: a\r\n folded",
        b"POST /exec/1/start HTTP/1.1\r\nUpgrade: tcp\r\nConnection: Upgrade",
        b"POST /build HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked",
        b"GARBAGE",
    ):
        assert scan_head(odd).framing == "opaque", odd
    marked = b"POST /build HTTP/1.1\r\nX-Whaled-Upload: 1\r\nTransfer-Encoding: chunked"
    assert scan_head(marked).framing == "chunked" and not scan_head(marked).upload


def test_a_length_body_is_counted_off() -> None:
    decoder = LengthDecoder(10)
    out: list[memoryview] = []
    assert decoder.feed(b"0123", 0, out) == 4 and not decoder.done
    assert decoder.feed(b"456789GET", 0, out) == 6 and decoder.done
    assert b"".join(bytes(v) for v in out) == b"0123456789"


def test_an_upload_head_is_passed_on_without_a_body() -> None:
    head = b"POST /build HTTP/1.1\r\nHost: d\r\ntransfer-encoding: chunked\r\nX-A: b"
    with_length = b"POST /build HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\nX-A: b"
    assert rewrite_head(with_length, "7") == rewrite_head(head, "7")
    assert rewrite_head(head, "7") == (
        b"POST /build HTTP/1.1\r\nHost: d\r\nX-A: b\r\nContent-Length: 0\r\n"
        b"X-Whaled-Upload: 7\r\n\r\n"
    )


def test_the_pipe_hands_over_data_end_and_errors() -> None:
    pipe = UploadPipe()
    data = memoryview(b"abcdefgh")
    assert pipe.push([data[:3], data[3:]])
    pipe.end()
    assert pipe.read(2) == b"ab" and pipe.read(100) == b"cdefgh" and pipe.read() == b""
    assert pipe.bytes_read == 8
    failed = UploadPipe()
    failed.push([memoryview(b"x")])
    failed.fail(ConnectionResetError("gone"))
    with pytest.raises(SystemFailure, match="cut"):
        failed.read()


def test_a_full_pipe_stops_the_tap_until_the_reader_catches_up() -> None:
    pipe = UploadPipe()
    resumed = threading.Event()
    pipe.on_resume(resumed.set)
    big = memoryview(bytes(1 << 20))
    pushes = [pipe.push([big]) for _ in range(PIPE_HIGH_WATER // len(big) + 1)]
    assert pushes[-1] is False and all(pushes[:-1])
    while not resumed.is_set():
        assert pipe.read(1 << 20)
    pipe.end()
    while pipe.read(1 << 20):
        pass


def test_a_closed_pipe_drops_what_comes_and_resumes_the_tap() -> None:
    pipe = UploadPipe()
    resumed = threading.Event()
    pipe.on_resume(resumed.set)
    while pipe.push([memoryview(bytes(1 << 20))]):
        pass
    pipe.close()
    assert resumed.is_set() and pipe.push([memoryview(b"more")])
    with pytest.raises(SystemFailure, match="abandoned"):
        pipe.read()


def test_chunk_decoding_stops_at_the_given_end() -> None:
    decoder = ChunkDecoder()
    out: list[memoryview] = []
    data = bytearray(b"3\r\nabc\r\n0\r\n\r\nGARBAGE")
    assert decoder.feed(data, 0, out, 6) == 6 and not decoder.done
    assert decoder.feed(data, 6, out, len(data) - 7) == len(data) - 7 and decoder.done
    assert b"".join(out) == b"abc"
