"""The quick lane behind the connection tap (``whaled.api.lane``), on aiohttp's real server
and on both event loops: what the lane answers never overtakes an answer aiohttp still
owes on the same connection, a connection served by the lane alone is not closed as idle,
and on a real whaled every lane answer is the one aiohttp's path gives."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Callable
from typing import Any, cast

import pytest
import uvloop
from aiohttp import web

from whaled.api.lane import Lane, QuickAnswer, QuickRequest
from whaled.api.uploads import install_connection_tap
from whaled.config.model import Config
from whaled.daemon.daemon import Daemon

LOOPS = [asyncio.new_event_loop, uvloop.new_event_loop]


class _Daemon:
    def config(self) -> Config:
        return Config()


class _Served:
    def __init__(self) -> None:
        self.quick = 0
        self.full: list[str] = []
        self.release = asyncio.Event()


def _server(served: _Served, keepalive_timeout: float) -> web.Server:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        served.full.append(f"{request.method} {request.path}")
        if request.path == "/slow":
            await served.release.wait()
        return web.Response(text=f"full {request.path}")

    def quick(_: QuickRequest) -> QuickAnswer:
        served.quick += 1
        return QuickAnswer(b"quick", content_type="text/plain")

    lane = Lane(cast(Daemon, _Daemon()))
    lane.add("/fast", quick)
    server = web.Server(handler, keepalive_timeout=keepalive_timeout)
    install_connection_tap(server, lane)
    return server


async def _connect(server: web.Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(cast(Any, server), ours)
    return await asyncio.open_connection(sock=theirs)


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(the head, the body) of the next response (bodies with a Content-Length only)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head, await asyncio.wait_for(reader.readexactly(length), 10)


def _run(loop_factory: Callable[[], asyncio.AbstractEventLoop], main: Any) -> None:
    loop = loop_factory()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_the_lane_answers_and_never_overtakes_aiohttp(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def main() -> None:
        served = _Served()
        server = _server(served, keepalive_timeout=30)
        reader, writer = await _connect(server)
        writer.write(b"GET /fast HTTP/1.1\r\nHost: d\r\n\r\n")
        assert (await _response(reader))[1] == b"quick"
        assert served.quick == 1 and served.full == []
        # pipelined behind a request aiohttp is still answering: aiohttp answers it, after
        writer.write(b"GET /slow HTTP/1.1\r\nHost: d\r\n\r\nGET /fast HTTP/1.1\r\nHost: d\r\n\r\n")
        await asyncio.sleep(0.2)
        writer.write(b"GET /fast HTTP/1.1\r\nHost: d\r\n\r\n")  # a read of its own, still busy
        await asyncio.sleep(0.2)
        served.release.set()
        bodies = [(await _response(reader))[1] for _ in range(3)]
        assert bodies == [b"full /slow", b"full /fast", b"full /fast"]
        assert served.quick == 1
        # idle again: the lane; a close asked for: aiohttp
        writer.write(b"GET /fast HTTP/1.1\r\nHost: d\r\n\r\n")
        assert (await _response(reader))[1] == b"quick"
        writer.write(b"GET /fast HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        head, body = await _response(reader)
        assert body == b"full /fast" and b"Connection: close" in head
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert served.quick == 2
        writer.close()
        await server.shutdown(1)

    _run(loop_factory, main)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_a_connection_served_by_the_lane_alone_is_not_closed_as_idle(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def main() -> None:
        served = _Served()
        server = _server(served, keepalive_timeout=0.5)
        reader, writer = await _connect(server)
        for _ in range(15):  # 1.5 s: three times the keep-alive timeout
            writer.write(b"GET /fast HTTP/1.1\r\nHost: d\r\n\r\n")
            assert (await _response(reader))[1] == b"quick"
            await asyncio.sleep(0.1)
        assert served.quick == 15
        # and an idle one still is
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        await server.shutdown(1)

    _run(loop_factory, main)


def _raw(sock: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(v) for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n")[1:])
             if k.lower() == b"content-length"),
            0,
        )  # fmt: skip
        while len(body) < length and not request.startswith(b"HEAD"):
            body += s.recv(65536)
        return head + b"\r\n\r\n" + body


def _normal(response: bytes) -> tuple[bytes, list[bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    kept = sorted(ln for ln in lines if not ln.lower().startswith((b"date:", b"connection:")))
    return status, kept, body


def test_lane_answers_are_aiohttps_answers(whaled: Any, busybox_image: str) -> None:
    # A request with "Connection: close" always goes to aiohttp; the same without it goes
    # to the lane: apart from the Date and the close, the two answers are the same bytes.
    env = {"DOCKER_HOST": f"unix://{whaled.sock}", "PATH": "/usr/bin:/bin"}
    cid = subprocess.run(
        ["docker", "run", "-d", "--name", "lane-c1", "--label", "k=v", "--network", "none",
         busybox_image, "sleep", "300"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        for method, target in [
            ("GET", "/_ping"),
            ("HEAD", "/v1.41/_ping"),
            ("GET", "/version"),
            ("GET", "/v1.41/containers/json?all=1"),
            ("GET", "/containers/json?filters=%7B%22label%22%3A%5B%22k%3Dv%22%5D%7D"),
            ("GET", "/containers/json?filters=%7B"),  # a 400 (aiohttp's in both)
            ("GET", "/containers/lane-c1/json"),
            ("GET", f"/v1.30/containers/{cid[:12]}/json"),
            ("GET", "/containers/nothing/json"),  # a 404
        ]:
            lane = _raw(whaled.sock, f"{method} {target} HTTP/1.1\r\nHost: d\r\n\r\n".encode())
            full = _raw(
                whaled.sock,
                f"{method} {target} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n".encode(),
            )
            assert _normal(lane) == _normal(full), target
    finally:
        subprocess.run(["docker", "rm", "-f", cid], env=env, capture_output=True)
