"""NAT for bridge networks, in an nftables table of whaled's own (never anyone else's):
traffic from a network's subnet that leaves through another interface is masqueraded, so
containers reach beyond the host; an ``internal`` network's traffic is not forwarded at
all; published ports are DNAT rules to the container's address, so the kernel forwards them
(they keep answering while the daemon restarts with live-restore).

Published ports follow dockerd's two ``userland-proxy`` modes for traffic the host sends to
its own loopback: with the proxy (the default) the daemon's listener relays it, so the
DNAT rules skip 127.0.0.0/8; without it the rules DNAT loopback too, the bridges get
``route_localnet`` and such traffic is masqueraded behind the bridge's address.

The whole table is written in one transaction each time networks or ports change. The
ruleset is pure; applying it goes through libnftables."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from whaled.osutil import nftables

DEFAULT_EXEC_ROOT = "/run/whaled"


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeNet:
    bridge: str
    subnet: str
    internal: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PortForward:
    """A published port: ``host_ip:host_port`` (any local address when ``host_ip`` is
    empty or 0.0.0.0) to ``target_ip:target_port``."""

    proto: str
    host_ip: str
    host_port: int
    target_ip: str
    target_port: int


def table_name(exec_root: str) -> str:
    """``whaled`` for the default exec-root; one table per daemon otherwise (tests run
    several daemons on one host)."""
    if exec_root.rstrip("/") == DEFAULT_EXEC_ROOT:
        return "whaled"
    return "whaled_" + hashlib.sha256(exec_root.encode()).hexdigest()[:10]


def _forward_rule(f: PortForward) -> str:
    match = "" if f.host_ip in ("", "0.0.0.0") else f"ip daddr {f.host_ip} "
    return f"        {match}{f.proto} dport {f.host_port} dnat to {f.target_ip}:{f.target_port}\n"


def ruleset(
    table: str,
    nets: Sequence[BridgeNet],
    forwards: Sequence[PortForward] = (),
    *,
    loopback_dnat: bool = False,
) -> str:
    """The table, replaced atomically (created first so that the delete always works)."""
    postrouting = "".join(
        f'        ip saddr {n.subnet} oifname != "{n.bridge}" masquerade\n'
        for n in nets
        if not n.internal
    )
    # a container reaching a published port of its own network through a host address:
    # the answer must come back through the host, so the source becomes the gateway
    postrouting += "".join(
        f'        iifname "{n.bridge}" oifname "{n.bridge}" ct status dnat masquerade\n'
        for n in nets
    )
    if loopback_dnat:
        postrouting += "".join(
            f'        ip saddr 127.0.0.0/8 oifname "{n.bridge}" masquerade\n' for n in nets
        )
    isolate = "".join(
        f'        iifname "{n.bridge}" oifname != "{n.bridge}" drop\n'
        f'        oifname "{n.bridge}" iifname != "{n.bridge}" drop\n'
        for n in nets
        if n.internal
    )
    local = "fib daddr type local" + ("" if loopback_dnat else " ip daddr != 127.0.0.0/8")
    return (
        f"table ip {table}\n"
        f"delete table ip {table}\n"
        f"table ip {table} {{\n"
        "    chain ports {\n"
        f"{''.join(_forward_rule(f) for f in forwards)}"
        "    }\n"
        "    chain prerouting {\n"
        "        type nat hook prerouting priority dstnat; policy accept;\n"
        "        fib daddr type local jump ports\n"
        "    }\n"
        "    chain output {\n"
        "        type nat hook output priority -100; policy accept;\n"
        f"        {local} jump ports\n"
        "    }\n"
        "    chain postrouting {\n"
        "        type nat hook postrouting priority srcnat; policy accept;\n"
        f"{postrouting}"
        "    }\n"
        "    chain forward {\n"
        "        type filter hook forward priority filter; policy accept;\n"
        f"{isolate}"
        "    }\n"
        "}\n"
    )


def available() -> bool:
    return nftables.available()


def apply(
    table: str,
    nets: Sequence[BridgeNet],
    forwards: Sequence[PortForward] = (),
    *,
    loopback_dnat: bool = False,
) -> None:
    nftables.run(ruleset(table, nets, forwards, loopback_dnat=loopback_dnat))


def remove(table: str) -> None:
    nftables.run(f"table ip {table}\ndelete table ip {table}\n")


def route_localnet(bridge: str) -> None:
    """Loopback-addressed packets may be routed out of ``bridge`` (for DNAT of
    127.0.0.1 without the userland proxy, as dockerd sets it)."""
    path = f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet"
    with open(path, "w", encoding="ascii") as f:
        f.write("1\n")


def enable_ip_forward() -> None:
    """Routing between the bridges and the host's interfaces (dockerd's ``ip-forward``)."""
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path, encoding="ascii") as f:
        if f.read().strip() == "1":
            return
    with open(path, "w", encoding="ascii") as f:
        f.write("1\n")
