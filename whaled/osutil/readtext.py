"""Reading a small text file that may be missing (host configuration files, a container's
/etc/passwd): its text, or None when it cannot be read."""

from __future__ import annotations


def read_text(path: str) -> str | None:
    """The file's text (undecodable bytes replaced), or None if it cannot be opened or read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None
