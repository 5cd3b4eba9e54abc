"""Property tests of the tar path rules: whatever a member name is, what it cleans to never
leaves the root it is unpacked in (layers, load, ``docker cp`` into a container)."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whaled.archive.tarsafe import UnsafeLayer, clean_link_target, clean_path
from whaled.container.archive import entry_parts
from whaled.errors import InvalidParameter

# Names built from the pieces that matter ("..", ".", "/", empty components) plus any text.
_PIECES = st.sampled_from(["..", ".", "", "a", "b", "..a", "a..", "...", " ", "\\", "~"])
NAMES = st.one_of(
    st.lists(_PIECES, max_size=12).map("/".join),
    st.lists(_PIECES, max_size=12).map(lambda xs: "/" + "/".join(xs)),
    st.text(alphabet=st.sampled_from("./a\\\x00é"), max_size=40),
    st.text(max_size=40),
)
ROOT = "/var/lib/whaled/overlay2/x/diff"
PROPS = settings(max_examples=400, deadline=None)


def _inside(parts: tuple[str, ...]) -> None:
    assert all(p not in ("", ".", "..") and "/" not in p for p in parts)
    joined = posixpath.normpath(posixpath.join(ROOT, *parts))
    assert joined == ROOT or joined.startswith(ROOT + "/")


@PROPS
@given(NAMES)
def test_clean_path_stays_inside_or_refuses(name: str) -> None:
    try:
        parts = clean_path(name)
    except UnsafeLayer as e:
        assert name.startswith("/") or ".." in name, e
        return
    _inside(parts)
    assert clean_path("/".join(parts)) == parts  # cleaning is idempotent
    assert not name.startswith("/")


@PROPS
@given(NAMES)
def test_clean_path_agrees_with_a_lexical_normalisation(name: str) -> None:
    """Accepted names mean what POSIX normalisation says, relative to the root."""
    try:
        parts = clean_path(name)
    except UnsafeLayer:
        return
    expected = posixpath.normpath("/" + name).lstrip("/")
    assert "/".join(parts) == ("" if expected == "" else expected)


@PROPS
@given(NAMES)
def test_hard_link_targets_are_archive_paths(name: str) -> None:
    try:
        parts = clean_link_target(name)
    except UnsafeLayer:
        assert ".." in name
        return
    _inside(parts)


@PROPS
@given(NAMES, st.sampled_from(["/", "/app", "/a/b/"]))
def test_cp_entry_names_stay_below_the_extraction_directory(name: str, dest: str) -> None:
    try:
        parts = entry_parts(name, dest)
    except InvalidParameter:
        return  # refused: NUL byte or climbing out of dest
    _inside(parts)


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "a/b/../../.."])
def test_escaping_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeLayer):
        clean_path(name)
