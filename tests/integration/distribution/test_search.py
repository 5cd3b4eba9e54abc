"""``docker search`` against an index served by the test on 127.0.0.1 (Debian's
docker-registry has no search endpoint: whaled's clear error for it is checked too)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.distribution.conftest import RegistryFactory
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

RESULTS = [
    {"name": "box", "description": "a box", "star_count": 12, "is_official": True},
    {"name": "someone/box", "description": "another", "star_count": 2, "is_automated": True},
    {"name": "other/boxes", "description": "", "star_count": 0},
]


@pytest.fixture
def index() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/v2/":
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                return
            query = dict(urllib.parse.parse_qsl(url.query))
            seen.append(query)
            body = json.dumps(
                {"query": query.get("q"), "results": RESULTS[: int(query.get("n", "25"))]}
            ).encode()
            self.send_response(200 if url.path == "/v1/search" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_search(
    index: tuple[str, list[dict[str, str]]], whaled: WhaledProcess, docker_cli: DockerCLI
) -> None:
    host, seen = index
    out = docker_cli.run("search", "--format", "{{.Name}} {{.StarCount}}", f"{host}/box")
    assert out.stdout.split("\n")[:3] == ["box 12", "someone/box 2", "other/boxes 0"]
    assert seen[-1] == {"q": "box", "n": "25"}

    official = docker_cli.run(
        "search", "--filter", "is-official=true", "--format", "{{.Name}}", f"{host}/box"
    )
    assert official.stdout.split() == ["box"]
    starred = whaled.api().search(f"{host}/box", limit=2)
    assert [r["name"] for r in starred] == ["box", "someone/box"]
    assert starred[0] == {
        "star_count": 12,
        "is_official": True,
        "name": "box",
        "is_automated": False,
        "description": "a box",
    }
    assert seen[-1]["n"] == "2"
    status, _, body = whaled.request("GET", f"/v1.45/images/search?term={host}/box&limit=0")
    assert status == 400 and b"outside the range" in body
    bad = docker_cli.run("search", "--filter", "colour=red", f"{host}/box", check=False)
    assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr


def test_search_on_a_registry_without_an_index(
    registry_factory: RegistryFactory, docker_cli: DockerCLI
) -> None:
    reg = registry_factory()
    out = docker_cli.run("search", f"{reg.host}/box", check=False)
    assert out.returncode != 0 and "Unexpected status code 404" in out.stderr
