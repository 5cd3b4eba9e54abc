"""Pure parts of the connection hijack: frames, content types, detach keys, early input."""

from __future__ import annotations

import struct

import pytest

from whaled.api.framing import (
    MULTIPLEXED_STREAM,
    RAW_STREAM,
    STDERR,
    STDIN,
    STDOUT,
    DetachScanner,
    bytes_after_request,
    detacher_for,
    mux_frame,
    parse_detach_keys,
    stream_content_type,
)
from whaled.errors import InvalidParameter

CTRL_P, CTRL_Q = b"\x10", b"\x11"

# ------------------------------------------------------------------ frames


def test_mux_frame_header_layout() -> None:
    assert mux_frame(STDOUT, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert mux_frame(STDERR, b"") == b"\x02\x00\x00\x00\x00\x00\x00\x00"
    assert mux_frame(STDIN, b"x")[:1] == b"\x00"
    payload = bytes(range(256)) * 300
    frame = mux_frame(STDOUT, payload)
    stream, length = struct.unpack(">BxxxL", frame[:8])
    assert (stream, length) == (1, len(payload))
    assert frame[8:] == payload


def test_mux_frame_rejects_unknown_stream() -> None:
    with pytest.raises(ValueError):
        mux_frame(3, b"x")


def test_content_type_follows_dockerd() -> None:
    new, old = (1, 45), (1, 41)
    assert stream_content_type(tty=False, upgrade=True, api_version=new) == MULTIPLEXED_STREAM
    assert stream_content_type(tty=False, upgrade=True, api_version=(1, 42)) == (MULTIPLEXED_STREAM)
    assert stream_content_type(tty=True, upgrade=True, api_version=new) == RAW_STREAM
    # Before 1.42 even multiplexed output is labelled raw; without Upgrade always raw.
    assert stream_content_type(tty=False, upgrade=True, api_version=old) == RAW_STREAM
    assert stream_content_type(tty=False, upgrade=False, api_version=new) == RAW_STREAM


# ------------------------------------------------------------------ detach keys


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", CTRL_P + CTRL_Q),
        ("ctrl-p,ctrl-q", CTRL_P + CTRL_Q),
        ("ctrl-a", b"\x01"),
        ("ctrl-z", b"\x1a"),
        ("ctrl-@", b"\x00"),
        ("ctrl-[", b"\x1b"),
        ("ctrl-\\", b"\x1c"),
        ("ctrl-]", b"\x1d"),
        ("ctrl-^", b"\x1e"),
        ("ctrl-_", b"\x1f"),
        ("a", b"a"),
        ("z,ctrl-x", b"z\x18"),
        ("X", b"X"),
        ("ctrl-e,e", b"\x05e"),
    ],
)
def test_parse_detach_keys(spec: str, expected: bytes) -> None:
    assert parse_detach_keys(spec) == expected


def test_parse_detach_keys_del() -> None:
    assert parse_detach_keys("ctrl-p,DEL") == b"\x10\x7f"


@pytest.mark.parametrize(
    "spec",
    ["ctrl-", "ctrl-A", "ctrl-1", "ctrl-pq", "abc", "a,,b", "a,", ",", "é", "ctrl-p, ctrl-q"],
)
def test_parse_detach_keys_invalid_uses_dockerd_wording(spec: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        parse_detach_keys(spec)
    assert e.value.message == f"Invalid detach keys ({spec}) provided"


# ------------------------------------------------------------------ detach scanner


def feed_all(scanner: DetachScanner, chunks: list[bytes]) -> tuple[bytes, bool]:
    out = b""
    for chunk in chunks:
        data, detached = scanner.feed(chunk)
        out += data
        if detached:
            return out, True
    return out, False


def test_scanner_passes_through_without_keys() -> None:
    scanner = DetachScanner(CTRL_P + CTRL_Q)
    data = b"hello world\n" * 100
    out, detached = scanner.feed(data)
    assert out is data  # no copy on the common path
    assert not detached


def test_scanner_detaches_within_one_chunk_and_drops_the_rest() -> None:
    scanner = DetachScanner(CTRL_P + CTRL_Q)
    assert scanner.feed(b"ls\n" + CTRL_P + CTRL_Q + b"after") == (b"ls\n", True)
    assert scanner.detached
    assert scanner.feed(b"more") == (b"", True)


def test_scanner_sequence_split_across_chunks() -> None:
    scanner = DetachScanner(CTRL_P + CTRL_Q)
    assert scanner.feed(b"abc" + CTRL_P) == (b"abc", False)
    assert scanner.pending == CTRL_P
    assert scanner.feed(CTRL_Q + b"tail") == (b"", True)


def test_scanner_releases_a_broken_prefix_in_order() -> None:
    scanner = DetachScanner(CTRL_P + CTRL_Q)
    assert scanner.feed(b"a" + CTRL_P) == (b"a", False)
    assert scanner.feed(b"b") == (CTRL_P + b"b", False)
    assert scanner.pending == b""
    # Broken inside one chunk too.
    assert scanner.feed(b"x" + CTRL_P + b"y") == (b"x" + CTRL_P + b"y", False)


def test_scanner_breaking_byte_does_not_restart_a_match_like_dockerd() -> None:
    scanner = DetachScanner(CTRL_P + CTRL_Q)
    out, detached = feed_all(scanner, [CTRL_P, CTRL_P, CTRL_Q])
    assert not detached
    assert out == CTRL_P + CTRL_P + CTRL_Q
    # ... but the next complete sequence detaches.
    assert scanner.feed(CTRL_P + CTRL_Q) == (b"", True)


def test_scanner_three_key_sequence_one_byte_at_a_time() -> None:
    keys = parse_detach_keys("ctrl-a,b,ctrl-c")
    scanner = DetachScanner(keys)
    out, detached = feed_all(scanner, [b"x", b"\x01", b"b", b"\x03", b"y"])
    assert (out, detached) == (b"x", True)


def test_scanner_three_key_sequence_broken_late() -> None:
    scanner = DetachScanner(b"\x01b\x03")
    out, detached = feed_all(scanner, [b"\x01", b"b", b"Z", b"\x01b\x03"])
    assert (out, detached) == (b"\x01bZ", True)


def test_scanner_prefix_held_at_eof_is_pending() -> None:
    scanner = DetachScanner(CTRL_P + CTRL_Q)
    assert scanner.feed(b"end" + CTRL_P) == (b"end", False)
    assert scanner.pending == CTRL_P
    assert not scanner.detached


def test_scanner_single_key() -> None:
    scanner = DetachScanner(b"\x1d")
    assert scanner.feed(b"abc\x1ddef") == (b"abc", True)


def test_scanner_with_no_keys_never_detaches() -> None:
    scanner = DetachScanner(b"")
    assert scanner.feed(CTRL_P + CTRL_Q) == (CTRL_P + CTRL_Q, False)


def test_detach_keys_apply_only_to_a_tty_stdin_like_dockerd() -> None:
    keys = CTRL_P + CTRL_Q
    scanner = detacher_for(keys, tty=True, stdin=True)
    assert scanner is not None and scanner.feed(b"a" + keys) == (b"a", True)
    # Without a TTY, stdin is data: binary input may hold the sequence.
    assert detacher_for(keys, tty=False, stdin=True) is None
    assert detacher_for(keys, tty=True, stdin=False) is None
    assert detacher_for(b"", tty=True, stdin=True) is None


def test_scanner_many_chunk_boundaries_preserve_every_byte() -> None:
    keys = CTRL_P + CTRL_Q
    stream = (b"ab" + CTRL_P + b"c" + CTRL_P + CTRL_P + b"d") * 50 + b"end"
    for size in (1, 2, 3, 7, 64):
        scanner = DetachScanner(keys)
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert feed_all(scanner, chunks) == (stream, False)


# ------------------------------------------------------------------ early input


DEFAULT_HEADERS = [(b"Host", b"docker"), (b"Connection", b"Upgrade"), (b"Upgrade", b"tcp")]


def _locate(
    raw: bytes, *, body: int = 0, headers: list[tuple[bytes, bytes]] = DEFAULT_HEADERS
) -> bytes | None:
    return bytes_after_request(
        raw,
        method="POST",
        target="/v1.45/containers/abc/attach?stream=1&stdin=1",
        version=(1, 1),
        raw_headers=headers,
        body_length=body,
    )


REQUEST = (
    b"POST /v1.45/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\n"
    b"Host: docker\r\nConnection: Upgrade\r\nUpgrade:  tcp \r\n\r\n"
)


def test_bytes_after_request_plain() -> None:
    assert _locate(REQUEST + b"stdin!") == b"stdin!"
    assert _locate(REQUEST) == b""


def test_bytes_after_request_after_earlier_requests() -> None:
    earlier = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
    # The same request earlier on the keep-alive connection (answered with an error).
    assert _locate(earlier + REQUEST + REQUEST + b"in") == b"in"


def test_bytes_after_request_with_body() -> None:
    body = b'{"Detach":false,"Tty":false}'
    raw = REQUEST.replace(b"\r\n\r\n", b"\r\nContent-Length: 28\r\n\r\n") + body + b"stdin"
    headers = [
        (b"Host", b"docker"),
        (b"Connection", b"Upgrade"),
        (b"Upgrade", b"tcp"),
        (b"Content-Length", b"28"),
    ]
    assert _locate(raw, body=len(body), headers=headers) == b"stdin"


def test_bytes_after_request_stdin_that_looks_like_the_request() -> None:
    # A copy of the request line in stdin, with other headers, is not taken for it.
    fake = b"POST /v1.45/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nX: y\r\n\r\n"
    assert _locate(REQUEST + fake) == fake


def test_bytes_after_request_not_found() -> None:
    assert _locate(b"garbage") is None
    assert _locate(REQUEST[:-10]) is None  # header block incomplete (window too short)
    assert _locate(REQUEST, headers=[(b"Host", b"other")]) is None
    assert _locate(REQUEST, body=100) is None  # body not all there


def test_bytes_after_request_without_headers() -> None:
    raw = b"POST /v1.45/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\n\r\nin"
    assert _locate(raw, headers=[]) == b"in"
