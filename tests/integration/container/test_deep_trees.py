"""A container that builds a very deep tree, deep image tars, and what a crash leaves on
disk: the daemon answers, removes its leftovers and always starts again."""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from tests.integration.container.helpers import poll
from tests.support.deeptree import deep_rel, exists_under, fd_limit, make_deep
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess
from whaled.container import archive
from whaled.image import mounts
from whaled.osutil.tree import remove_tree

DEPTH = 1100  # what `mkdir -p $(printf "d/%.0s" $(seq 1100))` makes: beyond the recursion limit
TAR_DEPTH = 1500
MKDIR = 'mkdir -p $(printf "d/%.0s" $(seq 1100)) && echo hi > $(printf "d/%.0s" $(seq 1100))f'


def leftovers(w: WhaledProcess) -> list[str]:
    out = []
    for sub in ("overlay2", "containers"):
        out += [
            f"{sub}/{n}"
            for n in os.listdir(os.path.join(w.data_root, sub))
            if n.startswith((".tmp-", ".trash-"))
        ]
    return out


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getnames()


def test_deep_container_diff_export_cp_commit_rm_then_restart(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    docker_cli.run("run", "--name", "deep", "--network", "none", busybox_image, "sh", "-c", MKDIR)
    leaf = deep_rel(DEPTH)

    diff = docker_cli.run("diff", "deep").stdout.splitlines()
    assert f"A /{leaf}" in diff and "A /d" in diff

    exported = docker_cli.run_bytes("export", "deep").stdout
    assert leaf in tar_names(exported)

    copied = docker_cli.run_bytes("cp", "deep:/d", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(copied)) as tf:
        member = tf.extractfile(leaf)
        assert member is not None and member.read() == b"hi\n"

    docker_cli.run("commit", "deep", "deep:img")
    out = docker_cli.run("run", "--rm", "--network", "none", "deep:img", "cat", "/" + leaf)
    assert out.stdout == "hi\n"

    docker_cli.run("rm", "deep")
    poll(lambda: leftovers(whaled) == [], timeout=30)  # the background removal finished
    # and later removals still work
    docker_cli.run("run", "--name", "after", "--network", "none", busybox_image, "true")
    docker_cli.run("rm", "after")
    poll(lambda: leftovers(whaled) == [], timeout=30)

    whaled.restart()
    assert docker_cli.run("run", "--rm", "--network", "none", "deep:img", "true").returncode == 0


def _deep_tar(depth: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(1, depth + 1):
            info = tarfile.TarInfo("d/" * i)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
        info = tarfile.TarInfo(deep_rel(depth))
        info.size = 3
        tf.addfile(info, io.BytesIO(b"yes"))
    return buf.getvalue()


def test_import_save_load_of_a_deep_tar(whaled: WhaledProcess, docker_cli: DockerCLI) -> None:
    with tempfile.NamedTemporaryFile(suffix=".tar") as f:
        f.write(_deep_tar(TAR_DEPTH))
        f.flush()
        whaled.import_image(f.name, "deep:1")
    saved = docker_cli.run_bytes("save", "deep:1").stdout
    docker_cli.run("rmi", "deep:1")
    assert "deep:1" in docker_cli.run_bytes("load", input=saved).stdout.decode()
    data = docker_cli.run_bytes("export", docker_cli.run("create", "deep:1", "x").stdout.strip())
    assert deep_rel(TAR_DEPTH) in tar_names(data.stdout)
    assert leftovers(whaled) == []


def test_daemon_starts_whatever_leftovers_it_meets(whaled: WhaledProcess) -> None:
    whaled.kill9()
    driver = os.path.join(whaled.data_root, "overlay2")
    layerdb = os.path.join(whaled.data_root, "image", "layerdb")
    # Deep leftovers: an interrupted unpack, a removal that never finished, a container dir.
    for path in (
        os.path.join(driver, ".tmp-" + secrets.token_hex(32)),
        os.path.join(driver, ".trash-" + secrets.token_hex(32)),
        os.path.join(whaled.data_root, "containers", ".trash-" + secrets.token_hex(32)),
    ):
        os.makedirs(path)
        make_deep(path, DEPTH)
    # Odd things where files are expected.
    os.makedirs(os.path.join(layerdb, "mounts", ".tmp-dir", "x"))
    os.makedirs(os.path.join(layerdb, "sha256", "junk.json", "x"))
    ingest = os.path.join(whaled.data_root, "image", "blobs", "ingest")
    os.makedirs(os.path.join(ingest, "odd", "x"))
    # Something that cannot be removed at all: a mount inside a leftover.
    stuck = os.path.join(driver, ".trash-" + secrets.token_hex(32))
    os.makedirs(os.path.join(stuck, "busy"))
    mounts.mount("tmpfs", os.path.join(stuck, "busy"), "tmpfs", "size=64k")
    try:
        whaled.start()
        whaled.wait_ready()
        assert leftovers(whaled) == ["overlay2/" + os.path.basename(stuck)]
        assert os.listdir(os.path.join(layerdb, "mounts")) == []
        assert os.listdir(ingest) == []
        status, _, _ = whaled.request("GET", "/v1.45/containers/json?all=1")
        assert status == 200
    finally:
        mounts.unmount(os.path.join(stuck, "busy"))


def _orphan_rw_layer(w: WhaledProcess, parent: str) -> tuple[str, str, str]:
    """What ``create_rw`` leaves when the daemon dies before ``store.reserve``: the driver
    dir, its short link and the mount record of a container that does not exist."""
    cid, mount_id = secrets.token_hex(32), secrets.token_hex(32)
    link = "ORPHAN" + secrets.token_hex(10).upper()
    d = os.path.join(w.data_root, "overlay2", mount_id)
    for sub in ("diff", "work", "merged"):
        os.makedirs(os.path.join(d, sub))
    with open(os.path.join(d, "link"), "w") as f:
        f.write(link)
    os.symlink(f"../{mount_id}/diff", os.path.join(w.data_root, "overlay2", "l", link))
    with open(os.path.join(w.data_root, "image", "layerdb", "mounts", cid + ".json"), "w") as f:
        json.dump({"container_id": cid, "mount_id": mount_id, "parent": parent}, f)
    return cid, mount_id, link


def test_start_removes_what_no_container_or_image_owns(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    client = whaled.client()
    kept: Any = client.containers.create(busybox_image, ["cat", "/kept"], network_mode="none")
    client.api.put_archive(kept.id, "/", _one_file_tar("kept", b"mine"))
    parent = client.images.get(busybox_image).attrs["RootFS"]["Layers"][-1]  # its chain ID
    whaled.kill9()

    cid, mount_id, link = _orphan_rw_layer(whaled, parent)
    image_tmp = os.path.join(whaled.data_root, "image", ".tmp-repositories")
    root_tmp = os.path.join(whaled.data_root, ".tmp-engine-id")
    containers = os.path.join(whaled.data_root, "containers")
    half_created = os.path.join(containers, secrets.token_hex(32))  # no record yet
    own_tmp = os.path.join(containers, kept.id, ".tmp-record")
    for path in (image_tmp, root_tmp, own_tmp):
        with open(path, "w") as f:
            f.write("{")
    os.makedirs(half_created)

    whaled.start()
    whaled.wait_ready()
    driver = os.path.join(whaled.data_root, "overlay2")
    assert not os.path.exists(os.path.join(driver, mount_id))
    assert not os.path.lexists(os.path.join(driver, "l", link))
    mounts_dir = os.path.join(whaled.data_root, "image", "layerdb", "mounts")
    assert not os.path.exists(os.path.join(mounts_dir, cid + ".json"))
    assert sorted(os.listdir(mounts_dir)) == [kept.id + ".json"]
    assert not any(os.path.exists(p) for p in (image_tmp, root_tmp, own_tmp))
    assert not os.path.exists(half_created)
    assert leftovers(whaled) == []
    # What is owned stays: the created (never started) container's layer, the image.
    kept = client.containers.get(kept.id)
    kept.start()
    assert kept.wait(timeout=30)["StatusCode"] == 0
    assert kept.logs() == b"mine"
    assert exists_under(kept.attrs["GraphDriver"]["Data"]["UpperDir"], "kept")
    assert client.containers.run(busybox_image, ["true"], network_mode="none", remove=True) == b""


def _one_file_tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _extract_at_root(root: str, data: bytes) -> None:
    """``docker cp`` of the tar ``data`` to ``/`` of the container file system ``root``."""
    archive.extract_to(
        root,
        {},
        "/",
        io.BytesIO(data),
        container="c",
        no_overwrite_dir_non_dir=False,
        copy_uid_gid=False,
    )


def test_archive_extract_export_and_cp_of_deep_trees_with_few_fds(tmp_path: Path) -> None:
    """The container file system code (docker cp both ways, export) on a tree deeper than
    PATH_MAX, with fewer fds than levels."""
    root = str(tmp_path / "rootfs")
    os.mkdir(root)
    depth = 2100
    entries = []
    for i in range(1, depth + 1):
        info = tarfile.TarInfo("d/" * i)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        entries.append(info)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info in entries:
            tf.addfile(info)
        leaf = tarfile.TarInfo(deep_rel(depth))
        leaf.size = 2
        tf.addfile(leaf, io.BytesIO(b"ok"))
    try:
        with fd_limit(600):
            _extract_at_root(root, data.getvalue())
            assert exists_under(root, deep_rel(depth))
            assert deep_rel(depth) in tar_names(b"".join(archive.export_rootfs(root)))
            _, stream = archive.archive_path(root, {}, "/d", container="c")
            assert deep_rel(depth) in tar_names(b"".join(stream))
    finally:
        remove_tree(root)


@pytest.mark.parametrize(("members", "depth"), [(1, 6000), (8, 3000)])
def test_memory_for_deep_paths_grows_with_their_depth_not_its_square(
    tmp_path: Path, members: int, depth: int
) -> None:
    """Members thousands of levels deep, each in a place of its own (their parents made on
    the way), then read back: each level costs a few objects, not a copy of the whole path
    above it (before: ~210 MB for the one member 6000 deep, ~115 MB for the eight; a
    64 KiB name took gigabytes)."""
    root = str(tmp_path / "rootfs")
    os.mkdir(root)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(members):
            leaf = tarfile.TarInfo(f"m{i}/" + deep_rel(depth))
            leaf.size = 2
            tf.addfile(leaf, io.BytesIO(b"ok"))
    tracemalloc.start()
    try:
        _extract_at_root(root, data.getvalue())
        _, stream = archive.archive_path(root, {}, "/m0", container="c")
        total = sum(len(chunk) for chunk in stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        remove_tree(root)
    assert total > depth * depth  # every entry names its whole path: the output is O(d²)
    assert peak < 40 << 20, f"peak {peak >> 20} MiB"
