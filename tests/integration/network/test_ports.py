"""Published ports on a real whaled: DNAT rules in whaled's own nftables table for traffic to
any host address, the userland proxy (or loopback DNAT without it) for 127.0.0.1, UDP, host
port ranges, ports that keep answering while a live-restore daemon restarts, and nothing of
whaled's left on the host after a daemon stop without live-restore.

Traffic goes only to the host's own addresses (127.0.0.1 and the test network's gateway).
Subnets are 10.213.2x.0/24 (this file's own); the ``cli`` fixture removes what a test
leaves."""

from __future__ import annotations

import ctypes
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pyroute2 import IPRoute

from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess
from whaled.network import nat
from whaled.osutil import nftables

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _links() -> set[str]:
    with IPRoute() as ipr:
        return {str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}


@pytest.fixture
def cli(whaled: WhaledProcess, busybox_image: str) -> Iterator[DockerCLI]:
    with DockerCLI(whaled.sock) as c:
        try:
            yield c
        finally:
            if whaled.running:
                for cid in c.run("ps", "-aq", check=False).stdout.split():
                    c.run("rm", "-f", cid, check=False)
                for nid in c.run("network", "ls", "-q", "--filter", "type=custom").stdout.split():
                    c.run("network", "rm", nid, check=False)


def _inspect(cli: DockerCLI, name: str) -> Any:
    return json.loads(cli.run("inspect", name).stdout)[0]


def _table(whaled: WhaledProcess) -> str:
    try:
        return nftables.run(f"list table ip {nat.table_name(whaled.exec_root)}")
    except Exception:
        return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fetch(host: str, port: int, timeout: float = 10.0) -> bytes:
    """The first line a TCP server at ``host:port`` sends, retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                data = b""
                while b"\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            return b""
        time.sleep(0.1)


def _udp_echo_in(netns: str, port: int) -> socket.socket:
    """A UDP socket bound to ``port`` inside the namespace at ``netns`` (made by a thread
    that moves there and ends), echoing on a daemon thread of the test."""
    made: list[socket.socket] = []

    def make() -> None:
        fd = os.open(netns, os.O_RDONLY)
        try:
            assert _libc.setns(fd, CLONE_NEWNET) == 0, ctypes.get_errno()
        finally:
            os.close(fd)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        made.append(s)

    t = threading.Thread(target=make)
    t.start()
    t.join()
    (sock,) = made

    def echo() -> None:
        while True:
            try:
                data, addr = sock.recvfrom(2048)
                sock.sendto(b"echo:" + data, addr)
            except OSError:
                return

    threading.Thread(target=echo, daemon=True).start()
    return sock


def _udp_ask(host: str, port: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        for _ in range(10):
            s.sendto(data, (host, port))
            try:
                return s.recvfrom(2048)[0]
            except TimeoutError:
                continue
    return b""


SERVE = "while true; do echo hello-{0} | nc -l -p 8000; done"


def test_dnat_udp_and_ranges(cli: DockerCLI, whaled: WhaledProcess, busybox_image: str) -> None:
    cli.run("network", "create", "--subnet", "10.213.21.0/24", "whtports21")
    gateway = "10.213.21.1"
    # the first port of the range is taken on the host: the next free one is used
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        first = int(taken.getsockname()[1])
        cli.run(
            "run", "-d", "--name", "web", "--network", "whtports21",
            "-p", f"{first}-{first + 5}:8000", "-p", "127.0.0.1::5000/udp",
            busybox_image, "sh", "-c", SERVE.format("web"),
        )  # fmt: skip
    ports = _inspect(cli, "web")["NetworkSettings"]["Ports"]
    (tcp,) = ports["8000/tcp"]
    host_port = int(tcp["HostPort"])
    assert tcp["HostIp"] == "0.0.0.0" and first < host_port <= first + 5, ports
    (udp,) = ports["5000/udp"]
    assert udp["HostIp"] == "127.0.0.1"
    ip = _inspect(cli, "web")["NetworkSettings"]["Networks"]["whtports21"]["IPAddress"]

    # to a host address other than loopback: the kernel's DNAT; to 127.0.0.1: the proxy
    assert _fetch(gateway, host_port) == b"hello-web\n"
    assert _fetch("127.0.0.1", host_port) == b"hello-web\n"
    table = _table(whaled)
    assert f"tcp dport {host_port} dnat to {ip}:8000" in table, table
    assert f"udp dport {udp['HostPort']} dnat to {ip}:5000" in table, table

    cid = _inspect(cli, "web")["Id"]
    echo = _udp_echo_in(os.path.join(whaled.exec_root, "netns", cid), 5000)
    try:
        assert _udp_ask("127.0.0.1", int(udp["HostPort"]), b"ping") == b"echo:ping"
    finally:
        echo.close()
    assert cli.run("port", "web", "5000/udp").stdout.strip() == f"127.0.0.1:{udp['HostPort']}"

    # a container reaches another's published port through the host's address
    out = cli.run(
        "run", "--rm", "--network", "whtports21", busybox_image,
        "nc", "-w", "5", gateway, str(host_port),
    ).stdout  # fmt: skip
    assert out == "hello-web\n"

    cli.run("rm", "-f", "web")
    assert str(host_port) not in _table(whaled)
    with socket.socket() as again:  # the port is free again (no listener holds it)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("0.0.0.0", host_port))
        again.listen()


@pytest.mark.parametrize("proxy", [True, False], ids=["userland-proxy", "loopback-dnat"])
def test_ports_keep_answering_across_a_live_restore_restart(
    whaled: WhaledProcess, busybox_image: str, proxy: bool
) -> None:
    whaled.write_config({"live-restore": True, "userland-proxy": proxy})
    whaled.restart()
    with DockerCLI(whaled.sock) as cli:
        try:
            cli.run("network", "create", "--subnet", "10.213.22.0/24", "whtports22")
            gateway = "10.213.22.1"
            port = _free_port()
            cli.run(
                "run", "-d", "--name", "kept", "--network", "whtports22",
                "-p", f"{port}:8000", busybox_image, "sh", "-c", SERVE.format("kept"),
            )  # fmt: skip
            assert _fetch(gateway, port) == b"hello-kept\n"
            assert _fetch("127.0.0.1", port) == b"hello-kept\n"

            whaled.stop()
            # the daemon is down: the kernel still forwards (loopback too without the proxy)
            assert _fetch(gateway, port, timeout=3) == b"hello-kept\n"
            if not proxy:
                assert _fetch("127.0.0.1", port, timeout=3) == b"hello-kept\n"

            whaled.start()
            whaled.wait_ready()
            assert _fetch("127.0.0.1", port) == b"hello-kept\n"
            assert _fetch(gateway, port) == b"hello-kept\n"
            # the address and the name of the running container are still good
            reached = cli.run(
                "run", "--rm", "--network", "whtports22", busybox_image,
                "nc", "-w", "5", "kept", "8000",
            ).stdout  # fmt: skip
            assert reached == "hello-kept\n"
            ports = _inspect(cli, "kept")["NetworkSettings"]["Ports"]
            assert ports["8000/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(port)}]
            # the restarted daemon holds the port again: it cannot be published twice
            taken = cli.run(
                "run", "--rm", "--network", "whtports22", "-p", f"{port}:80",
                busybox_image, "true", check=False,
            )  # fmt: skip
            assert taken.returncode != 0 and "port is already allocated" in taken.stderr
            cli.run("rm", "-f", "kept")
            assert f"dport {port}" not in _table(whaled)
        finally:
            for cid in cli.run("ps", "-aq", check=False).stdout.split():
                cli.run("rm", "-f", cid, check=False)
            cli.run("network", "rm", "whtports22", check=False)


def test_stop_without_live_restore_leaves_nothing(
    cli: DockerCLI, whaled: WhaledProcess, busybox_image: str
) -> None:
    cli.run("network", "create", "--subnet", "10.213.23.0/24", "whtports23")
    nid = json.loads(cli.run("network", "inspect", "whtports23").stdout)[0]["Id"]
    bridge = f"wh-{nid[:12]}"
    cli.run(
        "run", "-d", "--name", "gone", "--stop-timeout", "1", "--network", "whtports23",
        "-p", f"{_free_port()}:8000", busybox_image, "sleep", "60",
    )  # fmt: skip
    cli.run("run", "-d", "--name", "gone2", "--stop-timeout", "1", busybox_image, "sleep", "60")
    assert bridge in _links() and whaled.bridge_name in _links()
    assert _table(whaled)
    veths = {  # the host ends of the containers' veths (whaled names them wh<endpoint>)
        "wh" + ep["EndpointID"][:11]
        for name in ("gone", "gone2")
        for ep in _inspect(cli, name)["NetworkSettings"]["Networks"].values()
    }
    assert len(veths) == 2 and veths <= _links()

    whaled.stop()
    links = _links()
    assert bridge not in links and whaled.bridge_name not in links
    assert not veths & links
    assert not _table(whaled)
    assert not os.listdir(os.path.join(whaled.exec_root, "netns"))

    whaled.start()  # and it all comes back
    whaled.wait_ready()
    assert bridge in _links() and _table(whaled)
    cli.run("start", "gone")
    assert "10.213.23." in cli.run("exec", "gone", "ip", "-4", "-o", "addr").stdout
