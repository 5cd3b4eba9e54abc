"""Test images built locally, written as docker-archive tars the way ``docker save`` (20.10)
does: ``manifest.json``, ``repositories``, ``<config digest>.json`` and one
``<v1 id>/{VERSION,json,layer.tar}`` directory per layer. No pulls: the base layer is the
busybox root filesystem from Debian's ``busybox-static``; the load-test image adds layers of
random (incompressible) data."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from tests.support.busybox import FIXED_MTIME, build_rootfs_tar

CREATED = "2000-01-01T00:00:00Z"
ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Archive:
    path: str
    size: int  # bytes of the archive
    layers: tuple[str, ...]  # paths of the layer tars it was built from
    repo_tag: str


def go_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def sha256_path(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class _RandomReader(io.RawIOBase):
    """``size`` bytes of os.urandom, read in chunks (for tarfile.addfile)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self.left, CHUNK)
        if n <= 0:
            return 0
        buf[:n] = os.urandom(n)
        self.left -= n
        return n


def write_random_layer(dest: str, index: int, size: int, file_size: int = 8 << 20) -> str:
    """A layer tar holding ``size`` bytes of random data in files of ``file_size`` bytes."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo(f"data{index}")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
        tar.addfile(d)
        left, k = size, 0
        while left > 0:
            n = min(file_size, left)
            info = tarfile.TarInfo(f"data{index}/blob{k:04d}.bin")
            info.size, info.mode, info.mtime = n, 0o644, FIXED_MTIME
            tar.addfile(info, io.BufferedReader(_RandomReader(n), CHUNK))
            left -= n
            k += 1
    return dest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, FIXED_MTIME
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
    tar.addfile(info)


def write_docker_archive(dest: str, layers: Sequence[str], repo_tag: str) -> Archive:
    """Write a ``docker save``-style archive of an image made of ``layers`` (uncompressed
    layer tars, base first), tagged ``repo_tag``."""
    diff_ids = [f"sha256:{sha256_path(p)}" for p in layers]
    config = {
        "architecture": go_arch(),
        "os": "linux",
        "created": CREATED,
        "config": {"Env": [ENV_PATH], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": CREATED, "created_by": f"whaled bench layer {i}"}
            for i in range(len(layers))
        ],
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    # v1 ids: chain of the diff ids (what docker save 20.10 derives them from, near enough).
    v1_ids: list[str] = []
    parent = ""
    for d in diff_ids:
        v1 = hashlib.sha256(f"{parent} {d}".encode()).hexdigest()
        v1_ids.append(v1)
        parent = v1
    repo, _, tag = repo_tag.rpartition(":")
    manifest = [
        {
            "Config": config_name,
            "RepoTags": [repo_tag],
            "Layers": [f"{v}/layer.tar" for v in v1_ids],
        }
    ]
    tmp = f"{dest}.tmp-{os.getpid()}"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for i, (v1, layer) in enumerate(zip(v1_ids, layers, strict=True)):
            _add_dir(tar, v1)
            _add_bytes(tar, f"{v1}/VERSION", b"1.0")
            legacy: dict[str, object] = {"id": v1, "created": CREATED, "os": "linux"}
            if i:
                legacy["parent"] = v1_ids[i - 1]
            _add_bytes(tar, f"{v1}/json", json.dumps(legacy).encode())
            info = tar.gettarinfo(layer, arcname=f"{v1}/layer.tar")
            info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
            with open(layer, "rb") as f:
                tar.addfile(info, f)
        _add_bytes(tar, config_name, config_bytes)
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        _add_bytes(tar, "repositories", json.dumps({repo: {tag: v1_ids[-1]}}).encode())
    os.replace(tmp, dest)
    return Archive(path=dest, size=os.path.getsize(dest), layers=tuple(layers), repo_tag=repo_tag)


def busybox_archive(workdir: str, repo_tag: str = "busybox:latest") -> Archive:
    """The one-layer busybox image (for the container figures)."""
    layer = build_rootfs_tar(os.path.join(workdir, "busybox-rootfs.tar"))
    return write_docker_archive(os.path.join(workdir, "busybox-image.tar"), [layer], repo_tag)


def load_test_archive(
    workdir: str,
    total_mb: int = 200,
    random_layers: int = 3,
    repo_tag: str = "whaled-bench/load:latest",
) -> Archive:
    """A ~``total_mb`` MB multi-layer image: a busybox base (with a marker file, so that it
    shares no layer with ``busybox:latest``) and ``random_layers`` layers of random data."""
    base = build_rootfs_tar(
        os.path.join(workdir, "load-base.tar"),
        extra_files={"etc/whaled-bench-load": b"load test image\n"},
    )
    per_layer = max(1, (total_mb * 1_000_000 - os.path.getsize(base)) // random_layers)
    layers = [base]
    for i in range(random_layers):
        layers.append(write_random_layer(os.path.join(workdir, f"load-rand{i}.tar"), i, per_layer))
    return write_docker_archive(os.path.join(workdir, "load-image.tar"), layers, repo_tag)
