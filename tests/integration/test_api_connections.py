"""Connections are bounded: request heads and JSON bodies have a read deadline, the number of
open connections is capped below the fd limit, JSON bodies have a size limit, and clients
that go away are not logged as errors (whaled issue 12, item 5).

The daemons here get low limits through the internal ``_WHALED_*`` environment variables so
that the tests run in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.registry import free_port
from tests.support.whaled_proc import WhaledProcess, unix_request

API = "/v1.45"
PARTIAL_HEAD = b"GET /_ping HTTP/1.1\r\nHost: whaled\r\nUser-Agent: slow"
PING_REQUEST = b"GET /_ping HTTP/1.1\r\nHost: whaled\r\n\r\n"


@pytest.fixture
def start_whaled() -> Iterator[object]:
    started: list[WhaledProcess] = []

    def start(env: Mapping[str, str]) -> WhaledProcess:
        w = WhaledProcess(env={**os.environ, **env})
        started.append(w)
        w.start()
        w.wait_ready()
        return w

    yield start
    for w in reversed(started):
        w.cleanup()


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_partial(sock_path: str, n: int) -> list[socket.socket]:
    conns = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)  # blocking: waits for room in the listen backlog
        s.settimeout(10)
        s.sendall(PARTIAL_HEAD)
        conns.append(s)
    return conns


def closed_by_peer(s: socket.socket, deadline: float) -> bool:
    s.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        return s.recv(4096) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def ping(w: WhaledProcess, timeout: float) -> int:
    status, _, body = unix_request(w.sock, "GET", "/_ping", timeout=timeout)
    assert body == b"OK"
    return status


def log_lines(w: WhaledProcess) -> list[str]:
    return w.log_text().splitlines()


def test_incomplete_request_heads_are_closed_after_the_head_timeout(start_whaled) -> None:  # type: ignore[no-untyped-def]
    w = start_whaled({"_WHALED_HEAD_TIMEOUT": "1"})
    conns = open_partial(w.sock, 20)
    try:
        deadline = time.monotonic() + 6
        assert all(closed_by_peer(s, deadline) for s in conns)
    finally:
        for s in conns:
            s.close()
    assert ping(w, 5) == 200


def test_connection_cap_bounds_fds_and_the_daemon_keeps_answering(start_whaled) -> None:  # type: ignore[no-untyped-def]
    w = start_whaled({"_WHALED_MAX_CONNECTIONS": "40", "_WHALED_HEAD_TIMEOUT": "2"})
    assert w.pid is not None
    base_fds = fd_count(w.pid)
    base_lines = len(log_lines(w))
    conns = open_partial(w.sock, 300)
    try:
        time.sleep(1.0)
        # 300 clients are waiting, but the daemon holds at most its cap of them open.
        assert fd_count(w.pid) <= base_fds + 40 + 5
        # Heads that never complete are closed, which lets the waiting ones (and the
        # ping) in: the daemon answers although 300 slow clients keep arriving.
        start = time.monotonic()
        assert ping(w, 30) == 200
        assert time.monotonic() - start < 25
        assert fd_count(w.pid) <= base_fds + 40 + 5
    finally:
        for s in conns:
            s.close()
    assert ping(w, 10) == 200
    added = log_lines(w)[base_lines:]
    assert len(added) < 20, "\n".join(added[:40])
    assert sum("connection" in line and "limit" in line for line in added) >= 1


def open_attach(sock_path: str, cid: str) -> socket.socket:
    """A hijacked ``POST /containers/{id}/attach`` connection, its upgrade answered."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sock_path)
    s.sendall(
        f"POST {API}/containers/{cid}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n"
        "Host: whaled\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_hijacked_connections_give_their_place_back_when_they_close(  # type: ignore[no-untyped-def]
    start_whaled, busybox_tar: str
) -> None:
    # The slot is freed when the connection's protocol is told it is lost, whichever
    # protocol the connection ended with (the event loop, not Python, closes the socket).
    w = start_whaled({"_WHALED_MAX_CONNECTIONS": "4"})
    w.import_image(busybox_tar, "busybox:latest")
    status, _, body = unix_request(
        w.sock,
        "POST",
        f"{API}/containers/create",
        {"Image": "busybox:latest", "Cmd": ["cat"], "OpenStdin": True},
    )
    assert status == 201, body
    cid = json.loads(body)["Id"]
    status, _, body = unix_request(w.sock, "POST", f"{API}/containers/{cid}/start")
    assert status == 204, body
    try:
        for _ in range(3):  # three times the cap, in rounds of the cap
            conns = [open_attach(w.sock, cid) for _ in range(4)]
            for s in conns:
                s.close()
            assert ping(w, 5) == 200
    finally:
        unix_request(w.sock, "DELETE", f"{API}/containers/{cid}?force=1", timeout=30)


def test_every_listeners_connections_give_their_place_back() -> None:
    # The listeners share one cap and one server: connections that came in through the
    # second listener (TCP here) must free their places as the first one's do.
    port = free_port()
    w = WhaledProcess(
        extra_args=["-H", f"tcp://127.0.0.1:{port}", "--tls=false"],
        env={**os.environ, "_WHALED_MAX_CONNECTIONS": "4"},
    )
    try:
        w.start()
        w.wait_ready()
        for _ in range(3):  # three times the cap, in rounds of the cap
            conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
            for s in conns:
                s.sendall(PING_REQUEST)
                assert s.recv(4096).startswith(b"HTTP/1.1 200"), "a TCP ping"
                s.close()
            assert ping(w, 5) == 200
    finally:
        w.cleanup()


def test_many_slow_clients_under_the_default_limits_do_not_block_the_api(
    whaled: WhaledProcess,
) -> None:
    conns = open_partial(whaled.sock, 300)
    try:
        start = time.monotonic()
        assert ping(whaled, 5) == 200
        assert time.monotonic() - start < 2
    finally:
        for s in conns:
            s.close()


def test_a_huge_json_body_is_refused_without_keeping_the_memory(whaled: WhaledProcess) -> None:
    assert whaled.pid is not None
    ping(whaled, 5)
    before = rss_bytes(whaled.pid)
    body = json.dumps({"Image": "busybox", "Env": ["X=" + "a" * (50 << 20)]}).encode()
    status, _, answer = unix_request(
        whaled.sock,
        "POST",
        f"{API}/containers/create",
        body=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert status == 413, answer[:200]
    message = json.loads(answer)["message"]
    assert "request body" in message and "limit" in message
    assert ping(whaled, 5) == 200
    assert rss_bytes(whaled.pid) - before < 40 << 20


def test_a_stalled_json_body_gets_a_timeout_answer(start_whaled) -> None:  # type: ignore[no-untyped-def]
    w = start_whaled({"_WHALED_BODY_TIMEOUT": "1"})
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(w.sock)
        s.sendall(
            b"POST " + API.encode() + b"/containers/create HTTP/1.1\r\nHost: whaled\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"Image":'
        )
        start = time.monotonic()
        answer = b""
        with contextlib.suppress(TimeoutError):
            while chunk := s.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - start < 6
    finally:
        s.close()


def test_a_client_that_drops_mid_request_is_not_logged_as_an_error(
    whaled: WhaledProcess,
) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(whaled.sock)
    s.sendall(
        b"POST " + API.encode() + b"/containers/create HTTP/1.1\r\nHost: whaled\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"Image"'
    )
    time.sleep(0.3)
    s.close()
    time.sleep(0.5)
    assert ping(whaled, 5) == 200
    text = whaled.log_text()
    assert "Traceback" not in text
    assert "level=error" not in text


def _python_with_nofile(tmp_path: Path, soft: int) -> str:
    """A python launcher that runs with a soft RLIMIT_NOFILE of ``soft``."""
    wrapper = tmp_path / "python-nofile"
    wrapper.write_text(f'#!/bin/sh\nulimit -S -n {soft}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
def start_limited_whaled(tmp_path: Path) -> Iterator[object]:
    started: list[WhaledProcess] = []

    def start(soft: int, env: Mapping[str, str]) -> WhaledProcess:
        w = WhaledProcess(python=_python_with_nofile(tmp_path, soft), env={**os.environ, **env})
        started.append(w)
        w.start()
        w.wait_ready()
        return w

    yield start
    for w in reversed(started):
        w.cleanup()


def test_the_default_cap_follows_the_fd_limit(start_limited_whaled) -> None:  # type: ignore[no-untyped-def]
    # A soft limit of 600 leaves 512 descriptors for containers: 88 connections.
    w = start_limited_whaled(600, {"_WHALED_HEAD_TIMEOUT": "2"})
    assert w.pid is not None
    base_fds = fd_count(w.pid)
    conns = open_partial(w.sock, 200)
    try:
        time.sleep(1.0)
        assert fd_count(w.pid) <= base_fds + 88 + 5
        assert ping(w, 30) == 200
    finally:
        for s in conns:
            s.close()


def test_running_out_of_descriptors_does_not_flood_the_log(start_limited_whaled) -> None:  # type: ignore[no-untyped-def]
    # A cap above the fd limit (only possible through the test override) makes accept()
    # fail with EMFILE: the daemon backs off and warns once instead of spinning.
    w = start_limited_whaled(200, {"_WHALED_MAX_CONNECTIONS": "5000", "_WHALED_HEAD_TIMEOUT": "3"})
    base_lines = len(log_lines(w))
    conns = open_partial(w.sock, 300)
    try:
        time.sleep(2.0)
    finally:
        for s in conns:
            s.close()
    assert ping(w, 30) == 200
    added = log_lines(w)[base_lines:]
    assert len(added) < 20, "\n".join(added[:40])


def test_streams_outlive_the_head_timeout(start_whaled) -> None:  # type: ignore[no-untyped-def]
    w = start_whaled({"_WHALED_HEAD_TIMEOUT": "1"})
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(w.sock)
        s.sendall(b"GET " + API.encode() + b"/events HTTP/1.1\r\nHost: whaled\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(3)
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(4096)  # still open, nothing to read: not closed by the head timeout
    finally:
        s.close()


def test_clients_reconnect_after_an_idle_keep_alive_is_closed(start_whaled) -> None:  # type: ignore[no-untyped-def]
    w = start_whaled({"_WHALED_HEAD_TIMEOUT": "1"})
    client = w.client()
    assert client.ping()
    time.sleep(2.5)  # the pooled connection was closed meanwhile
    assert client.ping()
    assert client.version()["ApiVersion"]
