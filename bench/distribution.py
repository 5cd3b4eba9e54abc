"""The ``distribution`` group: ``docker push`` and ``docker pull`` of the ~200 MB, 4-layer
load-test image (random data) to and from Debian's ``docker-registry``, started by the bench
on a random 127.0.0.1 port with its own storage for every sample (a push finds nothing
there). The floor fetches the same blobs with parallel HTTP GETs, each piped through
``tar -xz`` into a directory of its own. MB/s are of the image's layer tars (uncompressed;
random data does not compress), so the three columns compare the same bytes."""

from __future__ import annotations

import concurrent.futures
import gzip
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.client import Client
from bench.figures import Ctx, FigureSpec, Group, Params, Result, Samples
from bench.images import Archive
from tests.support.registry import RegistryProcess, registry_available

REPO = "wb/load"


def _registry(ctx: Ctx) -> RegistryProcess:
    if not registry_available():
        raise RuntimeError("docker-registry is not installed (Debian package docker-registry)")
    root = Path(tempfile.mkdtemp(prefix="registry-", dir=ctx.workdir))
    return RegistryProcess(root=root).start()


def _stop(reg: RegistryProcess) -> None:
    reg.stop()
    shutil.rmtree(reg.root, ignore_errors=True)


class _PeakRSS:
    """The daemon's RSS sampled every 20 ms on a thread while a pull runs."""

    def __init__(self, sample: Callable[[], float]) -> None:
        self._sample = sample
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.02)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Distribution(Group):
    name = "distribution"
    help = (
        "docker push / docker pull of the ~200 MB 4-layer load-test image to and from a local "
        "docker-registry (a fresh one per push); daemon RSS growth during the pull"
    )
    has_floor = True
    floor_note = (
        "floor: the pushed blobs fetched with one HTTP GET per layer in parallel, each piped "
        "through `tar -xz` into its own directory"
    )

    def figures(self, p: Params) -> list[FigureSpec]:
        return [
            FigureSpec("push", f"docker push (~{p.load_mb} MB, 4 layers)", "MB/s", "higher"),
            FigureSpec("pull", f"docker pull (~{p.load_mb} MB, 4 layers)", "MB/s", "higher"),
            FigureSpec("pull-rss", "daemon RSS growth during the pull", "MiB", "lower"),
        ]

    def on_engine(self, ctx: Ctx, engine: str) -> Result:
        client = ctx.clients[engine]
        client.require("POST", "/images/load")
        archive = ctx.load_archive()
        eng = ctx.engines[engine]
        push: Samples = []
        pull: Samples = []
        rss: Samples = []
        for _ in range(max(2, ctx.params.load_samples // 3)):
            reg = _registry(ctx)
            ref = f"{reg.host}/{REPO}:1"
            try:
                _load(client, archive)
                client.cli("tag", archive.repo_tag, ref)
                t0 = time.perf_counter()
                client.cli("push", ref)
                push.append(archive.size / 1e6 / (time.perf_counter() - t0))
                client.cli("rmi", "-f", ref, archive.repo_tag)
                before = eng.daemon_rss_mib()
                with _PeakRSS(eng.daemon_rss_mib) as peak:
                    t0 = time.perf_counter()
                    client.cli("pull", ref)
                    pull.append(archive.size / 1e6 / (time.perf_counter() - t0))
                rss.append(max(0.0, peak.peak - before))
                client.cli("rmi", "-f", ref)
            finally:
                _stop(reg)
        return {"push": push, "pull": pull, "pull-rss": rss}

    def on_floor(self, ctx: Ctx) -> Result:
        archive = ctx.load_archive()
        reg = _registry(ctx)
        try:
            digests = _upload_layers(reg, archive)
            pull: Samples = []
            for i in range(max(2, ctx.params.load_samples // 3)):
                dest = os.path.join(ctx.workdir, f"floor-pull-{i}")
                t0 = time.perf_counter()
                _fetch_and_untar(reg, digests, dest)
                pull.append(archive.size / 1e6 / (time.perf_counter() - t0))
                shutil.rmtree(dest, ignore_errors=True)
            return {"pull": pull}
        finally:
            _stop(reg)


def _load(client: Client, archive: Archive) -> None:
    client.upload("POST", "/images/load?quiet=1", archive.path)


def _upload_layers(reg: RegistryProcess, archive: Archive) -> list[str]:
    """The archive's layers gzip-compressed (level 1: random data does not compress) and
    uploaded monolithically; their digests."""
    up = reg.uploader()
    digests = []
    for layer in archive.layers:
        data = gzip.compress(Path(layer).read_bytes(), compresslevel=1, mtime=0)
        digests.append(up.push_blob(REPO, data))
    return digests


def _fetch_and_untar(reg: RegistryProcess, digests: list[str], dest: str) -> None:
    def one(i: int, digest: str) -> None:
        target = os.path.join(dest, str(i))
        os.makedirs(target)
        url = f"{reg.base_url}/v2/{REPO}/blobs/{urllib.parse.quote(digest)}"
        with urllib.request.urlopen(url, timeout=120) as resp:
            tar = subprocess.Popen(["tar", "-xzf", "-", "-C", target], stdin=subprocess.PIPE)
            assert tar.stdin is not None
            try:
                while chunk := resp.read(1 << 20):
                    tar.stdin.write(chunk)
            finally:
                tar.stdin.close()
                if tar.wait() != 0:
                    raise RuntimeError(f"tar -xz of {digest} failed")

    with concurrent.futures.ThreadPoolExecutor(len(digests)) as pool:
        for f in [pool.submit(one, i, d) for i, d in enumerate(digests)]:
            f.result()
