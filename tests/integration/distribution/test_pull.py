"""``docker pull`` / ``docker run`` of a registry image on a real whaled, from Debian's
``docker-registry`` on a random 127.0.0.1 port (plain HTTP: loopback is insecure by default,
as in dockerd). Images are pushed to the registry by the test through the registry API."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import pty
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.dockercli import DockerCLI
from tests.support.registry import (
    PushedImage,
    RegistryProcess,
    flipped_byte,
    layer_tar,
    push_image,
    push_index,
    registry_available,
)
from tests.support.whaled_proc import WhaledProcess

FAST_RETRIES = {"_WHALED_PULL_BACKOFF": "0.05"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    reg = RegistryProcess(root=tmp_path_factory.mktemp("pull-registry")).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def busybox_pushed(registry: RegistryProcess, busybox_tar: str) -> PushedImage:
    """busybox as a two-layer image: the rootfs, then a small file."""
    rootfs = Path(busybox_tar).read_bytes()
    extra = layer_tar({"etc/pulled": b"from the registry\n"})
    return push_image(registry.uploader(), "t/busybox", "1", tars=[rootfs, extra], cmd=["/bin/sh"])


@pytest.fixture
def daemon(request: pytest.FixtureRequest) -> Iterator[WhaledProcess]:
    marker = request.node.get_closest_marker("whaled_config")
    config = dict(marker.kwargs) if marker is not None else {}
    w = WhaledProcess(config, env={**os.environ, **FAST_RETRIES})
    try:
        w.start()
        w.wait_ready(20.0)
        yield w
    finally:
        w.cleanup()


@pytest.fixture
def cli(daemon: WhaledProcess) -> Iterator[DockerCLI]:
    with DockerCLI(daemon.sock) as c:
        yield c


def _leftovers(w: WhaledProcess) -> list[str]:
    """Layer dirs and temp dirs under the daemon's overlay2 and image tmp dirs."""
    found: list[str] = []
    overlay = Path(w.data_root, "overlay2")
    if overlay.is_dir():
        found += [p.name for p in overlay.iterdir() if p.name != "l"]
    tmp = Path(w.data_root, "image", "tmp")
    if tmp.is_dir():
        found += [p.name for p in tmp.iterdir()]
    return found


def test_run_pulls_a_missing_image_and_records_its_digest(
    registry: RegistryProcess, busybox_pushed: PushedImage, cli: DockerCLI
) -> None:
    ref = f"{registry.host}/t/busybox:1"
    out = cli.run("run", "--rm", "--network", "none", ref, "cat", "/etc/pulled")
    assert out.returncode == 0, out
    assert "from the registry" in out.stdout
    assert f"Unable to find image '{ref}' locally" in out.stderr
    assert "Pull complete" in out.stderr
    assert f"Digest: {busybox_pushed.manifest_digest}" in out.stderr
    assert f"Status: Downloaded newer image for {ref}" in out.stderr

    info = json.loads(cli.run("image", "inspect", ref).stdout)[0]
    assert info["Id"] == busybox_pushed.config_digest
    assert info["RepoDigests"] == [f"{registry.host}/t/busybox@{busybox_pushed.manifest_digest}"]
    assert info["RootFS"]["Layers"] == list(busybox_pushed.diff_ids)

    again = cli.run("pull", ref)
    assert again.returncode == 0, again
    assert "Status: Image is up to date for" in again.stdout
    assert "Pull complete" not in again.stdout


def test_pull_by_digest_after_rmi(
    registry: RegistryProcess, busybox_pushed: PushedImage, cli: DockerCLI
) -> None:
    by_digest = f"{registry.host}/t/busybox@{busybox_pushed.manifest_digest}"
    out = cli.run("pull", by_digest)
    assert out.returncode == 0, out
    assert f"{busybox_pushed.manifest_digest}: Pulling from t/busybox" in out.stdout
    rmi = cli.run("rmi", by_digest)
    assert rmi.returncode == 0, rmi
    assert _leftovers_after_rmi(cli)
    out = cli.run("pull", by_digest)
    assert out.returncode == 0, out
    run = cli.run("run", "--rm", "--network", "none", by_digest, "echo", "hi")
    assert run.returncode == 0 and run.stdout.strip() == "hi", run


def _leftovers_after_rmi(cli: DockerCLI) -> bool:
    return cli.run("images", "-q").stdout.strip() == ""


def test_progress_messages_and_shared_layers(
    registry: RegistryProcess, busybox_pushed: PushedImage, daemon: WhaledProcess
) -> None:
    api = daemon.api()
    first = list(api.pull(f"{registry.host}/t/busybox", tag="1", stream=True, decode=True))
    statuses = [m.get("status", "") for m in first]
    assert statuses[0] == "Pulling from t/busybox" and first[0]["id"] == "1"
    for expected in (
        "Pulling fs layer",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        "Pull complete",
    ):
        assert expected in statuses, (expected, statuses)
    layer_ids = {d[len("sha256:") :][:12] for d in busybox_pushed.layer_digests}
    assert {m["id"] for m in first if m.get("status") == "Pull complete"} == layer_ids
    downloading = [m for m in first if m.get("status") == "Downloading"]
    assert all(m["progressDetail"]["total"] > 0 for m in downloading)
    assert statuses[-2:] == [
        f"Digest: {busybox_pushed.manifest_digest}",
        f"Status: Downloaded newer image for {registry.host}/t/busybox:1",
    ]

    # a second image on the same base: the base layer "Already exists"
    rootfs_digest = busybox_pushed.layer_digests[0]
    derived = push_image(
        registry.uploader(),
        "t/derived",
        "2",
        tars=[Path(_busybox_tar_of(daemon)).read_bytes(), layer_tar({"etc/other": b"x\n"})],
    )
    assert derived.layer_digests[0] == rootfs_digest
    second = list(api.pull(f"{registry.host}/t/derived", tag="2", stream=True, decode=True))
    exists = [m["id"] for m in second if m.get("status") == "Already exists"]
    assert exists == [rootfs_digest[len("sha256:") :][:12]]
    assert [m["id"] for m in second if m.get("status") == "Pull complete"] == [
        derived.layer_digests[1][len("sha256:") :][:12]
    ]
    events = api.events(since=0, until=int(time.time()) + 1, decode=True, filters={"type": "image"})
    pulls = [e["Actor"]["ID"] for e in events if e["Action"] == "pull"]
    assert pulls == [f"{registry.host}/t/busybox:1", f"{registry.host}/t/derived:2"]


_BUSYBOX_TAR: list[str] = []


@pytest.fixture(autouse=True)
def _remember_busybox_tar(busybox_tar: str) -> None:
    _BUSYBOX_TAR[:] = [busybox_tar]


def _busybox_tar_of(_: WhaledProcess) -> str:
    return _BUSYBOX_TAR[0]


def test_index_resolves_to_this_host_and_other_platforms_are_refused(
    registry: RegistryProcess, busybox_pushed: PushedImage, cli: DockerCLI
) -> None:
    up = registry.uploader()
    amd64 = push_image(up, "t/multi", None, files=({"arch": b"amd64\n"},))
    arm64 = push_image(
        up, "t/multi", None, files=({"arch": b"arm64\n"},), architecture="arm64", variant="v8"
    )
    digest, _ = push_index(
        up,
        "t/multi",
        "1",
        [
            (arm64, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
            (amd64, {"os": "linux", "architecture": "amd64"}),
        ],
    )
    ref = f"{registry.host}/t/multi:1"
    out = cli.run("pull", ref)
    assert out.returncode == 0, out
    info = json.loads(cli.run("image", "inspect", ref).stdout)[0]
    assert info["Id"] == amd64.config_digest
    assert info["Architecture"] == "amd64"
    assert info["RepoDigests"] == [f"{registry.host}/t/multi@{digest}"]

    refused = cli.run("pull", "--platform", "linux/s390x", ref, check=False)
    assert refused.returncode != 0
    assert "no matching manifest for linux/s390x in the manifest list entries" in refused.stderr


def test_corrupted_blob_fails_and_leaves_nothing(
    registry: RegistryProcess, daemon: WhaledProcess, cli: DockerCLI
) -> None:
    img = push_image(
        registry.uploader(),
        "t/corrupt",
        "1",
        files=({"a": b"a" * 50_000}, {"b": os.urandom(100_000)}),
    )
    before = _leftovers(daemon)
    with flipped_byte(registry.blob_data_path(img.layer_digests[1]), 100):
        out = cli.run("pull", f"{registry.host}/t/corrupt:1", check=False)
    assert out.returncode != 0
    assert f"filesystem layer verification failed for digest {img.layer_digests[1]}" in (
        out.stderr + out.stdout
    )
    assert cli.run("images", "-q").stdout.strip() == ""
    assert _leftovers(daemon) == before


class _CuttingProxy:
    """An HTTP proxy in front of the registry that breaks off the first ``breaks`` GETs
    of one blob halfway (headers promise the whole body), and counts them."""

    def __init__(self, upstream: str, blob: str, breaks: int) -> None:
        self.upstream = upstream
        self.blob = blob
        self.breaks = breaks
        self.blob_gets: list[str] = []  # the Range header of each (or "")
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                cut = False
                if self.command == "GET" and self.path.endswith("/blobs/" + proxy.blob):
                    proxy.blob_gets.append(self.headers.get("Range", ""))
                    cut = len(proxy.blob_gets) <= proxy.breaks
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if cut:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.whaled_config(**{"max-download-attempts": 3})
def test_broken_transfers_are_resumed_then_given_up(
    registry: RegistryProcess, daemon: WhaledProcess, cli: DockerCLI
) -> None:
    img = push_image(registry.uploader(), "t/flaky", "1", files=({"big": os.urandom(300_000)},))
    blob = img.layer_digests[0]
    proxy = _CuttingProxy(registry.host, blob, breaks=2)
    try:
        out = cli.run("pull", f"{proxy.host}/t/flaky:1")
        assert out.returncode == 0, out
        assert len(proxy.blob_gets) == 3
        assert proxy.blob_gets[0] == "" and proxy.blob_gets[1].startswith("bytes=")
        assert "Retrying in" in out.stdout
    finally:
        proxy.close()

    img2 = push_image(registry.uploader(), "t/flaky2", "1", files=({"big": os.urandom(300_000)},))
    proxy = _CuttingProxy(registry.host, img2.layer_digests[0], breaks=100)
    try:
        out = cli.run("pull", f"{proxy.host}/t/flaky2:1", check=False)
        assert out.returncode != 0
        assert len(proxy.blob_gets) == 3  # max-download-attempts
        assert "t/flaky2" not in cli.run("images").stdout
    finally:
        proxy.close()


def test_unknown_repository_and_tag(registry: RegistryProcess, cli: DockerCLI) -> None:
    out = cli.run("pull", f"{registry.host}/t/nothing:1", check=False)
    assert out.returncode != 0
    assert f"{registry.host}/t/nothing" in out.stderr
    assert "not found" in out.stderr or "does not exist" in out.stderr, out.stderr


def test_mirror_serves_docker_hub_names_and_a_stopped_one_fails_fast(
    tmp_path: Path, busybox_tar: str
) -> None:
    mirror = RegistryProcess(root=tmp_path / "mirror").start()
    w = WhaledProcess({"registry-mirrors": [f"http://{mirror.host}"]})
    try:
        img = push_image(
            mirror.uploader(), "library/busybox", "latest", tars=[Path(busybox_tar).read_bytes()]
        )
        w.start()
        w.wait_ready(20.0)
        with DockerCLI(w.sock) as cli:
            out = cli.run("pull", "busybox")
            assert "latest: Pulling from library/busybox" in out.stdout
            assert "Status: Downloaded newer image for busybox:latest" in out.stdout
            info = json.loads(cli.run("image", "inspect", "busybox").stdout)[0]
            assert info["Id"] == img.config_digest
            assert info["RepoDigests"] == [f"busybox@{img.manifest_digest}"]

            mirror.stop()
            start = time.monotonic()
            failed = cli.run("pull", "busybox:other", check=False)
            assert failed.returncode != 0
            assert time.monotonic() - start < 15
            # the upstream (a closed loopback port standing in for Docker Hub) is tried last
            assert "connection refused" in failed.stderr, failed.stderr
    finally:
        w.cleanup()
        mirror.stop()


def test_distribution_inspect(
    registry: RegistryProcess, busybox_pushed: PushedImage, daemon: WhaledProcess
) -> None:
    api = daemon.api()
    found = api.inspect_distribution(f"{registry.host}/t/busybox:1")
    assert found["Descriptor"]["digest"] == busybox_pushed.manifest_digest
    assert found["Descriptor"]["size"] == len(busybox_pushed.manifest)
    assert found["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
    status, _, body = daemon.request("GET", f"/v1.45/distribution/{registry.host}/t/none:1/json")
    assert status == 404, body


def test_two_concurrent_pulls_share_one_download(
    registry: RegistryProcess, busybox_pushed: PushedImage, daemon: WhaledProcess
) -> None:
    def gets() -> int:
        text = registry.log_text()
        # the access-log line of each blob GET (the registry logs each request twice)
        return sum(
            text.count(f'"GET /v2/t/busybox/blobs/{d} ') for d in busybox_pushed.layer_digests
        )

    before = gets()
    results: list[Any] = []

    def pull() -> None:
        api = daemon.api()
        results.append(
            list(api.pull(f"{registry.host}/t/busybox", tag="1", stream=True, decode=True))
        )

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2
    assert all(not any("error" in m for m in r) for r in results), results
    assert gets() - before == len(busybox_pushed.layer_digests)  # each layer fetched once
    ids = {daemon.api().inspect_image(f"{registry.host}/t/busybox:1")["Id"]}
    assert ids == {busybox_pushed.config_digest}


def test_the_cli_draws_its_progress_bars_on_a_terminal(
    registry: RegistryProcess, busybox_pushed: PushedImage, cli: DockerCLI
) -> None:
    """Under a pseudo-terminal the docker CLI redraws one line per layer (cursor moves) with
    a progress bar while it downloads and extracts: the messages have the shape it needs."""
    primary, secondary = pty.openpty()
    # a terminal 200 columns wide: the CLI draws bars only when it is over 110
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    try:
        proc = subprocess.Popen(
            cli.argv("pull", f"{registry.host}/t/busybox:1"),
            stdin=secondary, stdout=secondary, stderr=secondary, env=cli.env(),
            close_fds=True,
        )  # fmt: skip
        os.close(secondary)
        secondary = -1
        out = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(60) == 0, out
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    text = out.decode(errors="replace")
    assert "\x1b[" in text, text  # the CLI moves the cursor to redraw layer lines
    assert "Downloading [" in text and "=>" in text, text  # a bar was drawn
    assert text.count("Pull complete") == len(busybox_pushed.layer_digests), text
    assert f"Digest: {busybox_pushed.manifest_digest}" in text
