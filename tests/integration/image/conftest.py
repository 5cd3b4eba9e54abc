"""Fixtures for image integration tests: root, real overlay mounts, a temp data-root.

Every test gets its own data-root under /tmp; teardown unmounts anything left under it,
removes it, and fails the test if a mount survived.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator

import pytest

from whaled.image.mounts import mount_points, unmount
from whaled.osutil.tree import remove_tree

BUSYBOX = "/bin/busybox"


def _mounts_under(path: str) -> list[str]:
    real = os.path.realpath(path)
    return sorted(
        (m for m in mount_points() if m == real or m.startswith(real + "/")), key=len, reverse=True
    )


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("image integration tests need root (overlay mounts, chown, mknod)")


@pytest.fixture
def data_root() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="whaled-img-test-", dir="/tmp")
    try:
        yield d
    finally:
        leftover = _mounts_under(d)
        for m in leftover:
            unmount(m)
        remove_tree(d, ignore_errors=True)  # iterative: tests build very deep trees
        assert not _mounts_under(d)
        assert not leftover, f"test left mounts behind: {leftover}"


@pytest.fixture
def outside() -> Iterator[str]:
    """A directory outside any data-root that malicious tars try to write into."""
    d = tempfile.mkdtemp(prefix="whaled-outside-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _build_busybox_rootfs(root: str) -> None:
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy2(BUSYBOX, os.path.join(root, "bin", "busybox"))
    applets = subprocess.run(
        [BUSYBOX, "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet == "bin/busybox":
            continue
        path = os.path.join(root, applet)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(path):
            os.symlink("/bin/busybox", path)
    for d in ("etc", "tmp", "root"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")


@pytest.fixture(scope="session")
def busybox_tar() -> Iterator[bytes]:
    """A rootfs tar with busybox-static and its applet symlinks."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (apt-get install -y busybox-static)")
    d = tempfile.mkdtemp(prefix="whaled-busybox-", dir="/tmp")
    try:
        root = os.path.join(d, "rootfs")
        _build_busybox_rootfs(root)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(root, arcname=".")
        yield buf.getvalue()
    finally:
        shutil.rmtree(d, ignore_errors=True)
