"""Published ports (pure): ``HostConfig.PortBindings`` (``-p``) and ``PublishAllPorts``
(``-P``, the image's and the create's ``ExposedPorts``) → the mappings to set up, and their
shape in ``NetworkSettings.Ports``. dockerd's validation messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from whaled.errors import InvalidParameter

PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True, slots=True, kw_only=True)
class PortMapping:
    proto: str
    container_port: int
    host_ip: str  # "" = every address (0.0.0.0)
    host_port: int  # 0 = any free port

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"


def parse_port_key(key: str) -> tuple[int, str]:
    """``80/tcp`` (protocol defaults to tcp) → (80, "tcp")."""
    port, _, proto = str(key).partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidParameter(f"invalid proto '{proto}'")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidParameter(f'invalid port specification: "{key}"')
    return int(port), proto


def _host_port(text: str) -> int:
    if not text:
        return 0
    first = text.split("-", 1)[0]
    if not first.isdigit() or not 0 < int(first) < 65536:
        raise InvalidParameter(f'invalid port specification: "{text}"')
    return int(first)


def port_mappings(host_config: Mapping[str, Any], config: Mapping[str, Any]) -> list[PortMapping]:
    out: list[PortMapping] = []
    seen: set[str] = set()
    bindings = host_config.get("PortBindings") or {}
    for key, entries in bindings.items():
        port, proto = parse_port_key(key)
        seen.add(f"{port}/{proto}")
        for entry in entries or [{}]:
            entry = entry or {}
            out.append(
                PortMapping(
                    proto=proto,
                    container_port=port,
                    host_ip=str(entry.get("HostIp") or ""),
                    host_port=_host_port(str(entry.get("HostPort") or "")),
                )
            )
    if host_config.get("PublishAllPorts"):
        for key in config.get("ExposedPorts") or {}:
            port, proto = parse_port_key(key)
            if f"{port}/{proto}" not in seen:
                out.append(PortMapping(proto=proto, container_port=port, host_ip="", host_port=0))
    return out


def ports_json(
    exposed: Sequence[str], published: Sequence[tuple[PortMapping, str, int]]
) -> dict[str, Any]:
    """``NetworkSettings.Ports``: each exposed port (``null`` when not published) and each
    published one with the host addresses it is bound to."""
    out: dict[str, Any] = {}
    for key in exposed:
        port, proto = parse_port_key(key)
        out.setdefault(f"{port}/{proto}", None)
    for mapping, host_ip, host_port in published:
        entries = out.get(mapping.key) or []
        entries.append({"HostIp": host_ip, "HostPort": str(host_port)})
        out[mapping.key] = entries
    return out
