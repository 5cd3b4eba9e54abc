"""A container that builds a very deep tree, deep image tars, and what a crash leaves on
disk: the daemon answers, removes its leftovers and always starts again."""

from __future__ import annotations

import io
import os
import secrets
import tarfile
import tempfile

from tests.integration.container.helpers import poll
from tests.support.deeptree import deep_rel, make_deep
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess
from whaled.image import mounts

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
    # Something that cannot be removed at all: a mount inside a leftover.
    stuck = os.path.join(driver, ".trash-" + secrets.token_hex(32))
    os.makedirs(os.path.join(stuck, "busy"))
    mounts.mount("tmpfs", os.path.join(stuck, "busy"), "tmpfs", "size=64k")
    try:
        whaled.start()
        whaled.wait_ready()
        assert leftovers(whaled) == ["overlay2/" + os.path.basename(stuck)]
        assert os.listdir(os.path.join(layerdb, "mounts")) == []
        status, _, _ = whaled.request("GET", "/v1.45/containers/json?all=1")
        assert status == 200
    finally:
        mounts.unmount(os.path.join(stuck, "busy"))
