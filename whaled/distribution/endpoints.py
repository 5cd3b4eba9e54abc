"""Which registry endpoints to try, and whether a registry is insecure (pure).

dockerd's rule: a registry is *insecure* when ``insecure-registries`` names it (``host`` or
``host:port`` exactly as the reference spells it) or when one of its IP addresses falls in an
insecure CIDR; ``127.0.0.0/8`` and ``::1/128`` are insecure by default; the official index
(``docker.io``) never is. For an insecure registry the client tries HTTPS without certificate
verification first and falls back to plain HTTP; for every other registry only verified HTTPS.
Name resolution is I/O, so the caller passes the addresses a host name resolves to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from whaled.errors import InvalidParameter
from whaled.image.reference import DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_INSECURE_CIDRS = ("127.0.0.0/8", "::1/128")
#: where Docker Hub's registry API lives (a reference's ``docker.io`` domain)
DOCKER_HUB_REGISTRY = "registry-1.docker.io"


@dataclass(frozen=True, slots=True, kw_only=True)
class InsecurePolicy:
    names: frozenset[str]
    networks: tuple[IPNetwork, ...]


def insecure_policy(entries: Iterable[str]) -> InsecurePolicy:
    """The policy from ``insecure-registries`` (already validated by the config layer):
    CIDRs become networks, everything else a registry name; the default CIDRs are added."""
    return registry_set(entries, DEFAULT_INSECURE_CIDRS)


def nondistributable_allowed(host: str, entries: Iterable[str]) -> bool:
    """Whether ``allow-nondistributable-artifacts`` names registry ``host`` (by name, or a
    CIDR holding its address): foreign layers are then pushed to it like any other."""
    return is_listed(host, registry_set(entries, ()))


def registry_set(entries: Iterable[str], default_cidrs: Iterable[str]) -> InsecurePolicy:
    """Registry names and CIDRs from a daemon list (``insecure-registries``,
    ``allow-nondistributable-artifacts``), with ``default_cidrs`` added."""
    names: set[str] = set()
    networks: list[IPNetwork] = [ipaddress.ip_network(c) for c in default_cidrs]
    for entry in entries:
        entry = entry.strip()
        for prefix in ("http://", "https://"):
            if entry.startswith(prefix):
                entry = entry[len(prefix) :]
        if not entry:
            continue
        if "/" in entry:
            try:
                net = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                names.add(entry)
                continue
            if net not in networks:
                networks.append(net)
        else:
            names.add(entry)
    return InsecurePolicy(names=frozenset(names), networks=tuple(networks))


def split_host_port(host: str) -> tuple[str, int | None]:
    """``127.0.0.1:5000`` → (``127.0.0.1``, 5000); ``[::1]:5000`` → (``::1``, 5000)."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, None
        rest = host[end + 1 :]
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        return host[1:end], port
    name, sep, port_text = host.rpartition(":")
    if sep and port_text.isdigit() and ":" not in name:
        return name, int(port_text)
    return host, None


def is_insecure(host: str, policy: InsecurePolicy, addresses: Sequence[str] = ()) -> bool:
    """Whether registry ``host`` (``name[:port]``) may be reached without verified TLS.

    ``addresses`` are what the host name resolves to (ignored when ``host`` is an IP).
    """
    if host in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, DOCKER_HUB_REGISTRY):
        return False
    return is_listed(host, policy, addresses)


def is_listed(host: str, policy: InsecurePolicy, addresses: Sequence[str] = ()) -> bool:
    """Whether ``host`` is one of the set's names or in one of its networks."""
    if host in policy.names:
        return True
    name, _ = split_host_port(host)
    try:
        ips = [ipaddress.ip_address(name)]
    except ValueError:
        ips = []
        for a in addresses:
            try:
                ips.append(ipaddress.ip_address(a))
            except ValueError:
                continue
    return any(ip in net for ip in ips for net in policy.networks if ip.version == net.version)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One way to reach a registry: ``https`` (verified or not) or ``http``."""

    scheme: str
    host: str  # host[:port] to connect to
    verify: bool = True

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"


def registry_host(domain: str) -> str:
    """The host serving a reference domain's registry API (docker.io → Docker Hub's)."""
    if domain in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN):
        return DOCKER_HUB_REGISTRY
    return domain


def plan_endpoints(domain: str, insecure: bool) -> list[Endpoint]:
    """Endpoints to try in order: verified HTTPS; or, for an insecure registry, unverified
    HTTPS then plain HTTP (dockerd's order)."""
    host = registry_host(domain)
    if not insecure:
        return [Endpoint(scheme="https", host=host, verify=True)]
    return [
        Endpoint(scheme="https", host=host, verify=False),
        Endpoint(scheme="http", host=host, verify=False),
    ]


def endpoint_from_url(url: str) -> Endpoint:
    """A registry mirror (``registry-mirrors`` entry) as an endpoint: ``https://host[:port]``
    verified, ``http://host[:port]`` plain. InvalidParameter for anything else."""
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if not sep or scheme not in ("http", "https") or not host:
        raise InvalidParameter(f"invalid mirror URL {url!r}: want http(s)://host[:port]")
    return Endpoint(scheme=scheme, host=host, verify=scheme == "https")
