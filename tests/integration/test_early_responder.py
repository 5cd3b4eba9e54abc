"""The start-up responder thread (``whaled.api.early.EarlyResponder``) on a real unix
socket: pings answered (pipelined, split), everything else held with nothing consumed,
the connection cap kept."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest

from whaled.api.early import EarlyResponder

INFO = b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n"
PING = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    directory = tempfile.mkdtemp(prefix="early-")
    path = os.path.join(directory, "api.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(64)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def connect(listener: socket.socket) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(5)
    c.connect(listener.getsockname())
    return c


def read_answers(c: socket.socket, n: int) -> bytes:
    got = b""
    while got.count(b"\r\n\r\nOK") < n:
        chunk = c.recv(65536)
        assert chunk, got
        got += chunk
    return got


def test_pipelined_and_split_pings_then_a_held_request(listener: socket.socket) -> None:
    responder = EarlyResponder([listener], experimental=False, max_connections=10)
    responder.start()
    c = connect(listener)
    try:
        c.sendall(PING + PING)
        assert read_answers(c, 2).count(b"HTTP/1.1 200 OK") == 2
        c.sendall(PING[:9])
        time.sleep(0.05)
        c.sendall(PING[9:])
        assert read_answers(c, 1).startswith(b"HTTP/1.1 200 OK")
        c.sendall(INFO)
        time.sleep(0.1)
        held = responder.stop()
        assert responder.answered == 3
        assert len(held) == 1
        server_side = held[0].sock
        assert held[0].listener == 0
        server_side.setblocking(True)
        assert server_side.recv(65536) == INFO  # nothing of it was consumed
        server_side.close()
    finally:
        c.close()
        responder.stop()


def test_idle_and_half_sent_connections_are_held_too(listener: socket.socket) -> None:
    responder = EarlyResponder([listener], experimental=False, max_connections=10)
    responder.start()
    idle, half = connect(listener), connect(listener)
    try:
        half.sendall(INFO[:5])
        time.sleep(0.1)
        held = responder.stop()
        assert len(held) == 2
        for h in held:
            h.sock.close()
    finally:
        idle.close()
        half.close()


def test_a_client_that_hangs_up_is_forgotten(listener: socket.socket) -> None:
    responder = EarlyResponder([listener], experimental=False, max_connections=10)
    responder.start()
    c = connect(listener)
    c.sendall(PING)
    read_answers(c, 1)
    c.close()
    time.sleep(0.1)
    assert responder.stop() == []


def test_the_connection_cap_holds_during_start_up(listener: socket.socket) -> None:
    responder = EarlyResponder([listener], experimental=False, max_connections=3)
    responder.start()
    clients = [connect(listener) for _ in range(5)]
    try:
        for c in clients:
            c.sendall(INFO)
        time.sleep(0.2)
        held = responder.stop()
        assert len(held) == 3  # the others wait in the backlog, for the API server
        waiting = []
        listener.setblocking(True)
        listener.settimeout(1)
        for _ in range(2):
            conn, _ = listener.accept()
            waiting.append(conn)
        assert all(w.recv(65536) == INFO for w in waiting)
        for s in waiting + [h.sock for h in held]:
            s.close()
    finally:
        for c in clients:
            c.close()
