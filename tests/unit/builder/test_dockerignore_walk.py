"""``.dockerignore`` answers carried down a walk (``matches`` with the parent's answers)
agree with judging each path alone, at any depth and without recursion."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from whaled.builder import dockerignore

PATTERNS = dockerignore.parse("**/*.log\n!a/keep.log\nb\n!b/c\na/*/x\n")


def _naive(path: str) -> bool:
    parts = path.split("/")
    verdict = False
    for p in PATTERNS:
        if any(p.regex.match("/".join(parts[: i + 1])) for i in range(len(parts))):
            verdict = not p.exception
    return verdict


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "x", "keep.log", "y.log"]), min_size=1, max_size=6))
def test_walked_answers_agree_with_whole_path_answers(parts: list[str]) -> None:
    found = None
    for i in range(1, len(parts) + 1):
        found = dockerignore.matches("/".join(parts[:i]), PATTERNS, found)
    path = "/".join(parts)
    assert found is not None
    assert (
        dockerignore.verdict(found, PATTERNS)
        == _naive(path)
        == dockerignore.excluded(path, PATTERNS)
    )


def test_a_path_far_deeper_than_the_recursion_limit() -> None:
    path = "d/" * 5000 + "x.log"
    assert dockerignore.excluded(path, PATTERNS)
    assert not dockerignore.excluded("d/" * 5000 + "x", PATTERNS)
