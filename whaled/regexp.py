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

#: A compiled expression (``re2`` has no type stubs): ``search``, ``match``, ``fullmatch``
#: as with ``re``.
Regexp = Any

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is the client's error, not the daemon's log


class BadPattern(InvalidParameter):
    """RE2 refused the pattern; the message is its reason (``missing ): (a``)."""


def compile_linear(pattern: str) -> Regexp:
    """``pattern`` compiled for RE2; :class:`BadPattern` when it is not valid."""
    try:
        return re2.compile(pattern, _OPTIONS)
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
