"""Stdin and output through attach and exec streams (whaled issue 12, items 2 and 8).

Every byte a client sends reaches the process, in order and at any size: no detach keys
without a TTY (dockerd's rule), no loss under back-pressure; output written after stdin's
EOF arrives before the exit code. With a TTY, the detach keys end an exec's stream the way
dockerd does (an error line, the stream closed, the exec's stdin closed).
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import socket
import time
from typing import Any

import pytest

from tests.integration.container.helpers import NONE, poll, run_bg
from tests.integration.container.test_api_exec_attach import (
    demux,
    exec_inspect,
    raw_socket,
    read_to_eof,
    read_until,
    stream_ends,
)
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

RUN = ("run", "--network", NONE)
BIG = 100 * 1024 * 1024
#: dockerd's answer on an exec stream the client detached from (its wording, with CRLF).
EXEC_DETACHED = b"exec attach failed: error on attach stdin: read escape sequence\r\n"


@pytest.fixture(scope="module")
def big_input() -> tuple[bytes, str]:
    """100 MiB of random bytes (many ctrl-p ctrl-q pairs among them) and their MD5."""
    data = os.urandom(BIG)
    assert b"\x10\x11" in data
    return data, hashlib.md5(data).hexdigest()


def _md5_of(out: bytes) -> str:
    return out.split()[0].decode() if out.split() else ""


# ================================================================== non-TTY stdin is data


def test_run_i_passes_the_detach_sequence_through(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    done = docker_cli.run_bytes(
        *RUN, "-i", "--rm", busybox_image, "od", "-An", "-tx1", input=b"abc\x10\x11def"
    )
    assert done.stdout.split() == b"61 62 63 10 11 64 65 66".split(), done


def test_exec_i_and_attach_pass_the_detach_sequence_through(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    ex = api.exec_create(c.id, ["od", "-An", "-tx1"], stdin=True)
    sock = api.exec_start(ex["Id"], socket=True)
    raw = raw_socket(sock)
    raw.sendall(b"a\x10\x11b\x10")
    time.sleep(0.1)
    raw.sendall(b"\x11c")
    raw.shutdown(socket.SHUT_WR)
    out, _ = demux(read_to_eof(raw))
    sock.close()
    assert out.split() == b"61 10 11 62 10 11 63".split(), out
    c.remove(force=True)


def test_non_tty_attach_keeps_the_detach_sequence_as_data(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    config = api.create_container_config(
        busybox_image,
        ["od", "-An", "-tx1"],
        stdin_open=True,
        host_config=api.create_host_config(network_mode=NONE),
    )
    config["StdinOnce"] = True
    cid = api.create_container_from_config(config)["Id"]
    sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    raw = raw_socket(sock)
    api.start(cid)
    raw.sendall(b"x\x10\x11y")
    raw.shutdown(socket.SHUT_WR)
    out, _ = demux(read_to_eof(raw))
    sock.close()
    assert out.split() == b"78 10 11 79".split(), out
    assert api.wait(cid, timeout=30)["StatusCode"] == 0
    api.remove_container(cid)


# ================================================================== 100 MiB, checked by digest


def _timed_run(cli: DockerCLI, *args: str, data: bytes) -> tuple[Any, float]:
    start = time.monotonic()
    done = cli.run_bytes(*args, input=data, timeout=120, check=False)
    return done, time.monotonic() - start


def test_run_i_100mib_arrives_intact(
    whaled: WhaledProcess,
    docker_cli: DockerCLI,
    busybox_image: str,
    big_input: tuple[bytes, str],
) -> None:
    data, digest = big_input
    done, took = _timed_run(docker_cli, *RUN, "-i", "--rm", busybox_image, "md5sum", data=data)
    assert done.returncode == 0, done.stderr
    assert _md5_of(done.stdout) == digest, done
    assert took < 45, took


def test_exec_i_100mib_arrives_intact(
    whaled: WhaledProcess,
    docker_cli: DockerCLI,
    busybox_image: str,
    big_input: tuple[bytes, str],
) -> None:
    data, digest = big_input
    cid = docker_cli.run(*RUN, "-d", busybox_image, "sleep", "300").stdout.strip()
    done, took = _timed_run(docker_cli, "exec", "-i", cid, "md5sum", data=data)
    assert done.returncode == 0, done.stderr
    assert _md5_of(done.stdout) == digest, done
    assert took < 45, took
    docker_cli.run("rm", "-f", cid)


def test_start_a_i_100mib_arrives_intact(
    whaled: WhaledProcess,
    docker_cli: DockerCLI,
    busybox_image: str,
    big_input: tuple[bytes, str],
) -> None:
    data, digest = big_input
    cid = docker_cli.run(
        "create", "-i", "--network", NONE, busybox_image, "sh", "-c", "md5sum; exit 3"
    ).stdout.strip()
    done, took = _timed_run(docker_cli, "start", "-a", "-i", cid, data=data)
    assert done.returncode == 3, done.stderr
    assert _md5_of(done.stdout) == digest, done
    assert took < 45, took
    docker_cli.run("rm", cid)


def test_docker_py_exec_and_attach_100mib_arrive_intact(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, big_input: tuple[bytes, str]
) -> None:
    data, digest = big_input
    api = docker_client.api
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    ex = api.exec_create(c.id, ["md5sum"], stdin=True)
    sock = api.exec_start(ex["Id"], socket=True)
    raw = raw_socket(sock)
    raw.sendall(data)
    raw.shutdown(socket.SHUT_WR)
    out, err = demux(read_to_eof(raw, timeout=60))
    sock.close()
    assert (_md5_of(out), err) == (digest, b"")
    c.remove(force=True)
    cid = api.create_container(busybox_image, ["md5sum"], stdin_open=True, network_disabled=True)[
        "Id"
    ]
    sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    raw = raw_socket(sock)
    api.start(cid)
    raw.sendall(data)
    raw.shutdown(socket.SHUT_WR)
    out, err = demux(read_to_eof(raw, timeout=60))
    sock.close()
    assert (_md5_of(out), err) == (digest, b"")
    assert api.wait(cid, timeout=30)["StatusCode"] == 0
    api.remove_container(cid)


def test_cat_echoes_3mib_back_without_a_deadlock(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    """The process's output fills up while stdin is still coming: neither side may wait
    for the other."""
    data = os.urandom(3 * 1024 * 1024)
    done = docker_cli.run_bytes(*RUN, "-i", "--rm", busybox_image, "cat", input=data, timeout=60)
    assert done.stdout == data


def test_process_that_stops_reading_early_still_gives_output_and_exit_code(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, big_input: tuple[bytes, str]
) -> None:
    data, _ = big_input
    done = docker_cli.run_bytes(
        *RUN,
        "-i",
        "--rm",
        busybox_image,
        "sh",
        "-c",
        "head -c 5 | od -An -tx1; exit 4",
        input=data[: 20 * 1024 * 1024],
        timeout=60,
        check=False,
    )
    assert done.returncode == 4, done.stderr
    assert done.stdout.split() == [b"%02x" % b for b in data[:5]]


# ================================================================== output after stdin's EOF


def test_output_after_stdin_eof_arrives_before_the_exit_code(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    script = "cat >/dev/null; sleep 0.5; echo after; echo err-after >&2; exit 5"
    done = docker_cli.run_bytes(
        *RUN, "-i", "--rm", busybox_image, "sh", "-c", script, input=os.urandom(300000), check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (5, b"after\n", b"err-after\n")
    cid = docker_cli.run(*RUN, "-d", busybox_image, "sleep", "300").stdout.strip()
    done = docker_cli.run_bytes(
        "exec", "-i", cid, "sh", "-c", script, input=b"x" * 300000, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (5, b"after\n", b"err-after\n")
    docker_cli.run("rm", "-f", cid)


# ================================================================== exec detach (TTY)


def _tty_exec(api: Any, cid: str, **kw: Any) -> tuple[str, Any, socket.socket]:
    ex = api.exec_create(cid, ["sh"], stdin=True, tty=True, **kw)
    sock = api.exec_start(ex["Id"], socket=True, tty=True)
    raw = raw_socket(sock)
    raw.sendall(b"echo ready$((20+22))\n")
    assert b"ready42" in read_until(raw, lambda d: b"ready42" in d)
    return ex["Id"], sock, raw


def test_exec_tty_detach_ends_the_stream_and_closes_stdin(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    exec_id, sock, raw = _tty_exec(api, c.id)
    raw.sendall(b"\x10\x11")  # ctrl-p ctrl-q
    rest = read_to_eof(raw, timeout=5)
    sock.close()
    assert rest.endswith(EXEC_DETACHED), rest
    # Its stdin closed, the shell ends.
    poll(lambda: exec_inspect(docker_client, exec_id)["Running"] is False, timeout=10)
    assert api.inspect_container(c.id)["State"]["Running"] is True
    c.remove(force=True)


def test_exec_tty_custom_detach_keys_from_the_body(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    # docker-py sends them as ``detachKeys``.
    exec_id, sock, raw = _tty_exec(api, c.id, detach_keys="ctrl-x,y")
    assert exec_inspect(docker_client, exec_id)["DetachKeys"] == "ctrl-x,y"
    raw.sendall(b"\x10\x11echo still$((1+1))\n")  # the default keys are plain input now
    assert b"still2" in read_until(raw, lambda d: b"still2" in d)
    raw.sendall(b"\x18y")
    assert stream_ends(raw)
    sock.close()
    poll(lambda: exec_inspect(docker_client, exec_id)["Running"] is False, timeout=10)
    c.remove(force=True)


def _pty_session(argv: list[str], env: dict[str, str]) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(argv[0], argv, env)
    return pid, fd


def _pty_read_until(fd: int, want: bytes, timeout: float = 15) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while want not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def _wait_pid(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


def test_cli_exec_it_detaches_with_the_config_files_keys(
    whaled: WhaledProcess, docker_client: Any, docker_cli: DockerCLI, busybox_image: str
) -> None:
    with open(os.path.join(docker_cli.config_dir, "config.json"), "w") as f:
        json.dump({"detachKeys": "ctrl-a,q"}, f)
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    pid, fd = _pty_session(docker_cli.argv("exec", "-it", c.id, "sh"), docker_cli.env())
    try:
        os.write(fd, b"echo up$((2+3))\r")
        assert b"up5" in _pty_read_until(fd, b"up5")
        os.write(fd, b"\x01q")  # ctrl-a q
        # The CLI knows the keys too: it stops at them and hangs up itself.
        rest = _pty_read_until(fd, b"\x00", timeout=3)
        code = _wait_pid(pid, 10)
        assert code is not None, "the docker CLI did not end after the detach keys"
        pid = 0
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    assert code in (0, 1), rest  # 1 with "read escape sequence", depending on the version
    ex = docker_client.api.inspect_container(c.id)["ExecIDs"][0]
    assert exec_inspect(docker_client, ex)["DetachKeys"] == "ctrl-a,q"
    c.remove(force=True)
