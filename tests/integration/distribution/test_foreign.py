"""Foreign (non-distributable) layers: pulled from the URLs their manifest names (a server
the test runs on 127.0.0.1), pushed as a reference to those URLs ("Skipped foreign
layer"), and uploaded like any layer to a registry that ``allow-nondistributable-artifacts``
names."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.dockercli import DockerCLI
from tests.support.registry import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    RegistryProcess,
    layer_tar,
    registry_available,
    sha256,
)
from tests.support.whaled_proc import WhaledProcess

FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


class _BlobServer:
    """Serves one blob at ``/layer.tar.gz`` on 127.0.0.1 and counts the requests."""

    def __init__(self, blob: bytes) -> None:
        server = self
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                if self.path != "/layer.tar.gz":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/layer.tar.gz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    reg = RegistryProcess(root=tmp_path / "registry", url_allow=[r"^http://127\.0\.0\.1:"])
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


def _head(reg: RegistryProcess, path: str) -> int:
    conn = http.client.HTTPConnection(reg.host, timeout=30)
    try:
        conn.request("HEAD", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _manifest(reg: RegistryProcess, repo: str, tag: str) -> dict[str, object]:
    conn = http.client.HTTPConnection(reg.host, timeout=30)
    try:
        conn.request("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": DOCKER_MANIFEST})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        doc: dict[str, object] = json.loads(body)
        return doc
    finally:
        conn.close()


def test_foreign_layers_pull_from_their_urls_and_push_as_references(
    registry: RegistryProcess, busybox_tar: str, tmp_path: Path
) -> None:
    up = registry.uploader()
    base_tar = Path(busybox_tar).read_bytes()
    base = gzip.compress(base_tar, mtime=0)
    foreign_tar = layer_tar({"etc/foreign": b"from the foreign server\n"})
    foreign = gzip.compress(foreign_tar, mtime=0)
    server = _BlobServer(foreign)
    try:
        base_digest = up.push_blob("t/win", base)  # the foreign blob is not in the registry
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(base_tar), sha256(foreign_tar)]},
        }).encode()  # fmt: skip
        config_digest = up.push_blob("t/win", config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [
                {"mediaType": DOCKER_LAYER_GZIP, "digest": base_digest, "size": len(base)},
                {"mediaType": FOREIGN, "digest": sha256(foreign), "size": len(foreign),
                 "urls": [server.url]},
            ],
        }).encode()  # fmt: skip
        up.put_manifest("t/win", "1", manifest, DOCKER_MANIFEST)

        w = WhaledProcess()
        try:
            w.start()
            w.wait_ready()
            with DockerCLI(w.sock) as cli:
                ref = f"{registry.host}/t/win:1"
                out = cli.run("run", "--rm", "--network", "none", ref, "cat", "/etc/foreign")
                assert out.stdout == "from the foreign server\n"
                assert server.hits == 1

                # pushed elsewhere: the foreign layer is named with its URLs, not uploaded
                cli.run("tag", ref, f"{registry.host}/t/copy:1")
                pushed = cli.run("push", f"{registry.host}/t/copy:1").stdout
                assert "Skipped foreign layer" in pushed, pushed
                layers = _manifest(registry, "t/copy", "1")["layers"]
                assert isinstance(layers, list)
                assert layers[1] == {
                    "mediaType": FOREIGN, "digest": sha256(foreign), "size": len(foreign),
                    "urls": [server.url],
                }  # fmt: skip
                assert _head(registry, f"/v2/t/copy/blobs/{sha256(foreign)}") == 404

            # a registry allow-nondistributable-artifacts names gets it uploaded
            w.write_config({"allow-nondistributable-artifacts": [registry.host]})
            w.restart()
            with DockerCLI(w.sock) as cli:
                cli.run("tag", f"{registry.host}/t/win:1", f"{registry.host}/t/full:1")
                pushed = cli.run("push", f"{registry.host}/t/full:1").stdout
                assert "Skipped foreign layer" not in pushed and "Pushed" in pushed, pushed
                layers = _manifest(registry, "t/full", "1")["layers"]
                assert isinstance(layers, list) and "urls" not in layers[1]
                assert _head(registry, f"/v2/t/full/blobs/{layers[1]['digest']}") == 200
        finally:
            w.cleanup()
    finally:
        server.close()
