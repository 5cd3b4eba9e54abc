"""The quick lane's request parsing and response bytes (``whaled.api.lane``), and its reads
of aiohttp's handler state on aiohttp's real class."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, cast

import pytest
from aiohttp import web

from whaled.api.lane import (
    Lane,
    QuickAnswer,
    QuickRequest,
    encode_json,
    handler_idle,
    note_served,
)
from whaled.config.model import Config
from whaled.daemon.daemon import Daemon
from whaled.errors import InvalidParameter


class _Daemon:
    def __init__(self, config: Config) -> None:
        self._config = config

    def config(self) -> Config:
        return self._config


def _lane(config: Config | None = None) -> tuple[Lane, list[QuickRequest]]:
    seen: list[QuickRequest] = []

    def ping(request: QuickRequest) -> QuickAnswer:
        seen.append(request)
        return QuickAnswer(b"OK", content_type="text/plain", headers={"Cache-Control": "x"})

    def listing(request: QuickRequest) -> QuickAnswer | None:
        seen.append(request)
        if "bad" in request.query:
            raise InvalidParameter("bad")
        if "full" in request.query:
            return None
        return QuickAnswer.json([dict(request.query), dict(request.match_info)])

    lane = Lane(cast(Daemon, _Daemon(config or Config())))
    lane.add("/_ping", ping, head=True)
    lane.add("/things/json", listing)
    lane.add("/things/{id}/json", listing)
    return lane, seen


def _split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert len(headers) == len(lines)
    return status, headers, body


def test_a_json_answer_has_the_api_paths_headers() -> None:
    lane, seen = _lane()
    response = lane.answer(b"GET /v1.41/things/json?a=1&a=2&b= HTTP/1.1\r\nHost: docker")
    assert response is not None
    status, headers, body = _split(response)
    assert status == "HTTP/1.1 200 OK"
    assert body == encode_json([{"a": "1", "b": ""}, {}])
    assert headers.pop("Date").endswith(" GMT")
    assert headers.pop("Server").startswith("whaled/")
    assert headers == {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Api-Version": "1.45",
        "Docker-Experimental": "false",
        "Ostype": "linux",
        "Cache-Control": "no-cache",
    }
    assert seen[0].api_version == (1, 41)
    assert seen[0].query.getall("a") == ["1", "2"]
    assert seen[0].method == "GET"


def test_head_has_no_body_nor_length_and_extra_headers_replace_cache_control() -> None:
    lane, seen = _lane(dataclasses.replace(Config(), experimental=True))
    response = lane.answer(b"HEAD /_ping HTTP/1.1\r\nHost: docker")
    assert response is not None and response.endswith(b"\r\n\r\n")
    _, headers, body = _split(response)
    assert body == b""
    assert "Content-Length" not in headers
    assert headers["Cache-Control"] == "x"
    assert headers["Docker-Experimental"] == "true"
    assert headers["Content-Type"] == "text/plain"
    assert seen[0].method == "HEAD" and seen[0].api_version == (1, 45)


def test_path_parameters() -> None:
    lane, _ = _lane()
    response = lane.answer(b"GET /things/abc/json HTTP/1.1")
    assert response is not None
    assert _split(response)[2] == encode_json([{}, {"id": "abc"}])
    assert lane.answer(b"GET /things//json HTTP/1.1") is None  # an empty id: aiohttp's 404/301


@pytest.mark.parametrize(
    "head",
    [
        b"POST /_ping HTTP/1.1",
        b"PUT /things/json HTTP/1.1",
        b"GET /_ping HTTP/1.0",
        b"GET /_ping HTTP/1.1\r\nConnection: close",
        b"GET /_ping HTTP/1.1\r\nHost: d\r\nconnection: Upgrade",
        b"GET /_ping HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close",
        b"HEAD /things/json HTTP/1.1",  # GET only on dockerd: aiohttp's 405
        b"GET /v1.99/_ping HTTP/1.1",  # too new: aiohttp's 400 in dockerd's words
        b"GET /v1.2/_ping HTTP/1.1",  # too old
        b"GET /v1.x/_ping HTTP/1.1",
        b"GET /%5Fping HTTP/1.1",  # escapes are aiohttp's to decode
        b"GET /things/./json HTTP/1.1",  # dockerd redirects what is not clean
        b"GET //_ping HTTP/1.1",
        b"GET /_ping#x HTTP/1.1",
        b"GET _ping HTTP/1.1",
        b"GET /nothing HTTP/1.1",
        b"GET /things/json?bad=1 HTTP/1.1",  # the handler's error: aiohttp answers it
        b"GET /things/json?full=1 HTTP/1.1",  # the handler needs the full path
        b"GET /\xff HTTP/1.1",
    ],
)
def test_aiohttp_takes_what_the_lane_cannot_answer_exactly(head: bytes) -> None:
    lane, _ = _lane()
    assert lane.answer(head) is None


def test_keep_alive_spelled_out_is_fine() -> None:
    lane, _ = _lane()
    assert lane.answer(b"GET /_ping HTTP/1.1\r\nConnection: Keep-Alive") is not None


def test_handler_state_is_read_from_aiohttps_real_request_handler() -> None:
    # The lane reads and sets private attributes of aiohttp's RequestHandler: an aiohttp
    # whose names differ fails here instead of losing the lane (or its keep-alive) silently.
    async def main() -> None:
        async def handler(_: web.BaseRequest) -> web.StreamResponse:
            return web.Response()

        server = web.Server(handler, keepalive_timeout=30.0)
        protocol: Any = server()
        assert handler_idle(protocol)
        protocol._request_in_progress = True
        assert not handler_idle(protocol)
        protocol._request_in_progress = False
        protocol._messages.append(object())
        assert not handler_idle(protocol)
        protocol._messages.clear()
        protocol.force_close()
        assert not handler_idle(protocol)
        loop = asyncio.get_running_loop()
        before = loop.time()
        note_served(protocol, loop)
        assert protocol._next_keepalive_close_time >= before + 30.0

    asyncio.run(main())


def test_an_object_without_aiohttps_attributes_is_never_idle() -> None:
    assert not handler_idle(object())
    loop = asyncio.new_event_loop()
    try:
        note_served(object(), loop)  # nothing to set, nothing raised
    finally:
        loop.close()
