"""Streaming endpoints answer as dockerd does (whaled issue 12, items 11 and 12): the status
is decided before the first byte and goes out at once; later errors are in the stream."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import docker.errors
import pytest

from tests.support.dockercli import DockerCLI
from tests.support.registry import free_port
from tests.support.whaled_proc import WhaledProcess

API = "/v1.45"


def json_lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


# ------------------------------------------------------------------ logs (item 11)


def test_logs_follow_sends_its_headers_at_once(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = docker_client.containers.run(busybox_image, ["sleep", "30"], detach=True)
    try:
        conn = whaled.connection(timeout=5)
        try:
            start = time.monotonic()
            conn.request("GET", f"{API}/containers/{c.id}/logs?follow=1&stdout=1&stderr=1")
            response = conn.getresponse()
            elapsed = time.monotonic() - start
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
            assert elapsed < 0.5, f"headers took {elapsed:.2f} s"
        finally:
            conn.close()  # the client goes away mid-stream
        start = time.monotonic()
        stream = c.logs(stream=True, follow=True)
        assert time.monotonic() - start < 0.5
        stream.close()
        time.sleep(0.5)
    finally:
        c.remove(force=True)
    text = whaled.log_text()
    assert "Traceback" not in text and "level=error" not in text


def test_logs_follow_of_an_auto_removed_container_gets_its_output(
    whaled: WhaledProcess, docker_api: Any, busybox_image: str
) -> None:
    c = docker_api.create_container(
        busybox_image,
        ["sh", "-c", "sleep 0.5; echo late"],
        host_config=docker_api.create_host_config(auto_remove=True),
    )
    docker_api.start(c["Id"])
    out = b"".join(docker_api.logs(c["Id"], stream=True, follow=True))
    assert out == b"late\n"


# ------------------------------------------------------------------ load (item 12)


def _saved_busybox(whaled: WhaledProcess, name: str) -> bytes:
    status, _, archive = whaled.request("GET", f"{API}/images/{name}/get")
    assert status == 200
    return archive


def test_load_of_a_truncated_tar_is_200_with_the_error_in_the_stream(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    archive = _saved_busybox(whaled, busybox_image)
    docker_client.images.remove(busybox_image)
    truncated = archive[: len(archive) // 2]
    status, headers, body = whaled.request("POST", f"{API}/images/load?quiet=1", truncated)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    last = json_lines(body)[-1]
    assert last["error"] and last["errorDetail"] == {"message": last["error"]}
    with pytest.raises(docker.errors.ImageLoadError):
        docker_client.images.load(truncated)
    assert docker_client.images.list() == []


def test_cli_load_of_a_truncated_tar_fails_with_the_daemon_error(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Any
) -> None:
    path = tmp_path / "half.tar"
    archive = _saved_busybox(whaled, busybox_image)
    path.write_bytes(archive[: len(archive) // 2])
    done = docker_cli.run("load", "-i", str(path), check=False)
    assert done.returncode == 1
    assert done.stderr.strip() and "Error response from daemon" not in done.stderr


# ------------------------------------------------------------------ push (item 12)


def test_push_names_the_tag_from_the_query(whaled: WhaledProcess, busybox_image: str) -> None:
    status, _, body = whaled.request("POST", f"{API}/images/busybox/push?tag=nope")
    assert status == 200, body
    messages = json_lines(body)
    assert messages[0] == {"status": "The push refers to repository [docker.io/library/busybox]"}
    assert messages[-1]["error"] == "tag does not exist: busybox:nope"
    assert messages[-1]["errorDetail"] == {"message": "tag does not exist: busybox:nope"}


def test_push_of_a_repository_without_local_tags(whaled: WhaledProcess) -> None:
    status, _, body = whaled.request("POST", f"{API}/images/someone/nothing/push?tag=1")
    assert status == 200, body
    messages = json_lines(body)
    assert messages[0] == {"status": "The push refers to repository [docker.io/someone/nothing]"}
    assert messages[-1]["error"] == "An image does not exist locally with the tag: someone/nothing"
    status, _, body = whaled.request("POST", f"{API}/images/UPPER/push")
    assert status == 400, body


def test_push_to_an_unreachable_registry_is_an_error_in_the_stream(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    # a closed loopback port (never docker.io, never a name that needs DNS)
    name = f"127.0.0.1:{free_port()}/t/box"
    docker_cli.run("tag", busybox_image, f"{name}:1")
    status, _, body = whaled.request("POST", f"{API}/images/{name}/push?tag=1")
    assert status == 200, body
    messages = json_lines(body)
    assert messages[0] == {"status": f"The push refers to repository [{name}]"}
    assert "connection refused" in messages[-1]["error"], messages
    done = docker_cli.run("push", "busybox:nope", check=False)
    assert done.returncode == 1
    assert "The push refers to repository [docker.io/library/busybox]" in done.stdout
    assert done.stderr.strip() == "tag does not exist: busybox:nope"


# ------------------------------------------------------------------ errors after the first byte


def _serve_failing_stream() -> bytes:
    """A toy app with whaled's error middleware whose stream handler fails after its
    first chunk; returns every byte a raw client received."""
    from aiohttp import web

    from whaled.api.app import error_middleware, mark_response_started
    from whaled.errors import NotFound

    async def failing(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"partial":true}\n')
        raise NotFound("No such container: gone")

    async def scenario() -> bytes:
        app = web.Application(middlewares=[error_middleware])
        app.on_response_prepare.append(mark_response_started)
        app.router.add_get("/stream", failing)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while chunk := await asyncio.wait_for(reader.read(65536), 5):
                received += chunk
            writer.close()
            return received
        finally:
            await runner.cleanup()

    return asyncio.run(scenario())


def test_an_error_after_the_first_byte_cuts_the_stream_instead_of_a_second_response() -> None:
    received = _serve_failing_stream()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'{"partial":true}' in received
    assert received.count(b"HTTP/1.1") == 1, received
    assert not received.endswith(b"0\r\n\r\n"), "the chunked stream must not look complete"
