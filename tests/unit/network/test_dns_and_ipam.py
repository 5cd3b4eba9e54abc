"""Pure network rules: IPAM (subnet choice, checks, allocation), the embedded DNS answers,
the host nameservers it forwards to."""

from __future__ import annotations

import ipaddress

import dns.flags
import dns.message
import dns.rcode
import pytest

from whaled.daemon.dns import host_nameservers
from whaled.errors import Conflict, InvalidParameter
from whaled.network import ipam
from whaled.network.dnsmsg import answer, failure


def net(text: str) -> ipaddress.IPv4Network:
    return ipam.parse_network(text)


def test_pick_subnet_skips_what_is_taken() -> None:
    assert ipam.pick_subnet([]) == net("172.17.0.0/16")
    taken = [net("172.17.0.0/16"), net("172.18.5.0/24")]
    assert ipam.pick_subnet(taken) == net("172.19.0.0/16")
    assert ipam.pick_subnet([net("172.16.0.0/12")]) == net("192.168.0.0/20")
    with pytest.raises(InvalidParameter, match="could not find an available"):
        ipam.pick_subnet([net("0.0.0.0/0")])


def test_check_pool() -> None:
    spec = ipam.check_pool("10.1.0.0/24")
    assert str(spec.gateway) == "10.1.0.1" and spec.ip_range is None
    with pytest.raises(Conflict, match="Pool overlaps"):
        ipam.check_pool("10.1.0.0/24", taken=[net("10.1.0.128/25")])
    with pytest.raises(InvalidParameter, match="no matching subnet for gateway"):
        ipam.check_pool("10.1.0.0/24", "10.2.0.1")
    with pytest.raises(InvalidParameter, match="no matching subnet for range"):
        ipam.check_pool("10.1.0.0/24", ip_range="10.1.1.0/28")
    with pytest.raises(InvalidParameter, match="invalid CIDR"):
        ipam.check_pool("10.1.0.0/33")


def test_allocation_is_round_robin_and_never_twice() -> None:
    spec = ipam.check_pool("10.1.0.0/29", aux={"router": "10.1.0.2"})
    # .0 network, .1 gateway, .2 aux, .7 broadcast: .3 .4 .5 .6 are free
    assert str(ipam.allocate(spec, [])) == "10.1.0.3"
    assert str(ipam.allocate(spec, ["10.1.0.3"], last="10.1.0.3")) == "10.1.0.4"
    # a freed address is not reused at once: allocation goes on after the last one
    assert str(ipam.allocate(spec, ["10.1.0.4"], last="10.1.0.4")) == "10.1.0.5"
    assert str(ipam.allocate(spec, ["10.1.0.5", "10.1.0.6"], last="10.1.0.6")) == "10.1.0.3"
    with pytest.raises(Conflict, match="no available IPv4 addresses"):
        ipam.allocate(spec, ["10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"])
    assert str(ipam.allocate(spec, [], wanted="10.1.0.6")) == "10.1.0.6"
    with pytest.raises(Conflict, match="Address already in use"):
        ipam.allocate(spec, ["10.1.0.6"], wanted="10.1.0.6")
    with pytest.raises(Conflict, match="Address already in use"):
        ipam.allocate(spec, [], wanted="10.1.0.1")  # the gateway
    with pytest.raises(InvalidParameter, match="no configured subnet"):
        ipam.allocate(spec, [], wanted="10.9.0.1")
    ranged = ipam.check_pool("10.1.0.0/24", ip_range="10.1.0.128/25")
    assert str(ipam.allocate(ranged, [])) == "10.1.0.128"
    assert ipam.mac_for(ipaddress.IPv4Address("10.213.4.50")) == "02:42:0a:d5:04:32"


def _query(name: str, rdtype: str = "A") -> bytes:
    return dns.message.make_query(name, rdtype).to_wire()


def test_dns_answers_known_names_and_forwards_others() -> None:
    names = {"web": ["10.0.0.5"], "db": ["10.0.0.6"]}
    reply, forward = answer(_query("web."), names.get)
    assert reply is not None and not forward
    msg = dns.message.from_wire(reply)
    assert msg.flags & dns.flags.AA and msg.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for r in msg.answer[0]] == ["10.0.0.5"] and msg.answer[0].ttl == 600
    # case-insensitive; AAAA of a known name: an empty authoritative answer
    reply, _ = answer(_query("DB."), names.get)
    assert reply is not None
    empty, _ = answer(_query("db.", "AAAA"), names.get)
    assert empty is not None and not dns.message.from_wire(empty).answer
    assert answer(_query("example.org."), names.get) == (None, True)
    assert answer(b"garbage", names.get) == (None, False)
    fail = failure(_query("example.org."))
    assert fail is not None and dns.message.from_wire(fail).rcode() == dns.rcode.SERVFAIL


def test_host_nameservers_skip_loopback() -> None:
    text = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch x\nnameserver ::1\n"
    assert host_nameservers(text) == ["10.0.0.2"]
    assert host_nameservers(None) == []


def test_resolv_conf_switches_to_an_embedded_server_once() -> None:
    from whaled.network.etcfiles import with_nameserver

    host = "search example.internal\nnameserver 192.0.2.53\noptions ndots:1\n"
    switched = with_nameserver(host, "10.1.0.1", {"10.1.0.1", "10.2.0.1"})
    assert switched == "nameserver 10.1.0.1\nsearch example.internal\noptions ndots:1\n"
    assert switched is not None
    assert with_nameserver(switched, "10.2.0.1", {"10.1.0.1", "10.2.0.1"}) is None


def test_aaaa_answers_on_ipv6_networks() -> None:
    names = {"web": ["10.0.0.5", "fd00:1::5"]}
    a, _ = answer(_query("web.", "A"), names.get)
    aaaa, _ = answer(_query("web.", "AAAA"), names.get)
    assert a is not None and aaaa is not None
    assert [r.to_text() for r in dns.message.from_wire(a).answer[0]] == ["10.0.0.5"]
    assert [r.to_text() for r in dns.message.from_wire(aaaa).answer[0]] == ["fd00:1::5"]


def test_ipv6_pools_and_allocation() -> None:
    ula = ipam.ula_subnet(bytes.fromhex("a1b2c3d4e5f6"))
    assert str(ula) == "fda1:b2c3:d4e5::/64" and ula.is_private
    spec = ipam.check_pool6("fd00:10::/64")
    assert str(spec.gateway) == "fd00:10::1"
    first = ipam.allocate6(spec, [])
    assert str(first) == "fd00:10::2"
    assert str(ipam.allocate6(spec, ["fd00:10::2", "fd00:10::4"])) == "fd00:10::3"
    assert str(ipam.allocate6(spec, [], wanted="fd00:10::99")) == "fd00:10::99"
    with pytest.raises(Conflict):
        ipam.allocate6(spec, ["fd00:10::99"], wanted="fd00:10::99")
    with pytest.raises(InvalidParameter, match="contain the IP address"):
        ipam.allocate6(spec, [], wanted="fd00:11::1")
    with pytest.raises(InvalidParameter, match="not an IPv6 subnet"):
        ipam.check_pool6("10.0.0.0/24")
    with pytest.raises(InvalidParameter, match="no matching subnet for gateway"):
        ipam.check_pool6("fd00:10::/64", "fd00:11::1")
    with pytest.raises(InvalidParameter, match="IPv6 subnet"):
        ipam.parse_network("fd00::/64")
