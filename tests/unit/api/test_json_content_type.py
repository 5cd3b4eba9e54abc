"""dockerd's Content-Type rule for JSON request bodies (pure)."""

from __future__ import annotations

import pytest

from whaled.api.app import check_json_content_type
from whaled.errors import InvalidParameter


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{}"),
        ("application/json; charset=utf-8", b"{}"),
        ("Application/JSON", b"{}"),
        (None, b"{}"),  # raw clients
        ("text/plain", b""),  # Go's docker client on a body-less POST
        ("", b"{}"),
    ],
)
def test_accepted(content_type: str | None, body: bytes) -> None:
    check_json_content_type(content_type, body)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
def test_what_a_browser_sends_without_a_preflight_is_refused(content_type: str) -> None:
    """Regression: a web page could POST a text/plain JSON body to /containers/create."""
    with pytest.raises(InvalidParameter, match=r"must be 'application/json'"):
        check_json_content_type(content_type, b'{"Image": "busybox"}')
