"""Regular expressions that clients send, matched in time linear in the text.

A ``name`` or ``id`` filter of ``docker ps``, an image reference pattern, a ``.dockerignore``
line: dockerd compiles each of them for Go's regexp, whose syntax is RE2's and which never
backtracks. Python's ``re`` does: ``(a+)+b`` against a 28-character container name held
whaled's event loop for 15 s, and every character more doubles that. These are compiled
for RE2 (``google-re2``) instead, which also gives Go's syntax and its errors.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import re2

from whaled.errors import InvalidParameter

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is the client's error, not the daemon's log

#: A byte that is not UTF-8 (a file name's, kept by Python as a lone surrogate) counts as
#: one U+FFFD, as Go's regexp counts it: RE2 cannot be given the surrogate itself.
_UNDECODABLE = {0xDC80 + i: "\ufffd" for i in range(128)}


class BadPattern(InvalidParameter):
    """RE2 refused the pattern; the message is its reason (``missing ): (a``)."""


class Regexp:
    """A compiled pattern: ``match``, ``search`` and ``fullmatch`` as with ``re`` (the
    match objects are RE2's)."""

    __slots__ = ("_re2",)

    def __init__(self, compiled: Any) -> None:
        self._re2 = compiled

    def match(self, text: str) -> Any:
        return self._re2.match(_runes(text))

    def search(self, text: str) -> Any:
        return self._re2.search(_runes(text))

    def fullmatch(self, text: str) -> Any:
        return self._re2.fullmatch(_runes(text))


def _runes(text: str) -> str:
    if text.isascii():
        return text
    text = text.translate(_UNDECODABLE)
    try:
        text.encode()
    except UnicodeEncodeError:  # another lone surrogate (JSON's "\ud800"): U+FFFD as well
        text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def compile_linear(pattern: str) -> Regexp:
    """``pattern`` compiled for RE2; :class:`BadPattern` when it is not valid."""
    try:
        return Regexp(re2.compile(_runes(pattern), _OPTIONS))
    except re2.error as e:
        reason = e.args[0] if e.args else "syntax error"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise BadPattern(str(reason)) from None


def filter_match(values: Iterable[str], text: str) -> bool:
    """dockerd's ``filters.Args.Match`` (network and volume ``name``, network ``id``): a
    value equal to ``text``, or a Go regexp found in it; a value that is not a valid one
    matches nothing (dockerd skips it too)."""
    for value in values:
        if value == text:
            return True
        regexp = _filter_regexp(value)
        if regexp is not None and regexp.search(text) is not None:
            return True
    return False


@functools.lru_cache(maxsize=256)
def _filter_regexp(value: str) -> Regexp | None:
    try:
        return compile_linear(value)
    except BadPattern:
        return None
