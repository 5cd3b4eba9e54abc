"""Layers, RW layers and start-up sweeps with trees deeper than Python's recursion limit and
longer than PATH_MAX: nothing recurses, nothing hands the kernel a full path."""

from __future__ import annotations

import io
import logging
import os
import tarfile
import time
from collections.abc import Iterator

import pytest

from tests.integration.image import tarbuild as tb
from tests.integration.image.syncimages import SyncImages
from tests.support.deeptree import deep_rel, exists_under, fd_limit, make_deep
from whaled.image import mounts
from whaled.image.rwlayers import ChangeKind

pytestmark = pytest.mark.integration

DEEP = 1500  # beyond the recursion limit
BEYOND = 2100  # "d/" * 2100 is longer than PATH_MAX


def deep_tar(depth: int, data: bytes = b"bottom") -> bytes:
    entries = [tb.dir_("d/" * i) for i in range(1, depth + 1)]
    entries.append(tb.reg(deep_rel(depth), data))
    entries.append(tb.reg("top", b"t"))
    return tb.build(entries)


def driver_leftovers(data_root: str) -> list[str]:
    return [
        n
        for n in os.listdir(os.path.join(data_root, "overlay2"))
        if n.startswith((".tmp-", ".trash-"))
    ]


@pytest.fixture(autouse=True)
def _few_fds() -> Iterator[None]:
    with fd_limit(700):  # fewer than the levels: nothing may hold one fd per level
        yield


@pytest.mark.parametrize("depth", [DEEP, BEYOND])
def test_import_save_remove_load_of_a_deep_layer(data_root: str, depth: int) -> None:
    svc = SyncImages(data_root)
    tar = deep_tar(depth)
    image_id = svc.import_rootfs(io.BytesIO(tar), repo="deep:1", changes=[])
    details = svc.inspect("deep:1")
    assert details.rootfs_layers == (tb.digest(tar),)
    upper = details.graph_driver_data["UpperDir"]
    assert exists_under(upper, deep_rel(depth))
    saved = b"".join(svc.save(["deep:1"]))
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        layer_blob = tf.extractfile("blobs/sha256/" + tb.digest(tar)[7:])
        assert layer_blob is not None and layer_blob.read() == tar  # rebuilt byte for byte
    svc.remove("deep:1", force=True)
    assert svc.layers.all() == []
    assert os.listdir(os.path.join(data_root, "overlay2")) == ["l"]
    assert [x.image_id for x in svc.load(io.BytesIO(saved), quiet=True)] == [image_id]
    assert exists_under(svc.inspect("deep:1").graph_driver_data["UpperDir"], deep_rel(depth))
    assert driver_leftovers(data_root) == []
    assert SyncImages(data_root).resolve("deep:1").id == image_id  # a restart reads it


def test_deep_rw_layer_changes_size_diff_commit_and_removal(data_root: str) -> None:
    svc = SyncImages(data_root)
    base = svc.import_rootfs(
        io.BytesIO(tb.build([tb.reg("base", b"b")])), repo="base:1", changes=[]
    )
    svc.layers.rw.create("ctr", svc.resolve(base).top_chain)
    upper = svc.layers.rw.paths("ctr")["UpperDir"]
    make_deep(upper, BEYOND, data=b"12345")  # what `mkdir -p d/d/...` in the container makes

    changes = svc.layers.rw.changes("ctr")
    assert len(changes) == BEYOND + 1
    assert changes[-1].path == "/" + deep_rel(BEYOND) and changes[-1].kind is ChangeKind.ADD
    assert svc.layers.rw.size("ctr") == 5

    diff = b"".join(svc.layers.rw.diff("ctr"))
    with tarfile.open(fileobj=io.BytesIO(diff)) as tf:
        names = tf.getnames()
        assert names[-1] == deep_rel(BEYOND)
        member = tf.extractfile(names[-1])
        assert member is not None and member.read() == b"12345"

    new_id = svc.commit("ctr", parent_image=base, container_config={"Cmd": ["sh"]}, repo="c:1")
    committed = svc.inspect(new_id).graph_driver_data["UpperDir"]
    assert exists_under(committed, deep_rel(BEYOND))

    svc.layers.rw.remove("ctr")
    assert driver_leftovers(data_root) != []  # moved aside: emptied in the background
    svc.layers.rw.empty_trash()
    assert driver_leftovers(data_root) == []


def test_start_sweeps_deep_and_odd_leftovers_and_logs_what_stays(
    data_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    svc = SyncImages(data_root)
    driver = svc.layers.root
    layerdb = os.path.dirname(svc.layers.meta_dir)
    del svc
    # A crash mid-unpack and a removal whose background deletion never ran, both deep.
    for name in (".tmp-" + "ab" * 32, ".trash-" + "cd" * 32):
        os.makedirs(os.path.join(driver, name, "diff"))
        make_deep(os.path.join(driver, name, "diff"), DEEP)
    # Odd things where files are expected.
    os.makedirs(os.path.join(layerdb, "mounts", ".tmp-dir", "x"))
    os.makedirs(os.path.join(layerdb, "sha256", "junk.json", "x"))
    # Something that cannot be removed: a mount inside a leftover driver dir.
    stuck = os.path.join(driver, ".trash-" + "ef" * 32, "diff", "busy")
    os.makedirs(stuck)
    mounts.mount("tmpfs", stuck, "tmpfs", "size=64k")
    try:
        with caplog.at_level(logging.WARNING, logger="whaled.image.layers"):
            svc = SyncImages(data_root)  # starts whatever it met
        assert driver_leftovers(data_root) == [".trash-" + "ef" * 32]
        assert any(".trash-" + "ef" * 32 in r.getMessage() for r in caplog.records)
        assert os.listdir(os.path.join(layerdb, "mounts")) == []
        assert os.listdir(os.path.join(layerdb, "sha256")) == []
        svc.import_rootfs(io.BytesIO(tb.build([tb.reg("a", b"a")])), repo="ok:1", changes=[])
    finally:
        mounts.unmount(stuck)
    SyncImages(data_root)
    assert driver_leftovers(data_root) == []


def test_unpack_refuses_a_deep_symlinked_parent(data_root: str, outside: str) -> None:
    svc = SyncImages(data_root)
    entries = [tb.dir_("d/" * i) for i in range(1, DEEP + 1)]
    entries.append(tb.sym(deep_rel(DEEP, "out"), outside))
    entries.append(tb.reg(deep_rel(DEEP, "out/escaped"), b"x"))
    with pytest.raises(Exception, match="symbolic link"):
        svc.import_rootfs(io.BytesIO(tb.build(entries)), repo="evil:1", changes=[])
    assert os.listdir(outside) == []
    assert driver_leftovers(data_root) == []


def test_load_of_an_archive_that_is_itself_deep(data_root: str) -> None:
    svc = SyncImages(data_root)
    small = svc.import_rootfs(io.BytesIO(tb.build([tb.reg("a", b"a")])), repo="s:1", changes=[])
    saved = b"".join(svc.save(["s:1"]))
    svc.remove("s:1")
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        members = [(m, tf.extractfile(m).read() if m.isreg() else b"") for m in tf.getmembers()]  # type: ignore[union-attr]
    depth = 2500
    members += [tb.dir_("junk/" + "d/" * i) for i in range(1, depth + 1)]
    started = time.monotonic()
    assert [x.image_id for x in svc.load(io.BytesIO(tb.build(members)), quiet=True)] == [small]
    assert time.monotonic() - started < 15  # each member's parents cost no square of the depth
    evil = [*members, tb.sym("junk/link", "/"), tb.reg("junk/link/" + "d/" * 40 + "x", b"x")]
    with pytest.raises(Exception, match="symbolic link"):
        svc.load(io.BytesIO(tb.build(evil)), quiet=True)
    assert os.listdir(os.path.join(data_root, "image", "tmp")) == []
