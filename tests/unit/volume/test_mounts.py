from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.mounts import BindMount, TmpfsMount
from whaled.volume.mounts import check_mount_config, parse_bind, user_mounts


def test_unknown_mount_types_refused() -> None:
    with pytest.raises(InvalidParameter, match="mount type 'cluster'"):
        check_mount_config({"Mounts": [{"Type": "cluster", "Target": "/x"}]})
    check_mount_config({"Mounts": [{"Type": "volume", "Target": "/x"}]})


def test_user_mounts_leave_volumes_out() -> None:
    hc = {
        "Binds": ["/h:/c", "data:/data"],
        "Mounts": [{"Type": "volume", "Target": "/v"}, {"Type": "tmpfs", "Target": "/t"}],
    }
    assert [m.destination for m in user_mounts(hc)] == ["/c", "/t"]


def test_bind_and_tmpfs_mounts_accepted() -> None:
    check_mount_config(
        {
            "Binds": ["/h:/c:ro"],
            "Mounts": [{"Type": "bind", "Source": "/a", "Target": "/b"}, {"Type": "tmpfs"}],
        }
    )


def test_binds_mounts_and_tmpfs() -> None:
    assert parse_bind("/a:/b:ro,rshared") == BindMount(
        source="/a", destination="/b", readonly=True, propagation="rshared"
    )
    with pytest.raises(InvalidParameter):
        parse_bind("/a")
    with pytest.raises(InvalidParameter, match="invalid mode"):
        parse_bind("/a:/b:bogus")
    mounts = user_mounts(
        {
            "Binds": ["/h:/c"],
            "Tmpfs": {"/run": "size=1m"},
            "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 4096}}],
        }
    )
    assert mounts == (
        BindMount(source="/h", destination="/c"),
        TmpfsMount(destination="/t", size=4096),
        TmpfsMount(destination="/run", options=("size=1m",)),
    )
