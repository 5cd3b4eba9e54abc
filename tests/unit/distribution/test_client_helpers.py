"""Small pure helpers of the client module (the client itself is tested against a real
registry in tests/integration/distribution)."""

from __future__ import annotations

import ssl

from whaled.distribution.client import _connection_error_text, _content_range_start, _next_link


def test_next_link() -> None:
    assert _next_link('</v2/x/tags/list?last=a&n=1>; rel="next"') == "/v2/x/tags/list?last=a&n=1"
    assert _next_link('<https://h/a>; rel="prev", <https://h/b>; rel="next"') == "https://h/b"
    assert _next_link(None) is None
    assert _next_link('<https://h/a>; rel="prev"') is None


def test_content_range_start() -> None:
    assert _content_range_start("bytes 100-199/200") == 100
    assert _content_range_start("bytes */200") is None
    assert _content_range_start(None) is None


def test_connection_errors_in_gos_url_error_shape() -> None:
    url = "https://127.0.0.1:1/v2/"
    assert _connection_error_text("GET", url, ConnectionRefusedError(111, "x")) == (
        'Get "https://127.0.0.1:1/v2/": connect: connection refused'
    )
    wrong = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    assert _connection_error_text("GET", url, wrong).endswith(
        "http: server gave HTTP response to HTTPS client"
    )
