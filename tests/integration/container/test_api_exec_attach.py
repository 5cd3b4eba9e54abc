"""Exec and attach through docker-py (and ``docker start -a -i``) against a real whaled:
exec create/start/inspect, TTY and not, env/workdir/user/privileged, stdin over the hijacked
socket, detached exec, resize; attach with stdin and detach keys, logs on attach, resize."""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import docker.errors
import pytest

from tests.integration.container.helpers import NONE, V, create_id, is_zombie, poll, run_bg
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess


def raw_socket(sock: Any) -> socket.socket:
    """The plain socket under what docker-py's ``socket=True`` calls return."""
    inner = getattr(sock, "_sock", sock)
    assert isinstance(inner, socket.socket)
    return inner


def read_until(sock: socket.socket, done: Callable[[bytes], bool], timeout: float = 10.0) -> bytes:
    """Read until ``done(data)``, EOF or ``timeout``."""
    data = b""
    deadline = time.monotonic() + timeout
    while not done(data):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def stream_ends(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the server ends the stream within ``timeout`` (output already in flight
    before a detach may still arrive first)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
    return False


def read_to_eof(sock: socket.socket, timeout: float = 10.0) -> bytes:
    return read_until(sock, lambda _: False, timeout)


def demux(data: bytes) -> tuple[bytes, bytes]:
    """Split Docker's multiplexed frames into (stdout, stderr); fails on a bad header."""
    out, err = b"", b""
    while data:
        assert len(data) >= 8, data
        kind, length = data[0], struct.unpack(">I", data[4:8])[0]
        assert data[1:4] == b"\0\0\0" and kind in (1, 2), data[:8]
        payload, data = data[8 : 8 + length], data[8 + length :]
        if kind == 1:
            out += payload
        else:
            err += payload
    return out, err


def exec_inspect(client: Any, exec_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.api.exec_inspect(exec_id)
    return body


# ================================================================== exec


def test_exec_create_start_inspect(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    api = docker_client.api
    ex = api.exec_create(c.id, ["sh", "-c", "sleep 0.8; exit 7"], user="1000")
    body = exec_inspect(docker_client, ex["Id"])
    assert body["ID"] == ex["Id"] and body["ContainerID"] == c.id
    assert body["Running"] is False and body["ExitCode"] is None and body["Pid"] == 0
    assert body["ProcessConfig"]["entrypoint"] == "sh"
    assert body["ProcessConfig"]["arguments"] == ["-c", "sleep 0.8; exit 7"]
    assert body["ProcessConfig"]["tty"] is False
    assert body["ProcessConfig"]["privileged"] is False
    assert body["ProcessConfig"]["user"] == "1000"
    assert ex["Id"] in api.inspect_container(c.id)["ExecIDs"]
    assert api.exec_start(ex["Id"], detach=True) in ("", b"")
    body = exec_inspect(docker_client, ex["Id"])
    assert body["Running"] is True and body["Pid"] > 0
    assert os.path.exists(f"/proc/{body['Pid']}")
    with open(f"/proc/{body['Pid']}/status") as f:
        uid_line = next(line for line in f if line.startswith("Uid:"))
    assert uid_line.split()[1] == "1000"
    # Starting it again while it runs, and after it ran, is a conflict.
    status, _, out = whaled.request("POST", f"{V}/exec/{ex['Id']}/start", {"Detach": True})
    assert status == 409, out
    poll(lambda: exec_inspect(docker_client, ex["Id"])["Running"] is False)
    body = exec_inspect(docker_client, ex["Id"])
    assert body["ExitCode"] == 7
    status, _, out = whaled.request("POST", f"{V}/exec/{ex['Id']}/start", {"Detach": True})
    assert status == 409, out
    status, _, out = whaled.request("GET", f"{V}/exec/nosuchexec/json")
    assert status == 404 and json.loads(out)["message"] == "No such exec instance: nosuchexec"
    status, _, out = whaled.request("POST", f"{V}/containers/{c.id}/exec", {"Cmd": []})
    assert status == 400, out
    c.remove(force=True)


def test_exec_env_workdir_user_tty_and_streams(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(
        docker_client, busybox_image, "sleep", "300", environment=["A=1"], working_dir="/tmp"
    )
    r = c.exec_run(
        ["sh", "-c", "echo $A $B; pwd; id -u; id -G"],
        environment=["B=2"],
        workdir="/etc",
        user="test",
    )
    assert r.exit_code == 0
    assert r.output == b"1 2\n/etc\n1000\n1000 2000\n"
    r = c.exec_run(["sh", "-c", "pwd; id -u"])
    assert r.output == b"/tmp\n0\n"  # the container's working dir and user
    r = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 4"], demux=True)
    assert r.exit_code == 4 and r.output == (b"out\n", b"err\n")
    r = c.exec_run(["sh", "-c", "tty; echo $TERM"], tty=True)
    lines = r.output.decode().split("\r\n")
    assert lines[0].startswith("/dev/pts/") and lines[1] == "xterm", r.output
    r = c.exec_run(["tty"])
    assert r.exit_code == 1 and b"not a tty" in r.output
    r = c.exec_run(["nosuchcmd"])
    assert r.exit_code in (126, 127), r
    c.remove(force=True)


def _cap_bounding_of_this_host() -> str:
    with open("/proc/self/status") as f:
        return next(line.split()[1] for line in f if line.startswith("CapBnd:"))


def test_privileged_exec_gets_every_capability_the_host_has(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    plain = c.exec_run(["sh", "-c", "grep CapEff /proc/self/status"])
    assert plain.exit_code == 0
    default_caps = int(plain.output.split()[1], 16)
    r = c.exec_run(["sh", "-c", "grep CapEff /proc/self/status"], privileged=True)
    assert r.exit_code == 0, r.output
    caps = r.output.split()[1].decode()
    assert int(caps, 16) == int(_cap_bounding_of_this_host(), 16)
    assert int(caps, 16) & default_caps == default_caps
    c.remove(force=True)


def test_privileged_container_starts(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    """--privileged works on a host whose root lacks some capability (this one: no
    CAP_SYS_RESOURCE): the container gets every capability the daemon has."""
    c = run_bg(docker_client, busybox_image, "grep", "CapEff", "/proc/self/status", privileged=True)
    assert c.wait(timeout=30)["StatusCode"] == 0
    out = c.logs().decode()
    assert int(out.split()[1], 16) == int(_cap_bounding_of_this_host(), 16), out
    c.remove()


def test_exec_stdin_over_the_socket(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    api = docker_client.api
    ex = api.exec_create(c.id, ["sh", "-c", "cat; echo done >&2"], stdin=True)
    sock = api.exec_start(ex["Id"], socket=True)
    raw = raw_socket(sock)
    raw.sendall(b"hello\n")
    raw.sendall(b"world\n")
    raw.shutdown(socket.SHUT_WR)
    out, err = demux(read_to_eof(raw))
    sock.close()
    assert out == b"hello\nworld\n" and err == b"done\n"
    poll(lambda: exec_inspect(docker_client, ex["Id"])["ExitCode"] == 0)
    c.remove(force=True)


def test_exec_tty_resize(whaled: WhaledProcess, docker_client: Any, busybox_image: str) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    api = docker_client.api
    ex = api.exec_create(
        c.id, ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; stty size"], tty=True
    )
    sock = api.exec_start(ex["Id"], socket=True, tty=True)
    poll(lambda: exec_inspect(docker_client, ex["Id"])["Running"])
    api.exec_resize(ex["Id"], height=33, width=111)
    c.exec_run(["touch", "/tmp/go"])
    data = read_to_eof(raw_socket(sock))
    sock.close()
    assert data == b"33 111\r\n"
    status, _, _ = whaled.request("POST", f"{V}/exec/{ex['Id']}/resize?h=10&w=10")
    assert status in (200, 201, 409)  # exited: dockerd answers 409/500, never hangs
    c.remove(force=True)


def test_finished_execs_leave_exec_ids(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    r = docker_client.api.exec_create(c.id, ["true"])
    docker_client.api.exec_start(r["Id"])
    poll(lambda: exec_inspect(docker_client, r["Id"])["Running"] is False)
    assert exec_inspect(docker_client, r["Id"])["ExitCode"] == 0
    assert docker_client.api.inspect_container(c.id)["ExecIDs"] is None


def test_exec_sessions_go_with_the_run(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    ex = docker_client.api.exec_create(c.id, ["sleep", "300"])
    docker_client.api.exec_start(ex["Id"], detach=True)
    pid = poll(lambda: exec_inspect(docker_client, ex["Id"])["Pid"])
    c.stop(timeout=0)
    assert not os.path.exists(f"/proc/{pid}") or is_zombie(pid)
    c.start()
    assert not docker_client.api.inspect_container(c.id)["ExecIDs"]
    c.remove(force=True)


# ================================================================== attach


def _shell(api: Any, image: str, *, tty: bool, stdin_once: bool = True) -> str:
    """A shell reading its stdin. docker-py always sets StdinOnce with stdin_open (like
    ``docker run -i`` attached); ``stdin_once=False`` is ``docker run -d -i``."""
    config = api.create_container_config(
        image,
        ["sh"],
        stdin_open=True,
        tty=tty,
        host_config=api.create_host_config(network_mode=NONE),
    )
    config["StdinOnce"] = stdin_once
    cid: str = api.create_container_from_config(config)["Id"]
    api.start(cid)
    return cid


ATTACH_ALL = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}


def _attach(api: Any, cid: str, **params: Any) -> tuple[Any, socket.socket]:
    """``attach_socket`` with ``ATTACH_ALL`` (and ``params``): the socket to close and the plain
    socket under it."""
    sock = api.attach_socket(cid, params={**ATTACH_ALL, **params})
    return sock, raw_socket(sock)


def test_attach_tty_stdin_resize_and_detach_keys(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    cid = _shell(api, busybox_image, tty=True)
    sock, raw = _attach(api, cid)
    api.resize(cid, height=40, width=120)
    raw.sendall(b"stty size; echo mark$((40+2))\n")
    data = read_until(raw, lambda d: b"mark42" in d)
    assert b"40 120" in data, data
    raw.sendall(b"\x10\x11")  # ctrl-p ctrl-q
    assert stream_ends(raw)  # whaled ends the stream
    sock.close()
    time.sleep(0.2)
    assert api.inspect_container(cid)["State"]["Running"] is True
    # A new attach (custom keys) sees the same shell's output.
    sock, raw = _attach(api, cid, detachKeys="ctrl-x")
    docker_client.containers.get(cid).exec_run(["sh", "-c", "echo via-pid1-tty > /proc/1/fd/1"])
    assert b"via-pid1-tty" in read_until(raw, lambda d: b"via-pid1-tty" in d)
    raw.sendall(b"\x18")  # ctrl-x
    assert stream_ends(raw)
    sock.close()
    assert api.inspect_container(cid)["State"]["Running"] is True
    api.remove_container(cid, force=True)


def test_attach_again_after_detach_still_types_into_the_tty(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    cid = _shell(api, busybox_image, tty=True)
    sock, raw = _attach(api, cid)
    raw.sendall(b"\x10\x11")
    read_to_eof(raw, timeout=5)
    sock.close()
    sock, raw = _attach(api, cid)
    raw.sendall(b"echo again$((1+1))\n")
    assert b"again2" in read_until(raw, lambda d: b"again2" in d, timeout=3)
    sock.close()


@pytest.mark.parametrize("how", ["hang-up", "stdin-eof"])
def test_non_tty_container_survives_a_client_leaving(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, how: str
) -> None:
    """(Without a TTY the detach keys are plain input, as with dockerd: see
    test_stdio_streams.py.)"""
    api = docker_client.api
    cid = _shell(api, busybox_image, tty=False, stdin_once=False)
    sock, raw = _attach(api, cid)
    raw.sendall(b"echo one\n")
    assert demux(read_until(raw, lambda d: b"one" in d))[0] == b"one\n"
    if how == "stdin-eof":
        raw.shutdown(socket.SHUT_WR)
        read_to_eof(raw, timeout=3)
    sock.close()
    time.sleep(0.5)
    assert api.inspect_container(cid)["State"]["Running"] is True


def test_attach_non_tty_stdin_frames_and_exit(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    cid = create_id(
        api, busybox_image, ["sh", "-c", "read line; echo got:$line; echo bye >&2"], stdin_open=True
    )
    # Attached before the start, like `docker run -i`.
    sock, raw = _attach(api, cid)
    api.start(cid)
    raw.sendall(b"ping\n")
    out, err = demux(read_to_eof(raw))
    sock.close()
    assert out == b"got:ping\n" and err == b"bye\n"
    assert api.wait(cid, timeout=30)["StatusCode"] == 0
    api.remove_container(cid)


def _raw_attach(w: WhaledProcess, cid: str, query: str, timeout: float) -> tuple[bytes, bytes]:
    """POST attach on a plain socket, reading the 101 head byte by byte (docker-py reads it
    through a buffered reader and then uses the raw socket, so output that arrives together
    with the head is lost to it: a client race, dockerd has the same)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(w.sock)
    try:
        sock.sendall(
            f"POST {V}/containers/{cid}/attach?{query} HTTP/1.1\r\nHost: whaled\r\n"
            "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = sock.recv(1)
            assert byte, head
            head += byte
        body = read_to_eof(sock, timeout)
    finally:
        sock.close()
    return head, body


def test_attach_with_logs_replays_earlier_output(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(
        docker_client, busybox_image, "sh", "-c", "echo first; echo second >&2; sleep 1; echo third"
    )
    poll(lambda: b"second" in c.logs())
    head, body = _raw_attach(whaled, c.id, "logs=1&stream=1&stdout=1&stderr=1", 10)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"application/vnd.docker.multiplexed-stream" in head
    assert demux(body) == (b"first\nthird\n", b"second\n")
    c.wait(timeout=30)
    head, body = _raw_attach(whaled, c.id, "logs=1&stream=0&stdout=1", 10)
    assert demux(body) == (b"first\nthird\n", b"")
    status, _, out = whaled.request("POST", f"{V}/containers/{c.id}/attach?stdout=1")
    assert status == 400, out  # neither logs nor stream
    c.remove()


def test_cli_start_attach_interactive(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, docker_cli: DockerCLI
) -> None:
    cid = docker_cli.run(
        "create", "-i", "--network", NONE, busybox_image, "sh", "-c", "cat; exit 3"
    ).stdout.strip()
    done = docker_cli.run("start", "-a", "-i", cid, input="one\ntwo\n", check=False)
    assert done.stdout == "one\ntwo\n"
    assert done.returncode == 3, done.stderr
    done = docker_cli.run("start", "-a", "-i", cid, input="three\n", check=False)
    assert done.stdout == "three\n" and done.returncode == 3
    docker_cli.run("rm", cid)


def test_resize_of_a_stopped_container_is_a_conflict(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = docker_client.containers.create(busybox_image, ["true"], network_mode=NONE, tty=True)
    status, _, out = whaled.request("POST", f"{V}/containers/{c.id}/resize?h=10&w=10")
    assert status == 409, out
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.resize("nosuch", 10, 10)
