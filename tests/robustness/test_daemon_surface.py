"""The daemon's own surface (issue 17, part 5): who may open the unix socket, when TCP is
allowed, that secrets never reach the log, that request heads are bounded, and that a client
which stops reading a stream never holds up the others.

Bounded JSON bodies, half-sent heads (slowloris), stalled bodies and the connection cap are
tested in ``tests/integration/test_api_connections.py``; this file adds what those leave out.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import json
import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess, unix_request

API = "/v1.45"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed_ping(w: WhaledProcess, path: str = "/_ping") -> float:
    start = time.monotonic()
    status, _, _ = unix_request(w.sock, "GET", API + path, timeout=5)
    assert status == 200
    return time.monotonic() - start


# ------------------------------------------------------------------ the unix socket


def test_the_unix_socket_is_0660_root_and_group_docker_if_it_exists(whaled: WhaledProcess) -> None:
    st = os.stat(whaled.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == 0
    try:
        docker_gid = grp.getgrnam("docker").gr_gid
    except KeyError:
        docker_gid = 0  # no docker group on this host: the socket keeps root's
    assert st.st_gid == docker_gid


def test_the_socket_group_flag(whaled_factory: Any) -> None:
    group = next(g for g in grp.getgrall() if g.gr_gid != 0)  # any existing group but root's
    w = whaled_factory(extra_args=["--group", group.gr_name])
    st = os.stat(w.sock)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == group.gr_gid


# ------------------------------------------------------------------ TCP needs TLS


def _start_failure(whaled_factory: Any, *args: str) -> str:
    w = whaled_factory(extra_args=list(args), wait=False)
    assert w._proc is not None
    try:
        w._proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"whaled started with {args}:\n{w.log_tail()}")
    assert w.returncode != 0
    return w.log_text()


@pytest.mark.parametrize("address", ["0.0.0.0", "127.0.0.1"])
def test_plain_tcp_is_refused_at_start_unless_tls_is_explicitly_off(
    whaled_factory: Any, address: str
) -> None:
    """dockerd 27 and later: an unencrypted TCP listener (loopback too: a web page in a
    browser on this host can reach it) needs an explicit --tls=false."""
    port = _free_port()
    log = _start_failure(whaled_factory, "-H", f"tcp://{address}:{port}")
    assert "--tls=false" in log and "without TLS" in log, log
    w = whaled_factory(extra_args=["-H", f"tcp://127.0.0.1:{port}", "--tls=false"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert "without encryption" in w.log_text()


def test_userns_remap_is_refused_clearly_at_start(whaled_factory: Any) -> None:
    log = _start_failure(whaled_factory, "--userns-remap", "default")
    assert "userns-remap is not supported by whaled" in log, log


# ------------------------------------------------------------------ secrets never logged

LOGIN_PASSWORD = "Login-Secret-7f3a"
WRONG_PASSWORD = "Wrong-Secret-91bc"
HEADER_PASSWORD = "Header-Secret-c0de"
PROXY_PASSWORD = "Proxy-Secret-5e11"
ENV_PROXY_PASSWORD = "Env-Proxy-Secret-ab12"
BUILD_PROXY_PASSWORD = "Build-Proxy-Secret-77aa"
USER = "alice"


@pytest.fixture
def auth_registry(tmp_path: Any) -> Iterator[Any]:
    from tests.support.registry import (
        RegistryProcess,
        htpasswd_line,
        make_certs,
        registry_available,
    )

    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    certs = make_certs(tmp_path / "pki")
    reg = RegistryProcess(
        root=tmp_path / "registry", tls=certs, htpasswd=htpasswd_line(USER, LOGIN_PASSWORD)
    )
    reg.start()
    try:
        yield reg, certs
    finally:
        reg.stop()


def _registry_auth(password: str, server: str) -> str:
    doc = {"username": USER, "password": password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def _files_containing(root: str, needles: list[bytes]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            hits = [n.decode() for n in needles if n in data]
            if hits:
                found[path] = hits
    return found


@pytest.mark.whaled_config(
    debug=True,
    proxies={
        "http-proxy": f"http://puser:{PROXY_PASSWORD}@127.0.0.1:3",
        "https-proxy": f"http://puser:{PROXY_PASSWORD}@127.0.0.1:3",
        "no-proxy": "127.0.0.1,localhost",
    },
)
def test_secrets_never_reach_the_log(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, auth_registry: Any
) -> None:
    import shutil
    from pathlib import Path

    reg, certs = auth_registry
    folder = Path(whaled.config_path).parent / "certs.d" / reg.host
    folder.mkdir(parents=True)
    shutil.copy(certs.ca_crt, folder / "ca.crt")
    name = f"{reg.host}/t/secret"

    # docker login (POST /auth): a wrong password, then the right one
    bad = docker_cli.run(
        "login", "-u", USER, "--password-stdin", reg.host, input=WRONG_PASSWORD, check=False
    )
    assert bad.returncode != 0
    docker_cli.run("login", "-u", USER, "--password-stdin", reg.host, input=LOGIN_PASSWORD)
    # push and pull carry X-Registry-Auth (the CLI's stored login)
    docker_cli.run("tag", busybox_image, f"{name}:1")
    docker_cli.run("push", f"{name}:1")
    docker_cli.run("rmi", f"{name}:1")
    docker_cli.run("pull", f"{name}:1")
    # a pull with wrong credentials in the header, and a malformed header
    for header in (_registry_auth(HEADER_PASSWORD, reg.host), HEADER_PASSWORD):
        status, _, _ = unix_request(
            whaled.sock,
            "POST",
            f"{API}/images/create?fromImage={name}&tag=1",
            headers={"X-Registry-Auth": header},
            timeout=60,
        )
        assert status in (400, 500), status  # dockerd: unauthorized is a 500 on pull
    status, _, _ = unix_request(
        whaled.sock,
        "GET",
        f"{API}/distribution/{name}:1/json",
        headers={"X-Registry-Auth": _registry_auth(HEADER_PASSWORD, reg.host)},
        timeout=30,
    )
    assert status != 200
    # a container whose environment holds proxy credentials
    env_proxy = f"HTTP_PROXY=http://u:{ENV_PROXY_PASSWORD}@127.0.0.1:1"
    docker_cli.run("run", "--rm", "--network", "none", "-e", env_proxy, busybox_image, "true")
    status, _, _ = unix_request(
        whaled.sock,
        "POST",
        f"{API}/containers/create",
        body=json.dumps({"Image": busybox_image, "Env": [env_proxy], "User": 0}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 400  # an error that quotes the request is still no leak
    # a build given proxy credentials as a predefined build arg (dockerd keeps those out of
    # the image's history and config)
    ctx = Path(whaled.root) / "build-ctx"
    ctx.mkdir()
    # (the RUN fails unless the undeclared proxy arg reaches it, as in dockerd)
    (ctx / "Dockerfile").write_text(
        f'FROM {busybox_image}\nRUN case "$HTTP_PROXY" in *127.0.0.1:1) ;; *) exit 3;; esac\n'
    )
    build_proxy = f"HTTP_PROXY=http://u:{BUILD_PROXY_PASSWORD}@127.0.0.1:1"
    docker_cli.run("build", "-t", "built:1", "--build-arg", build_proxy, str(ctx))
    shutil.rmtree(ctx)
    history = json.dumps(docker_cli.run("history", "--no-trunc", "built:1").stdout)
    assert BUILD_PROXY_PASSWORD not in history
    # /info shows the daemon's proxies with the credentials masked, as dockerd does
    info = json.loads(unix_request(whaled.sock, "GET", f"{API}/info")[2])
    assert PROXY_PASSWORD not in json.dumps(info)
    assert info["HttpProxy"] == "http://xxxxx:xxxxx@127.0.0.1:3", info["HttpProxy"]
    # a reload logs the configuration
    whaled.reload()
    deadline = time.monotonic() + 10
    while "Reloaded configuration" not in whaled.log_text():
        assert time.monotonic() < deadline, whaled.log_tail()
        time.sleep(0.1)

    log = whaled.log_text()
    assert "level=debug" in log  # the log is the debug one
    assert "NLMSG" not in log  # whaled's debug lines, not pyroute2's every netlink message
    for secret in (
        LOGIN_PASSWORD,
        WRONG_PASSWORD,
        HEADER_PASSWORD,
        PROXY_PASSWORD,
        BUILD_PROXY_PASSWORD,
    ):
        assert secret not in log, [line for line in log.splitlines() if secret in line]
        encoded = base64.b64encode(secret.encode()).decode()[:12]
        assert encoded not in log
    assert ENV_PROXY_PASSWORD not in log
    # the data root keeps no registry password (a container's own environment is its record)
    needles = [
        s.encode() for s in (LOGIN_PASSWORD, WRONG_PASSWORD, HEADER_PASSWORD, BUILD_PROXY_PASSWORD)
    ]
    # (the build's removed RUN container held the proxy; its files go in the background)
    deadline = time.monotonic() + 10
    while (leaks := _files_containing(whaled.root, needles)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leaks == {}, leaks


# ------------------------------------------------------------------ bounded heads


def _raw_exchange(sock_path: str, data: bytes, timeout: float = 10) -> tuple[bytes, bool]:
    """Send ``data`` (as far as the daemon takes it) and read until the daemon closes:
    (answer, closed by the daemon)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    answer = b""
    try:
        s.connect(sock_path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            return answer, False
        return answer, True
    finally:
        s.close()


@pytest.mark.parametrize(
    "head",
    [
        # one header value of 1 MiB
        b"X-Big: " + b"a" * (1 << 20) + b"\r\n",
        # a request line with a 1 MiB path
        None,
        # 100 000 small headers
        b"".join(b"X-H%d: v\r\n" % i for i in range(100_000)),
    ],
    ids=["big-value", "big-path", "many-headers"],
)
def test_oversized_request_heads_are_refused_and_the_connection_closed(
    whaled: WhaledProcess, head: bytes | None
) -> None:
    assert whaled.pid is not None
    if head is None:
        request = b"GET /_ping?" + b"q" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    else:
        request = b"GET /_ping HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n"
    answer, closed = _raw_exchange(whaled.sock, request)
    assert closed, answer[:200]
    status = answer.split(b" ", 2)[1] if answer else b""
    assert status in (b"400", b"414", b"431"), answer[:300]
    assert timed_ping(whaled) < 1.0
    # the client's fault: no error and no traceback in the log (aiohttp logged both)
    log = whaled.log_text()
    assert "Traceback" not in log and "level=error" not in log, log[-2000:]


# ------------------------------------------------------------------ stalled readers


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _stalled_stream(sock_path: str, path: str) -> socket.socket:
    """A client that asks for a stream and never reads it (its receive buffer kept small)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(sock_path)
    s.sendall(f"GET {API}{path} HTTP/1.1\r\nHost: whaled\r\n\r\n".encode())
    return s


def _pending_bytes(s: socket.socket) -> int:
    """What the daemon had sent that ``s`` never read (read now, until 0.5 s of quiet)."""
    s.settimeout(0.5)
    total = 0
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := s.recv(1 << 20):
            total += len(chunk)
    return total


def _others_answer_within_a_second(w: WhaledProcess, seconds: float) -> list[float]:
    """Latencies of /_ping and /containers/json from another client, sampled for
    ``seconds``."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        latencies.append(timed_ping(w))
        latencies.append(timed_ping(w, "/containers/json?all=1"))
        time.sleep(0.1)
    return latencies


def test_an_events_reader_that_never_reads_holds_up_no_one(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    assert whaled.pid is not None
    # container events carry the container's labels: 16 KiB of them make each event big
    labels = [f"--label=l{i}={'x' * 1024}" for i in range(16)]
    cid = docker_cli.run(
        "run", "-d", "--network", "none", *labels, busybox_image, "sleep", "300"
    ).stdout.strip()
    stalled = [_stalled_stream(whaled.sock, "/events") for _ in range(3)]
    try:
        time.sleep(0.2)
        rss_before = rss_bytes(whaled.pid)
        # 300 exec_create events of 16 KiB each (about 5 MiB per subscriber): far more
        # than a stalled socket holds
        conn = whaled.connection(timeout=30)
        body = json.dumps({"Cmd": ["true"]})
        for _ in range(300):
            conn.request(
                "POST",
                f"{API}/containers/{cid}/exec",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 201
        conn.close()
        latencies = _others_answer_within_a_second(whaled, 1.0)
        assert max(latencies) < 1.0, latencies
        # the stalled subscribers' backlog is bounded (events beyond it are dropped)
        assert rss_bytes(whaled.pid) - rss_before < 30 << 20
        # a fresh subscriber is served at once
        until = int(time.time())
        status, _, _ = unix_request(whaled.sock, "GET", f"{API}/events?until={until}", timeout=5)
        assert status == 200
        # the scenario is real: a stalled reader had far more waiting than it took
        assert _pending_bytes(stalled[0]) > 256 << 10
    finally:
        for s in stalled:
            s.close()
        docker_cli.run("rm", "-f", cid)
    assert timed_ping(whaled) < 1.0


@pytest.mark.timeout(120)
def test_a_follow_logs_reader_that_never_reads_holds_up_no_one(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    assert whaled.pid is not None
    cid = docker_cli.run(
        "run", "-d", "--network", "none", "--log-opt", "max-size=2m", "--log-opt", "max-file=2",
        busybox_image, "sh", "-c", "yes 'chatty chatty chatty chatty chatty chatty chatty'",
    ).stdout.strip()  # fmt: skip
    stalled = [
        _stalled_stream(whaled.sock, f"/containers/{cid}/logs?follow=1&stdout=1&stderr=1")
        for _ in range(3)
    ]
    try:
        time.sleep(0.5)
        rss_before = rss_bytes(whaled.pid)
        latencies = _others_answer_within_a_second(whaled, 3.0)
        assert max(latencies) < 1.0, latencies
        # whaled stops reading the log for a client that does not take it, instead of
        # buffering what the container keeps writing
        assert rss_bytes(whaled.pid) - rss_before < 30 << 20
        # a reader that reads gets the stream meanwhile
        docker = subprocess.run(
            docker_cli.argv("logs", "--tail", "5", cid),
            capture_output=True,
            env=docker_cli.env(),
            timeout=10,
        )
        assert b"chatty" in docker.stdout
    finally:
        for s in stalled:
            s.close()
        docker_cli.run("rm", "-f", cid)
    assert timed_ping(whaled) < 1.0


# ------------------------------------------------------------------ slowloris, drip-fed


@pytest.fixture
def quick_head_timeout_whaled() -> Iterator[WhaledProcess]:
    w = WhaledProcess(env={**os.environ, "_WHALED_HEAD_TIMEOUT": "2"})
    try:
        w.start()
        w.wait_ready()
        yield w
    finally:
        w.cleanup()


def test_a_head_drip_fed_a_byte_at_a_time_is_still_cut_at_the_head_timeout(
    quick_head_timeout_whaled: WhaledProcess,
) -> None:
    """Slowloris proper: every byte arriving in time must not extend the head's deadline
    (``test_api_connections`` covers heads that stop half-way)."""
    w = quick_head_timeout_whaled
    head = b"GET /_ping HTTP/1.1\r\nHost: whaled\r\nX-Slow: " + b"s" * 1000
    conns = []
    for _ in range(50):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(w.sock)
        s.setblocking(False)
        conns.append(s)
    closed_at: dict[int, float] = {}
    start = time.monotonic()
    try:
        for i in range(len(head)):
            if len(closed_at) == len(conns) or time.monotonic() - start > 8:
                break
            for n, s in enumerate(conns):
                if n in closed_at:
                    continue
                try:
                    s.send(head[i : i + 1])
                    if s.recv(4096) == b"":
                        closed_at[n] = time.monotonic() - start
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    closed_at[n] = time.monotonic() - start
            if i % 4 == 0:
                # meanwhile everyone else is served at once
                assert timed_ping(w) < 1.0
            time.sleep(0.05)  # 20 bytes a second per connection
    finally:
        for s in conns:
            s.close()
    assert len(closed_at) == len(conns), f"{len(conns) - len(closed_at)} drip-fed heads still open"
    assert max(closed_at.values()) < 2 + 2.5, closed_at


# ------------------------------------------------------------------ browser-style requests


def test_a_json_body_labelled_as_text_or_a_form_is_refused(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    """What a web page may POST without a CORS preflight never creates a container
    (dockerd's Content-Type rule); the docker CLI's body-less text/plain POSTs still work."""
    body = json.dumps({"Image": busybox_image, "Cmd": ["true"]}).encode()
    for content_type in ("text/plain;charset=UTF-8", "application/x-www-form-urlencoded"):
        status, _, answer = unix_request(
            whaled.sock,
            "POST",
            f"{API}/containers/create",
            body=body,
            headers={"Content-Type": content_type},
        )
        assert status == 400, answer
        assert "must be 'application/json'" in json.loads(answer)["message"]
    status, _, answer = unix_request(whaled.sock, "GET", f"{API}/containers/json?all=1")
    assert json.loads(answer) == []
    status, _, answer = unix_request(
        whaled.sock,
        "POST",
        f"{API}/containers/create",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    assert status == 201, answer
    cid = json.loads(answer)["Id"]
    status, _, _ = unix_request(
        whaled.sock,
        "POST",
        f"{API}/containers/{cid}/start",
        body=b"",
        headers={"Content-Type": "text/plain"},
    )
    assert status == 204


def test_a_chunked_json_body_over_the_limit_is_refused(whaled: WhaledProcess) -> None:
    """Without a Content-Length the size is only known while reading: still a 413 with a
    message (``test_api_connections`` covers a body that announces its size)."""
    assert whaled.pid is not None
    timed_ping(whaled)
    rss_before = rss_bytes(whaled.pid)
    chunk = b"a" * (1 << 20)
    head = (
        f"POST {API}/containers/create HTTP/1.1\r\nHost: whaled\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    body = b'{"Image": "busybox", "Env": ["X=' + chunk * 12 + b'"]}'
    framed = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + (1 << 16)]), body[i : i + (1 << 16)])
        for i in range(0, len(body), 1 << 16)
    )
    answer, closed = _raw_exchange(whaled.sock, head + framed + b"0\r\n\r\n", timeout=30)
    assert closed
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"request body" in answer and b"limit" in answer, answer[-300:]
    assert timed_ping(whaled) < 1.0
    assert rss_bytes(whaled.pid) - rss_before < 40 << 20
