"""The batched rtnetlink requests: what they say, read back with pyroute2's own parsers."""

from __future__ import annotations

import struct

from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from whaled.network import rtnl

V4 = rtnl.Veth(
    bridge="br-x",
    host_ifname="vethabc",
    ifname="eth0",
    mac="02:42:0a:00:00:05",
    mtu=1450,
    address="10.0.0.5",
    prefixlen=24,
    gateway="10.0.0.1",
)
V6 = rtnl.Veth(
    bridge="br-y",
    host_ifname="vethdef",
    ifname="eth1",
    mac="02:42:0a:00:01:05",
    mtu=1500,
    address="10.0.1.5",
    prefixlen=24,
    address6="fd00::5",
    prefixlen6=64,
    gateway6="fd00::1",
)


def decode(cls: type, data: bytes) -> dict:
    msg = cls(data)
    msg.decode()
    return msg


def kind(data: bytes) -> int:
    return int(struct.unpack_from("=IH", data)[1])


def test_a_fresh_namespace_gets_its_veths_then_lo_addresses_and_routes() -> None:
    requests = rtnl.namespace_requests([V4, V6], host_netns_fd=7)
    assert [kind(r) for r in requests] == [
        RTM_NEWLINK,  # eth0
        RTM_NEWLINK,  # eth1
        RTM_NEWLINK,  # lo up
        RTM_NEWADDR,
        RTM_NEWADDR,
        RTM_NEWADDR,  # eth1's IPv6 address
        RTM_NEWROUTE,  # the IPv4 default route, by the first interface's gateway
        RTM_NEWROUTE,  # the IPv6 one, by the interface that has it
    ]
    seqs = [struct.unpack_from("=IHHI", r)[3] for r in requests]
    assert len(set(seqs)) == len(seqs)

    eth0 = decode(ifinfmsg, requests[0])
    assert eth0["index"] == rtnl.FIRST_INDEX and eth0["flags"] & rtnl.IFF_UP
    assert eth0.get_attr("IFLA_IFNAME") == "eth0"
    assert eth0.get_attr("IFLA_ADDRESS") == "02:42:0a:00:00:05"
    assert eth0.get_attr("IFLA_MTU") == 1450
    info = eth0.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    peer = info.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_IFNAME") == "vethabc"
    assert peer.get_attr("IFLA_NET_NS_FD") == 7
    assert decode(ifinfmsg, requests[1])["index"] == rtnl.FIRST_INDEX + 1

    lo = decode(ifinfmsg, requests[2])
    assert lo["index"] == rtnl.LOOPBACK_INDEX and lo["change"] == rtnl.IFF_UP

    a4, a4b, a6 = (decode(ifaddrmsg, r) for r in requests[3:6])
    assert (a4["index"], a4.get_attr("IFA_LOCAL"), a4["prefixlen"]) == (1000, "10.0.0.5", 24)
    assert (a4b["index"], a4b.get_attr("IFA_LOCAL")) == (1001, "10.0.1.5")
    assert (a6["index"], a6.get_attr("IFA_LOCAL"), a6["prefixlen"]) == (1001, "fd00::5", 64)
    assert a6["flags"] == rtnl.IFA_F_NODAD and a4["flags"] == 0

    r4, r6 = (decode(rtmsg, r) for r in requests[6:])
    assert (r4["family"], r4["dst_len"], r4.get_attr("RTA_GATEWAY")) == (2, 0, "10.0.0.1")
    assert (r6["family"], r6.get_attr("RTA_GATEWAY")) == (10, "fd00::1")


def test_an_internal_network_gets_no_route() -> None:
    internal = rtnl.Veth(
        bridge="b", host_ifname="h", ifname="eth0", mac="02:00:00:00:00:01", mtu=1500,
        address="10.9.0.2", prefixlen=16,
    )  # fmt: skip
    requests = rtnl.namespace_requests([internal], host_netns_fd=3)
    assert RTM_NEWROUTE not in [kind(r) for r in requests]


def test_enslave_names_the_device_and_its_bridge() -> None:
    msg = decode(ifinfmsg, rtnl.enslave("vethabc", 42))
    assert msg["index"] == 0 and msg["flags"] == rtnl.IFF_UP
    assert msg.get_attr("IFLA_IFNAME") == "vethabc" and msg.get_attr("IFLA_MASTER") == 42


def test_acks_are_read_by_sequence_number() -> None:
    def ack(seq: int, code: int) -> bytes:
        return struct.pack("=IHHII", 36, 2, 0, seq, 0) + struct.pack("=i", code) + bytes(16)

    assert rtnl.acks(ack(5, 0) + ack(6, -17)) == [(5, 0), (6, 17)]
    assert rtnl.acks(b"") == []


def test_a_connect_adds_one_interface_at_its_position() -> None:
    requests = rtnl.namespace_requests([V4], host_netns_fd=3, first=2)
    assert [kind(r) for r in requests] == [RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE]
    assert decode(ifinfmsg, requests[0])["index"] == rtnl.FIRST_INDEX + 2
    assert decode(ifaddrmsg, requests[1])["index"] == rtnl.FIRST_INDEX + 2
