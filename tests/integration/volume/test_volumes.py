"""Volumes on a real whaled through the docker CLI and docker-py: the ``docker volume``
commands, named and anonymous volumes, copy-up from the image, ``nocopy``, read-only and
``--volumes-from``, ``rm -v`` / ``--rm``, a tmpfs volume made from driver options, events,
and a daemon restart that keeps volumes and who uses them."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import docker.errors
import pytest
import requests.exceptions

from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

RUN = ("run", "--rm", "--network", "none")


def _inspect(cli: DockerCLI, *args: str) -> Any:
    return json.loads(cli.run(*args).stdout)


BUSYBOX_TAR: list[str] = []


@pytest.fixture(autouse=True)
def _busybox_tar(busybox_tar: str) -> None:
    BUSYBOX_TAR[:] = [busybox_tar]


def test_volume_commands(whaled: WhaledProcess, docker_cli: DockerCLI) -> None:
    cli = docker_cli
    assert cli.run("volume", "create", "--label", "tier=db", "data").stdout.strip() == "data"
    v = _inspect(cli, "volume", "inspect", "data")[0]
    assert v["Name"] == "data" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Labels"] == {"tier": "db"}
    assert v["Mountpoint"] == os.path.join(whaled.data_root, "volumes", "data", "_data")
    assert os.path.isdir(v["Mountpoint"])
    # creating it again is fine (same volume)
    assert cli.run("volume", "create", "data").returncode == 0
    anon = cli.run("volume", "create").stdout.strip()
    assert len(anon) == 64

    names = cli.run("volume", "ls", "-q").stdout.split()
    assert sorted(names) == sorted(["data", anon])
    assert cli.run("volume", "ls", "-q", "--filter", "label=tier=db").stdout.split() == ["data"]
    assert cli.run("volume", "ls", "-q", "--filter", "name=dat").stdout.split() == ["data"]

    bad = cli.run("volume", "create", "a/b", check=False)
    assert bad.returncode != 0 and "includes invalid characters" in bad.stderr
    nodriver = cli.run("volume", "create", "-d", "nfs9", "x1", check=False)
    assert nodriver.returncode != 0 and 'plugin "nfs9" not found' in nodriver.stderr
    missing = cli.run("volume", "inspect", "nope", check=False)
    assert missing.returncode != 0 and "no such volume" in missing.stderr
    status, _, body = whaled.request("PUT", "/v1.45/volumes/data", b"{}")
    assert status == 400, body

    # prune (API ≥ 1.42): anonymous volumes (made for containers) only, unless --all; a
    # generated name alone does not make a volume anonymous
    whaled.import_image(BUSYBOX_TAR[0], "busybox:latest")
    cli.run("run", "--name", "tmp1", "--network", "none", "-v", "/x", "busybox", "true")
    cli.run("rm", "tmp1")
    (made,) = set(cli.run("volume", "ls", "-q").stdout.split()) - {"data", anon}
    pruned = cli.run("volume", "prune", "-f").stdout
    assert made in pruned and anon not in pruned and "data" not in pruned
    assert sorted(cli.run("volume", "ls", "-q").stdout.split()) == sorted(["data", anon])
    cli.run("volume", "prune", "-f", "--all")
    assert cli.run("volume", "ls", "-q").stdout.split() == []

    events = whaled.api().events(since=0, until=int(time.time()) + 1, decode=True)
    actions = [(e["Action"], e["Actor"]["ID"]) for e in events if e["Type"] == "volume"]
    assert ("create", "data") in actions and ("destroy", "data") in actions


def test_named_volume_keeps_data_and_is_refused_while_in_use(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cli = docker_cli
    cli.run(*RUN, "-v", "data:/data", busybox_image, "sh", "-c", "echo kept > /data/f")
    out = cli.run(*RUN, "-v", "data:/data:ro", busybox_image, "cat", "/data/f")
    assert out.stdout == "kept\n"
    ro = cli.run(*RUN, "-v", "data:/data:ro", busybox_image, "touch", "/data/g", check=False)
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr

    cid = cli.run(
        "create", "--name", "user", "-v", "data:/data", busybox_image, "sh"
    ).stdout.strip()
    mounts = _inspect(cli, "inspect", "user")[0]["Mounts"]
    assert mounts == [
        {
            "Type": "volume",
            "Name": "data",
            "Source": os.path.join(whaled.data_root, "volumes", "data", "_data"),
            "Destination": "/data",
            "Driver": "local",
            "Mode": "",
            "RW": True,
            "Propagation": "",
        }
    ]
    busy = cli.run("volume", "rm", "data", check=False)
    assert busy.returncode != 0
    assert f"remove data: volume is in use - [{cid}]" in busy.stderr
    assert cli.run("volume", "ls", "-q", "--filter", "dangling=true").stdout.split() == []

    # what uses a volume is known again after a restart
    whaled.restart()
    busy = cli.run("volume", "rm", "data", check=False)
    assert busy.returncode != 0 and "volume is in use" in busy.stderr
    out = cli.run(*RUN, "-v", "data:/data", busybox_image, "cat", "/data/f")
    assert out.stdout == "kept\n"
    cli.run("rm", "user")
    assert cli.run("volume", "ls", "-q").stdout.split() == ["data"]  # rm never takes named ones
    cli.run("volume", "rm", "data")


def test_anonymous_volumes_go_with_rm_v_and_rm(docker_cli: DockerCLI, busybox_image: str) -> None:
    cli = docker_cli
    cli.run("run", "--name", "anon1", "--network", "none", "-v", "/scratch", busybox_image, "true")
    (mount,) = _inspect(cli, "inspect", "anon1")[0]["Mounts"]
    assert mount["Type"] == "volume" and len(mount["Name"]) == 64
    labels = _inspect(cli, "volume", "inspect", mount["Name"])[0]["Labels"]
    assert labels == {"com.docker.volume.anonymous": ""}
    cli.run("rm", "-v", "anon1")
    assert cli.run("volume", "ls", "-q").stdout.split() == []

    cli.run(*RUN, "-v", "/scratch", busybox_image, "true")
    deadline = time.monotonic() + 10
    while cli.run("volume", "ls", "-q").stdout.split() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cli.run("volume", "ls", "-q").stdout.split() == []

    cli.run("run", "--name", "anon2", "--network", "none", "-v", "/scratch", busybox_image, "true")
    cli.run("rm", "anon2")  # without -v the anonymous volume stays
    assert len(cli.run("volume", "ls", "-q").stdout.split()) == 1


def test_image_volume_is_filled_from_the_image(docker_cli: DockerCLI, busybox_image: str) -> None:
    cli = docker_cli
    script = (
        "mkdir -p /seed/sub && echo seeded > /seed/f && chown 1000:2000 /seed/f && "
        "chmod 640 /seed/f && ln -s f /seed/link && ln /seed/f /seed/hard && "
        "echo deep > /seed/sub/g"
    )
    cli.run("run", "--name", "maker", "--network", "none", busybox_image, "sh", "-c", script)
    cli.run("commit", "--change", "VOLUME /seed", "maker", "seeded:1")
    cli.run("rm", "maker")

    out = cli.run(
        *RUN,
        "seeded:1",
        "sh",
        "-c",
        "stat -c '%u:%g %a %h' /seed/f; readlink /seed/link; cat /seed/sub/g; "
        "touch /seed/new; ls /seed",
    )
    assert out.stdout.splitlines() == [
        "1000:2000 640 2",
        "f",
        "deep",
        "f",
        "hard",
        "link",
        "new",
        "sub",
    ]

    # a named volume gets the image's content too; its later content wins over the image
    cli.run(*RUN, "-v", "seeded:/seed", "seeded:1", "sh", "-c", "echo changed > /seed/f")
    again = cli.run(*RUN, "-v", "seeded:/seed", "seeded:1", "cat", "/seed/f")
    assert again.stdout == "changed\n"

    empty = cli.run(
        *RUN,
        "--mount",
        "type=volume,target=/seed,volume-nocopy",
        "seeded:1",
        "ls",
        "-A",
        "/seed",
    )
    assert empty.stdout == ""


def test_volumes_from_and_subpath(docker_cli: DockerCLI, busybox_image: str) -> None:
    cli = docker_cli
    cli.run(
        *RUN, "-v", "shared:/s", busybox_image, "sh", "-c", "mkdir /s/part && echo p > /s/part/x"
    )
    cli.run("create", "--name", "owner", "-v", "shared:/s", busybox_image, "sh")
    out = cli.run(*RUN, "--volumes-from", "owner", busybox_image, "cat", "/s/part/x")
    assert out.stdout == "p\n"
    ro = cli.run(*RUN, "--volumes-from", "owner:ro", busybox_image, "touch", "/s/y", check=False)
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    sub = cli.run(
        *RUN,
        "--mount",
        "type=volume,source=shared,target=/only,volume-subpath=part",
        busybox_image,
        "ls",
        "/only",
    )
    assert sub.stdout.split() == ["x"]
    cli.run("rm", "owner")


def test_tmpfs_volume_from_driver_options(docker_cli: DockerCLI, busybox_image: str) -> None:
    cli = docker_cli
    cli.run(
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=1m",
        "scratch",
    )
    out = cli.run(*RUN, "-v", "scratch:/t", busybox_image, "sh", "-c", "grep ' /t ' /proc/mounts")
    assert out.stdout.startswith("tmpfs /t tmpfs"), out.stdout
    assert "size=1024k" in out.stdout
    cli.run("volume", "rm", "scratch")


def test_system_df_lists_volume_sizes(docker_cli: DockerCLI, busybox_image: str) -> None:
    cli = docker_cli
    cli.run(*RUN, "-v", "sized:/d", busybox_image, "sh", "-c", "head -c 5000 /dev/zero > /d/f")
    cli.run("create", "--name", "holder", "-v", "sized:/d", busybox_image, "sh")
    out = cli.run("system", "df", "-v", "--format", "{{json .Volumes}}").stdout
    (vol,) = [v for v in json.loads(out) if v["Name"] == "sized"]
    assert vol["Links"] == "1" and vol["Size"] == "5kB", vol
    cli.run("rm", "holder")


def test_driver_options_bind_and_tmpfs_size(
    tmp_path: Any, docker_cli: DockerCLI, busybox_image: str
) -> None:
    cli = docker_cli
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "from-host").write_text("host data\n")
    cli.run(
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        f"device={host_dir}",
        "--opt",
        "o=bind",
        "bound",
    )
    out = cli.run(
        *RUN, "-v", "bound:/b", busybox_image, "sh", "-c", "cat /b/from-host; touch /b/new"
    )
    assert out.stdout == "host data\n"
    assert (host_dir / "new").exists()
    cli.run("volume", "rm", "bound")
    assert (host_dir / "from-host").exists()  # removing the volume leaves the host's files

    cli.run(
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=1m",
        "small",
    )
    full = cli.run(
        *RUN,
        "-v",
        "small:/s",
        busybox_image,
        "sh",
        "-c",
        "head -c 2000000 /dev/zero > /s/big; wc -c < /s/big",
    )
    assert 0 < int(full.stdout) <= 1 << 20, full.stdout  # the 1m size is enforced
    cli.run("volume", "rm", "small")


def test_docker_py_volume_api_and_cp(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Any
) -> None:
    client = whaled.client()
    vol = client.volumes.create(
        "pyvol",
        driver="local",
        labels={"app": "x"},
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=2m"},
    )
    assert vol.attrs["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}
    assert [v.name for v in client.volumes.list(filters={"label": "app=x"})] == ["pyvol"]
    assert client.volumes.get("pyvol").attrs["Labels"] == {"app": "x"}

    import docker.types

    writer = client.containers.run(
        busybox_image,
        ["sh", "-c", "echo py > /m/f && echo v > /v/f"],
        network_mode="none",
        volumes={"pyvol": {"bind": "/v", "mode": "rw"}},
        mounts=[docker.types.Mount(target="/m", source="pymount", type="volume")],
        name="writer",
        detach=True,
    )
    writer.wait()
    reader = client.containers.run(
        busybox_image,
        ["sh", "-c", "cat /m/f /v/f"],
        network_mode="none",
        volumes_from=["writer"],
        remove=False,
        detach=True,
    )
    reader.wait()
    assert reader.logs() == b"py\nv\n"
    reader.remove()

    # docker cp into and out of a path that is an anonymous volume of the create body
    cid = cli_create = docker_cli.run(
        "create", "--network", "none", "-v", "/anon", busybox_image, "cat", "/anon/in"
    ).stdout.strip()
    src = tmp_path / "in"
    src.write_text("copied in\n")
    docker_cli.run("cp", str(src), f"{cli_create}:/anon/in")
    docker_cli.run("start", "-a", cid)
    dest = tmp_path / "out"
    docker_cli.run("cp", f"{cid}:/anon/in", str(dest))
    assert dest.read_text() == "copied in\n"
    (mount,) = [m for m in _inspect(docker_cli, "inspect", cid)[0]["Mounts"]]
    assert (
        open(os.path.join(mount["Source"], "in")).read() == "copied in\n"
    )  # the file is in the volume, not in the container's layer
    docker_cli.run("rm", "-v", cid)
    writer.remove(v=True)
    client.volumes.get("pyvol").remove(force=True)
    client.volumes.prune()


def test_kill9_during_creates_and_removes_leaves_whole_volumes(whaled: WhaledProcess) -> None:
    """Volumes created and removed by several clients while the daemon is SIGKILLed: after
    the restart each listed volume is whole (record and data directory), no half-made or
    half-removed directory is left, and every one of them can be used and removed."""
    stop = threading.Event()

    def churn(k: int) -> None:
        client = whaled.client(timeout=10)
        i = 0
        while not stop.is_set():
            name = f"crash{k}-{i}"
            try:
                client.volumes.create(name, labels={"k": str(k)})
                if i % 2:
                    client.volumes.get(name).remove()
            except (docker.errors.APIError, requests.exceptions.RequestException, OSError):
                return  # the daemon is gone
            i += 1

    threads = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    whaled.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    whaled.start()
    whaled.wait_ready()

    root = os.path.join(whaled.data_root, "volumes")
    assert not [n for n in os.listdir(root) if n.startswith((".tmp-", ".trash-"))]
    client = whaled.client()
    listed = {v.name for v in client.volumes.list()}
    assert listed, "the churn made no volume before the kill"
    on_disk = {n for n in os.listdir(root) if n.startswith("crash")}
    assert on_disk == listed
    for name in listed:
        assert os.path.isdir(os.path.join(root, name, "_data"))
        assert client.volumes.get(name).attrs["Labels"]["k"] in "0123"
        client.volumes.get(name).remove()
    assert not client.volumes.list()
