"""Hostile tars at every door a tar comes in by (issue 17, part 3): ``docker load`` (the
archive and the layers in it), ``docker import``, ``PUT /containers/{id}/archive`` (``docker
cp`` in, docker-py ``put_archive``), the build context and ``ADD`` of a tar; and ``docker cp``
out, which must never follow a link onto the host.

Each attack gets a clear 4xx error (or a safe result where dockerd accepts and sanitises:
written inside the container), and after each one a canary directory on the host, outside
every root, is checked for files that must not be there, and the data root for anything
left half-written."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.robustness.conftest import LONG
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

V = "/v1.45"
TAR = {"Content-Type": "application/x-tar"}


# ----------------------------------------------------------------------------- crafting


@dataclass
class E:
    """One tar member to craft."""

    name: str
    kind: str = "file"  # file dir sym hard chr blk fifo
    data: bytes = b"x"
    link: str = ""
    pax: dict[str, str] = field(default_factory=dict)


def tar_of(entries: list[E]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mode = 0o755 if e.kind == "dir" else 0o644
            info.mtime = 1_700_000_000
            info.pax_headers = dict(e.pax)
            types = {
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "blk": tarfile.BLKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }
            if e.kind == "file":
                info.size = len(e.data)
                tf.addfile(info, io.BytesIO(e.data))
                continue
            info.type = types[e.kind]
            info.linkname = e.link
            if e.kind in ("chr", "blk"):
                info.devmajor, info.devminor = (1, 3) if e.kind == "chr" else (7, 0)
            tf.addfile(info)
    return buf.getvalue()


def image_archive(layer: bytes, tag: str = "attack:1", extra: tuple[E, ...] = ()) -> bytes:
    """A docker-archive (manifest.json, config, one layer) around ``layer``."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [tag], "Layers": ["l/layer.tar"]}]
    ).encode()
    return tar_of(
        [
            *extra,
            E("l", "dir"),
            E("l/layer.tar", data=layer),
            E(config_name, data=config),
            E("manifest.json", data=manifest),
        ]
    )


def gzip_bomb(size: int, name: str = "zeros") -> bytes:
    """A gzip'ed tar holding one file of ``size`` zero bytes (about 1/1000 of it, compressed)."""
    info = tarfile.TarInfo(name)
    info.size = size
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(info.tobuf(tarfile.PAX_FORMAT))]
    chunk = b"\0" * (1 << 20)
    left = size
    while left > 0:
        out.append(z.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    out.append(z.compress(b"\0" * 1024))
    out.append(z.flush())
    return b"".join(out)


# ----------------------------------------------------------------------------- the host side


@pytest.fixture
def canary() -> Iterator[str]:
    """A directory on the host, outside every root, that the attacks aim at."""
    path = f"/tmp/canary-{secrets.token_hex(4)}"
    os.mkdir(path, 0o755)
    with open(os.path.join(path, "sentinel"), "w") as f:
        f.write("HOST")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def assert_canary_intact(canary: str) -> None:
    assert os.listdir(canary) == ["sentinel"], os.listdir(canary)
    with open(os.path.join(canary, "sentinel")) as f:
        assert f.read() == "HOST"
    st = os.lstat(os.path.join(canary, "sentinel"))
    assert st.st_nlink == 1  # no hard link to it was made anywhere


def leftovers(whaled: WhaledProcess) -> list[str]:
    """Temp files of unpacks in the data root (none may stay after a refused archive). The
    build contexts kept for the next build are build cache, listed by ``/system/df``."""
    status, _, body = whaled.request("GET", "/system/df?type=build-cache")
    assert status == 200, body
    kept = {record["ID"] for record in json.loads(body)["BuildCache"]}
    found: list[str] = []
    for sub in ("overlay2", "image/tmp", "builder/tmp", "tmp"):
        path = os.path.join(whaled.data_root, sub)
        if os.path.isdir(path):
            found += [
                f"{sub}/{n}"
                for n in os.listdir(path)
                if n.startswith((".tmp-", "load-", "context-", "add-")) and n not in kept
            ]
    return found


def layer_dirs(data_root: str) -> set[str]:
    path = os.path.join(data_root, "overlay2")
    return set(os.listdir(path)) if os.path.isdir(path) else set()


def error_of(status: int, body: bytes) -> str:
    """The error a request got: its status' message, or the error in its JSON stream."""
    if status >= 400:
        return f"{status}: {json.loads(body)['message']}"
    for line in body.splitlines():
        if line.strip():
            msg = json.loads(line)
            if "error" in msg:
                return f"stream: {msg['error']}"
    return ""


# ----------------------------------------------------------------------------- the attacks


# Layer rules (load's layers and import): (name, members, expected error or "" for accepted)
def layer_attacks(canary: str) -> list[tuple[str, list[E], str]]:
    up = "../" * 12
    return [
        ("dotdot escape", [E(f"{up}{canary[1:]}/pwned")], "path escapes the layer root"),
        ("absolute path", [E(f"{canary}/pwned")], "absolute path"),
        (
            "write through an absolute symlink",
            [E("link", "sym", link=canary), E("link/pwned")],
            "parent 'link' is a symbolic link",
        ),
        (
            "write through a relative symlink",
            [E("link", "sym", link=f"{up}{canary[1:]}"), E("link/pwned")],
            "parent 'link' is a symbolic link",
        ),
        (
            "symlink chain",
            [E("b", "sym", link=canary), E("a", "sym", link="b"), E("a/pwned")],
            "parent 'a' is a symbolic link",
        ),
        (
            "directory through a symlink",
            [E("link", "sym", link=canary), E("link/sub", "dir")],
            "parent 'link' is a symbolic link",
        ),
        (
            "hard link to a host path",
            [E("hl", "hard", link=f"{canary}/sentinel")],
            "target is not in this layer",
        ),
        (
            "hard link escaping with ..",
            [E("hl", "hard", link=f"{up}{canary[1:]}/sentinel")],
            "path escapes the layer root",
        ),
        (
            "hard link to a member not extracted yet",
            [E("hl", "hard", link="later"), E("later")],
            "target is not in this layer",
        ),
        (
            "hard link through a symlink",
            [E("link", "sym", link=canary), E("hl", "hard", link="link/sentinel")],
            "parent 'link' is a symbolic link",
        ),
        ("over-long name", [E("d/" * 33_000 + "f")], "longer than 65536 bytes"),
        ("over-long component", [E("x" * 300)], "File name too long"),
        ("NUL byte in a PAX name", [E("x", pax={"path": "a\0b"})], "NUL byte"),
        (
            "whiteout through a symlink",
            [E("link", "sym", link=canary), E("link/.wh.sentinel")],
            "parent 'link' is a symbolic link",
        ),
        ("whiteout of ..", [E("a", "dir"), E("a/.wh...")], "invalid target"),
        # accepted, as dockerd running as root does: device nodes stay inside the layer
        (
            "device nodes",
            [E("dev", "dir"), E("dev/c", "chr"), E("dev/b", "blk"), E("dev/f", "fifo")],
            "",
        ),
    ]


def test_import_and_load_refuse_every_layer_attack(
    whaled: WhaledProcess, docker_client: Any, canary: str
) -> None:
    before = layer_dirs(whaled.data_root)
    for what, members, expected in layer_attacks(canary):
        layer = tar_of(members)
        for door, path, body in (
            ("import", f"{V}/images/create?fromSrc=-&repo=imported&tag=1", layer),
            ("load layer", f"{V}/images/load?quiet=1", image_archive(layer)),
        ):
            status, _, data = whaled.request("POST", path, body, TAR)
            got = error_of(status, data)
            if expected:
                assert expected in got, (door, what, got)
                assert status in (200, 400), (door, what, status)  # 200: error in the stream
            else:
                assert got == "", (door, what, got)
            assert_canary_intact(canary)
            assert leftovers(whaled) == [], (door, what)
        if not expected:
            docker_client.images.remove("attack:1", force=True)
            docker_client.images.remove("imported:1", force=True)
    # the refused ones made no layer; the accepted ones went with their images
    assert layer_dirs(whaled.data_root) - before <= {"l"}


def test_load_archive_itself_refuses_escapes_and_skips_devices(
    whaled: WhaledProcess, canary: str
) -> None:
    up = "../" * 12
    cases: list[tuple[str, list[E], str]] = [
        ("dotdot escape", [E(f"{up}{canary[1:]}/pwned")], "path escapes the layer root"),
        ("absolute path", [E(f"{canary}/pwned")], "absolute path"),
        (
            "write through a symlink",
            [E("link", "sym", link=canary), E("link/pwned")],
            "parent 'link' is a symbolic link",
        ),
        (
            "hard link to a host path",
            [E("hl", "hard", link=f"{canary}/sentinel")],
            "target is not in the archive",
        ),
        (
            "manifest naming a layer outside the archive",
            [
                E(
                    "manifest.json",
                    data=json.dumps(
                        [{"Config": "c.json", "Layers": [f"{up}{canary[1:]}/sentinel"]}]
                    ).encode(),
                )
            ],
            "is outside the archive",
        ),
        (
            "manifest reaching out through a symlink",
            [
                E("link", "sym", link=canary),
                E(
                    "manifest.json",
                    data=json.dumps([{"Config": "link/sentinel", "Layers": []}]).encode(),
                ),
            ],
            "is outside the archive",
        ),
    ]
    for what, members, expected in cases:
        status, _, data = whaled.request("POST", f"{V}/images/load", tar_of(members), TAR)
        got = error_of(status, data)
        assert expected in got, (what, got)
        assert_canary_intact(canary)
        assert leftovers(whaled) == [], what
    # device nodes and fifos in the archive itself: skipped, the image loads (dockerd too)
    devices = (E("dev", "chr"), E("blk", "blk"), E("fifo", "fifo"))
    with_devices = image_archive(tar_of([E("ok")]), extra=devices)
    status, _, data = whaled.request("POST", f"{V}/images/load", with_devices, TAR)
    assert error_of(status, data) == "", data
    assert_canary_intact(canary)


def _container(docker_client: Any, image: str) -> Any:
    return docker_client.containers.create(image, ["sleep", "1000"], network_mode="none")


def _in_container(docker_cli: DockerCLI, cid: str, path: str) -> str:
    """The content of ``path`` read through GET /archive (the container's view)."""
    out = docker_cli.run_bytes("cp", f"{cid}:{path}", "-", check=False)
    if out.returncode:
        return ""
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tf:
        member = tf.next()
        assert member is not None
        if member.issym():
            return f"<link to {member.linkname}>"
        f = tf.extractfile(member)
        assert f is not None
        return f.read().decode()


def test_put_archive_refuses_escapes_and_keeps_links_inside_the_container(
    whaled: WhaledProcess,
    docker_client: Any,
    docker_cli: DockerCLI,
    busybox_image: str,
    canary: str,
) -> None:
    c = _container(docker_client, busybox_image)
    up = "../" * 12
    refused: list[tuple[str, list[E], str]] = [
        ("dotdot escape", [E(f"{up}{canary[1:]}/pwned")], "is outside of"),
        ("hard link escaping with ..", [E("hl", "hard", link=f"{up}etc/passwd")], "is outside of"),
        # (the container has no such directory)
        (
            "hard link to a host path",
            [E("hl", "hard", link=f"{canary}/sentinel")],
            "is not a directory",
        ),
        (
            "hard link through a symlink",
            [E("hlink", "sym", link=canary), E("hl", "hard", link="hlink/sentinel")],
            "is not a directory",
        ),
        (
            "hard link to a member not extracted yet",
            [E("hl2", "hard", link="later2"), E("later2")],
            "does not exist",
        ),
        ("over-long name", [E("d/" * 33_000 + "f")], "longer than 65536 bytes"),
        ("over-long component", [E("x" * 300)], "file name too long"),
    ]
    for what, members, expected in refused:
        status, _, data = whaled.request(
            "PUT", f"{V}/containers/{c.id}/archive?path=/", tar_of(members), TAR
        )
        assert status == 400 and expected in error_of(status, data).lower(), (what, status, data)
        assert_canary_intact(canary)
    # accepted as dockerd does (it unpacks in a chroot): everything lands in the container
    safe: list[tuple[str, list[E], str]] = [
        ("absolute path", [E(f"{canary}/abs", data=b"A")], f"{canary}/abs"),
        (
            "write through an absolute symlink",
            [E("alink", "sym", link=canary), E("alink/viaabs", data=b"B")],
            f"{canary}/viaabs",
        ),
        (
            "write through a relative symlink",
            [E("rlink", "sym", link=f"{up}{canary[1:]}"), E("rlink/viarel", data=b"C")],
            f"{canary}/viarel",
        ),
        (
            "symlink chain",
            [E("cb", "sym", link=canary), E("ca", "sym", link="cb"), E("ca/viachain", data=b"D")],
            f"{canary}/viachain",
        ),
    ]
    for what, members, where in safe:
        c.put_archive("/", tar_of(members))  # docker-py
        assert_canary_intact(canary)
        assert _in_container(docker_cli, c.id, where) == members[-1].data.decode(), what
    # docker cp - (the CLI) with a link and a write through it
    docker_cli.run_bytes(
        "cp", "-", f"{c.id}:/",
        input=tar_of([E("clilink", "sym", link=f"{canary}/sub"), E("clilink/viacli", data=b"E")]),
    )  # fmt: skip
    assert_canary_intact(canary)
    assert _in_container(docker_cli, c.id, f"{canary}/sub/viacli") == "E"
    # the extraction point itself a link to a host path: resolved in the container (404)
    c.put_archive("/", tar_of([E("hostdir", "sym", link=canary)]))
    status, _, data = whaled.request(
        "PUT", f"{V}/containers/{c.id}/archive?path=/hostdir/sub2", tar_of([E("x")]), TAR
    )
    assert status == 404, data
    c.put_archive("/hostdir", tar_of([E("viadest", data=b"F")]))
    assert _in_container(docker_cli, c.id, f"{canary}/viadest") == "F"
    assert_canary_intact(canary)
    # device nodes: made inside the container, as dockerd does as root
    c.put_archive(
        "/", tar_of([E("devs", "dir"), E("devs/c", "chr"), E("devs/b", "blk"), E("devs/f", "fifo")])
    )
    c.start()
    try:
        out = c.exec_run(["ls", "-l", "/devs"]).output.decode()
        assert "7,   0" in out and "1,   3" in out and "\nprw" in out, out
    finally:
        c.remove(force=True)
    assert_canary_intact(canary)


def test_cp_out_never_follows_a_link_onto_the_host(
    whaled: WhaledProcess,
    docker_client: Any,
    docker_cli: DockerCLI,
    busybox_image: str,
    canary: str,
    tmp_path: Any,
) -> None:
    c = _container(docker_client, busybox_image)
    up = "../" * 12
    c.put_archive(
        "/",
        tar_of(
            [
                E(f"{canary[1:]}", "dir"),
                E(f"{canary[1:]}/sentinel", data=b"CONTAINER"),
                E("abs", "sym", link=f"{canary}/sentinel"),
                E("rel", "sym", link=f"{up}{canary[1:]}/sentinel"),
                E("dirlink", "sym", link=canary),
                E("reldir", "sym", link=f"{up}{canary[1:]}"),
                E("passwd", "sym", link="/etc/passwd"),
            ]
        ),
    )
    # a final link is archived as the link; asked through it (-L, a trailing /, a link in a
    # parent directory), the content comes from the container's rootfs
    for path, target in (("/abs", f"{canary}/sentinel"), ("/rel", f"{up}{canary[1:]}/sentinel")):
        assert _in_container(docker_cli, c.id, path) == f"<link to {target}>"
    for path in ("/dirlink/sentinel", "/reldir/sentinel", "/dirlink/../dirlink/sentinel"):
        assert _in_container(docker_cli, c.id, path) == "CONTAINER", path
    for src in ("abs", "rel"):
        dest = tmp_path / src
        docker_cli.run("cp", "-L", f"{c.id}:/{src}", str(dest))
        assert dest.read_text() == "CONTAINER"
    docker_cli.run("cp", f"{c.id}:/dirlink/", str(tmp_path / "d"))
    assert (tmp_path / "d" / "sentinel").read_text() == "CONTAINER"
    # the container's /etc/passwd, not the host's
    docker_cli.run("cp", "-L", f"{c.id}:/passwd", str(tmp_path / "passwd"))
    with open("/etc/passwd") as f:
        assert (tmp_path / "passwd").read_text() != f.read()
    # HEAD (stat) through the links: the container's path
    api = docker_client.api
    assert api.get_archive(c.id, "/dirlink/sentinel")[1]["size"] == len("CONTAINER")
    assert_canary_intact(canary)


def _build(whaled: WhaledProcess, context: bytes, query: str = "") -> str:
    status, _, data = whaled.request("POST", f"{V}/build?rm=1&forcerm=1{query}", context, TAR)
    return error_of(status, data) or "ok"


def test_build_reads_dockerfile_and_dockerignore_only_inside_the_context(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, canary: str
) -> None:
    """A Dockerfile or .dockerignore that is a link to a host file is followed inside the
    context only (before the fix the host's file was read: its Dockerfile built)."""
    secret = os.path.join(canary, "Dockerfile")
    ignore = os.path.join(canary, "ignore")
    with open(secret, "w") as f:
        f.write("FROM scratch\nLABEL leaked=HOSTSECRET\n")
    with open(ignore, "w") as f:
        f.write("keepme\n")
    up = "../" * 12
    try:
        for link in (secret, f"{up}{secret[1:]}"):
            got = _build(whaled, tar_of([E("Dockerfile", "sym", link=link)]))
            assert "Cannot locate specified Dockerfile" in got, got
        got = _build(whaled, tar_of([E("sub", "sym", link=canary)]), "&dockerfile=sub/Dockerfile")
        assert "Cannot locate specified Dockerfile" in got, got
        ctx = tar_of(
            [
                E("Dockerfile", data=f"FROM {busybox_image}\nCOPY keepme /\n".encode()),
                E(".dockerignore", "sym", link=ignore),
                E("keepme", data=b"kept"),
            ]
        )
        assert _build(whaled, ctx) == "ok"
    finally:
        os.unlink(secret)
        os.unlink(ignore)
    assert_canary_intact(canary)


def test_build_context_escapes_and_links_stay_in_the_context(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, canary: str
) -> None:
    up = "../" * 12
    dockerfile = E("Dockerfile", data=f"FROM {busybox_image}\nCOPY . /ctx/\n".encode())
    assert "is outside of" in _build(whaled, tar_of([dockerfile, E(f"{up}{canary[1:]}/pwned")]))
    assert_canary_intact(canary)
    # links in the context are resolved inside it: what is written through them stays there
    ctx = tar_of(
        [
            dockerfile,
            E("link", "sym", link=canary),
            E("link/pwned", data=b"ctx"),
            E("rel", "sym", link=f"{up}{canary[1:]}"),
            E("rel/pwned2", data=b"ctx"),
            E("hl", "hard", link="Dockerfile"),
        ]
    )
    assert _build(whaled, ctx, "&t=ctx:1") == "ok"
    assert_canary_intact(canary)
    files = docker_client.containers.run(
        "ctx:1", ["find", "/ctx"], remove=True, network_mode="none"
    )
    assert f"/ctx/{canary[1:]}/pwned\n".encode() in files, files
    assert f"/ctx/{canary[1:]}/pwned2\n".encode() in files, files
    assert leftovers(whaled) == []


def test_copy_wildcards_list_directories_inside_the_context(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, canary: str
) -> None:
    """``COPY link/pat*`` with ``link -> /abs``: the wildcard is matched in the context's
    /abs, not the host's (before the fix glob listed the host directory: names only in the
    context were "not found", and what matched told which names the host has)."""
    ctx = tar_of(
        [
            E("Dockerfile", data=f"FROM {busybox_image}\nCOPY link/only-in-*.txt /out/\n".encode()),
            E("link", "sym", link=canary),
            E(f"{canary[1:]}", "dir"),
            E(f"{canary[1:]}/only-in-ctx.txt", data=b"ctx"),
        ]
    )
    assert _build(whaled, ctx, "&t=glob:1") == "ok"
    out = docker_client.containers.run(
        "glob:1", ["cat", "/out/only-in-ctx.txt"], remove=True, network_mode="none"
    )
    assert out == b"ctx"
    probe = tar_of(
        [
            E("Dockerfile", data=f"FROM {busybox_image}\nCOPY link/sentin* /out/\n".encode()),
            E("link", "sym", link=canary),
        ]
    )
    assert "file not found in build context" in _build(whaled, probe)  # the host has it
    assert_canary_intact(canary)


def test_add_of_a_tar_stays_below_its_destination(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, canary: str
) -> None:
    """Members that climb out of the destination are refused (dockerd's wording); long
    (PAX) names and hard links land under it (before the fix: at the image's root)."""
    add = E("Dockerfile", data=f"FROM {busybox_image}\nADD a.tar /dest/\n".encode())
    for evil in (
        [E("../../../escape")],
        [E("x"), E("hl", "hard", link="../../x")],
    ):
        got = _build(whaled, tar_of([add, E("a.tar", data=tar_of(evil))]))
        assert "is outside of" in got, got
    long = "n" * 150
    good = tar_of(
        [E(long, data=b"L"), E("hard", "hard", link=long), E("abs", "hard", link=f"/{long}")]
    )
    assert _build(whaled, tar_of([add, E("a.tar", data=gzip.compress(good))]), "&t=add:1") == "ok"
    out = docker_client.containers.run(
        "add:1", ["sh", "-c", f"cat /dest/{long} /dest/hard /dest/abs; ls /{long} 2>&1; true"],
        remove=True, network_mode="none",
    )  # fmt: skip
    assert out.startswith(b"LLL") and b"No such file" in out, out
    assert leftovers(whaled) == []
    assert_canary_intact(canary)


@contextlib.contextmanager
def small_data_root(whaled: WhaledProcess, size: str) -> Iterator[None]:
    """The daemon restarted on a small tmpfs data root (a disk that a bomb would fill)."""
    whaled.stop()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", whaled.data_root], check=True
    )
    try:
        whaled.start()
        whaled.wait_ready()
        yield
    finally:
        whaled.stop()
        subprocess.run(["umount", "-l", whaled.data_root], check=False)


def _used(path: str) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_decompression_bombs_stop_with_a_clear_error_and_leave_nothing(
    whaled: WhaledProcess, busybox_tar: str, canary: str
) -> None:
    bomb = gzip_bomb(768 << 20)  # 768 MiB of zeros: under 1 MiB compressed
    assert len(bomb) < 1 << 20
    with small_data_root(whaled, "256m"):
        whaled.import_image(busybox_tar, "busybox:latest")
        client = whaled.client()
        c = client.containers.create("busybox:latest", ["true"], network_mode="none")
        base = _used(whaled.data_root)
        expect = "uncompressed content exceeds"
        add = E("Dockerfile", data=b"FROM busybox:latest\nADD bomb.tar.gz /\n")
        doors = [
            ("import", "POST", f"{V}/images/create?fromSrc=-&repo=bomb", bomb),
            # a docker-archive holding the bomb as its (compressed) layer
            ("load layer", "POST", f"{V}/images/load", image_archive(bomb)),
            ("put archive", "PUT", f"{V}/containers/{c.id}/archive?path=/", bomb),
            ("build context", "POST", f"{V}/build?rm=1&forcerm=1", bomb),
            (
                "ADD of a tar",
                "POST",
                f"{V}/build?rm=1&forcerm=1",
                tar_of([add, E("bomb.tar.gz", data=bomb)]),
            ),
        ]
        for door, method, path, body in doors:
            status, _, data = whaled.request(method, path, body, TAR, timeout=120)
            got = error_of(status, data)
            assert expect in got and "a decompression bomb?" in got, (door, got)
            assert status in (200, 400), (door, status)
            assert leftovers(whaled) == [], door
            # what was written is removed again (a few MiB of slack: logs, metadata)
            assert _used(whaled.data_root) - base < 8 << 20, (door, _used(whaled.data_root) - base)
            assert_canary_intact(canary)
        assert client.images.list(name="bomb") == []
        assert whaled.request("GET", "/_ping")[0] == 200


class _Chunks(io.RawIOBase):
    """A file over an iterator of byte chunks (an API stream), for tarfile's stream mode."""

    def __init__(self, chunks: Any) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


DEEP = 2500  # levels: names beyond PATH_MAX, far beyond the recursion limit


@pytest.mark.parametrize("base", ["scratch", "busybox:latest"])
def test_build_context_of_a_deep_tree_is_ignored_copied_and_committed(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, base: str
) -> None:
    """COPY of a context thousands of levels deep, with a .dockerignore: once a 500
    (RecursionError in the walks of the context), then ~40 s (quadratic parents)."""
    leaf = "d/" * DEEP + "f"
    ctx = tar_of(
        [
            E("Dockerfile", data=f"FROM {base}\nCOPY . /ctx/\n".encode()),
            E(".dockerignore", data=b"**/*.log\n!d/keep.log\n"),
            *[E("d/" * i, "dir") for i in range(1, DEEP + 1)],
            E(leaf, data=b"bottom"),
            E("d/" * DEEP + "x.log"),
            E("d/keep.log", data=b"kept"),
        ]
    )
    assert _build(whaled, ctx, "&t=deep:1") == "ok"
    c = docker_client.containers.create("deep:1", ["x"], network_mode="none")
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=_Chunks(docker_client.api.export(c.id)), mode="r|") as tf:
        for member in tf:
            if member.name.endswith((".log", "/f")):
                f = tf.extractfile(member)
                assert f is not None
                found[member.name] = f.read()
    assert found == {f"ctx/{leaf}": b"bottom", "ctx/d/keep.log": b"kept"}  # x.log excluded
    c.remove()
    assert leftovers(whaled) == []


def _many_fifos(count: int) -> bytes:
    """A gzip'ed tar of ``count`` fifo entries, written fast (one header template)."""
    template = tarfile.TarInfo("f0000000")
    template.type = tarfile.FIFOTYPE
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    out: list[bytes] = []
    batch: list[bytes] = []
    for i in range(count):
        template.name = f"f{i:07d}"
        batch.append(template.tobuf(tarfile.USTAR_FORMAT))
        if len(batch) == 4096:
            out.append(z.compress(b"".join(batch)))
            batch.clear()
    out.append(z.compress(b"".join(batch) + b"\0" * 1024))
    out.append(z.flush())
    return b"".join(out)


@pytest.mark.skipif(not LONG, reason="long mode only (make robustness-long): ~1 min")
def test_an_archive_of_more_than_a_million_entries_is_refused(whaled: WhaledProcess) -> None:
    body = _many_fifos((1 << 20) + 1)
    status, _, data = whaled.request("POST", f"{V}/images/load", body, TAR, timeout=600)
    assert "more than 1048576 entries" in error_of(status, data), data
    assert leftovers(whaled) == []


def test_put_archive_hard_links_never_cross_mounts(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, canary: str
) -> None:
    """A hard link made from a read-only bind mount into a writable one on the same host
    file system would let the container write the read-only host file (before the fix it
    did: the link was made between host directories). dockerd's link(2) inside the
    container's mounts fails with EXDEV; whaled refuses it likewise."""
    rw = f"{canary}-rw"
    os.mkdir(rw)
    try:
        c = docker_client.containers.create(
            busybox_image, ["sleep", "1000"], network_mode="none",
            volumes={canary: {"bind": "/ro", "mode": "ro"}, rw: {"bind": "/rw", "mode": "rw"}},
        )  # fmt: skip
        for members in (
            [E("rw/x", "hard", link="ro/sentinel")],
            [E("x", "hard", link="ro/sentinel")],  # into the rootfs
            [E("ro/y", "hard", link="rw/z"), E("rw/z")],
        ):
            status, _, data = whaled.request(
                "PUT", f"{V}/containers/{c.id}/archive?path=/", tar_of(members), TAR
            )
            assert status in (400, 403), (members[0].name, status, data)
        assert os.listdir(rw) in ([], ["z"])
        assert_canary_intact(canary)
        c.remove(force=True)
    finally:
        shutil.rmtree(rw, ignore_errors=True)
