"""IP address management (pure): which subnet a new network gets and which address each
endpoint gets, never twice, with dockerd's messages.

A network's pool is its subnet, minus the network and broadcast addresses, the gateway and
the auxiliary addresses; ``ip_range`` narrows where dynamic addresses come from (a static
``--ip`` may be anywhere in the subnet). Allocation takes the lowest free address after the
last one handed out (dockerd's round-robin), wrapping around, so a just-freed address is not
reused at once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from whaled.errors import Conflict, InvalidParameter

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address
IPv6Network = ipaddress.IPv6Network
IPv6Address = ipaddress.IPv6Address

#: dockerd's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16 in /20s.
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (
    ("172.17.0.0/16", 16),
    ("172.18.0.0/16", 16),
    ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
)


class NoSubnet(InvalidParameter):
    def __init__(self) -> None:
        super().__init__(
            "could not find an available, non-overlapping IPv4 address pool among the "
            "defaults to assign to the network"
        )


def is_ipv6_cidr(text: str) -> bool:
    return ":" in text


def parse_network(text: str) -> IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidParameter(f"invalid CIDR address: {text}") from None
    if not isinstance(net, IPv4Network):
        raise InvalidParameter(f"{text} is an IPv6 subnet: here an IPv4 one is needed")
    return net


def parse_address(text: str) -> IPv4Address:
    try:
        addr = ipaddress.ip_address(text.split("/", 1)[0])
    except ValueError:
        raise InvalidParameter(f"invalid address: {text}") from None
    if not isinstance(addr, IPv4Address):
        raise InvalidParameter(f"{text} is an IPv6 address: here an IPv4 one is needed")
    return addr


def overlaps(net: IPv4Network, others: Iterable[IPv4Network]) -> bool:
    return any(net.overlaps(o) for o in others)


def pick_subnet(
    taken: Collection[IPv4Network], pools: Sequence[tuple[str, int]] = DEFAULT_POOLS
) -> IPv4Network:
    """The first subnet of the pools that overlaps nothing in ``taken`` (other networks
    and the host's routes)."""
    for base, size in pools:
        for candidate in ipaddress.ip_network(base).subnets(new_prefix=size):
            assert isinstance(candidate, IPv4Network)
            if not overlaps(candidate, taken):
                return candidate
    raise NoSubnet()


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSpec:
    """What a network's IPAM config says, checked."""

    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None
    aux: Mapping[str, IPv4Address] = field(default_factory=dict)


def check_pool(
    subnet: str,
    gateway: str = "",
    ip_range: str = "",
    aux: Mapping[str, str] | None = None,
    *,
    taken: Collection[IPv4Network] = (),
) -> PoolSpec:
    """Validate a requested pool (dockerd's messages); the gateway defaults to the
    subnet's first address."""
    net = parse_network(subnet)
    if overlaps(net, taken):
        raise Conflict("invalid pool request: Pool overlaps with other one on this address space")
    if net.prefixlen > 30:
        raise InvalidParameter(f"subnet {net} is too small: at least a /30 is needed")
    gw = parse_address(gateway) if gateway else net.network_address + 1
    if gw not in net:
        raise InvalidParameter(f"no matching subnet for gateway {gw}")
    rng: IPv4Network | None = None
    if ip_range:
        rng = parse_network(ip_range)
        if not rng.subnet_of(net):
            raise InvalidParameter(f"no matching subnet for range {ip_range}")
    aux_addrs: dict[str, IPv4Address] = {}
    for name, text in (aux or {}).items():
        addr = parse_address(text)
        if addr not in net:
            raise InvalidParameter(f"no matching subnet for aux-address {addr}")
        aux_addrs[name] = addr
    return PoolSpec(subnet=net, gateway=gw, ip_range=rng, aux=aux_addrs)


def reserved(spec: PoolSpec) -> set[IPv4Address]:
    net = spec.subnet
    return {net.network_address, net.broadcast_address, spec.gateway, *spec.aux.values()}


def allocate(
    spec: PoolSpec,
    in_use: Collection[str],
    *,
    wanted: str = "",
    last: str = "",
    network_name: str = "",
) -> IPv4Address:
    """An address for a new endpoint: ``wanted`` if free (anywhere in the subnet), else
    the next free one of the range after ``last``."""
    used = {parse_address(a) for a in in_use} | reserved(spec)
    if wanted:
        addr = parse_address(wanted)
        if addr not in spec.subnet:
            raise InvalidParameter(
                f"no configured subnet or ip-range contain the IP address {addr}"
            )
        if addr in used:
            raise Conflict("Address already in use")
        return addr
    span = spec.ip_range or spec.subnet
    first, end = int(span.network_address), int(span.broadcast_address)
    start = int(parse_address(last)) + 1 if last else first
    if not first <= start <= end:
        start = first
    size = end - first + 1
    for i in range(size):
        candidate = IPv4Address(first + (start - first + i) % size)
        if candidate not in used:
            return candidate
    raise Conflict(f"no available IPv4 addresses on this network's address pools: {network_name}")


def mac_for(addr: IPv4Address) -> str:
    """dockerd's MAC for an address: 02:42 then the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


# ---------------------------------------------------------------------------- IPv6


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool6Spec:
    """An IPv6 network's pool: its subnet and gateway (no ranges or aux addresses)."""

    subnet: IPv6Network
    gateway: IPv6Address


def ula_subnet(seed: bytes) -> IPv6Network:
    """A unique local /64 (RFC 4193) for a network that asked for IPv6 without a subnet:
    ``fd`` and a 40-bit global ID taken from ``seed`` (the network's ID)."""
    global_id = int.from_bytes(seed[:5].ljust(5, b"\0"), "big")
    prefix = (0xFD << 120) | (global_id << 80)
    return IPv6Network((prefix, 64))


def check_pool6(subnet: str, gateway: str = "") -> Pool6Spec:
    try:
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        raise InvalidParameter(f"invalid CIDR address: {subnet}") from None
    if not isinstance(net, IPv6Network):
        raise InvalidParameter(f"{subnet} is not an IPv6 subnet")
    if net.prefixlen > 124:
        raise InvalidParameter(f"subnet {net} is too small for a network")
    try:
        gw = ipaddress.ip_address(gateway) if gateway else net.network_address + 1
    except ValueError:
        raise InvalidParameter(f"invalid address: {gateway}") from None
    if not isinstance(gw, IPv6Address) or gw not in net:
        raise InvalidParameter(f"no matching subnet for gateway {gateway}")
    return Pool6Spec(subnet=net, gateway=gw)


def allocate6(
    spec: Pool6Spec, in_use: Collection[str], *, wanted: str = "", network_name: str = ""
) -> IPv6Address:
    """An IPv6 address for a new endpoint: ``wanted`` if free, else the lowest free one
    after the subnet's first address (the pools are large: no round-robin needed)."""
    used = {ipaddress.ip_address(a) for a in in_use if a} | {spec.gateway}
    if wanted:
        try:
            addr = ipaddress.ip_address(wanted)
        except ValueError:
            raise InvalidParameter(f"invalid address: {wanted}") from None
        if not isinstance(addr, IPv6Address) or addr not in spec.subnet:
            raise InvalidParameter(
                f"no configured subnet or ip-range contain the IP address {wanted}"
            )
        if addr in used:
            raise Conflict("Address already in use")
        return addr
    first = int(spec.subnet.network_address) + 1
    for i in range(len(used) + 1):
        candidate = IPv6Address(first + i)
        if candidate not in used and candidate in spec.subnet:
            return candidate
    raise Conflict(f"no available IPv6 addresses on this network's address pools: {network_name}")
