"""``docker diff`` of an upper dir against its lower dirs (plain files: no root needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deeptree import deep_rel, make_deep
from whaled.image.rwlayers import Change, ChangeKind, compute_changes
from whaled.osutil.tree import remove_tree

A, M = ChangeKind.ADD, ChangeKind.MODIFY


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    remove_tree(str(tmp_path), ignore_errors=True)  # pytest's own clean-up recurses


def test_changes_against_two_lowers_also_beyond_path_max(tmp_path: Path) -> None:
    lower1, lower2, upper = (tmp_path / n for n in ("l1", "l2", "up"))
    for d in (lower1 / "etc", lower2 / "var" / "lib", upper / "etc", upper / "var" / "lib"):
        d.mkdir(parents=True)
    (lower1 / "etc" / "passwd").write_text("root")
    (upper / "etc" / "passwd").write_text("toor")  # modified (in the top lower)
    (upper / "var" / "lib" / "new").write_text("x")  # added below a dir of the 2nd lower
    st = os.stat(lower2 / "var")
    os.utime(upper / "var", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(upper / "var", st.st_mode)
    make_deep(upper / "etc", 2100)  # a new tree deeper than PATH_MAX
    got = compute_changes(str(upper), [str(lower1), str(lower2)])
    assert got[:3] == [
        Change(path="/etc", kind=M),
        Change(path="/etc/d", kind=A),
        Change(path="/etc/d/d", kind=A),
    ]
    assert Change(path="/etc/" + deep_rel(2100), kind=A) in got
    assert Change(path="/etc/passwd", kind=M) in got
    rest = [c for c in got if not c.path.startswith("/etc/d")]
    assert rest == [
        Change(path="/etc", kind=M),
        Change(path="/etc/passwd", kind=M),
        Change(path="/var/lib", kind=M),  # its mtime differs from the lower's
        Change(path="/var/lib/new", kind=A),
    ]
    assert len(got) == len(rest) + 2100 + 1
    assert Change(path="/var", kind=M) not in got  # same dir as below: not a change
