from __future__ import annotations

import pytest

from whaled.api.app import clean_path


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("/v1.45/containers/json", "/v1.45/containers/json"),
        ("/v1.45/containers//name/json", "/v1.45/containers/name/json"),
        ("//_ping", "/_ping"),
        ("///v1.45//info", "/v1.45/info"),
        ("/v1.45/containers/x/../y/json", "/v1.45/containers/y/json"),
        ("/a/./b/", "/a/b/"),
        ("/", "/"),
        ("", "/"),
        ("/..", "/"),
    ],
)
def test_clean_path_like_dockerds_router(raw: str, clean: str) -> None:
    assert clean_path(raw) == clean
