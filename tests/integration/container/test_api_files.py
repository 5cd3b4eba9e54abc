"""Container file operations through docker-py against a real whaled: archive HEAD/GET/PUT
(the stat header, round trips, a read-only rootfs), export, changes, commit, prune."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import time
from typing import Any

import docker.errors
import pytest

from tests.integration.container.helpers import NONE, V, run_bg, run_until_file
from tests.support.whaled_proc import WhaledProcess

# Go's os.FileMode bits, as dockerd puts them in the stat header.
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_STICKY = 1 << 20
ADDED, MODIFIED, DELETED = 1, 0, 2


def stat_header(w: WhaledProcess, cid: str, path: str) -> tuple[int, dict[str, Any] | None]:
    status, headers, _ = w.request("HEAD", f"{V}/containers/{cid}/archive?path={path}")
    raw = headers.get("X-Docker-Container-Path-Stat")
    return status, json.loads(base64.b64decode(raw)) if raw else None


def tar_of(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = 1_700_000_000
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def members(chunks: Any) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    data = b"".join(chunks)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            f = t.extractfile(m) if m.isfile() else None
            out[m.name] = (m, f.read() if f is not None else b"")
    return out


def test_archive_head_stat_header(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    status, st = stat_header(whaled, c.id, "/etc/passwd")
    assert status == 200 and st is not None
    assert st["name"] == "passwd" and st["size"] > 0 and st["mode"] == 0o644
    assert st["linkTarget"] == "" and st["mtime"].endswith("Z")
    status, st = stat_header(whaled, c.id, "/tmp")
    assert st is not None and st["mode"] == MODE_DIR | MODE_STICKY | 0o777
    status, st = stat_header(whaled, c.id, "/bin/sh")
    assert st is not None and st["mode"] == MODE_SYMLINK | 0o777
    assert st["linkTarget"] == "/bin/busybox"
    status, st = stat_header(whaled, c.id, "/nope")
    assert status == 404 and st is None
    status, _, _ = whaled.request("HEAD", f"{V}/containers/nosuch/archive?path=/etc")
    assert status == 404
    bits, stat = c.get_archive("/bin/busybox")
    assert stat["name"] == "busybox" and stat["mode"] == 0o755
    got = members(bits)
    assert got["busybox"][0].size == os.path.getsize("/bin/busybox")
    c.remove(force=True)


def test_put_and_get_archive_round_trip(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    payload = tar_of({"new.txt": (b"hello\n", 0o640), "sub/deep.bin": (bytes(range(256)), 0o600)})
    assert c.put_archive("/tmp", payload) is True
    r = c.exec_run(["sh", "-c", "cat /tmp/new.txt; stat -c '%a %s' /tmp/new.txt /tmp/sub/deep.bin"])
    assert r.output == b"hello\n640 6\n600 256\n"
    bits, stat = c.get_archive("/tmp/sub")
    assert stat["name"] == "sub" and stat["mode"] & MODE_DIR
    got = members(bits)
    assert got["sub/deep.bin"][1] == bytes(range(256))
    assert got["sub/deep.bin"][0].mode & 0o777 == 0o600
    # Into a directory that does not exist: dockerd's 404; onto a file: 400-class error.
    with pytest.raises(docker.errors.NotFound):
        c.put_archive("/no/such/dir", payload)
    with pytest.raises(docker.errors.APIError) as info:
        c.put_archive("/etc/passwd", payload)
    assert 400 <= info.value.status_code < 500
    # A stopped container still takes and gives files.
    c.stop(timeout=0)
    assert c.put_archive("/", tar_of({"after-stop": (b"x", 0o644)})) is True
    bits, _ = c.get_archive("/after-stop")
    assert members(bits)["after-stop"][1] == b"x"
    c.remove()


def test_copy_into_a_read_only_rootfs_is_refused(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, tmp_path: Any
) -> None:
    rw = tmp_path / "rw"
    rw.mkdir()
    c = run_bg(
        docker_client,
        busybox_image,
        "sleep",
        "300",
        read_only=True,
        volumes={str(rw): {"bind": "/data", "mode": "rw"}},
    )
    payload = tar_of({"f": (b"x", 0o644)})
    with pytest.raises(docker.errors.APIError) as info:
        c.put_archive("/tmp", payload)
    assert info.value.status_code == 403
    assert "read-only" in str(info.value.explanation)
    # A writable bind mount inside it still takes files.
    assert c.put_archive("/data", payload) is True
    assert (rw / "f").read_bytes() == b"x"
    c.remove(force=True)


def test_export_contains_the_rootfs(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_until_file(
        docker_client, busybox_image, "/added", "echo added > /added; rm /bin/ls; sleep 300"
    )
    got = members(c.export())
    names = set(got)
    assert "bin/busybox" in names and "etc/passwd" in names
    assert got["added"][1] == b"added\n"
    assert "bin/ls" not in names
    assert not any(n.startswith((".wh.", "proc/1/")) or "/.wh." in n for n in names)
    c.remove(force=True)


def test_changes_kinds(whaled: WhaledProcess, docker_client: Any, busybox_image: str) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    c.exec_run(
        ["sh", "-c", "mkdir /newdir && echo x > /newdir/f; echo more >> /etc/group; rm /bin/ls"]
    )
    changes = {ch["Path"]: ch["Kind"] for ch in c.diff()}
    assert changes["/newdir"] == ADDED and changes["/newdir/f"] == ADDED
    assert changes["/etc/group"] == MODIFIED and changes["/etc"] == MODIFIED
    assert changes["/bin/ls"] == DELETED and changes["/bin"] == MODIFIED
    c.remove(force=True)


def test_untouched_container_has_no_changes(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    assert c.diff() is None or c.diff() == []


def test_commit_creates_a_runnable_image_with_changes(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_until_file(
        docker_client, busybox_image, "/marker", "echo committed > /marker; sleep 300"
    )
    since = time.time()
    image = c.commit(
        repository="committed",
        tag="v1",
        message="a note",
        author="tester",
        changes=['CMD ["cat", "/marker"]', "ENV COMMITTED=yes"],
    )
    assert image.attrs["Config"]["Cmd"] == ["cat", "/marker"]
    assert "COMMITTED=yes" in image.attrs["Config"]["Env"]
    assert image.attrs["Author"] == "tester" and image.attrs["Comment"] == "a note"
    assert image.attrs["Parent"] == docker_client.images.get(busybox_image).id
    assert "committed:v1" in image.tags
    # The container was paused for the commit and runs again.
    assert docker_client.api.inspect_container(c.id)["State"]["Status"] == "running"
    out = docker_client.containers.run("committed:v1", network_mode=NONE, remove=True)
    assert out == b"committed\n"
    out = docker_client.containers.run(
        "committed:v1", ["sh", "-c", "echo $COMMITTED"], network_mode=NONE, remove=True
    )
    assert out == b"yes\n"
    evs = docker_client.api.events(
        since=since, until=time.time() + 0.3, decode=True, filters={"container": c.id}
    )
    acts = [e["Action"] for e in evs]
    assert "commit" in acts and "pause" in acts and "unpause" in acts, acts
    c.remove(force=True)


def test_prune_only_stopped_with_label_filter(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    running = run_bg(docker_client, busybox_image, "sleep", "300", labels={"prune": "yes"})
    keep = run_bg(docker_client, busybox_image, "true", labels={"prune": "no"})
    big = run_bg(
        docker_client,
        busybox_image,
        "sh",
        "-c",
        "head -c 20000 /dev/zero > /blob",
        labels={"prune": "yes"},
    )
    created = docker_client.containers.create(
        busybox_image, ["true"], network_mode=NONE, labels={"prune": "yes"}
    )
    keep.wait(timeout=30)
    big.wait(timeout=30)
    result = docker_client.api.prune_containers(filters={"label": "prune=yes"})
    assert sorted(result["ContainersDeleted"]) == sorted([big.id, created.id])
    assert result["SpaceReclaimed"] >= 20000
    remaining = {c["Id"] for c in docker_client.api.containers(all=True)}
    assert remaining == {running.id, keep.id}
    result = docker_client.api.prune_containers(filters={"label!": "prune=yes"})
    assert result["ContainersDeleted"] == [keep.id]
    result = docker_client.api.prune_containers()
    assert result["ContainersDeleted"] is None and result["SpaceReclaimed"] == 0
    with pytest.raises(docker.errors.APIError) as info:
        docker_client.api.prune_containers(filters={"bogus": "x"})
    assert info.value.status_code == 400
    running.remove(force=True)
