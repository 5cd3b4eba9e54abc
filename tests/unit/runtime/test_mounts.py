from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.mounts import (
    BindMount,
    TmpfsMount,
    bind_options,
    combine_mounts,
    default_mounts,
    rootfs_propagation,
    shm_bind,
    shm_tmpfs,
    tmpfs_options,
    to_oci_mount,
    validate_mounts,
)


def dests(mounts: list[dict[str, object]]) -> list[object]:
    return [m["destination"] for m in mounts]


def test_default_mounts_match_dockerd() -> None:
    ms = {m["destination"]: m for m in default_mounts(privileged=False, shm=shm_tmpfs(1 << 20))}
    assert list(ms) == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/sys/fs/cgroup",
        "/dev/mqueue",
        "/dev/shm",
    ]
    assert ms["/proc"]["type"] == "proc"
    assert ms["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert ms["/dev/pts"]["options"] == [
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5",
    ]
    assert "ro" in ms["/sys"]["options"] and ms["/sys"]["type"] == "sysfs"
    assert "ro" in ms["/sys/fs/cgroup"]["options"] and ms["/sys/fs/cgroup"]["type"] == "cgroup"
    assert ms["/dev/mqueue"]["type"] == "mqueue"
    assert ms["/dev/shm"] == {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={1 << 20}"],
    }


def test_privileged_sys_is_writable() -> None:
    ms = {m["destination"]: m for m in default_mounts(privileged=True, shm=None)}
    assert "ro" not in ms["/sys"]["options"]
    assert "ro" not in ms["/sys/fs/cgroup"]["options"]
    assert "/dev/shm" not in ms


def test_shm_bind() -> None:
    assert shm_bind("/x/shm") == {
        "destination": "/dev/shm",
        "type": "bind",
        "source": "/x/shm",
        "options": ["rbind", "rprivate"],
    }


def test_bind_options() -> None:
    assert bind_options(BindMount(source="/a", destination="/b")) == ["rbind", "rprivate"]
    assert bind_options(
        BindMount(source="/a", destination="/b", readonly=True, propagation="rshared")
    ) == ["rbind", "ro", "rshared"]
    assert bind_options(
        BindMount(source="/a", destination="/b", recursive=False, propagation="slave")
    ) == ["bind", "slave"]


def test_tmpfs_defaults() -> None:
    assert tmpfs_options(TmpfsMount(destination="/t")) == ["noexec", "nosuid", "nodev"]


def test_tmpfs_options_override_defaults() -> None:
    m = TmpfsMount(destination="/t", options=("exec", "rw", "size=64m", "mode=1777", "size=32m"))
    assert tmpfs_options(m) == ["nosuid", "nodev", "exec", "rw", "size=32m", "mode=1777"]


def test_tmpfs_size_mode_readonly_fields() -> None:
    m = TmpfsMount(destination="/t", options=("rw",), size=1024, mode=0o700, readonly=True)
    assert tmpfs_options(m) == ["noexec", "nosuid", "nodev", "ro", "size=1024", "mode=700"]


@pytest.mark.parametrize(
    "opt",
    # issue 17: values the kernel refuses were accepted at create, then the start failed
    # with the runtime's mount error (a 500)
    ["bogus", "foo=bar", "size=abc", "size=64mb", "size=", "mode=999", "uid=-1", "huge=x"],
)
def test_tmpfs_bad_option(opt: str) -> None:
    with pytest.raises(InvalidParameter, match="invalid tmpfs option"):
        tmpfs_options(TmpfsMount(destination="/t", options=(opt,)))


def test_to_oci_tmpfs() -> None:
    assert to_oci_mount(TmpfsMount(destination="/run/")) == {
        "destination": "/run",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["noexec", "nosuid", "nodev"],
    }


def test_user_mounts_sorted_parents_first_and_stable() -> None:
    user = [
        to_oci_mount(BindMount(source="/s1", destination="/a/b/c")),
        to_oci_mount(BindMount(source="/s2", destination="/a")),
        to_oci_mount(TmpfsMount(destination="/z")),
        to_oci_mount(BindMount(source="/s3", destination="/a/b")),
        to_oci_mount(BindMount(source="/s4", destination="/b")),
    ]
    got = combine_mounts([], user)
    assert dests(got) == ["/a", "/z", "/b", "/a/b", "/a/b/c"]


def test_user_mount_replaces_default_at_same_destination() -> None:
    defaults = default_mounts(privileged=False, shm=shm_tmpfs(1 << 20))
    user = [to_oci_mount(TmpfsMount(destination="/dev/shm", size=1 << 30))]
    got = combine_mounts(defaults, user)
    shm = [m for m in got if m["destination"] == "/dev/shm"]
    assert len(shm) == 1 and shm[0]["source"] == "tmpfs"
    assert got[-1]["destination"] == "/dev/shm"


def test_user_dev_mount_drops_default_dev_submounts() -> None:
    defaults = default_mounts(privileged=False, shm=shm_tmpfs(1 << 20))
    got = combine_mounts(defaults, [to_oci_mount(BindMount(source="/dev", destination="/dev"))])
    assert dests(got) == ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        ([TmpfsMount(destination="rel")], "must be absolute"),
        ([BindMount(source="rel", destination="/x")], "must be absolute"),
        ([TmpfsMount(destination="/")], "destination can't be '/'"),
        (
            [TmpfsMount(destination="/x"), BindMount(source="/a", destination="/x/")],
            "Duplicate mount point: /x",
        ),
        ([TmpfsMount(destination="/x", options=("nope",))], "invalid tmpfs option"),
        ([TmpfsMount(destination="/x", size=-1)], "invalid tmpfs size"),
    ],
)
def test_validate(mounts: list[BindMount | TmpfsMount], message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        validate_mounts(mounts)


def test_rootfs_propagation() -> None:
    assert rootfs_propagation([BindMount(source="/a", destination="/b")]) is None
    assert (
        rootfs_propagation(
            [
                BindMount(source="/a", destination="/b", propagation="rslave"),
            ]
        )
        == "rslave"
    )
    assert (
        rootfs_propagation(
            [
                BindMount(source="/a", destination="/b", propagation="rslave"),
                BindMount(source="/a", destination="/c", propagation="shared"),
                TmpfsMount(destination="/t"),
            ]
        )
        == "rshared"
    )


@pytest.mark.parametrize(
    "opt",
    ["size=64m", "size=50%", "size=1024", "size=2G", "nr_inodes=10k", "mode=1777", "uid=1000",
     "gid=0", "huge=within_size", "mpol=interleave:0-3"],
)
def test_tmpfs_values_the_kernel_takes(opt: str) -> None:
    assert opt in tmpfs_options(TmpfsMount(destination="/t", options=(opt,)))
