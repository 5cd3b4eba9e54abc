"""Start-up (``whaled.api.early``): ``/_ping`` is answered while the daemon still starts,
exactly as the API answers it; every other request waits for the API, on the same
connection too; signals sent meanwhile are acted on once the daemon is up.

The daemons here hold the start-up window open with ``_WHALED_HANDOVER_DELAY`` (a test-only
setting, like the ``_WHALED_*`` limits).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.dockercli import DOCKER_BIN
from tests.support.whaled_proc import WhaledProcess

DELAY = 2.5
PING_CLOSE = b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.fixture
def starting() -> Iterator[WhaledProcess]:
    """A whaled that answers pings and holds everything else for :data:`DELAY` s more."""
    env = dict(os.environ)
    env["_WHALED_HANDOVER_DELAY"] = str(DELAY)
    w = WhaledProcess(env=env)
    try:
        w.start()
        wait_first_ping(w)
        yield w
    finally:
        w.cleanup()


def wait_first_ping(w: WhaledProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert w.running, w.log_tail()
        try:
            if raw_request(w.sock, PING_CLOSE)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"no ping answered within {timeout}s\n{w.log_tail()}")


def api_up(w: WhaledProcess) -> bool:
    return "API listen on" in w.log_tail(400)


class Conn:
    """One keep-alive connection, requests one after the other."""

    def __init__(self, path: str) -> None:
        self.conn = http.client.HTTPConnection("localhost", timeout=30)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(path)
        self.conn.sock = sock

    def request(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path)
        response = self.conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body

    def close(self) -> None:
        self.conn.close()


def raw_request(path: str, data: bytes) -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(data)
        got = b""
        while chunk := s.recv(65536):  # every request here asks for Connection: close
            got += chunk
    return int(got.split(b" ", 2)[1]), got


def comparable(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != "date"}


def test_pings_during_start_up_are_the_apis_own_and_the_rest_waits(
    starting: WhaledProcess,
) -> None:
    early = Conn(starting.sock)
    try:
        answers = {}
        for method, path in [("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/v1.45/_ping")]:
            status, headers, body = early.request(method, path)
            assert status == 200
            assert body == (b"OK" if method == "GET" else b"")
            answers[method, path] = comparable(headers)
        assert not api_up(starting), "the daemon came up too soon for this test"
        # The same connection then asks for something only the API knows: it waits.
        started = time.monotonic()
        status, _, body = early.request("GET", "/version")
        assert status == 200 and b"ApiVersion" in body
        assert api_up(starting)
        assert time.monotonic() - started > 0.5
        # The API's own answers carry the same headers.
        for (method, path), headers in answers.items():
            assert comparable(early.request(method, path)[1]) == headers, (method, path)
    finally:
        early.close()


def test_what_the_api_would_refuse_waits_for_the_api(starting: WhaledProcess) -> None:
    """A ping the API would answer otherwise (an unsupported version) is not answered
    early; nor is a request with a body."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        old = pool.submit(
            raw_request,
            starting.sock,
            b"GET /v1.12/_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        post = pool.submit(
            raw_request,
            starting.sock,
            b"POST /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        )
        time.sleep(0.5)
        assert not old.done() and not post.done()
        status, reply = old.result(timeout=30)
        assert status == 400 and b"client version 1.12 is too old" in reply
        assert post.result(timeout=30)[0] == 405


def test_connection_close_ping_is_answered_and_closed(starting: WhaledProcess) -> None:
    status, reply = raw_request(starting.sock, PING_CLOSE)
    assert status == 200 and reply.endswith(b"\r\n\r\nOK")
    assert b"Connection: close" in reply
    assert not api_up(starting)


def test_docker_cli_during_start_up_waits_for_the_daemon(starting: WhaledProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = f"unix://{starting.sock}"
    done = subprocess.run(
        [DOCKER_BIN, "version", "--format", "{{.Server.APIVersion}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.45"


def test_a_sighup_during_start_up_reloads_once_up(starting: WhaledProcess) -> None:
    starting.reload()
    time.sleep(0.2)
    assert starting.running, "SIGHUP during start-up ended the daemon"
    conn = Conn(starting.sock)
    try:
        assert conn.request("GET", "/info")[0] == 200
    finally:
        conn.close()
    deadline = time.monotonic() + 10
    while "reload" not in starting.log_tail(400).lower() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "reload" in starting.log_tail(400).lower()
    assert starting.running


def test_a_sigterm_during_start_up_stops_cleanly_once_up(starting: WhaledProcess) -> None:
    starting.signal(signal.SIGTERM)
    assert starting.running
    code = starting.stop(timeout=30)
    assert code == 0, starting.log_tail()
    assert not os.path.exists(starting.sock)
    assert not os.path.exists(starting.pidfile)
    assert "Processing signal 'terminated'" in starting.log_tail(400)
