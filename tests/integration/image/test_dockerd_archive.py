"""Archives cross between whaled and the real dockerd with their image IDs intact.

dockerd is Debian's ``docker.io`` (20.10), started privately the way the bench does it
(``bench.engines.DockerdEngine``): its own data-root, exec-root, socket, pidfile and config
under ``/tmp/wbd-*``, ``--bridge=none --iptables=false``, its managed containerd under that
root too. It is stopped by the PID we started (and strays by pidfd), everything mounted under
the root is unmounted and the root removed; ``/var/lib/docker`` and ``/run/docker.sock`` are
never used. When docker.io is missing it is installed the way the bench installs it
(``bench.prereqs.ensure_dockerd``: apt is kept from starting the system docker service); the
tests skip only where that cannot be done.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from bench.engines import DockerdEngine, EngineError, HostDirs
from bench.prereqs import ensure_dockerd
from tests.support.busybox import busybox_available, busybox_tar_cached
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

pytestmark = pytest.mark.integration

SECOND_LAYER = "mkdir -p /data && echo hello > /data/hello.txt && rm /bin/vi && rm -r /home"


@pytest.fixture(scope="module")
def dockerd() -> Iterator[DockerdEngine]:
    if os.geteuid() != 0:
        pytest.skip("needs root (starts dockerd)")
    # Installs Debian's docker.io when missing, the way the bench does (apt is kept from
    # starting the system docker service); skips only when that is impossible here.
    reason = ensure_dockerd(log=lambda _: None)
    if reason is not None:
        pytest.skip(reason)
    host_dirs = HostDirs()
    engine = DockerdEngine()
    try:
        try:
            engine.timed_start(timeout=60)
        except EngineError as e:
            pytest.skip(f"dockerd cannot run on this host: {e}")
        yield engine
    finally:
        engine.cleanup()
        host_dirs.restore()


@pytest.fixture(scope="module")
def dcli(dockerd: DockerdEngine) -> Iterator[DockerCLI]:
    with DockerCLI(dockerd.sock) as cli:
        yield cli


@pytest.fixture(scope="module")
def dockerd_images(dcli: DockerCLI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``wbx:base`` (an imported busybox rootfs) and ``wbx:two`` (a container's changes on
    top, committed), built in dockerd; their IDs by tag."""
    if not busybox_available():
        pytest.skip("/bin/busybox missing: install Debian's busybox-static (make sys-deps)")
    rootfs = busybox_tar_cached(tmp_path_factory)
    dcli.run("import", "--change", 'CMD ["sh"]', rootfs, "wbx:base")
    dcli.run("run", "--network", "none", "--name", "wbx-c1", "wbx:base", "sh", "-c", SECOND_LAYER)
    dcli.run("commit", "--change", 'CMD ["cat", "/data/hello.txt"]', "wbx-c1", "wbx:two")
    dcli.run("rm", "wbx-c1")
    return {tag: image_id(dcli, tag) for tag in ("wbx:base", "wbx:two")}


def image_id(cli: DockerCLI, ref: str) -> str:
    return cli.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def inspect(cli: DockerCLI, ref: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(cli.run("image", "inspect", ref).stdout)
    return data[0]


def history(cli: DockerCLI, ref: str) -> list[str]:
    out = cli.run("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}", ref).stdout
    return out.splitlines()


def tags(cli: DockerCLI) -> list[str]:
    out = cli.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    return sorted(out.split())


def test_dockerd_save_loads_in_whaled(
    whaled: WhaledProcess,
    docker_cli: DockerCLI,
    dcli: DockerCLI,
    dockerd_images: dict[str, str],
    tmp_path: Any,
) -> None:
    archive = str(tmp_path / "from-dockerd.tar")
    dcli.run("save", "-o", archive, "wbx:two", "wbx:base")
    with tarfile.open(archive) as tf:  # dockerd 20.10's classic layout
        names = tf.getnames()
    assert "manifest.json" in names and any(n.endswith("/layer.tar") for n in names)

    out = docker_cli.run("load", "-i", archive).stdout
    assert "Loaded image: wbx:two" in out and "Loaded image: wbx:base" in out
    assert tags(docker_cli) == ["wbx:base", "wbx:two"]
    for tag, ident in dockerd_images.items():
        assert image_id(docker_cli, tag) == ident
        ours, theirs = inspect(docker_cli, tag), inspect(dcli, tag)
        assert ours["RootFS"]["Layers"] == theirs["RootFS"]["Layers"]
        assert ours["Config"]["Cmd"] == theirs["Config"]["Cmd"]
        assert len(history(docker_cli, tag)) == len(history(dcli, tag))
    assert len(inspect(docker_cli, "wbx:two")["RootFS"]["Layers"]) == 2
    # the committed layer's changes (a file added, a link and a directory whited out) apply
    ours = docker_cli.run("run", "--rm", "--network", "none", "wbx:two").stdout
    assert ours == "hello\n"
    gone = docker_cli.run(
        "run",
        "--rm",
        "--network",
        "none",
        "wbx:two",
        "sh",
        "-c",
        "ls -d /bin/vi /home",
        check=False,
    )
    assert gone.returncode != 0 and gone.stdout == ""

    # loading the same archive again changes nothing
    again = docker_cli.run("load", "-i", archive).stdout
    assert "Loaded image: wbx:two" in again
    assert image_id(docker_cli, "wbx:two") == dockerd_images["wbx:two"]


def test_whaled_save_loads_in_dockerd(
    whaled: WhaledProcess,
    docker_cli: DockerCLI,
    dcli: DockerCLI,
    dockerd_images: dict[str, str],
    tmp_path: Any,
) -> None:
    # whaled gets the images from dockerd first (previous test's direction) ...
    archive = str(tmp_path / "from-dockerd.tar")
    dcli.run("save", "-o", archive, "wbx:two")
    docker_cli.run("load", "-i", archive)
    docker_cli.run("tag", "wbx:two", "wbx:from-whaled")
    # ... then saves them, and dockerd loads whaled's archive under a tag it did not have
    ours = str(tmp_path / "from-whaled.tar")
    docker_cli.run("save", "-o", ours, "wbx:from-whaled")
    dcli.run("rmi", "wbx:two")
    try:
        out = dcli.run("load", "-i", ours).stdout
        assert "Loaded image: wbx:from-whaled" in out
        assert image_id(dcli, "wbx:from-whaled") == dockerd_images["wbx:two"]
        assert len(history(dcli, "wbx:from-whaled")) == len(history(docker_cli, "wbx:two"))
        ran = dcli.run("run", "--rm", "--network", "none", "wbx:from-whaled").stdout
        assert ran == "hello\n"
    finally:
        dcli.run("rmi", "wbx:from-whaled", check=False)
        dcli.run("tag", dockerd_images["wbx:two"], "wbx:two", check=False)
