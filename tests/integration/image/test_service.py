from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from tests.integration.image import tarbuild as tb
from tests.integration.image.syncimages import SyncImages
from whaled.errors import Conflict, InvalidParameter, NoSuchImage
from whaled.image.archive import ProgressEvent
from whaled.image.reference import normalize
from whaled.image.store import DeleteRecord, ImageUser

pytestmark = pytest.mark.integration


def imported(
    svc: SyncImages,
    tar: bytes,
    repo: str | None = "busybox:latest",
    changes: list[str] | None = None,
) -> str:
    return svc.import_rootfs(io.BytesIO(tar), repo=repo, changes=changes or ['CMD ["sh"]'])


def test_import_list_inspect_history(data_root: str, busybox_tar: bytes) -> None:
    svc = SyncImages(data_root)
    image_id = imported(
        svc,
        busybox_tar,
        changes=['CMD ["sh"]', "ENV A=1", "LABEL x=y", "WORKDIR /root", "EXPOSE 80"],
    )
    rows = svc.list_images()
    assert [r.repo_tags for r in rows] == [("busybox:latest",)]
    assert (
        rows[0].id == image_id
        and rows[0].size == svc.layers.get(svc.resolve("busybox").top_chain or "").size
    )
    assert rows[0].size >= os.path.getsize("/bin/busybox")
    details = svc.inspect("busybox:latest")
    assert details.rootfs_layers == (tb.digest(busybox_tar),)
    assert details.config is not None and details.config["Cmd"] == ["sh"]
    assert details.config["Env"] == ["A=1"] and details.config["Labels"] == {"x": "y"}
    assert details.config["ExposedPorts"] == {"80/tcp": {}}
    assert details.graph_driver == "overlay2"
    assert os.path.isdir(details.graph_driver_data["UpperDir"])
    assert details.os == "linux" and details.comment == "Imported from -"
    hist = svc.history("busybox")
    assert len(hist) == 1 and hist[0].id == image_id and hist[0].tags == ("busybox:latest",)
    assert hist[0].comment == "Imported from -" and hist[0].size == details.size
    assert svc.resolve(image_id[7:19]).id == image_id  # short ID
    assert svc.count() == 1
    assert [e.action for e in svc.events()] == ["import"]


def test_import_refuses_bad_input_before_reading(data_root: str) -> None:
    svc = SyncImages(data_root)
    with pytest.raises(InvalidParameter, match="must be lowercase"):
        svc.import_rootfs(io.BytesIO(b""), repo="Bad")
    with pytest.raises(InvalidParameter, match="run is not a valid change command"):
        svc.import_rootfs(io.BytesIO(b""), changes=["RUN x"])
    with pytest.raises(InvalidParameter):
        svc.import_rootfs(io.BytesIO(tb.build([tb.reg("../x", b"1")])))
    assert svc.count() == 0 and svc.layers.all() == []


def test_tag_and_remove_semantics(data_root: str, busybox_tar: bytes) -> None:
    svc = SyncImages(data_root)
    image_id = imported(svc, busybox_tar)
    assert svc.tag("busybox", "localhost:5000/bb", "v1") == "localhost:5000/bb:v1"
    assert svc.tag(image_id, "other") == "other:latest"
    with pytest.raises(InvalidParameter, match="must be lowercase"):
        svc.tag("busybox", "Other")
    with pytest.raises(NoSuchImage, match="No such image: nope:latest"):
        svc.tag("nope", "x")
    short = image_id[7:19]
    with pytest.raises(Conflict) as e:
        svc.remove(short)
    assert str(e.value) == (
        f"conflict: unable to delete {short} (must be forced) - image is "
        "referenced in multiple repositories"
    )
    assert svc.remove("other") == [DeleteRecord(untagged="other:latest")]
    assert svc.remove("localhost:5000/bb:v1") == [DeleteRecord(untagged="localhost:5000/bb:v1")]
    # in use by a running container: untag refused without force, delete never
    users = {image_id: [ImageUser(container_id="f" * 64, running=True)]}
    svc.set_usage_hook(lambda i: users.get(i, []))
    with pytest.raises(Conflict, match="container ffffffffffff is using its referenced image"):
        svc.remove("busybox")
    with pytest.raises(Conflict, match=r"\(cannot be forced\) - image is being used by running"):
        svc.remove(image_id, force=True)
    users.clear()
    records = svc.remove("busybox")
    assert records[0] == DeleteRecord(untagged="busybox:latest")
    assert records[1] == DeleteRecord(deleted=image_id)
    assert records[2].deleted == tb.digest(busybox_tar)
    assert svc.count() == 0 and svc.layers.all() == []
    assert os.listdir(os.path.join(data_root, "image", "blobs", "sha256")) == []


def test_save_then_load_restores_the_same_image(data_root: str, busybox_tar: bytes) -> None:
    svc = SyncImages(data_root)
    image_id = imported(svc, busybox_tar)
    svc.tag("busybox", "busybox", "second")
    saved = b"".join(svc.save(["busybox:latest"]))
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["busybox:latest"]
        for member in tf.getmembers():  # every blob is named by its digest
            if member.isreg() and member.name.startswith("blobs/sha256/"):
                data = tf.extractfile(member).read()  # type: ignore[union-attr]
                assert hashlib.sha256(data).hexdigest() == member.name.rsplit("/", 1)[1]
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == (
            "docker.io/library/busybox:latest"
        )
        assert set(tf.getnames()) >= {"oci-layout", "repositories"}
    both = b"".join(svc.save(["busybox"]))  # a bare repository name saves all its tags
    with tarfile.open(fileobj=io.BytesIO(both)) as tf:
        tags = json.load(tf.extractfile("manifest.json"))[0]["RepoTags"]  # type: ignore[arg-type]
    assert sorted(tags) == ["busybox:latest", "busybox:second"]
    with pytest.raises(NoSuchImage):
        svc.save(["nope"])
    svc.remove(image_id, force=True)
    assert svc.count() == 0 and svc.layers.all() == []

    events: list[ProgressEvent] = []
    loaded = svc.load(io.BytesIO(saved), progress=events.append)
    assert [(x.image_id, x.tags) for x in loaded] == [(image_id, ("busybox:latest",))]
    assert events[-1] == ProgressEvent(message="Loaded image: busybox:latest", stream=True)
    assert any(e.message == "Loading layer" for e in events)
    # and once more, from a gzip-compressed archive, is a no-op with the same ID
    assert svc.load(io.BytesIO(tb.gz(saved)), quiet=True)[0].image_id == image_id
    assert os.listdir(os.path.join(data_root, "image", "tmp")) == []
    # a restart sees the same state
    svc2 = SyncImages(data_root)
    assert svc2.resolve("busybox").id == image_id
    assert svc2.layers.refcount(svc2.resolve("busybox").top_chain or "") == 1


def _config(diff_ids: list[str], created: str = "2024-01-01T00:00:00Z") -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": created, "created_by": f"layer {i}"} for i in range(len(diff_ids))
            ]
            + [{"created": created, "created_by": "CMD", "empty_layer": True}],
        }
    ).encode()


def test_load_classic_docker_archive_with_symlinked_layers(data_root: str) -> None:
    l1 = tb.build([tb.reg("one", b"1")])
    l2 = tb.build([tb.reg("two", b"2")])
    cfg_a = _config([tb.digest(l1)])
    cfg_b = _config([tb.digest(l1), tb.digest(l2)], created="2024-02-01T00:00:00Z")
    ha, hb = hashlib.sha256(cfg_a).hexdigest(), hashlib.sha256(cfg_b).hexdigest()
    manifest = [
        {"Config": f"{ha}.json", "RepoTags": ["a:1"], "Layers": ["aaa/layer.tar"]},
        {
            "Config": f"{hb}.json",
            "RepoTags": ["b:1", "localhost:5000/b:2"],
            "Layers": ["bbb/layer.tar", "ccc/layer.tar"],
        },
    ]
    archive = tb.build(
        [
            tb.dir_("aaa"),
            tb.reg("aaa/VERSION", b"1.0"),
            tb.reg("aaa/layer.tar", l1),
            tb.dir_("bbb"),
            tb.sym("bbb/layer.tar", "../aaa/layer.tar"),
            tb.dir_("ccc"),
            tb.reg("ccc/layer.tar", l2),
            tb.reg(f"{ha}.json", cfg_a),
            tb.reg(f"{hb}.json", cfg_b),
            tb.reg("manifest.json", json.dumps(manifest).encode()),
            tb.reg("repositories", b"{}"),
        ]
    )
    svc = SyncImages(data_root)
    loaded = svc.load(io.BytesIO(archive))
    assert [x.tags for x in loaded] == [("a:1",), ("b:1", "localhost:5000/b:2")]
    assert svc.resolve("a:1").id == "sha256:" + ha
    assert len(svc.layers.all()) == 2  # the shared base layer is unpacked once
    hist = svc.history("b:1")
    assert [h.created_by for h in hist] == ["CMD", "layer 1", "layer 0"]
    assert hist[0].size == 0 and hist[1].size == 1
    # list filters
    assert [r.repo_tags for r in svc.list_images(filters={"reference": ["a*"]})] == [("a:1",)]
    assert [r.id for r in svc.list_images(filters={"since": ["a:1"]})] == ["sha256:" + hb]
    assert [r.id for r in svc.list_images(filters={"before": ["b:1"]})] == ["sha256:" + ha]
    assert svc.list_images(filters={"dangling": ["true"]}) == []
    with pytest.raises(InvalidParameter, match="invalid filter 'bogus'"):
        svc.list_images(filters={"bogus": ["1"]})
    # prune: nothing dangling; untag a → dangling → pruned; dangling=false prunes tagged b
    assert svc.prune().deleted == ()
    svc.images.remove_reference(normalize("a:1"))  # leave "a" dangling
    assert [r.id for r in svc.list_images(filters={"dangling": ["true"]})] == ["sha256:" + ha]
    report = svc.prune()
    assert DeleteRecord(deleted="sha256:" + ha) in report.deleted
    assert report.space_reclaimed == 0  # its only layer is still used by b
    report = svc.prune({"dangling": ["false"]})
    assert DeleteRecord(deleted="sha256:" + hb) in report.deleted
    assert report.space_reclaimed == 2
    assert svc.count() == 0 and svc.layers.all() == []


def test_load_refuses_bad_archives(data_root: str, outside: str) -> None:
    svc = SyncImages(data_root)
    layer = tb.build([tb.reg("x", b"1")])
    cfg = _config(["sha256:" + "0" * 64])
    h = hashlib.sha256(cfg).hexdigest()
    bad_diff = tb.build(
        [
            tb.reg("l.tar", layer),
            tb.reg(f"{h}.json", cfg),
            tb.reg(
                "manifest.json",
                json.dumps(
                    [{"Config": f"{h}.json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}]
                ).encode(),
            ),
        ]
    )
    with pytest.raises(InvalidParameter, match="invalid diffID"):
        svc.load(io.BytesIO(bad_diff))
    escape = tb.build(
        [
            tb.sym("l.tar", outside + "/secret"),
            tb.reg(f"{h}.json", cfg),
            tb.reg(
                "manifest.json",
                json.dumps(
                    [{"Config": f"{h}.json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}]
                ).encode(),
            ),
        ]
    )
    with pytest.raises(InvalidParameter, match="outside the archive"):
        svc.load(io.BytesIO(escape))
    with pytest.raises(InvalidParameter):
        svc.load(io.BytesIO(tb.build([tb.reg("../../evil", b"x")])))
    with pytest.raises(InvalidParameter, match=r"neither manifest\.json nor index\.json"):
        svc.load(io.BytesIO(tb.build([tb.reg("hello", b"x")])))
    assert svc.count() == 0 and svc.layers.all() == []
    assert os.listdir(os.path.join(data_root, "image", "tmp")) == []
    assert os.listdir(outside) == []


def test_load_oci_layout_with_gzip_layers(data_root: str) -> None:
    layer = tb.build([tb.reg("hello", b"world")])
    blob = tb.gz(layer)
    cfg = _config([tb.digest(layer)])
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": tb.digest(cfg),
                "size": len(cfg),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": tb.digest(blob),
                    "size": len(blob),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": tb.digest(manifest),
                    "size": len(manifest),
                    "annotations": {
                        "io.containerd.image.name": "example.com/hello:1",
                        "org.opencontainers.image.ref.name": "1",
                    },
                }
            ],
        }
    ).encode()
    archive = tb.build(
        [
            tb.reg("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            tb.reg(f"blobs/sha256/{tb.digest(blob)[7:]}", blob),
            tb.reg(f"blobs/sha256/{tb.digest(cfg)[7:]}", cfg),
            tb.reg(f"blobs/sha256/{tb.digest(manifest)[7:]}", manifest),
            tb.reg("index.json", index),
        ]
    )
    svc = SyncImages(data_root)
    loaded = svc.load(io.BytesIO(archive))
    assert loaded[0].tags == ("example.com/hello:1",)
    assert loaded[0].image_id == tb.digest(cfg)
    # the saved form carries the uncompressed tar, whose digest is the diff ID
    saved = b"".join(svc.save(["example.com/hello:1"]))
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        assert tf.extractfile(f"blobs/sha256/{tb.digest(layer)[7:]}").read() == layer  # type: ignore[union-attr]


def test_commit_builds_a_child_image(data_root: str, busybox_tar: bytes) -> None:
    svc = SyncImages(data_root)
    base_id = imported(svc, busybox_tar)
    base = svc.resolve(base_id)
    svc.layers.rw.create("ctr", base.top_chain)
    merged = svc.layers.rw.mount("ctr")
    try:
        with open(f"{merged}/hello", "w") as f:
            f.write("hi")
        os.unlink(f"{merged}/etc/passwd")
        new_id = svc.commit(
            "ctr",
            parent_image=base_id,
            container_config={"Cmd": ["sh", "-c", "echo"], "Env": ["A=1"]},
            changes=["ENV B=2"],
            author="me",
            comment="c",
            repo="child:1",
        )
    finally:
        svc.layers.rw.unmount("ctr")
    child = svc.inspect("child:1")
    assert child.id == new_id and child.parent == base_id and child.author == "me"
    assert len(child.rootfs_layers) == 2 and child.rootfs_layers[0] == base.diff_ids[0]
    assert child.config is not None and child.config["Env"] == ["A=1", "B=2"]
    hist = svc.history("child:1")
    assert [h.id for h in hist] == [new_id, base_id]
    assert hist[0].created_by == "sh -c echo" and hist[0].size == 2
    with pytest.raises(Conflict, match="image has dependent child images"):
        svc.remove(base_id, force=True)
    svc.layers.rw.remove("ctr")
    # a container without changes commits to an empty layer: no new diff ID
    svc.layers.rw.create("ctr2", base.top_chain)
    empty_id = svc.commit("ctr2", parent_image=base_id, container_config={"Cmd": ["true"]})
    svc.layers.rw.remove("ctr2")
    empty = svc.resolve(empty_id)
    assert empty.diff_ids == base.diff_ids
    assert empty.history[-1].get("empty_layer") is True
    svc.remove(empty_id)
    records = svc.remove("child:1")
    deleted = [r.deleted for r in records if r.deleted]
    assert new_id in deleted and base_id not in deleted  # the tagged parent stays
    svc.remove("busybox")
    assert svc.count() == 0 and svc.layers.all() == []


def test_disk_usage_and_shared_size(data_root: str) -> None:
    l1 = tb.build([tb.reg("one", b"1" * 100)])
    svc = SyncImages(data_root)
    svc.set_usage_hook(lambda i: [ImageUser(container_id="c" * 64, running=False)])
    a = svc.import_rootfs(io.BytesIO(l1), repo="a")
    # b = a + l2 via commit of a container whose upper dir holds "two"
    svc.layers.rw.create("c", svc.resolve(a).top_chain)
    merged = svc.layers.rw.mount("c")
    with open(f"{merged}/two", "wb") as f:
        f.write(b"2" * 10)
    svc.layers.rw.unmount("c")
    svc.commit("c", parent_image=a, container_config={}, repo="b")
    svc.layers.rw.remove("c")
    du = svc.disk_usage()
    by_tag = {r.repo_tags[0]: r for r in du.images}
    assert by_tag["a:latest"].size == 100 and by_tag["b:latest"].size == 110
    assert by_tag["a:latest"].shared_size == 100 and by_tag["b:latest"].shared_size == 100
    assert by_tag["a:latest"].containers == 1
    assert du.layers_size == 110
    svc.set_usage_hook(None)
    svc.remove("b")
    svc.remove("a")
    assert svc.layers.all() == []


class OneWay:
    """A stream that can only be read forward (no seek, no tell), in small pieces."""

    def __init__(self, data: bytes, n: int = 100_003) -> None:
        self._f = io.BytesIO(data)
        self._n = n

    def read(self, n: int = -1, /) -> bytes:
        return self._f.read(self._n if n < 0 else min(n, self._n))


def _classic_archive(images: list[tuple[bytes, list[bytes], str]]) -> bytes:
    """docker save 20.10 style: one ``<id>/layer.tar`` per distinct layer, then configs, then
    manifest.json (last, as dockerd writes it)."""
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    manifest = []
    seen: set[str] = set()
    for cfg, layers, tag in images:
        paths = []
        for layer in layers:
            hexid = tb.digest(layer)[7:]
            if hexid not in seen:
                seen.add(hexid)
                members += [tb.dir_(hexid), tb.reg(f"{hexid}/layer.tar", layer)]
            paths.append(f"{hexid}/layer.tar")
        h = hashlib.sha256(cfg).hexdigest()
        members.append(tb.reg(f"{h}.json", cfg))
        manifest.append({"Config": f"{h}.json", "RepoTags": [tag], "Layers": paths})
    members.append(tb.reg("manifest.json", json.dumps(manifest).encode()))
    return tb.build(members)


def test_load_a_layer_under_two_parents(data_root: str) -> None:
    """One layer tar of the archive is the base of one image and the top of another: it is
    unpacked once and its second use is rebuilt from the first."""
    l1 = tb.build([tb.reg("one", b"1" * 5000)])
    l2 = tb.build([tb.reg("two", b"2")])
    cfg_a = _config([tb.digest(l1)])
    cfg_b = _config([tb.digest(l2), tb.digest(l1)], created="2024-03-01T00:00:00Z")
    archive = _classic_archive([(cfg_a, [l1], "a:1"), (cfg_b, [l2, l1], "b:1")])
    svc = SyncImages(data_root)
    loaded = svc.load(OneWay(tb.gz(archive)))
    assert [x.tags for x in loaded] == [("a:1",), ("b:1",)]
    b = svc.resolve("b:1")
    chain = svc.layers.chain(b.top_chain)
    assert [x.diff_id for x in chain] == [tb.digest(l2), tb.digest(l1)]
    assert b"".join(svc.layers.layer_tar(chain[1].chain_id)) == l1
    with open(os.path.join(svc.layers.driver_data(b.top_chain)["UpperDir"], "one"), "rb") as f:
        assert f.read() == b"1" * 5000
    assert len(svc.layers.all()) == 3
    assert sorted(n for n in os.listdir(svc.layers.root) if n.startswith(".tmp-")) == []
    svc.remove("a:1")
    svc.remove("b:1")
    assert svc.layers.all() == []


def test_load_of_present_layers_only_checks_digests(
    data_root: str, busybox_tar: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = SyncImages(data_root)
    image_id = imported(svc, busybox_tar)
    saved = b"".join(svc.save(["busybox:latest"]))
    svc.tag("busybox", "keep", "1")
    svc.remove("busybox:latest")

    def no_unpack(*args: object, **kwargs: object) -> None:
        raise AssertionError("a layer the store has was unpacked again")

    monkeypatch.setattr("whaled.image.layers.unpack_tar", no_unpack)
    events: list[ProgressEvent] = []
    assert svc.load(OneWay(saved), progress=events.append)[0].image_id == image_id
    assert any(e.message == "Loading layer" for e in events)
    # a blob named after a present layer whose bytes differ is refused
    layer_hex = tb.digest(busybox_tar)[7:]
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        members = [
            (m, tf.extractfile(m).read() if m.isreg() else b"")  # type: ignore[union-attr]
            for m in tf.getmembers()
        ]
    forged = []
    for m, data in members:
        if m.name == f"blobs/sha256/{layer_hex}":
            data = tb.build([tb.reg("evil", b"x")])
            m.size = len(data)
        forged.append((m, data))
    with pytest.raises(InvalidParameter, match="does not match"):
        svc.load(io.BytesIO(tb.build(forged)))
    assert svc.resolve("busybox").id == image_id and len(svc.layers.all()) == 1


def test_load_refuses_hostile_archive_members(data_root: str, outside: str) -> None:
    svc = SyncImages(data_root)
    cases = {
        "under a symlink": [tb.sym("d", outside), tb.reg("d/layer.tar", b"x")],
        "hard link to nothing": [tb.hard("x", "missing")],
        "under a file": [tb.reg("f", b"1"), tb.reg("f/layer.tar", b"x")],
    }
    for what, members in cases.items():
        with pytest.raises(InvalidParameter, match="refus"):
            svc.load(io.BytesIO(tb.build([*members, tb.reg("manifest.json", b"[]")])))
        assert os.listdir(outside) == [], what
    # device nodes in the archive itself: dockerd makes them in its temp dir and ignores
    # them; here they are skipped (nothing is made)
    assert (
        svc.load(io.BytesIO(tb.build([tb.chr_("dev", 1, 3), tb.reg("manifest.json", b"[]")]))) == []
    )
    loop = [tb.sym("a", "b"), tb.sym("b", "a"), tb.reg("manifest.json", b'[{"Config": "a"}]')]
    with pytest.raises(InvalidParameter, match="too many links"):
        svc.load(io.BytesIO(tb.build(loop)))
    assert os.listdir(os.path.join(data_root, "image", "tmp")) == []
    assert sorted(os.listdir(svc.layers.root)) == ["l"]


def test_load_keeps_large_non_layer_members_in_scratch(data_root: str) -> None:
    layer = tb.build([tb.reg("a", b"1")])
    cfg = json.loads(_config([tb.digest(layer)]))
    cfg["config"]["Labels"] = {"big": "x" * (3 << 20)}  # a 3 MB config
    raw = json.dumps(cfg).encode()
    archive = _classic_archive([(raw, [layer], "big:1")])
    svc = SyncImages(data_root)
    assert svc.load(OneWay(archive))[0].image_id == tb.digest(raw)
    assert svc.inspect("big:1").config["Labels"]["big"] == "x" * (3 << 20)  # type: ignore[index]
    assert os.listdir(os.path.join(data_root, "image", "tmp")) == []


def test_crash_leftovers_of_a_load_are_removed_at_start(data_root: str) -> None:
    svc = SyncImages(data_root)
    scratch = os.path.join(data_root, "image", "tmp", "load-0123")
    ingest = os.path.join(svc.layers.root, ".tmp-" + "cd" * 32)
    for d in (scratch, os.path.join(ingest, "diff")):
        os.makedirs(d)
        with open(os.path.join(d, "x"), "w") as f:
            f.write("partial")
    SyncImages(data_root)
    assert not os.path.exists(scratch) and not os.path.exists(ingest)


_ZERO = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("manifest.json", b'[{"Config": "c.json", "RepoTags": [5]}]')], "bad RepoTags"),
        ([("manifest.json", b'[{"Config": "c.json", "RepoTags": "a:b"}]')], "bad RepoTags"),
        ([("index.json", b'{"manifests": 5}')], "bad manifests in an index"),
        ([("index.json", b'{"manifests": [5]}')], "bad manifests in an index"),
        (
            [
                (
                    "index.json",
                    b'{"manifests": [{"digest": "%s", "annotations": [1]}]}' % _ZERO.encode(),
                )
            ],
            "bad annotations",
        ),
    ],
    ids=["RepoTags [5]", "RepoTags a string", "manifests 5", "manifests [5]", "annotations [1]"],
)
def test_load_refuses_malformed_manifests_with_a_400(
    data_root: str, files: list[tuple[str, bytes]], message: str
) -> None:
    """(they were TypeError / AttributeError: a 500)"""
    svc = SyncImages(data_root)
    with pytest.raises(InvalidParameter, match=message):
        svc.load(io.BytesIO(tb.build([tb.reg(name, data) for name, data in files])))
    assert os.listdir(os.path.join(data_root, "image", "tmp")) == []
