"""A start that failed (pure): dockerd's translation of the runtime's error.

A missing command (``executable file not found``, ``no such file or directory``) is the
caller's mistake (400) with exit code 127; one that is not executable (``permission
denied``) likewise with 126; anything else stays what it is, with exit code 128.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class StartFailure:
    exit_code: int
    callers_mistake: bool  # answered 400 (InvalidParameter)


def classify_start_failure(message: str) -> StartFailure:
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return StartFailure(exit_code=127, callers_mistake=True)
    if "permission denied" in low:
        return StartFailure(exit_code=126, callers_mistake=True)
    return StartFailure(exit_code=128, callers_mistake=False)
