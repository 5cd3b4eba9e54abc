"""Patterns clients send, compiled for RE2 (``whaled.regexp``): Go's syntax and errors,
linear time, and dockerd's ``filters.Args.Match``."""

from __future__ import annotations

import pytest

from whaled.regexp import BadPattern, compile_linear, filter_match


def test_go_syntax_and_its_errors() -> None:
    assert compile_linear(r"^a\d+$").search("a12") is not None
    for bad, reason in (("(a", "missing ): (a"), ("a(?=b)", "invalid perl operator: (?=")):
        with pytest.raises(BadPattern) as caught:
            compile_linear(bad)
        assert caught.value.message == reason


@pytest.mark.timeout(20)
def test_matching_takes_time_linear_in_the_text() -> None:
    assert compile_linear("(a+)+b").search("a" * 100_000) is None
    assert compile_linear("(a|aa)*c").fullmatch("a" * 100_000 + "c") is not None


def test_filter_match_is_an_exact_value_or_a_regexp_found_in_the_text() -> None:
    assert filter_match(["web"], "web")
    assert filter_match(["eb"], "web")  # found anywhere, as a substring would be
    assert filter_match(["^w.b$"], "web")
    assert not filter_match(["^eb"], "web")
    assert not filter_match(["(", "x"], "web")  # an invalid value matches nothing
    assert filter_match(["(", "w"], "web")
    assert filter_match(["a.b"], "a.b") and filter_match(["a.b"], "axb")
    assert not filter_match([], "web")


def test_names_that_are_not_utf8_are_matched_as_go_does() -> None:
    # A file name byte that is not UTF-8 (a lone surrogate in Python) counts as one U+FFFD
    # (RE2 cannot be given the surrogate itself: it raised UnicodeEncodeError).
    assert compile_linear(r"^[^/]*\.log$").match("b\udcff.log") is not None
    assert compile_linear(r"^a.b$").match("a\udcffb") is not None
    assert compile_linear(r"^a..b$").match("a\udcffb") is None
    assert filter_match(["^x.y$"], "x\ud800y")  # any other lone surrogate too
    assert not filter_match(["\ud800"], "web")
