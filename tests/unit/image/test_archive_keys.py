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
