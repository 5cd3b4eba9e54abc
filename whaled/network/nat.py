"""Outbound NAT for bridge networks, in an nftables table of whaled's own (never anyone
else's): traffic from a network's subnet that leaves through another interface is
masqueraded, so containers reach beyond the host; an ``internal`` network's traffic is not
forwarded at all. The whole table is written in one ``nft -f`` transaction each time the
networks change. The ruleset is pure; applying it runs the ``nft`` binary."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from whaled.errors import SystemFailure

DEFAULT_EXEC_ROOT = "/run/whaled"


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeNet:
    bridge: str
    subnet: str
    internal: bool = False


def table_name(exec_root: str) -> str:
    """``whaled`` for the default exec-root; one table per daemon otherwise (tests run
    several daemons on one host)."""
    if exec_root.rstrip("/") == DEFAULT_EXEC_ROOT:
        return "whaled"
    return "whaled_" + hashlib.sha256(exec_root.encode()).hexdigest()[:10]


def ruleset(table: str, nets: Sequence[BridgeNet]) -> str:
    """The table, replaced atomically (created first so that the delete always works)."""
    masq = "".join(
        f'        ip saddr {n.subnet} oifname != "{n.bridge}" masquerade\n'
        for n in nets
        if not n.internal
    )
    isolate = "".join(
        f'        iifname "{n.bridge}" oifname != "{n.bridge}" drop\n'
        f'        oifname "{n.bridge}" iifname != "{n.bridge}" drop\n'
        for n in nets
        if n.internal
    )
    return (
        f"table ip {table}\n"
        f"delete table ip {table}\n"
        f"table ip {table} {{\n"
        "    chain postrouting {\n"
        "        type nat hook postrouting priority srcnat; policy accept;\n"
        f"{masq}"
        "    }\n"
        "    chain forward {\n"
        "        type filter hook forward priority filter; policy accept;\n"
        f"{isolate}"
        "    }\n"
        "}\n"
    )


def available() -> bool:
    return shutil.which("nft") is not None


def apply(table: str, nets: Sequence[BridgeNet]) -> None:
    _nft(ruleset(table, nets))


def remove(table: str) -> None:
    _nft(f"table ip {table}\ndelete table ip {table}\n")


def _nft(text: str) -> None:
    binary = shutil.which("nft")
    if binary is None:
        raise SystemFailure("nft (Debian package nftables) is needed for bridge networks' NAT")
    done = subprocess.run(
        [binary, "-f", "-"], input=text.encode(), capture_output=True, check=False, timeout=30
    )
    if done.returncode != 0:
        raise SystemFailure(f"nft: {done.stderr.decode(errors='replace').strip()}")


def enable_ip_forward() -> None:
    """Routing between the bridges and the host's interfaces (dockerd's ``ip-forward``)."""
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path, encoding="ascii") as f:
        if f.read().strip() == "1":
            return
    with open(path, "w", encoding="ascii") as f:
        f.write("1\n")
