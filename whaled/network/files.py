"""A container's /etc/hostname, /etc/hosts and /etc/resolv.conf, written at create.

The contents come from ``etcfiles`` (pure) with the host's /etc/hosts and /etc/resolv.conf
read here. The files are derived from the container's record (which is fsynced), so they
are replaced without fsync, like dockerd's plain writes of them; they are bind-mounted into
the container at every start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from whaled.config.model import Config
from whaled.network import etcfiles
from whaled.osutil.atomic import replace_file
from whaled.osutil.files import read_text


@dataclass(frozen=True, slots=True, kw_only=True)
class EtcPaths:
    hostname: str
    hosts: str
    resolv_conf: str


def write_etc_files(
    paths: EtcPaths,
    *,
    container_id: str,
    config: Mapping[str, Any],
    host_config: Mapping[str, Any],
    daemon: Config,
    addresses: Sequence[str] = (),
    nameservers: Sequence[str] = (),
    link_lines: Sequence[str] = (),
) -> None:
    """Write the three files for a container's Config/HostConfig under the daemon's
    settings (``host-gateway-ip``, ``dns``, ``dns-search``, ``dns-opts``)."""
    host_net = host_config.get("NetworkMode") == "host"
    hostname = str(config.get("Hostname") or container_id[:12])
    _write(paths.hostname, etcfiles.hostname_file(hostname))
    _write(
        paths.hosts,
        etcfiles.hosts_file(
            hostname=hostname,
            domainname=str(config.get("Domainname") or ""),
            extra_hosts=list(host_config.get("ExtraHosts") or []),
            host_network=host_net,
            host_hosts=read_text("/etc/hosts"),
            host_gateway_ip=daemon.host_gateway_ip or None,
            addresses=addresses,
        )
        + "".join(link_lines),
    )
    _write(
        paths.resolv_conf,
        etcfiles.resolv_conf_file(
            host_resolv=read_text("/etc/resolv.conf"),
            dns=list(host_config.get("Dns") or nameservers or daemon.dns),
            dns_search=list(host_config.get("DnsSearch") or daemon.dns_search),
            dns_options=list(host_config.get("DnsOptions") or daemon.dns_opts),
            host_network=host_net,
        ),
    )


def drop_hosts_name(path: str, name: str) -> None:
    """Remove the /etc/hosts lines whose first name is ``name`` (a removed link's)."""
    text = read_text(path)
    if text is None:
        return
    kept = [
        line
        for line in text.splitlines(keepends=True)
        if (line.split(None, 2)[1:2] or [""])[0] != name
    ]
    _write(path, "".join(kept))


def _write(path: str, text: str) -> None:
    replace_file(path, text.encode(), 0o644)
