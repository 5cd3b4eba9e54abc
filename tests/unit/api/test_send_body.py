"""``send_body``: the one way a streamed body (archive, export, save) leaves the daemon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from whaled.api.streams import send_body


class _Body:
    """Chunks that can fail after some bytes, and remember being closed."""

    def __init__(self, chunks: list[bytes], *, fail: bool = False) -> None:
        self.chunks = chunks
        self.fail = fail
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
            await asyncio.sleep(0)
        if self.fail:
            raise OSError("disk gone")

    def close(self) -> None:
        self.closed = True


async def _get(body: _Body) -> tuple[int, dict[str, str], bytes | BaseException]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await send_body(request, body, {"Content-Type": "application/x-tar", "X-A": "1"})

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/")
        try:
            data: bytes | BaseException = await response.read()
        except aiohttp.ClientPayloadError as e:
            data = e
        return response.status, dict(response.headers), data


def test_whole_body_with_headers_and_source_closed() -> None:
    body = _Body([b"a" * 10, b"b" * 5])
    status, headers, data = asyncio.run(_get(body))
    assert status == 200
    assert headers["Content-Type"] == "application/x-tar" and headers["X-A"] == "1"
    assert data == b"a" * 10 + b"b" * 5
    assert body.closed


def test_failure_mid_stream_cuts_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    body = _Body([b"a" * 10], fail=True)
    status, _, data = asyncio.run(_get(body))
    assert status == 200
    assert isinstance(data, aiohttp.ClientPayloadError)  # truncated, not a well-formed short body
    assert body.closed
    assert "failed mid-stream" in caplog.text


def test_async_generator_is_closed() -> None:
    closed: list[bool] = []

    async def gen() -> AsyncIterator[bytes]:
        try:
            yield b"x"
        finally:
            closed.append(True)

    async def scenario() -> bytes:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await send_body(request, gen(), {})

        app = web.Application()
        app.router.add_get("/", handler)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/")
            return await response.read()

    assert asyncio.run(scenario()) == b"x"
    assert closed == [True]
