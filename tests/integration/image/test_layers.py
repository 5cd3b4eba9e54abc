from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile

import pytest

from tests.integration.image import tarbuild as tb
from whaled.errors import InvalidParameter
from whaled.image import mounts
from whaled.image.content import ContentStore
from whaled.image.digests import chain_id
from whaled.image.layers import DiffIDMismatch, LayerStore
from whaled.image.rwlayers import ChangeKind

pytestmark = pytest.mark.integration


def stores(data_root: str) -> tuple[ContentStore, LayerStore]:
    cs = ContentStore(data_root)
    return cs, LayerStore(data_root, cs)


def diff_dir(ls: LayerStore, chain: str) -> str:
    return os.path.join(ls.root, ls.get(chain).cache_id, "diff")


def assert_nothing_left(data_root: str, ls: LayerStore) -> None:
    ls.rw.empty_trash()  # removed RW layers wait there (the daemon empties it in the background)
    assert ls.all() == []
    assert sorted(os.listdir(ls.root)) == ["l"]
    assert os.listdir(ls.link_dir) == []
    assert os.listdir(os.path.join(data_root, "image", "blobs", "ingest")) == []
    assert os.listdir(os.path.join(data_root, "image", "blobs", "sha256")) == []


def test_unpack_preserves_metadata(data_root: str) -> None:
    cap = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    data = tb.build(
        [
            tb.dir_("d", mode=0o750, uid=1000, gid=1001, mtime=1_000_000_000),
            tb.reg(
                "d/suid",
                b"#!/bin/sh\n",
                mode=0o4755,
                uid=1000,
                gid=1000,
                mtime=1_234_567_890,
                xattrs={
                    "user.note": b"hi",
                    "security.capability": cap,
                    "trusted.overlay.opaque": b"y",
                },
            ),
            tb.sym("d/link", "/does/not/matter"),
            tb.hard("d/hard", "d/suid"),
            tb.chr_("dev/null", 1, 3),
            tb.fifo("run/fifo"),
        ]
    )
    cs, ls = stores(data_root)
    layer = ls.register(io.BytesIO(data), None)
    assert layer.diff_id == tb.digest(data) == layer.chain_id
    assert layer.size == len(b"#!/bin/sh\n")
    root = diff_dir(ls, layer.chain_id)
    st = os.lstat(f"{root}/d")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 1000, 1001)
    assert st.st_mtime == 1_000_000_000
    st = os.lstat(f"{root}/d/suid")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_uid == 1000 and st.st_nlink == 2
    assert st.st_mtime == 1_234_567_890
    assert os.getxattr(f"{root}/d/suid", "user.note") == b"hi"
    assert os.getxattr(f"{root}/d/suid", "security.capability") == cap
    assert "trusted.overlay.opaque" not in os.listxattr(f"{root}/d/suid")
    assert os.readlink(f"{root}/d/link") == "/does/not/matter"
    assert os.lstat(f"{root}/d/hard").st_ino == st.st_ino
    dev = os.lstat(f"{root}/dev/null")
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1 and os.minor(dev.st_rdev) == 3
    assert stat.S_ISFIFO(os.lstat(f"{root}/run/fifo").st_mode)
    # the original tar is rebuilt byte for byte, without keeping a copy of it
    assert b"".join(ls.layer_tar(layer.chain_id)) == data
    assert ls.layer_tar_size(layer.chain_id) == len(data)
    assert not cs.exists(layer.diff_id)


def test_gzip_and_plain_give_the_same_layer(data_root: str) -> None:
    data = tb.build([tb.reg("a", b"x" * 5000)])
    _, ls = stores(data_root)
    one = ls.register(io.BytesIO(tb.gz(data)), None)
    two = ls.register(io.BytesIO(data), None)
    assert one == two and ls.refcount(one.chain_id) == 2
    assert b"".join(ls.layer_tar(one.chain_id)) == data
    assert ls.release(one.chain_id) == []
    assert ls.release(one.chain_id) == [one]
    assert_nothing_left(data_root, ls)


def test_zstd_without_module_leaves_nothing(data_root: str) -> None:
    pytest.importorskip("whaled")  # keep the structure obvious
    try:
        import zstandard  # noqa: F401

        pytest.skip("zstandard installed")
    except ImportError:
        pass
    _, ls = stores(data_root)
    with pytest.raises(InvalidParameter, match="zstd"):
        ls.register(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\0" * 64), None)
    assert_nothing_left(data_root, ls)


def test_diff_id_mismatch_leaves_nothing(data_root: str) -> None:
    data = tb.build([tb.reg("a", b"x")])
    _, ls = stores(data_root)
    with pytest.raises(DiffIDMismatch):
        ls.register(io.BytesIO(data), None, expected_diff_id="sha256:" + "0" * 64)
    assert_nothing_left(data_root, ls)


MALICIOUS = {
    "dotdot": lambda out: [tb.reg("../../../../../../.." + out + "/escape", b"x")],
    "dotdot-simple": lambda out: [tb.reg("../escape", b"x")],
    "absolute": lambda out: [tb.reg(out + "/abs", b"x")],
    "symlink-parent": lambda out: [tb.sym("a", out), tb.reg("a/x", b"pwned")],
    "symlink-parent-dir": lambda out: [tb.sym("a", out), tb.dir_("a/sub")],
    "symlink-deep-parent": lambda out: [
        tb.dir_("d"),
        tb.sym("d/a", out),
        tb.reg("d/a/b/x", b"pwned"),
    ],
    "symlink-then-whiteout": lambda out: [tb.sym("a", out), tb.reg("a/.wh.victim")],
    "hardlink-outside": lambda out: [tb.hard("x", "../../../../../../.." + out + "/victim")],
    "hardlink-absolute": lambda out: [tb.hard("x", out + "/victim")],
    "hardlink-via-symlink": lambda out: [tb.sym("s", out), tb.hard("x", "s/victim")],
    "symlink-parent-then-hardlink": lambda out: [
        tb.reg("t", b"1"),
        tb.sym("a", out),
        tb.hard("a/x", "t"),
    ],
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_tars_are_refused(data_root: str, outside: str, case: str) -> None:
    victim = os.path.join(outside, "victim")
    with open(victim, "w") as f:
        f.write("original")
    before = sorted(os.listdir(outside))
    data = tb.build([tb.reg("ok", b"fine"), *MALICIOUS[case](outside)])
    _, ls = stores(data_root)
    with pytest.raises(InvalidParameter) as e:
        ls.register(io.BytesIO(data), None)
    assert "refus" in str(e.value)
    assert sorted(os.listdir(outside)) == before
    with open(victim) as f:
        assert f.read() == "original"
    assert os.stat(victim).st_nlink == 1
    assert_nothing_left(data_root, ls)


def _two_layers(ls: LayerStore) -> tuple[str, str]:
    base = tb.build(
        [
            tb.dir_("a"),
            tb.reg("a/b", b"b"),
            tb.reg("a/c", b"c"),
            tb.dir_("d"),
            tb.reg("d/e", b"e"),
            tb.reg("keep", b"k"),
        ]
    )
    top = tb.build(
        [
            tb.dir_("a"),
            tb.reg("a/.wh.b"),
            tb.dir_("d"),
            tb.reg("d/.wh..wh..opq"),
            tb.reg("d/f", b"f"),
            tb.reg(".wh..wh.plnk"),
        ]
    )
    one = ls.register(io.BytesIO(base), None)
    two = ls.register(io.BytesIO(top), one.chain_id)
    ls.release(one.chain_id)  # the child keeps it
    return one.chain_id, two.chain_id


def test_whiteouts_and_rw_layer(data_root: str) -> None:
    _, ls = stores(data_root)
    one, two = _two_layers(ls)
    assert ls.get(two).parent == one and ls.refcount(one) == 1
    assert two == chain_id(one, ls.get(two).diff_id)
    upper = diff_dir(ls, two)
    wh = os.lstat(f"{upper}/a/b")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(f"{upper}/d", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(f"{upper}/.wh..wh.plnk")
    with open(os.path.join(ls.root, ls.get(two).cache_id, "lower")) as f:
        assert f.read() == f"l/{ls.get(one).link}"

    ls.rw.create("ctr1", two)
    merged = ls.rw.mount("ctr1")
    assert ls.rw.mount("ctr1") == merged  # ref-counted
    assert sorted(os.listdir(merged)) == ["a", "d", "keep"]
    assert os.listdir(f"{merged}/a") == ["c"]
    assert os.listdir(f"{merged}/d") == ["f"]
    # container writes
    with open(f"{merged}/new", "w") as f:
        f.write("12345")
    os.unlink(f"{merged}/keep")
    with open(f"{merged}/a/c", "w") as f:
        f.write("changed")
    os.mkdir(f"{merged}/nd")
    changes = {(c.path, c.kind) for c in ls.rw.changes("ctr1")}
    assert ("/new", ChangeKind.ADD) in changes
    assert ("/keep", ChangeKind.DELETE) in changes
    assert ("/a/c", ChangeKind.MODIFY) in changes
    # /a was copied up unchanged: like dockerd it is not reported for a modified child
    assert ("/a", ChangeKind.MODIFY) not in changes
    assert ("/nd", ChangeKind.ADD) in changes
    assert ls.rw.size("ctr1") == len("12345") + len("changed")
    tar = tarfile.open(fileobj=io.BytesIO(b"".join(ls.rw.diff("ctr1"))))
    names = {m.name: m for m in tar.getmembers()}
    assert ".wh.keep" in names and names[".wh.keep"].isreg()
    assert tar.extractfile("a/c").read() == b"changed"  # type: ignore[union-attr]
    # the diff can become a layer on top of the image (what commit does)
    diff_bytes = b"".join(ls.rw.diff("ctr1"))
    three = ls.register(io.BytesIO(diff_bytes), two)
    assert stat.S_ISCHR(os.lstat(f"{diff_dir(ls, three.chain_id)}/keep").st_mode)
    ls.rw.unmount("ctr1")
    assert ls.rw.is_mounted("ctr1")
    ls.rw.unmount("ctr1")
    assert not ls.rw.is_mounted("ctr1")
    ls.rw.remove("ctr1")
    assert [x.chain_id for x in ls.release(three.chain_id)] == [three.chain_id]
    assert [x.chain_id for x in ls.release(two)] == [two, one]
    assert_nothing_left(data_root, ls)


def test_many_layers_mount_with_relative_links(data_root: str) -> None:
    _, ls = stores(data_root)
    parent = None
    held = []
    for i in range(5):
        layer = ls.register(io.BytesIO(tb.build([tb.reg(f"f{i}", str(i).encode())])), parent)
        held.append(layer.chain_id)
        parent = layer.chain_id
    ls.rw.create("ctr", parent)
    for c in held:
        ls.release(c)
    merged = ls.rw.mount("ctr", force_relative=True)
    assert sorted(os.listdir(merged)) == [f"f{i}" for i in range(5)]
    ls.rw.unmount("ctr")
    ls.rw.remove("ctr")
    assert_nothing_left(data_root, ls)


def test_rw_layer_without_parent(data_root: str) -> None:
    _, ls = stores(data_root)
    ls.rw.create("scratch", None)
    merged = ls.rw.mount("scratch")
    assert os.listdir(merged) == []
    ls.rw.unmount("scratch")
    ls.rw.remove("scratch")
    assert_nothing_left(data_root, ls)


def test_restore_and_gc(data_root: str) -> None:
    cs, ls = stores(data_root)
    one, two = _two_layers(ls)
    ls.rw.create("ctr", one)
    merged = ls.rw.mount("ctr")
    # a "restart": a new store on the same data-root rebuilds refcounts from disk
    ls2 = LayerStore(data_root, cs)
    assert {x.chain_id for x in ls2.all()} == {one, two}
    assert ls2.rw.is_mounted("ctr")
    removed = ls2.gc()  # nobody (no image) holds `two`; `one` is held by the RW layer
    assert [x.chain_id for x in removed] == [two]
    assert ls2.refcount(one) == 1
    ls2.rw.unmount("ctr")
    assert not os.path.ismount(merged)
    ls2.rw.remove("ctr")
    assert_nothing_left(data_root, ls2)


def test_busybox_layer_runs(data_root: str, busybox_tar: bytes) -> None:
    _, ls = stores(data_root)
    layer = ls.register(io.BytesIO(busybox_tar), None)
    ls.rw.create("bb", layer.chain_id)
    ls.release(layer.chain_id)
    merged = ls.rw.mount("bb")
    try:
        out = subprocess.run(
            ["chroot", merged, "/bin/sh", "-c", "echo hi > /tmp/x; cat /tmp/x"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out == "hi\n"
        assert ("/tmp/x", ChangeKind.ADD) in {(c.path, c.kind) for c in ls.rw.changes("bb")}
    finally:
        ls.rw.unmount("bb")
    ls.rw.remove("bb")
    assert_nothing_left(data_root, ls)


def test_replaced_entries_keep_the_tar_exact(data_root: str) -> None:
    """Members that a later member of the same tar replaces are not lost: the layer shows
    the final state and its tar is still rebuilt byte for byte."""
    data = tb.build(
        [
            tb.reg("dup", b"first version"),
            tb.hard("link-to-dup", "dup"),
            tb.reg("dup", b"second"),
            tb.dir_("d"),
            tb.reg("d/inner", b"inner content"),
            tb.reg("d", b"now a file"),
            tb.reg("gone", b"whited out by its own layer"),
            tb.reg(".wh.gone"),
            tb.dir_("e"),
            tb.reg("e/x", b"x" * 70_000),
            tb.sym("e", "target"),
        ]
    )
    _, ls = stores(data_root)
    layer = ls.register(io.BytesIO(data), None)
    root = diff_dir(ls, layer.chain_id)
    with open(f"{root}/dup", "rb") as f:
        assert f.read() == b"second"
    with open(f"{root}/link-to-dup", "rb") as f:
        assert f.read() == b"first version"
    with open(f"{root}/d", "rb") as f:
        assert f.read() == b"now a file"
    assert stat.S_ISCHR(os.lstat(f"{root}/gone").st_mode)
    assert os.readlink(f"{root}/e") == "target"
    assert (
        layer.size
        == sum(len(x) for x in (b"first version", b"second", b"inner content", b"now a file"))
        + len(b"whited out by its own layer")
        + 70_000
    )
    assert b"".join(ls.layer_tar(layer.chain_id)) == data
    assert ls.release(layer.chain_id) == [layer]
    assert_nothing_left(data_root, ls)


@pytest.mark.parametrize("codec", ["bz2", "xz"])
def test_bzip2_and_xz_layers(data_root: str, codec: str) -> None:
    import bz2
    import lzma

    data = tb.build([tb.reg("a", b"abc" * 1000)])
    blob = bz2.compress(data) if codec == "bz2" else lzma.compress(data)
    _, ls = stores(data_root)
    layer = ls.register(io.BytesIO(blob), None)
    assert layer.diff_id == tb.digest(data)
    assert b"".join(ls.layer_tar(layer.chain_id)) == data


def test_ingest_leftovers_are_removed_at_start(data_root: str) -> None:
    cs, ls = stores(data_root)
    leftover = os.path.join(ls.root, ".tmp-" + "ab" * 32)
    os.makedirs(os.path.join(leftover, "diff", "x"))
    LayerStore(data_root, cs)
    assert not os.path.exists(leftover)


def test_remove_rw_undoes_stacked_mounts(data_root: str) -> None:
    """A rootfs mounted twice (e.g. a leftover of an earlier daemon under a new mount) is
    fully undone by remove_rw, and unmount_all of a plain directory is a no-op."""
    store = LayerStore(data_root, ContentStore(data_root))
    store.rw.create("c2", None)
    merged = store.rw.mount("c2")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", merged], check=True)
    assert mounts.is_mounted(merged)
    store.rw.remove("c2")
    store.rw.empty_trash()
    assert not os.path.exists(merged)
    assert merged not in mounts.mount_points()
    mounts.unmount_all(data_root)  # not a mount point: nothing happens
