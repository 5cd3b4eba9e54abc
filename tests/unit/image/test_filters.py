from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.image import filters as f


def test_validate_and_bool() -> None:
    f.validate({"dangling": ["true"]}, ["dangling"])
    with pytest.raises(InvalidParameter, match="invalid filter 'nope'"):
        f.validate({"nope": ["x"]}, ["dangling"])
    assert f.get_bool({"dangling": ["true"]}, "dangling") is True
    assert f.get_bool({"dangling": ["0"]}, "dangling") is False
    assert f.get_bool({}, "dangling") is None
    with pytest.raises(InvalidParameter, match="invalid filter 'dangling=maybe'"):
        f.get_bool({"dangling": ["maybe"]}, "dangling")


def test_labels() -> None:
    labels = {"a": "1", "b": "2"}
    assert f.match_kv_list(["a"], labels)
    assert f.match_kv_list(["a=1", "b"], labels)
    assert not f.match_kv_list(["a=2"], labels)
    assert not f.match_kv_list(["c"], labels)
    assert not f.match_kv_list(["a"], None)
    assert f.match_labels({"label!": ["a=1"]}, {"a": "2"})
    assert not f.match_labels({"label!": ["a=1"]}, labels)


@pytest.mark.parametrize(
    ("pattern", "name", "ok"),
    [
        ("busybox", "busybox", True),
        ("busy*", "busybox", True),
        ("*", "user/repo", False),
        ("*/*", "user/repo", True),
        ("busybox:*", "busybox:latest", True),
        ("b?sybox", "busybox", True),
        ("[a-c]usybox", "busybox", True),
        ("[^a-c]usybox", "busybox", False),
        ("a[+-0]b", "a/b", False),  # a class never matches "/"
        ("a[+-0]b", "a.b", True),
        ("a[/]b", "a/b", False),
        ("a[^x]b", "a/b", False),
    ],
)
def test_go_path_match(pattern: str, name: str, ok: bool) -> None:
    assert f.go_path_match(pattern, name) is ok


@pytest.mark.timeout(20)
def test_many_stars_cannot_make_matching_hang() -> None:
    # seconds, then hours, on Python's backtracking re; linear on RE2 like Go's path.Match
    assert not f.go_path_match("*a*a*a*a*a*a*a*a*a*a*a*a*b", "a" * 4000)
    assert f.go_path_match("*a*a*a*a*a*a*a*a*a*a*a*a*b", "a" * 4000 + "b")


def test_bad_pattern() -> None:
    with pytest.raises(InvalidParameter):
        f.go_path_match("[a-", "x")


def test_times() -> None:
    assert f.parse_go_duration("1h30m") == 5400
    assert f.parse_go_duration("10s") == 10
    assert f.parse_go_duration("abc") is None
    assert f.parse_timestamp("10m", 1000.0) == 400.0
    assert f.parse_timestamp("1700000000", 0) == 1700000000
    assert f.parse_timestamp("2023-11-14T22:13:20Z", 0) == 1700000000
    assert f.parse_timestamp("2023-11-14", 0) == 1699920000
    assert f.parse_rfc3339("2023-11-14T22:13:20.123456789Z") == pytest.approx(1700000000.123456)
    assert f.format_rfc3339_nano(1700000000.5) == "2023-11-14T22:13:20.5Z"
    with pytest.raises(InvalidParameter):
        f.parse_timestamp("yesterday", 0)
