"""How archive members are named while a docker-archive streams past (pure helpers)."""

from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.image import archive as a


def test_archive_key_cleans_manifest_paths() -> None:
    assert a.archive_key("./abc//layer.tar") == "abc/layer.tar"
    assert a.archive_key("/blobs/sha256/x") == "blobs/sha256/x"
    with pytest.raises(InvalidParameter, match="outside the archive"):
        a.archive_key("../x")
    with pytest.raises(InvalidParameter, match="manifest"):
        a.archive_key("")
    with pytest.raises(InvalidParameter, match="manifest"):
        a.archive_key(3)


def test_progress_id_is_twelve_characters() -> None:
    hexid = "ab" * 32
    assert a.progress_id(f"blobs/sha256/{hexid}") == hexid[:12]
    assert a.progress_id(f"{hexid}/layer.tar") == hexid[:12]
    assert len(a.progress_id("l.tar")) == 12
    assert a.progress_id("l.tar") != a.progress_id("m.tar")


@pytest.mark.parametrize("depth", [3, 40, 2000])
def test_parents_of_members_are_checked_at_any_depth(depth: int) -> None:
    staged = a._Staged("/nonexistent")
    base = ("d",) * (depth - 1)
    staged.dirs.update("/".join(base[:i]) for i in range(1, depth))
    staged.check_parents((*base, "ok"), "ok")  # only directories above
    staged.links["/".join(base[:2])] = (True, "x")  # a hard link above is not refused
    staged.check_parents((*base, "ok"), "ok")
    staged.links["/".join(base)] = (False, "/etc")
    staged.files["/".join(base[:1])] = b"x"
    with pytest.raises(InvalidParameter, match="parent 'd' is not a directory"):
        staged.check_parents((*base, "f"), "m")  # the nearest to the root is reported
    del staged.files["d"]
    with pytest.raises(InvalidParameter, match="is a symbolic link"):
        staged.check_parents((*base, "f"), "m")
    staged.check_parents(base, "m")  # the link itself may be replaced
