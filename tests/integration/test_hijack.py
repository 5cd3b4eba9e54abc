"""The connection hijack (whaled.api.hijack) on a real aiohttp server, driven by real clients.

A toy app on a temp unix socket (same middlewares and route helper as whaled) echoes stdin
back as output: multiplexed frames, or raw with ``tty=1``. Clients: docker-py's low-level
socket API and plain sockets. Every test also checks that the server logged no warning or
error (no "Error handling request") and that its event loop reported no exception.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import queue
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import docker
import pytest
import uvloop
from aiohttp import http_parser, web

from whaled.api.app import Routes, error_middleware, version_middleware
from whaled.api.framing import MULTIPLEXED_STREAM, RAW_STREAM, STDERR, STDOUT
from whaled.api.hijack import HEAD_READ_WAIT_SECONDS, ClientGone, capture_early_input, hijack
from whaled.errors import Conflict

SERVER_THREAD = "toy-hijack-server"
TIMEOUT = 5.0
ATTACH = "/v1.45/containers/abc/attach?stream=1&stdin=1&stdout=1&stderr=1"
UPGRADE_HEADERS = b"Connection: Upgrade\r\nUpgrade: tcp\r\n"
PURE_PYTHON_PARSER = http_parser.HttpRequestParser is http_parser.HttpRequestParserPy


# ------------------------------------------------------------------ the toy server


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName == SERVER_THREAD:
            self.records.append(record)


class ToyServer:
    def __init__(self, path: str, *, capture: bool) -> None:
        self.path = path
        self.capture = capture
        self.events: queue.Queue[str] = queue.Queue()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop = uvloop.new_event_loop()  # the daemon's loop (whaled.wiring)
        self.runner: web.AppRunner | None = None
        self.tcp_port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=SERVER_THREAD, daemon=True)

    # -- app

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware, version_middleware])

        async def common_headers(_: web.Request, response: web.StreamResponse) -> None:
            response.headers["Api-Version"] = "1.45"
            response.headers["Server"] = "toy"

        app.on_response_prepare.append(common_headers)
        routes = Routes(app)
        routes.add("POST", "/containers/{id}/attach", self.post_attach)
        routes.add("POST", "/exec/{id}/start", self.post_exec_start)
        routes.add("GET", "/_ping", self.get_ping)
        return app

    async def get_ping(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="OK")

    async def post_attach(self, request: web.Request) -> web.StreamResponse:
        tty = request.query.get("tty") == "1"
        stream = await hijack(request, tty=tty)
        self.events.put("hijacked")
        async with stream:
            try:
                if "flood" in request.query:
                    while True:
                        await stream.write_frame(STDOUT, b"x" * 65536)
                if "once" in request.query:
                    await stream.write_frame(STDOUT, await stream.read())
                    await asyncio.sleep(0.2)  # stdin piles up unread meanwhile
                    await stream.write_frame(STDOUT, b"last words\n")
                    self.events.put("done")
                    return stream.response  # closed on the way out, stdin still coming
                if "greet" in request.query:
                    # Output at once, as from a quick exec, then the end.
                    await stream.write_frame(STDOUT, b"hello at once\n")
                    self.events.put("greeted")
                    return stream.response
                if "fail" in request.query:
                    await stream.write_frame(STDOUT, b"before the error\n")
                    raise Conflict("something went wrong after the hijack")
                while data := await stream.read():
                    await stream.write_frame(STDOUT, data)
                self.events.put("eof")
                await stream.write_frame(STDERR, b"stdin closed\n")
            except ClientGone:
                self.events.put("client-gone")
        self.events.put("done")
        return stream.response

    async def post_exec_start(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        stream = await hijack(request, tty=bool(body.get("Tty")))
        async with stream:
            if request.match_info["id"] == "greeter":  # a quick command's output
                await stream.write_frame(STDOUT, b"hello at once\n")
                self.events.put("greeted")
                return stream.response
            while data := await stream.read():
                await stream.write_frame(STDOUT, data)
            await stream.write_frame(STDERR, json.dumps(body, sort_keys=True).encode())
        self.events.put("done")
        return stream.response

    # -- lifecycle

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(lambda _, ctx: self.loop_errors.append(ctx))
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()
        assert self.runner is not None
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    async def _start(self) -> None:
        self.runner = web.AppRunner(self._app(), shutdown_timeout=0.5)
        await self.runner.setup()
        if self.capture:
            assert self.runner.server is not None
            capture_early_input(self.runner.server)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        await web.SockSite(self.runner, sock).start()
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        self.tcp_port = tcp.getsockname()[1]
        await web.SockSite(self.runner, tcp).start()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(TIMEOUT)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        if self.running:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(TIMEOUT)
            assert not self.running

    def connections(self) -> int:
        async def count() -> int:
            assert self.runner is not None and self.runner.server is not None
            return len(self.runner.server.connections)

        future: Future[int] = asyncio.run_coroutine_threadsafe(count(), self.loop)
        return future.result(TIMEOUT)

    def wait_event(self, name: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        seen = []
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            seen.append(event)
            if event == name:
                return
        raise AssertionError(f"no {name!r} event from the server (saw {seen})")


@pytest.fixture(params=[True, False], ids=["capture", "plain"])
def toy(request: pytest.FixtureRequest) -> Iterator[ToyServer]:
    directory = tempfile.mkdtemp(prefix="hijack-")
    records = _Records()
    logging.getLogger().addHandler(records)
    access = logging.getLogger("aiohttp.access")
    access_level = access.level
    access.setLevel(logging.INFO)  # aiohttp logs access for hijacked requests too
    server = ToyServer(f"{directory}/api.sock", capture=request.param)
    server.start()
    try:
        yield server
        if server.running:
            deadline = time.monotonic() + TIMEOUT
            while server.connections() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.connections() == 0, "a connection outlived its handler"
    finally:
        server.stop()
        logging.getLogger().removeHandler(records)
        access.setLevel(access_level)
        shutil.rmtree(directory, ignore_errors=True)
    assert [r.getMessage() for r in records.records] == []
    assert server.loop_errors == []


@pytest.fixture
def captured(toy: ToyServer) -> ToyServer:
    """Early stdin survives with capture_early_input, or with aiohttp's pure-Python parser
    (AIOHTTP_NO_EXTENSIONS=1), which keeps what follows an ``Upgrade: tcp`` request."""
    if not toy.capture and not PURE_PYTHON_PARSER:
        pytest.skip("aiohttp's C parser drops it without capture_early_input")
    return toy


# ------------------------------------------------------------------ raw clients


class RawClient:
    """A plain socket speaking just enough HTTP/1.1 to hijack."""

    def __init__(self, path: str | tuple[str, int]) -> None:
        family = socket.AF_UNIX if isinstance(path, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_head(self) -> tuple[str, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed before the response head: {self.buffer!r}"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            assert chunk, f"EOF after {len(self.buffer)} of {n} bytes"
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        stream, length = struct.unpack(">BxxxL", self.read_exactly(8))
        return stream, self.read_exactly(length)

    def read_to_eof(self) -> bytes:
        data, self.buffer = self.buffer, b""
        while chunk := self.sock.recv(65536):
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def attach_request(target: str = ATTACH, *, upgrade: bool = True, extra: bytes = b"") -> bytes:
    headers = b"Host: docker\r\n" + (UPGRADE_HEADERS if upgrade else b"")
    return f"POST {target} HTTP/1.1\r\n".encode() + headers + b"\r\n" + extra


def frames_until_eof(client: RawClient) -> list[tuple[int, bytes]]:
    data = client.read_to_eof()
    frames = []
    while data:
        stream, length = struct.unpack(">BxxxL", data[:8])
        frames.append((stream, data[8 : 8 + length]))
        data = data[8 + length :]
    return frames


def read_frame(sock: Any) -> tuple[int, bytes]:
    stream, length = docker.utils.socket.next_frame_header(sock)
    return stream, docker.utils.socket.read_exactly(sock, length)


# ------------------------------------------------------------------ (a) docker-py


def test_docker_py_attach_echo_then_half_close(toy: ToyServer) -> None:
    api = docker.APIClient(base_url=f"unix://{toy.path}", version="1.45")
    sock = api.attach_socket("abc", params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    toy.wait_event("hijacked")
    raw = sock._sock
    raw.settimeout(TIMEOUT)
    raw.sendall(b"hello\n")
    assert read_frame(sock) == (STDOUT, b"hello\n")
    raw.sendall(b"second line\n")
    assert read_frame(sock) == (STDOUT, b"second line\n")
    raw.shutdown(socket.SHUT_WR)  # docker CLI's CloseWrite: stdin EOF, output keeps coming
    toy.wait_event("eof")
    assert read_frame(sock) == (STDERR, b"stdin closed\n")
    assert docker.utils.socket.next_frame_header(sock) == (-1, -1)  # the server closed
    toy.wait_event("done")
    sock.close()
    api.close()


def test_docker_py_attach_tty_is_raw(toy: ToyServer) -> None:
    api = docker.APIClient(base_url=f"unix://{toy.path}", version="1.45")
    sock = api.attach_socket("abc", params={"stdin": 1, "stdout": 1, "stream": 1, "tty": 1})
    raw = sock._sock
    raw.settimeout(TIMEOUT)
    raw.sendall(b"\x1b[A raw bytes")
    received = b""
    while len(received) < 13:
        received += docker.utils.socket.read(sock)
    assert received == b"\x1b[A raw bytes"
    raw.shutdown(socket.SHUT_WR)
    rest = b""
    while chunk := docker.utils.socket.read(sock):
        rest += chunk
    assert rest == b"stdin closed\n"
    sock.close()
    api.close()


def test_docker_py_normal_request_still_works_after_hijacks(toy: ToyServer) -> None:
    api = docker.APIClient(base_url=f"unix://{toy.path}", version="1.45")
    for _ in range(3):
        sock = api.attach_socket("abc", params={"stdin": 1, "stdout": 1, "stream": 1})
        sock._sock.settimeout(TIMEOUT)
        sock._sock.sendall(b"ping")
        assert read_frame(sock) == (STDOUT, b"ping")
        sock._sock.shutdown(socket.SHUT_WR)
        assert read_frame(sock) == (STDERR, b"stdin closed\n")
        sock.close()
        assert api.get(api._url("/_ping")).text == "OK"
    api.close()


def test_response_head_like_dockerd(toy: ToyServer) -> None:
    client = RawClient(toy.path)
    client.send(attach_request())
    status, headers = client.read_head()
    assert status == "HTTP/1.1 101 UPGRADED"
    assert headers["content-type"] == MULTIPLEXED_STREAM
    assert headers["connection"] == "Upgrade"
    assert headers["upgrade"] == "tcp"
    # The app's common headers are there too; nothing that would frame an HTTP body.
    assert headers["api-version"] == "1.45"
    assert headers["server"] == "toy"
    assert "content-length" not in headers and "transfer-encoding" not in headers
    client.sock.shutdown(socket.SHUT_WR)
    assert frames_until_eof(client) == [(STDERR, b"stdin closed\n")]
    client.close()

    for target in (ATTACH.replace("v1.45", "v1.41"), ATTACH + "&tty=1"):
        client = RawClient(toy.path)
        client.send(attach_request(target))
        status, headers = client.read_head()
        assert status == "HTTP/1.1 101 UPGRADED"
        assert headers["content-type"] == RAW_STREAM
        client.close()
        toy.wait_event("done")


# ------------------------------------------------------------------ (b) early stdin


def test_stdin_in_the_same_packet_as_the_headers(captured: ToyServer) -> None:
    client = RawClient(captured.path)
    client.send(attach_request(extra=b"early stdin"))
    status, _ = client.read_head()
    assert status == "HTTP/1.1 101 UPGRADED"
    assert client.read_frame() == (STDOUT, b"early stdin")
    client.send(b"later")
    assert client.read_frame() == (STDOUT, b"later")
    client.sock.shutdown(socket.SHUT_WR)
    assert frames_until_eof(client) == [(STDERR, b"stdin closed\n")]
    client.close()


def test_stdin_in_the_same_packet_on_a_kept_alive_connection(captured: ToyServer) -> None:
    client = RawClient(captured.path)
    for _ in range(2):
        client.send(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        status, headers = client.read_head()
        assert status == "HTTP/1.1 200 OK"
        assert client.read_exactly(int(headers["content-length"])) == b"OK"
    # Then a hijack with stdin right behind the headers.
    client.send(attach_request(extra=b"a" * 3000 + b"b"))
    status, _ = client.read_head()
    assert status == "HTTP/1.1 101 UPGRADED"
    client.sock.shutdown(socket.SHUT_WR)
    frames = frames_until_eof(client)
    assert b"".join(d for s, d in frames if s == STDOUT) == b"a" * 3000 + b"b"
    assert frames[-1] == (STDERR, b"stdin closed\n")
    client.close()


# ------------------------------------------------------------------ (c) body then hijack


def test_docker_py_exec_start_with_json_body(toy: ToyServer) -> None:
    api = docker.APIClient(base_url=f"unix://{toy.path}", version="1.45")
    sock = api.exec_start("execid", socket=True)
    raw = sock._sock
    raw.settimeout(TIMEOUT)
    raw.sendall(b"to the process")
    assert read_frame(sock) == (STDOUT, b"to the process")
    raw.shutdown(socket.SHUT_WR)
    stream, body = read_frame(sock)
    assert stream == STDERR
    assert json.loads(body) == {"Detach": False, "Tty": False}
    assert docker.utils.socket.next_frame_header(sock) == (-1, -1)
    sock.close()
    api.close()


def test_exec_start_body_and_stdin_in_one_packet(captured: ToyServer) -> None:
    body = b'{"Detach":false,"Tty":true}'
    client = RawClient(captured.path)
    client.send(
        b"POST /v1.45/exec/execid/start HTTP/1.1\r\nHost: docker\r\n"
        + UPGRADE_HEADERS
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
        + b"stdin after the body"
    )
    status, headers = client.read_head()
    assert status == "HTTP/1.1 101 UPGRADED"
    client.sock.shutdown(socket.SHUT_WR)
    assert headers["content-type"] == RAW_STREAM  # TTY
    assert client.read_to_eof() == b'stdin after the body{"Detach": false, "Tty": true}'
    client.close()


def test_exec_start_body_in_a_later_packet(toy: ToyServer) -> None:
    body = b'{"Detach":false,"Tty":false}'
    client = RawClient(toy.path)
    client.send(
        b"POST /v1.45/exec/execid/start HTTP/1.1\r\nHost: docker\r\n"
        + UPGRADE_HEADERS
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    time.sleep(0.05)
    client.send(body)
    status, _ = client.read_head()
    assert status == "HTTP/1.1 101 UPGRADED"
    client.send(b"in")
    assert client.read_frame() == (STDOUT, b"in")
    client.sock.shutdown(socket.SHUT_WR)
    stream, echoed = client.read_frame()
    assert (stream, json.loads(echoed)) == (STDERR, {"Detach": False, "Tty": False})
    client.close()


# ---------------------------------------------------- (c2) output before the head is read


def test_first_output_waits_until_the_head_was_read(toy: ToyServer) -> None:
    client = RawClient(toy.path)
    client.send(attach_request(ATTACH + "&greet=1"))
    time.sleep(0.3)  # the output is ready long before the client reads anything
    first = client.sock.recv(65536)
    assert first.endswith(b"\r\n\r\n"), f"output came with the head: {first!r}"
    assert client.read_frame() == (STDOUT, b"hello at once\n")
    client.close()


def test_docker_py_slow_to_read_the_head_loses_no_output(
    toy: ToyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker-py reads the head through a buffered reader, then the frames from the raw
    socket beneath it: output sent along with the head would vanish in that buffer
    (docker-py issues 2042, 3332: ``exec_run`` of a quick command printing nothing)."""
    begin = http.client.HTTPResponse.begin

    def slow_begin(response: http.client.HTTPResponse) -> None:
        time.sleep(0.3)
        begin(response)

    monkeypatch.setattr(http.client.HTTPResponse, "begin", slow_begin)
    api = docker.APIClient(base_url=f"unix://{toy.path}", version="1.45")
    out = api.exec_start("greeter")
    api.close()
    assert out == b"hello at once\n"


def test_a_client_that_never_reads_the_head_still_gets_the_output(toy: ToyServer) -> None:
    client = RawClient(toy.path)
    client.send(attach_request(ATTACH + "&greet=1"))
    started = time.monotonic()
    toy.wait_event("greeted")
    assert time.monotonic() - started >= HEAD_READ_WAIT_SECONDS * 0.9
    client.read_head()
    assert client.read_frame() == (STDOUT, b"hello at once\n")
    client.close()


def test_over_tcp_the_output_is_not_held(toy: ToyServer) -> None:
    client = RawClient(("127.0.0.1", toy.tcp_port))
    client.send(attach_request(ATTACH + "&greet=1"))
    toy.wait_event("greeted")  # sent without waiting for the client
    client.read_head()
    assert client.read_frame() == (STDOUT, b"hello at once\n")
    client.close()


# ------------------------------------------------------------------ (d) client goes away


def test_client_disconnects_abruptly(toy: ToyServer) -> None:
    client = RawClient(toy.path)
    client.send(attach_request(ATTACH + "&flood=1"))
    status, _ = client.read_head()
    assert status == "HTTP/1.1 101 UPGRADED"
    client.read_exactly(100_000)  # the output is flowing
    client.close()  # without reading the rest: the server's writes fail
    toy.wait_event("client-gone")
    toy.wait_event("done")
    # The server is fine for the next client.
    api = docker.APIClient(base_url=f"unix://{toy.path}", version="1.45")
    assert api.get(api._url("/_ping")).text == "OK"
    api.close()


def test_client_disconnects_while_the_handler_reads(toy: ToyServer) -> None:
    client = RawClient(toy.path)
    client.send(attach_request())
    client.read_head()
    toy.wait_event("hijacked")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    toy.wait_event("eof")  # read() gave b""
    toy.wait_event("done")


def test_error_after_the_hijack_writes_no_second_response(toy: ToyServer) -> None:
    client = RawClient(toy.path)
    client.send(attach_request(ATTACH + "&fail=1"))
    status, _ = client.read_head()
    assert status == "HTTP/1.1 101 UPGRADED"
    assert frames_until_eof(client) == [(STDOUT, b"before the error\n")]
    client.close()


def test_close_with_unread_stdin_gives_the_client_a_clean_eof(toy: ToyServer) -> None:
    # TCP, where closing a socket with unread input sends a reset that can cost the
    # client output it has not read yet.
    client = RawClient(("127.0.0.1", toy.tcp_port))
    client.send(attach_request(ATTACH + "&once=1"))
    client.read_head()
    client.send(b"first")
    assert client.read_frame() == (STDOUT, b"first")

    def keep_sending() -> None:
        try:
            client.sock.sendall(b"z" * (4 << 20))  # more than the handler ever reads
        except OSError:
            pass

    sender = threading.Thread(target=keep_sending)
    sender.start()
    toy.wait_event("done")  # the handler closed the stream with stdin still coming
    time.sleep(0.1)
    # All the output, though unread when the server closed, then EOF.
    assert frames_until_eof(client) == [(STDOUT, b"last words\n")]
    sender.join(TIMEOUT)
    client.close()


def test_server_shutdown_ends_hijacked_connections(toy: ToyServer) -> None:
    client = RawClient(toy.path)
    client.send(attach_request())
    client.read_head()
    toy.wait_event("hijacked")
    toy.stop()  # runner.cleanup(): the handler is cancelled after the shutdown timeout
    assert client.read_to_eof() == b""
    client.close()


# ------------------------------------------------------------------ (e) no Upgrade header


def test_without_upgrade_header_200_ok_then_raw_stream(toy: ToyServer) -> None:
    client = RawClient(toy.path)
    client.send(attach_request(upgrade=False))
    status, headers = client.read_head()
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == RAW_STREAM
    assert "content-length" not in headers and "transfer-encoding" not in headers
    toy.wait_event("hijacked")
    client.send(b"old client")
    assert client.read_frame() == (STDOUT, b"old client")
    client.sock.shutdown(socket.SHUT_WR)
    assert frames_until_eof(client) == [(STDERR, b"stdin closed\n")]  # and closed
    client.close()


# ------------------------------------------------------------------ flow control


def test_large_echo_with_back_pressure(toy: ToyServer) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB
    client = RawClient(toy.path)
    client.send(attach_request())
    client.read_head()

    def send_all() -> None:
        client.sock.sendall(payload)
        client.sock.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send_all)
    sender.start()
    time.sleep(0.2)  # let both directions fill up before reading anything
    frames = frames_until_eof(client)
    sender.join(TIMEOUT)
    assert b"".join(d for s, d in frames if s == STDOUT) == payload
    assert frames[-1] == (STDERR, b"stdin closed\n")
    client.close()
