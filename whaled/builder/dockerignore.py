"""``.dockerignore`` (pure), with dockerd's semantics: each line a Go ``filepath.Match``
pattern plus ``**`` (any number of directories), cleaned and made relative to the context;
``!`` re-includes; a path is excluded when the last pattern matching it or one of its
parent directories is not an exception. The Dockerfile and .dockerignore are always kept
(the builder needs them).

Patterns become regular expressions matched in linear time (:mod:`whaled.regexp`), as the Go
regexp dockerd compiles them to: with Python's backtracking engine ``*a*a*a*a*a*a*a*a*b``
took seconds against a 40-character name (and for ever against a longer one), and a
context's ``.dockerignore`` is whatever its author wrote (a remote context, a cloned
repository)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from whaled.errors import InvalidParameter
from whaled.regexp import BadPattern, Regexp, compile_linear


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    regex: Regexp
    exception: bool


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i : i + 2] == "**":
                i += 2
                if pattern[i : i + 1] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:  # Go's filepath.Match refuses it, and so does dockerd
                raise _syntax_error(pattern)
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\":
            i += 1
            if i == len(pattern):  # nothing left to escape: Go's ErrBadPattern too
                raise _syntax_error(pattern)
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _syntax_error(pattern: str) -> InvalidParameter:
    return InvalidParameter(f"invalid .dockerignore pattern {pattern!r}: syntax error in pattern")


def parse(text: str) -> list[Pattern]:
    patterns: list[Pattern] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
        line = posixpath.normpath(line).lstrip("/")
        if line in ("", "."):
            continue
        patterns.append(Pattern(line, _compile(line), exception))
    return patterns


def _compile(pattern: str) -> Regexp:
    try:
        return compile_linear(_translate(pattern) + r"\z")
    except BadPattern as e:
        raise InvalidParameter(f"invalid .dockerignore pattern {pattern!r}: {e.message}") from None


def excluded(path: str, patterns: list[Pattern]) -> bool:
    """Whether the context-relative ``path`` (``a/b/c``) is left out."""
    return verdict(matches(path, patterns), patterns)


Matches = tuple[bool, ...]


def matches(path: str, patterns: list[Pattern], parent: Matches | None = None) -> Matches:
    """Which patterns match ``path`` or one of its parent directories, given the same for
    its parent directory (``parent``; None: computed here). A walk that keeps its
    directories' answers judges each entry in time linear in its name, whatever the depth."""
    if parent is None:
        parent = tuple(False for _ in patterns)
        at = path.find("/")
        while at != -1:  # each parent directory, from the top (no recursion)
            parent = matches(path[:at], patterns, parent)
            at = path.find("/", at + 1)
    return tuple(
        seen or p.regex.match(path) is not None for seen, p in zip(parent, patterns, strict=True)
    )


def verdict(found: Matches, patterns: list[Pattern]) -> bool:
    """Excluded when the last pattern that matched is not an exception."""
    out = False
    for hit, p in zip(found, patterns, strict=True):
        if hit:
            out = not p.exception
    return out
