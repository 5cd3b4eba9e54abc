"""Blob redirects (registries send blobs from storage elsewhere): followed, and the registry's
Authorization is not sent to another origin. Stub servers on 127.0.0.1 play the registry, its
token server and a storage host."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from whaled.distribution.client import RegistryClient
from whaled.distribution.endpoints import Endpoint
from whaled.distribution.manifest import OCI_LAYER, Descriptor

DATA = os.urandom(50_000)
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
SAME_ORIGIN = "sha256:" + hashlib.sha256(b"same").hexdigest()


class Seen:
    def __init__(self) -> None:
        self.storage_auth: list[str | None] = []
        self.same_origin_auth: list[str | None] = []


def _server(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def stubs() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    ports: dict[str, int] = {}

    class Base(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def send(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k.replace("_", "-"), v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Storage(Base):
        def do_GET(self) -> None:
            seen.storage_auth.append(self.headers.get("Authorization"))
            self.send(200, DATA)

    class Registry(Base):
        def do_GET(self) -> None:
            if self.path.startswith("/token"):
                return self.send(200, b'{"token": "T"}')
            if self.headers.get("Authorization") != "Bearer T":
                realm = f"http://127.0.0.1:{ports['registry']}/token"
                return self.send(401, WWW_Authenticate=f'Bearer realm="{realm}",service="s"')
            if self.path == f"/v2/t/x/blobs/{DIGEST}":
                return self.send(307, Location=f"http://127.0.0.1:{ports['storage']}/b?sig=1")
            if self.path == f"/v2/t/x/blobs/{SAME_ORIGIN}":
                return self.send(307, Location="/same/place")
            if self.path == "/same/place":
                seen.same_origin_auth.append(self.headers.get("Authorization"))
                return self.send(200, b"same")
            self.send(404)

    storage, registry = _server(Storage), _server(Registry)
    ports["storage"] = int(storage.server_address[1])
    ports["registry"] = int(registry.server_address[1])
    try:
        yield f"127.0.0.1:{ports['registry']}", seen
    finally:
        for s in (storage, registry):
            s.shutdown()
            s.server_close()


def test_cross_origin_redirect_drops_authorization(stubs: tuple[str, Seen]) -> None:
    host, seen = stubs
    client = RegistryClient(host, endpoints=[Endpoint(scheme="http", host=host, verify=False)])
    with client:
        desc = Descriptor(media_type=OCI_LAYER, digest=DIGEST, size=len(DATA))
        with client.open_blob("t/x", desc) as blob:
            assert blob.read_all() == DATA
            assert blob.verified
        same = Descriptor(media_type=OCI_LAYER, digest=SAME_ORIGIN, size=4)
        assert client.open_blob("t/x", same).read_all() == b"same"
    assert seen.storage_auth == [None]
    assert seen.same_origin_auth == ["Bearer T"]
