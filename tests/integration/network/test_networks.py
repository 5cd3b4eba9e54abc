"""User-defined bridge networks on a real whaled (docker CLI and docker-py): create, list,
inspect, connect/disconnect, remove and prune; containers on a network get an address from
its pool (static ``--ip`` too), reach each other, and leave no veth or namespace behind; the
networks and their address books survive a daemon restart.

Subnets are 10.213.x.0/24 (this file's own); every network is removed at teardown, and the
teardown checks that no bridge or veth of these networks is left on the host."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest
from pyroute2 import IPRoute

from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

RUN = ("run", "--rm")


def _links() -> set[str]:
    with IPRoute() as ipr:
        return {str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}


def _delete_links(names: set[str]) -> None:
    with IPRoute() as ipr:
        for name in names:
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)


def _daemon_devices(c: DockerCLI, whaled: WhaledProcess) -> set[str]:
    """The host devices of this test's daemon: its networks' bridges and the veths in them
    (other daemons on the host, e.g. other test runs, keep theirs)."""
    bridges = {whaled.bridge_name}
    for nid in c.run("network", "ls", "-q", "--no-trunc", check=False).stdout.split():
        out = c.run("network", "inspect", nid, check=False)
        if out.returncode != 0:
            continue
        (net,) = json.loads(out.stdout)
        if net.get("Driver") == "bridge":
            options = net.get("Options") or {}
            bridges.add(options.get("com.docker.network.bridge.name") or f"wh-{nid[:12]}")
    with IPRoute() as ipr:
        links = ipr.get_links()
        index = {str(link.get_attr("IFLA_IFNAME")): link["index"] for link in links}
        masters = {index[b] for b in bridges if b in index}
        veths = {
            str(link.get_attr("IFLA_IFNAME"))
            for link in links
            if link.get_attr("IFLA_MASTER") in masters
        }
    return bridges | veths


@pytest.fixture
def cli(whaled: WhaledProcess, busybox_image: str) -> Iterator[DockerCLI]:
    before = _links()
    with DockerCLI(whaled.sock) as c:
        try:
            yield c
        finally:
            ours = _daemon_devices(c, whaled) - before
            for cid in c.run("ps", "-aq", check=False).stdout.split():
                c.run("rm", "-f", cid, check=False)
            for nid in c.run("network", "ls", "-q", "--filter", "type=custom").stdout.split():
                c.run("network", "rm", nid, check=False)
            # a namespace's veths go when the kernel destroys it, a moment after
            deadline = time.monotonic() + 5
            while (left := ours & _links()) and time.monotonic() < deadline:
                time.sleep(0.1)
            _delete_links(left)  # never leave a device of ours, even when the daemon died
            assert not left, f"left behind: {left}"


def _inspect(cli: DockerCLI, *args: str) -> Any:
    return json.loads(cli.run(*args).stdout)


def test_network_commands(cli: DockerCLI, whaled: WhaledProcess) -> None:
    plugins = _inspect(cli, "info", "--format", "{{json .Plugins}}")
    assert plugins["Network"] == ["bridge", "host", "null"] and plugins["Volume"] == ["local"]
    nid = cli.run(
        "network",
        "create",
        "--subnet",
        "10.213.1.0/24",
        "--gateway",
        "10.213.1.254",
        "--label",
        "team=a",
        "whtnet1",
    ).stdout.strip()
    assert len(nid) == 64
    n = _inspect(cli, "network", "inspect", "whtnet1")[0]
    assert n["Id"] == nid and n["Driver"] == "bridge" and n["Scope"] == "local"
    assert n["IPAM"]["Config"] == [{"Subnet": "10.213.1.0/24", "Gateway": "10.213.1.254"}]
    assert n["Labels"] == {"team": "a"}
    assert f"wh-{nid[:12]}" in _links()

    names = cli.run("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert {"bridge", "host", "none", "whtnet1"} <= set(names)
    custom = cli.run("network", "ls", "-q", "--filter", "type=custom").stdout.split()
    assert custom == [nid[:12]]

    dup = cli.run("network", "create", "--subnet", "10.213.2.0/24", "whtnet1", check=False)
    assert dup.returncode != 0 and "network with name whtnet1 already exists" in dup.stderr
    overlap = cli.run("network", "create", "--subnet", "10.213.1.128/25", "whtx", check=False)
    assert overlap.returncode != 0 and "Pool overlaps" in overlap.stderr
    builtin = cli.run("network", "rm", "bridge", check=False)
    assert builtin.returncode != 0 and "pre-defined network" in builtin.stderr
    missing = cli.run("network", "inspect", "nope", check=False)
    assert missing.returncode != 0 and "network nope not found" in missing.stderr

    cli.run("network", "create", "--subnet", "10.213.3.0/24", "whtnet3")
    pruned = cli.run("network", "prune", "-f").stdout
    assert "whtnet1" in pruned and "whtnet3" in pruned
    assert cli.run("network", "ls", "-q", "--filter", "type=custom").stdout.split() == []
    assert f"wh-{nid[:12]}" not in _links()

    events = whaled.api().events(since=0, until=int(time.time()) + 1, decode=True)
    actions = [e["Action"] for e in events if e["Type"] == "network"]
    assert actions.count("create") == 2 and actions.count("destroy") == 2


def test_containers_on_a_network_reach_each_other(
    cli: DockerCLI, whaled: WhaledProcess, busybox_image: str
) -> None:
    cli.run("network", "create", "--subnet", "10.213.4.0/24", "whtnet4")
    server = cli.run(
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "whtnet4",
        "--ip",
        "10.213.4.50",
        "--network-alias",
        "db",
        busybox_image,
        "sleep",
        "60",
    ).stdout.strip()
    info = _inspect(cli, "inspect", "srv")[0]
    ep = info["NetworkSettings"]["Networks"]["whtnet4"]
    assert ep["IPAddress"] == "10.213.4.50" and ep["IPPrefixLen"] == 24
    assert ep["Gateway"] == "10.213.4.1" and ep["MacAddress"] == "02:42:0a:d5:04:32"
    assert ep["Aliases"] == ["db"] and ep["IPAMConfig"] == {"IPv4Address": "10.213.4.50"}
    hosts = cli.run("exec", "srv", "cat", "/etc/hosts").stdout
    assert f"10.213.4.50\t{server[:12]}" in hosts

    out = cli.run(
        *RUN,
        "--network",
        "whtnet4",
        busybox_image,
        "sh",
        "-c",
        "ip -4 -o addr show eth0; ip route; ping -c1 -W2 10.213.4.50 >/dev/null && echo reached",
    ).stdout
    assert "inet 10.213.4.2/24" in out, out  # the first free address of the pool
    assert "default via 10.213.4.1" in out
    assert out.strip().endswith("reached"), out

    # names: the network's embedded DNS answers the container name, its aliases, its short
    # ID (on the gateway, the containers' nameserver)
    names = cli.run(
        *RUN,
        "--network",
        "whtnet4",
        busybox_image,
        "sh",
        "-c",
        "cat /etc/resolv.conf; for n in srv db " + server[:12] + "; do "
        "ping -c1 -W2 $n | head -1; done",
    ).stdout
    assert "nameserver 10.213.4.1" in names, names
    assert names.count("(10.213.4.50)") == 3, names

    busy = cli.run("network", "rm", "whtnet4", check=False)
    assert busy.returncode != 0 and "has active endpoints" in busy.stderr
    taken = cli.run(
        "run",
        "--rm",
        "--network",
        "whtnet4",
        "--ip",
        "10.213.4.50",
        busybox_image,
        "true",
        check=False,
    )
    assert taken.returncode != 0 and "Address already in use" in taken.stderr

    net = _inspect(cli, "network", "inspect", "whtnet4")[0]
    assert net["Containers"] == {
        server: {
            "Name": "srv",
            "EndpointID": ep["EndpointID"],
            "MacAddress": ep["MacAddress"],
            "IPv4Address": "10.213.4.50/24",
            "IPv6Address": "",
        }
    }
    # stats carry the counters of the container's own interfaces (the pings above)
    stats = whaled.client().containers.get("srv").stats(stream=False)
    eth0 = stats["networks"]["eth0"]
    assert set(stats["networks"]) == {"eth0"}
    assert eth0["rx_packets"] >= 3 and eth0["tx_packets"] >= 3 and eth0["rx_bytes"] > 0, eth0
    assert "networks" not in whaled.api().stats(
        cli.run("run", "-d", "--network", "none", busybox_image, "sleep", "9").stdout.strip(),
        stream=False,
    )

    # the container's veth and namespace go with it
    cli.run("rm", "-f", "srv")
    assert not os.listdir(os.path.join(whaled.exec_root, "netns"))
    assert _inspect(cli, "network", "inspect", "whtnet4")[0]["Containers"] == {}


def test_connect_disconnect_and_restart(
    cli: DockerCLI, whaled: WhaledProcess, busybox_image: str
) -> None:
    cli.run("network", "create", "--subnet", "10.213.5.0/24", "whtnet5")
    cli.run("network", "create", "--subnet", "10.213.6.0/24", "whtnet6")
    cli.run("run", "-d", "--name", "c1", "--network", "whtnet5", busybox_image, "sleep", "60")
    cli.run("network", "connect", "--ip", "10.213.6.9", "whtnet6", "c1")
    addrs = cli.run("exec", "c1", "ip", "-4", "-o", "addr").stdout
    assert "10.213.5.2/24" in addrs and "10.213.6.9/24" in addrs, addrs
    nets = _inspect(cli, "inspect", "c1")[0]["NetworkSettings"]["Networks"]
    assert set(nets) == {"whtnet5", "whtnet6"}
    cli.run("network", "disconnect", "whtnet6", "c1")
    assert "10.213.6.9" not in cli.run("exec", "c1", "ip", "-4", "-o", "addr").stdout
    not_there = cli.run("network", "disconnect", "whtnet6", "c1", check=False)
    assert not_there.returncode != 0

    # addresses are never handed out twice, also across a restart
    cli.run("create", "--name", "c2", "--network", "whtnet5", busybox_image, "sleep", "60")
    whaled.restart()
    cli.run("create", "--name", "c3", "--network", "whtnet5", busybox_image, "sleep", "60")
    ips = {
        name: _inspect(cli, "inspect", name)[0]["NetworkSettings"]["Networks"]["whtnet5"][
            "IPAddress"
        ]
        for name in ("c1", "c2", "c3")
    }
    assert len(set(ips.values())) == 3, ips
    cli.run("start", "c1", "c3")  # the daemon stopped c1 when it stopped
    out = cli.run("exec", "c3", "ping", "-c1", "-W2", ips["c1"]).returncode
    assert out == 0


def test_published_ports(cli: DockerCLI, busybox_image: str) -> None:
    cli.run("network", "create", "--subnet", "10.213.7.0/24", "whtnet7")
    port = _free_port()
    cli.run(
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "whtnet7",
        "-p",
        f"127.0.0.1:{port}:8000",
        "-p",
        "127.0.0.1::9000",
        "--expose",
        "7000",
        busybox_image,
        "sh",
        "-c",
        "while true; do echo hello-from-web | nc -l -p 8000; done & "
        "while true; do nc -l -p 9000 -e cat; done",
    )
    deadline = time.monotonic() + 10
    reply = b""
    while time.monotonic() < deadline and b"hello-from-web" not in reply:
        reply = _fetch(port, b"")
        time.sleep(0.1)
    assert b"hello-from-web" in reply

    ports = _inspect(cli, "inspect", "web")[0]["NetworkSettings"]["Ports"]
    assert ports["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert ports["7000/tcp"] is None
    (other,) = ports["9000/tcp"]
    assert other["HostIp"] == "127.0.0.1" and int(other["HostPort"]) > 0
    assert cli.run("port", "web", "8000").stdout.strip() == f"127.0.0.1:{port}"
    assert _fetch(int(other["HostPort"]), b"echo me\n", want=b"echo me") == b"echo me\n"
    assert f"127.0.0.1:{port}->8000/tcp" in cli.run("ps", "--format", "{{.Ports}}").stdout

    taken = cli.run(
        "run",
        "--rm",
        "--network",
        "whtnet7",
        "-p",
        f"127.0.0.1:{port}:80",
        busybox_image,
        "true",
        check=False,
    )
    assert taken.returncode != 0 and "port is already allocated" in taken.stderr
    nobridge = cli.run(
        "create", "--network", "none", "-p", "8080:80", busybox_image, "true", check=False
    )
    assert nobridge.returncode != 0 and "needs a network with a bridge" in nobridge.stderr
    joined = cli.run(
        "create", "--network", "container:web", "-p", "80", busybox_image, "true", check=False
    )
    assert (
        joined.returncode != 0
        and ("conflicting options: port publishing and the container type network mode")
        in joined.stderr
    )
    # host: created and run as on dockerd, the ports discarded with its warning
    hosted = cli.run(
        "run", "--rm", "--network", "host", "-p", "127.0.0.1::80", busybox_image, "true"
    )
    assert "WARNING: Published ports are discarded when using host network mode" in hosted.stderr

    cli.run("stop", "-t", "1", "web")
    assert _fetch(port, b"") == b""  # nothing listens once the container stopped


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fetch(port: int, send: bytes, want: bytes = b"\n") -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if send:
                s.sendall(send)
            data = b""
            while want not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return b""


def test_default_bridge_network(cli: DockerCLI, whaled: WhaledProcess, busybox_image: str) -> None:
    # the test daemon's default bridge: its own device and subnet (tests/support/whaled_proc)
    bridge = _inspect(cli, "network", "inspect", "bridge")[0]
    subnet = bridge["IPAM"]["Config"][0]["Subnet"]
    assert subnet == str(ipaddress.ip_network(whaled.bridge_bip, strict=False))
    assert bridge["Options"]["com.docker.network.bridge.name"] == whaled.bridge_name
    assert whaled.bridge_name in _links()
    assert cli.run("network", "ls", "-q", "--filter", "type=custom").stdout.split() == []

    port = _free_port()
    cli.run(
        "run",
        "-d",
        "--name",
        "dflt",
        "-p",
        f"127.0.0.1:{port}:8000",
        busybox_image,
        "sh",
        "-c",
        "while true; do echo from-default | nc -l -p 8000; done",
    )
    info = _inspect(cli, "inspect", "dflt")[0]
    settings = info["NetworkSettings"]
    ip = settings["IPAddress"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(subnet)
    assert settings["Networks"]["bridge"]["IPAddress"] == ip
    assert settings["Gateway"] == bridge["IPAM"]["Config"][0]["Gateway"]
    deadline = time.monotonic() + 10
    reply = b""
    while time.monotonic() < deadline and b"from-default" not in reply:
        reply = _fetch(port, b"")
        time.sleep(0.1)
    assert b"from-default" in reply

    out = cli.run(*RUN, busybox_image, "ping", "-c1", "-W2", ip)
    assert out.returncode == 0
    containers = _inspect(cli, "network", "inspect", "bridge")[0]["Containers"]
    assert [v["Name"] for v in containers.values()] == ["dflt"]
    refused = cli.run("network", "rm", "bridge", check=False)
    assert refused.returncode != 0 and "pre-defined network" in refused.stderr


class _Outside:
    """A host "beyond" this one: a namespace of the test's own behind a veth (10.219.77.0/24),
    with a TCP listener that records who connects (nothing leaves the machine)."""

    def __init__(self, tmp: str) -> None:
        from whaled.network import netlink

        self.netlink = netlink
        self.ns = os.path.join(tmp, "outside-ns")
        netlink.make_netns(self.ns)
        fd = os.open(self.ns, os.O_RDONLY)
        try:
            with IPRoute() as ipr:
                ipr.link(
                    "add", ifname="whtup0", kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd}
                )
                (index,) = ipr.link_lookup(ifname="whtup0")
                ipr.addr("add", index=index, address="10.219.77.1", prefixlen=24)
                ipr.link("set", index=index, state="up")
        finally:
            os.close(fd)

        def inside() -> None:
            with IPRoute() as ipr:
                (index,) = ipr.link_lookup(ifname="eth0")
                ipr.addr("add", index=index, address="10.219.77.2", prefixlen=24)
                ipr.link("set", index=index, state="up")

        netlink._in_netns(self.ns, inside)
        self.peers: list[str] = []
        self.ready = threading.Event()
        self.thread = threading.Thread(
            target=netlink._in_netns, args=(self.ns, self._serve), daemon=True
        )
        self.thread.start()
        assert self.ready.wait(10)

    def _serve(self) -> None:
        with socket.socket() as srv:
            srv.bind(("10.219.77.2", 7777))
            srv.listen()
            srv.settimeout(30)
            self.ready.set()
            with contextlib.suppress(OSError):
                conn, addr = srv.accept()
                with conn:
                    self.peers.append(addr[0])
                    conn.sendall(b"outside\n")

    def close(self) -> None:
        _delete_links({"whtup0"})
        self.netlink.remove_netns(self.ns)


def test_outbound_traffic_is_masqueraded(cli: DockerCLI, tmp_path: Any, busybox_image: str) -> None:
    outside = _Outside(str(tmp_path))
    try:
        cli.run("network", "create", "--internal", "--subnet", "10.213.8.0/24", "whtnet8")
        cut_off = cli.run(
            *RUN,
            "--network",
            "whtnet8",
            busybox_image,
            "nc",
            "-w",
            "2",
            "10.219.77.2",
            "7777",
            check=False,
        )
        assert cut_off.returncode != 0 and not outside.peers  # internal: no way out
        out = cli.run(*RUN, busybox_image, "sh", "-c", "nc -w 5 10.219.77.2 7777 </dev/null").stdout
        assert out == "outside\n"
        # the outside host saw the host's own address on that link, not the container's
        assert outside.peers == ["10.219.77.1"]
    finally:
        outside.close()


def test_concurrent_creates_never_share_an_address(
    cli: DockerCLI, whaled: WhaledProcess, busybox_image: str
) -> None:
    cli.run("network", "create", "--subnet", "10.213.9.0/24", "whtnet9")
    ids: list[str] = []
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            api = whaled.api()
            c = api.create_container(
                busybox_image,
                ["true"],
                name=f"many{i}",
                host_config=api.create_host_config(network_mode="whtnet9"),
            )
            ids.append(c["Id"])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(ids) == 32, errors
    net = _inspect(cli, "network", "inspect", "whtnet9")[0]
    addresses = [c["IPv4Address"] for c in net["Containers"].values()]
    assert len(addresses) == 32 and len(set(addresses)) == 32
    # freed on removal, and the record on disk agrees after a restart
    cli.run("rm", *ids[:16])
    whaled.restart()
    net = _inspect(cli, "network", "inspect", "whtnet9")[0]
    assert len(net["Containers"]) == 16


def test_kill9_between_allocation_and_record_leaks_no_address(
    cli: DockerCLI, whaled: WhaledProcess, busybox_image: str
) -> None:
    """A /29 has five addresses for containers. Creates race a SIGKILL of the daemon; and the
    exact state a kill between an address's allocation and the container's record leaves
    (an endpoint of a container that does not exist) is written too. After the restart the
    network holds endpoints of existing containers only, and five new containers fit."""
    nid = cli.run("network", "create", "--subnet", "10.213.10.0/29", "whtnet10").stdout.strip()
    stop = threading.Event()

    def churn(k: int) -> None:
        api = whaled.api(timeout=10)
        i = 0
        while not stop.is_set():
            try:
                c = api.create_container(
                    busybox_image, ["true"], name=f"churn{k}-{i}",
                    host_config=api.create_host_config(network_mode="whtnet10"),
                )  # fmt: skip
                api.remove_container(c["Id"])
            except Exception:
                if not whaled.running:
                    return
            i += 1

    threads = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    whaled.kill9()
    stop.set()
    for t in threads:
        t.join(30)

    path = os.path.join(whaled.data_root, "network", nid + ".json")
    with open(path) as f:
        record = json.load(f)
    record["endpoints"].append(
        {"container_id": "f" * 64, "endpoint_id": "e" * 64, "ip": "10.213.10.6",
         "mac": "02:42:0a:d5:0a:06"}
    )  # fmt: skip
    with open(path, "w") as f:
        json.dump(record, f)

    whaled.start()
    whaled.wait_ready()
    existing = set(cli.run("ps", "-aq", "--no-trunc").stdout.split())
    net = _inspect(cli, "network", "inspect", "whtnet10")[0]
    assert set(net["Containers"]) <= existing
    for cid in existing:
        cli.run("rm", "-f", cid)
    for i in range(5):
        cli.run("create", "--name", f"fits{i}", "--network", "whtnet10", busybox_image, "true")
    full = cli.run("create", "--network", "whtnet10", busybox_image, "true", check=False)
    assert full.returncode != 0


def test_legacy_links(cli: DockerCLI, whaled: WhaledProcess, busybox_image: str) -> None:
    """``--link`` on the default bridge (/etc/hosts and dockerd's variables) and on a user
    network, refused for a container that is missing or stopped, removed with ``rm
    --link``; docker-py's ``links=``."""
    cli.run(
        "run", "-d", "--name", "db", "-e", "SECRET=s3", "--expose", "5432", busybox_image,
        "sleep", "60",
    )  # fmt: skip
    db = _inspect(cli, "inspect", "db")[0]
    ip = db["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    out = cli.run(
        "run", "--name", "web", "--link", "db:pg", busybox_image, "sh", "-c",
        "env | sort; cat /etc/hosts; ping -c1 -W2 pg >/dev/null && echo reached",
    ).stdout  # fmt: skip
    assert f"PG_PORT=tcp://{ip}:5432" in out and f"PG_PORT_5432_TCP_ADDR={ip}" in out, out
    assert "PG_NAME=/web/pg" in out and "PG_ENV_SECRET=s3" in out, out
    assert f"{ip}\tpg {db['Config']['Hostname']} db" in out, out
    assert out.strip().endswith("reached"), out
    assert _inspect(cli, "inspect", "web")[0]["HostConfig"]["Links"] == ["/db:/web/pg"]
    # the variables are the process's, not the container's Config
    assert not [e for e in _inspect(cli, "inspect", "web")[0]["Config"]["Env"] or [] if "PG_" in e]

    cli.run("rm", "--link", "/web/pg")
    assert _inspect(cli, "inspect", "web")[0]["HostConfig"]["Links"] is None
    after = cli.run("start", "-a", "web", check=False).stdout
    assert "PG_NAME" not in after and "\tpg " not in after, after

    # (through the API: the CLI takes a 404 on create for a missing image and pulls)
    api = whaled.api()
    with pytest.raises(docker.errors.NotFound, match="could not get container for nope"):
        api.create_container(
            busybox_image, ["true"], host_config=api.create_host_config(links={"nope": "x"})
        )
    cli.run("create", "--name", "sleeper", busybox_image, "true")
    cli.run("create", "--name", "linker", "--link", "sleeper", busybox_image, "true")
    stopped = cli.run("start", "linker", check=False)
    assert stopped.returncode != 0
    assert "Cannot link to a non running container: /sleeper AS /linker/sleeper" in stopped.stderr

    # a user network: the alias names the child for the linking container
    cli.run("network", "create", "--subnet", "10.213.11.0/24", "whtnet11")
    cli.run("network", "connect", "whtnet11", "db")
    on_net = cli.run(
        "run", "--rm", "--network", "whtnet11", "--link", "db:store", busybox_image,
        "ping", "-c1", "-W2", "store",
    ).stdout  # fmt: skip
    assert "10.213.11." in on_net, on_net

    client = whaled.client()
    logs = client.containers.run(
        busybox_image, ["sh", "-c", "echo $LNK_NAME; cat /etc/hosts"], links={"db": "lnk"},
        remove=True,
    ).decode()  # fmt: skip
    assert logs.startswith("/") and logs.splitlines()[0].endswith("/lnk"), logs
    assert f"{ip}\tlnk" in logs, logs


def test_docker_py_network_api(cli: DockerCLI, whaled: WhaledProcess, busybox_image: str) -> None:
    """The Docker SDK for Python's network calls and container options, as on dockerd."""
    client = whaled.client()
    ipam = docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="10.213.12.0/24", gateway="10.213.12.254")]
    )
    net = client.networks.create(
        "whtpy12", driver="bridge", ipam=ipam, labels={"team": "py"},
        options={"com.docker.network.bridge.name": "whtpy12br",
                 "com.docker.network.driver.mtu": "1400"},
    )  # fmt: skip
    other = client.networks.create("whtpy13", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="10.213.13.0/24")]))  # fmt: skip
    assert net.attrs["IPAM"]["Config"] == [{"Subnet": "10.213.12.0/24", "Gateway": "10.213.12.254"}]
    assert net.attrs["Options"]["com.docker.network.driver.mtu"] == "1400"
    assert [n.name for n in client.networks.list(filters={"label": "team=py"})] == ["whtpy12"]
    assert {n.name for n in client.networks.list(names=["whtpy12", "whtpy13"])} == {
        "whtpy12", "whtpy13"
    }  # fmt: skip
    assert "whtpy12br" in _links()

    # several networks at create (API 1.44 EndpointsConfig), a MAC address, ports
    api = whaled.api()
    server = client.containers.run(
        busybox_image, ["sh", "-c", "echo hi-py | nc -l -p 8000; sleep 60"], detach=True,
        name="pysrv", network="whtpy12", mac_address="02:42:aa:bb:cc:dd",
        ports={"8000/tcp": ("127.0.0.1", None)},
        networking_config={
            "whtpy12": api.create_endpoint_config(aliases=["web"]),
            "whtpy13": api.create_endpoint_config(ipv4_address="10.213.13.77"),
        },
    )  # fmt: skip
    server.reload()
    nets = server.attrs["NetworkSettings"]["Networks"]
    assert set(nets) == {"whtpy12", "whtpy13"}
    assert nets["whtpy12"]["MacAddress"] == "02:42:aa:bb:cc:dd" and nets["whtpy12"]["Aliases"]
    assert nets["whtpy13"]["IPAddress"] == "10.213.13.77"
    host_port = int(server.ports["8000/tcp"][0]["HostPort"])
    deadline = time.monotonic() + 10
    reply = b""
    while time.monotonic() < deadline and b"hi-py" not in reply:
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", host_port), 2) as s:
                reply = s.recv(100)
        time.sleep(0.1)
    assert reply == b"hi-py\n"
    assert server.stats(stream=False)["networks"].keys() == {"eth0", "eth1"}

    # connect with aliases, a link and a static address; disconnect
    client_c = client.containers.run(busybox_image, ["sleep", "60"], detach=True, name="pycli")
    other.connect(client_c, aliases=["cli-alias"], links=[("pysrv", "srvlink")],
                  ipv4_address="10.213.13.88")  # fmt: skip
    client_c.reload()
    ep = client_c.attrs["NetworkSettings"]["Networks"]["whtpy13"]
    assert ep["IPAddress"] == "10.213.13.88" and "cli-alias" in ep["Aliases"]
    assert ep["Links"] == ["pysrv:srvlink"]
    other.reload()
    assert {c.name for c in other.containers} == {"pysrv", "pycli"}
    assert client_c.exec_run(["ping", "-c1", "-W2", "web"]).exit_code != 0  # not on whtpy12
    assert client_c.exec_run(["ping", "-c1", "-W2", "pysrv"]).exit_code == 0
    # the link alias, for pycli only; pysrv (first network whtpy12) finds pycli, which is
    # only on its second network
    assert client_c.exec_run(["ping", "-c1", "-W2", "srvlink"]).exit_code == 0
    assert server.exec_run(["ping", "-c1", "-W2", "srvlink"]).exit_code != 0
    found = server.exec_run(["ping", "-c1", "-W2", "pycli"])
    assert found.exit_code == 0 and b"10.213.13.88" in found.output, found.output
    other.disconnect(client_c)
    client_c.reload()
    assert "whtpy13" not in client_c.attrs["NetworkSettings"]["Networks"]

    with pytest.raises(docker.errors.APIError, match="active endpoints"):
        net.remove()
    server.remove(force=True)
    client_c.remove(force=True)
    pruned = client.networks.prune(filters={"label": "team=py"})
    assert pruned["NetworksDeleted"] == ["whtpy12"]
    other.remove()
    assert not {"whtpy12", "whtpy13"} & {n.name for n in client.networks.list()}
    assert "whtpy12br" not in _links()


def test_a_bridge_deleted_by_hand_is_made_again_at_the_next_start(
    cli: DockerCLI, busybox_image: str
) -> None:
    nid = cli.run("network", "create", "--subnet", "10.213.14.0/24", "whtnet14").stdout.strip()
    _delete_links({f"wh-{nid[:12]}"})
    out = cli.run(*RUN, "--network", "whtnet14", busybox_image, "ping", "-c1", "-W2", "10.213.14.1")
    assert out.returncode == 0 and f"wh-{nid[:12]}" in _links()


def test_ipv6_network(cli: DockerCLI, whaled: WhaledProcess, busybox_image: str) -> None:
    """``--ipv6`` with a ULA subnet (given, or made for the network): containers get an
    IPv6 address too, reach each other over it and find each other's AAAA by name."""
    cli.run(
        "network", "create", "--ipv6", "--subnet", "10.213.15.0/24",
        "--subnet", "fd00:213:15::/64", "whtnet15",
    )  # fmt: skip
    n = _inspect(cli, "network", "inspect", "whtnet15")[0]
    assert n["EnableIPv6"] is True
    assert {"Subnet": "fd00:213:15::/64", "Gateway": "fd00:213:15::1"} in n["IPAM"]["Config"]
    cli.run(
        "run", "-d", "--name", "six", "--network", "whtnet15", "--ip6", "fd00:213:15::66",
        busybox_image, "sleep", "60",
    )  # fmt: skip
    ep = _inspect(cli, "inspect", "six")[0]["NetworkSettings"]["Networks"]["whtnet15"]
    assert ep["GlobalIPv6Address"] == "fd00:213:15::66" and ep["GlobalIPv6PrefixLen"] == 64
    assert ep["IPv6Gateway"] == "fd00:213:15::1"
    out = cli.run(
        *RUN, "--network", "whtnet15", busybox_image, "sh", "-c",
        "ip -6 -o addr show eth0 scope global; ip -6 route; nslookup -type=AAAA six; "
        "ping6 -c1 -W2 fd00:213:15::66 >/dev/null && echo reached6",
    ).stdout  # fmt: skip
    assert "inet6 fd00:213:15::2/64" in out, out
    assert "default via fd00:213:15::1" in out, out
    assert "fd00:213:15::66" in out.split("six", 1)[1], out  # the AAAA answer
    assert out.strip().endswith("reached6"), out
    containers = _inspect(cli, "network", "inspect", "whtnet15")[0]["Containers"]
    assert [c["IPv6Address"] for c in containers.values()] == ["fd00:213:15::66/64"]

    # no subnet given: a unique local /64 of the network's own
    cli.run("network", "create", "--ipv6", "--subnet", "10.213.16.0/24", "whtnet16")
    (v6,) = [
        c for c in _inspect(cli, "network", "inspect", "whtnet16")[0]["IPAM"]["Config"]
        if ":" in c["Subnet"]
    ]  # fmt: skip
    assert v6["Subnet"].startswith("fd") and v6["Subnet"].endswith("::/64")
    refused = cli.run("network", "create", "--subnet", "fd00:213:17::/64", "whtnet17", check=False)
    assert refused.returncode != 0 and "--ipv6" in refused.stderr
