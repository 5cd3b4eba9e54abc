"""The per-container /etc/hostname, /etc/hosts and /etc/resolv.conf contents (pure).

dockerd's rules for the network modes whaled has (none, host, a private netns with loopback
only, container:<id>):

- hostname: Config.Hostname or the first 12 characters of the ID (with ``host`` networking
  the host's name, unless one was given);
- hosts: the loopback entries, then ``ExtraHosts`` (``name:ip``), then the container's own
  name on 127.0.1.1-style loopback only when it has no other address; with ``host``
  networking the host's /etc/hosts is copied and ExtraHosts appended;
- resolv.conf: the host's file with localhost nameservers dropped (they cannot be reached
  from another network namespace) and ``--dns``/``--dns-search``/``--dns-option`` replacing
  the matching lines; with ``host`` networking the host's file unchanged unless overridden.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence

from whaled.errors import InvalidParameter

HOST_GATEWAY = "host-gateway"

LOOPBACK_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def hostname_file(hostname: str) -> str:
    return hostname + "\n"


def _extra_host_lines(extra_hosts: Sequence[str], host_gateway_ip: str | None) -> list[str]:
    lines = []
    for entry in extra_hosts:
        name, sep, ip = entry.partition(":")
        if not sep or not name or not ip:
            raise InvalidParameter(f'invalid IP address in add-host: "{ip or entry}"')
        if ip == HOST_GATEWAY:
            if not host_gateway_ip:
                raise InvalidParameter("unable to derive the IP value for host-gateway")
            ip = host_gateway_ip
        ip = ip.strip("[]")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidParameter(f'invalid IP address in add-host: "{ip}"') from None
        lines.append(f"{ip}\t{name}\n")
    return lines


def hosts_file(
    *,
    hostname: str,
    domainname: str,
    extra_hosts: Sequence[str],
    host_network: bool,
    host_hosts: str | None,
    host_gateway_ip: str | None = None,
    addresses: Sequence[str] = (),
) -> str:
    """``addresses``: the container's own addresses on its networks (each names it, as
    dockerd writes them); without any, ``127.0.1.1`` does."""
    extra = "".join(_extra_host_lines(extra_hosts, host_gateway_ip))
    if host_network:
        base = host_hosts if host_hosts is not None else LOOPBACK_HOSTS
        if base and not base.endswith("\n"):
            base += "\n"
        return base + extra
    fqdn = f"{hostname}.{domainname}" if domainname else hostname
    names = f"{fqdn} {hostname}" if domainname else hostname
    own = "".join(f"{a}\t{names}\n" for a in addresses) or f"127.0.1.1\t{names}\n"
    return LOOPBACK_HOSTS + extra + own


def _is_localhost_nameserver(line: str) -> bool:
    parts = line.split()
    if len(parts) < 2 or parts[0] != "nameserver":
        return False
    address = parts[1]
    return address.startswith("127.") or address in ("::1", "0:0:0:0:0:0:0:1")


def resolv_conf_file(
    *,
    host_resolv: str | None,
    dns: Sequence[str],
    dns_search: Sequence[str],
    dns_options: Sequence[str],
    host_network: bool,
) -> str:
    lines = (host_resolv or "").splitlines()
    if dns:
        lines = [ln for ln in lines if not ln.strip().startswith("nameserver")]
        lines.extend(f"nameserver {d}" for d in dns)
    elif not host_network:
        lines = [ln for ln in lines if not _is_localhost_nameserver(ln.strip())]
    if dns_search:
        lines = [ln for ln in lines if not ln.strip().startswith(("search", "domain"))]
        domains = [d for d in dns_search if d != "."]  # "." means: no search domains
        if domains:
            lines.append("search " + " ".join(domains))
    if dns_options:
        lines = [ln for ln in lines if not ln.strip().startswith("options")]
        lines.append("options " + " ".join(dns_options))
    text = "\n".join(lines)
    return text + "\n" if text else ""


def with_nameserver(text: str, nameserver: str, embedded: Collection[str]) -> str | None:
    """A resolv.conf that names ``nameserver`` (a user network's embedded DNS server) in
    place of the host's nameservers, for a container connected to its first user network
    while it runs; None when it already names one of the ``embedded`` servers."""
    lines = text.splitlines()
    current = [
        ln.split()[1] for ln in lines if ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1
    ]
    if any(ns in embedded for ns in current):
        return None
    kept = [ln for ln in lines if ln.split()[:1] != ["nameserver"]]
    return "\n".join([f"nameserver {nameserver}", *kept]) + "\n"
