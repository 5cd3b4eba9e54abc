"""The start-up ping (``whaled.api.early``): which heads it answers, and its bytes."""

from __future__ import annotations

import pytest

from whaled.api.early import PING_HEADERS, PingRequest, parse_ping, ping_response


def head(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode() + b"\r\n"


@pytest.mark.parametrize(
    ("request_head", "expected"),
    [
        ("GET /_ping HTTP/1.1\nHost: x\n", PingRequest("GET", True)),
        ("HEAD /_ping HTTP/1.1\nHost: x\n", PingRequest("HEAD", True)),
        ("GET /v1.45/_ping HTTP/1.1\nHost: x\n", PingRequest("GET", True)),
        ("GET /v1.24/_ping HTTP/1.1\n", PingRequest("GET", True)),
        ("GET /_ping HTTP/1.1\nConnection: close\n", PingRequest("GET", False)),
        ("GET /_ping HTTP/1.1\nconnection: Keep-Alive, Close\n", PingRequest("GET", False)),
        ("GET /_ping HTTP/1.1\nContent-Length: 0\n", PingRequest("GET", True)),
    ],
)
def test_pings_answered_early(request_head: str, expected: PingRequest) -> None:
    assert parse_ping(head(request_head)) == expected


@pytest.mark.parametrize(
    "request_head",
    [
        "POST /_ping HTTP/1.1\nHost: x\n",  # the API answers 405
        "GET /_ping HTTP/1.0\nHost: x\n",
        "GET /_ping?x=1 HTTP/1.1\n",
        "GET /v1.12/_ping HTTP/1.1\n",  # too old: the API answers 400
        "GET /v9.99/_ping HTTP/1.1\n",
        "GET /vx/_ping HTTP/1.1\n",
        "GET /_pingx HTTP/1.1\n",
        "GET /info HTTP/1.1\n",
        "GET /_ping HTTP/1.1\nContent-Length: 2\n",
        "GET /_ping HTTP/1.1\nTransfer-Encoding: chunked\n",
        "GET /_ping HTTP/1.1\nConnection: Upgrade\nUpgrade: tcp\n",
        "GET /_ping HTTP/1.1\nExpect: 100-continue\n",
        "GET /_ping HTTP/1.1\nno colon here\n",
        "GET  /_ping HTTP/1.1\n",
        "GET /_ping\n",
    ],
)
def test_everything_else_waits_for_the_api(request_head: str) -> None:
    assert parse_ping(head(request_head)) is None


def test_not_ascii_waits_for_the_api() -> None:
    assert parse_ping(b"GET /_ping HTTP/1.1\r\nX: \xff\r\n\r\n") is None


def test_ping_response_bytes() -> None:
    got = ping_response("GET", experimental=True)
    head_bytes, _, body = got.partition(b"\r\n\r\n")
    lines = head_bytes.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert body == b"OK"
    assert headers["Content-Length"] == "2"
    assert headers["Docker-Experimental"] == "true"
    assert headers["Api-Version"] == "1.45"
    assert headers["Ostype"] == "linux"
    assert headers["Content-Type"] == "text/plain"
    assert headers["Date"].endswith(" GMT")
    assert "Connection" not in headers
    for name, value in PING_HEADERS.items():
        assert headers[name] == value


def test_head_ping_has_no_body_nor_length_and_close_says_so() -> None:
    got = ping_response("HEAD", experimental=False, keep_alive=False)
    assert got.endswith(b"\r\n\r\n")
    assert b"Content-Length" not in got
    assert b"Docker-Experimental: false\r\n" in got
    assert b"Connection: close\r\n" in got
