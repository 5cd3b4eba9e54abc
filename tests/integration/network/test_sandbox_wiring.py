"""``netlink.make_sandbox`` on the real kernel: a namespace wired in two batches of
requests, seen from inside with pyroute2; a host end left by an earlier namespace is
replaced; a missing bridge is reported before anything is made. Bridges, veths and
namespaces are the test's own (wts*, 10.231.91-92.0/24, fd00:231:92::/64) and removed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from whaled.network import netlink, rtnl

BRIDGES = ("wtsb0", "wtsb1")


def _delete(names: tuple[str, ...]) -> None:
    with IPRoute() as ipr:
        for name in names:
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)


@pytest.fixture
def bridges() -> Iterator[None]:
    netlink.ensure_bridge("wtsb0", "10.231.91.1", 24, 1500)
    netlink.ensure_bridge("wtsb1", "10.231.92.1", 24, 1400, "fd00:231:92::1", 64)
    try:
        yield
    finally:
        _delete(("wtsv0", "wtsv1", *BRIDGES))


LINKS = [
    rtnl.Veth(
        bridge="wtsb0",
        host_ifname="wtsv0",
        ifname="eth0",
        mac="02:42:0a:e7:5b:05",
        mtu=1500,
        address="10.231.91.5",
        prefixlen=24,
        gateway="10.231.91.1",
    ),
    rtnl.Veth(
        bridge="wtsb1",
        host_ifname="wtsv1",
        ifname="eth1",
        mac="02:42:0a:e7:5c:05",
        mtu=1400,
        address="10.231.92.5",
        prefixlen=24,
        address6="fd00:231:92::5",
        prefixlen6=64,
    ),
]


def _inside(path: str) -> dict[str, object]:
    seen: dict[str, object] = {}

    def look() -> None:
        with IPRoute() as ipr:
            links = {m.get_attr("IFLA_IFNAME"): m for m in ipr.get_links()}
            seen["up"] = sorted(n for n, m in links.items() if m["flags"] & 1)
            seen["mac"] = {n: m.get_attr("IFLA_ADDRESS") for n, m in links.items()}
            seen["mtu"] = {n: m.get_attr("IFLA_MTU") for n, m in links.items()}
            seen["addrs"] = sorted(
                (links_by_index(links)[a["index"]], a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in ipr.get_addr()
                if not a.get_attr("IFA_ADDRESS").startswith("fe80")
            )
            seen["routes"] = sorted(
                r.get_attr("RTA_GATEWAY") for r in ipr.get_routes(family=2) if r["dst_len"] == 0
            )

    def links_by_index(links: dict) -> dict[int, str]:
        return {m["index"]: n for n, m in links.items()}

    netlink._in_netns(path, look)
    return seen


def _masters() -> dict[str, str]:
    with IPRoute() as ipr:
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
        return {
            names[m["index"]]: names.get(m.get_attr("IFLA_MASTER"), "")
            for m in ipr.get_links()
            if names[m["index"]] in ("wtsv0", "wtsv1")
        }


def test_a_namespace_is_wired_in_one_visit(tmp_path: Path, bridges: None) -> None:
    path = str(tmp_path / "ns")
    netlink.make_sandbox(path, LINKS)
    try:
        seen = _inside(path)
        assert seen["up"] == ["eth0", "eth1", "lo"]
        assert seen["mac"]["eth0"] == "02:42:0a:e7:5b:05"  # type: ignore[index]
        assert seen["mtu"]["eth1"] == 1400  # type: ignore[index]
        assert seen["addrs"] == [
            ("eth0", "10.231.91.5", 24),
            ("eth1", "10.231.92.5", 24),
            ("eth1", "fd00:231:92::5", 64),
            ("lo", "127.0.0.1", 8),
            ("lo", "::1", 128),
        ]
        assert seen["routes"] == ["10.231.91.1"]
        assert _masters() == {"wtsv0": "wtsb0", "wtsv1": "wtsb1"}
    finally:
        netlink.remove_netns(path)


def test_a_host_end_left_behind_is_replaced(tmp_path: Path, bridges: None) -> None:
    with IPRoute() as ipr:  # as if an earlier namespace were not destroyed yet
        ipr.link("add", ifname="wtsv0", kind="veth", peer={"ifname": "wtsv0p"})
    path = str(tmp_path / "ns")
    netlink.make_sandbox(path, LINKS[:1])
    try:
        assert _inside(path)["routes"] == ["10.231.91.1"]
        assert _masters() == {"wtsv0": "wtsb0"}
    finally:
        netlink.remove_netns(path)
        _delete(("wtsv0p",))


def test_a_missing_bridge_stops_before_anything_is_made(tmp_path: Path) -> None:
    path = str(tmp_path / "ns")
    with pytest.raises(netlink.BridgeGone):
        netlink.make_sandbox(path, LINKS[:1])
    assert not os.path.lexists(path)
    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname="wtsv0")
