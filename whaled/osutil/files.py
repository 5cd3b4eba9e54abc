"""Small file readers."""

from __future__ import annotations


def read_text(path: str) -> str | None:
    """The whole text of ``path`` (undecodable bytes replaced), or None when it cannot be
    read (missing, a directory, no permission...)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None
