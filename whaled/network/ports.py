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
    host_port_end: int = 0  # with ``host_port``: any free port of the range (``8000-8010``)

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"

    def candidates(self) -> range:
        """Host ports to try, in order (``range(0, 1)``: one from the kernel)."""
        return range(self.host_port, max(self.host_port, self.host_port_end) + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedPort:
    """A port published while its container runs: the host address and port bound."""

    proto: str
    container_port: int
    host_ip: str  # the address bound: 0.0.0.0 for every one
    host_port: int

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"

    def to_json(self) -> dict[str, Any]:
        return {
            "proto": self.proto,
            "container_port": self.container_port,
            "host_ip": self.host_ip,
            "host_port": self.host_port,
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> PublishedPort:
        return PublishedPort(
            proto=str(doc["proto"]),
            container_port=int(doc["container_port"]),
            host_ip=str(doc["host_ip"]),
            host_port=int(doc["host_port"]),
        )


def parse_port_key(key: str) -> tuple[int, str]:
    """``80/tcp`` (protocol defaults to tcp) → (80, "tcp")."""
    port, _, proto = str(key).partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidParameter(f"invalid proto '{proto}'")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidParameter(f'invalid port specification: "{key}"')
    return int(port), proto


def _host_ports(text: str) -> tuple[int, int]:
    """``HostPort``: "" (any), ``8080`` or a range ``8000-8010`` → (first, last or 0)."""
    if not text:
        return 0, 0
    first, sep, last = text.partition("-")
    for part in (first, last) if sep else (first,):
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise InvalidParameter(f'invalid port specification: "{text}"')
    if sep and int(last) < int(first):
        raise InvalidParameter(f"invalid range specified for port: {text}")
    return int(first), int(last) if sep else 0


def port_mappings(host_config: Mapping[str, Any], config: Mapping[str, Any]) -> list[PortMapping]:
    out: list[PortMapping] = []
    seen: set[str] = set()
    bindings = host_config.get("PortBindings") or {}
    for key, entries in bindings.items():
        port, proto = parse_port_key(key)
        seen.add(f"{port}/{proto}")
        for entry in entries or [{}]:
            entry = entry or {}
            first, last = _host_ports(str(entry.get("HostPort") or ""))
            out.append(
                PortMapping(
                    proto=proto,
                    container_port=port,
                    host_ip=str(entry.get("HostIp") or ""),
                    host_port=first,
                    host_port_end=last,
                )
            )
    if host_config.get("PublishAllPorts"):
        for key in config.get("ExposedPorts") or {}:
            port, proto = parse_port_key(key)
            if f"{port}/{proto}" not in seen:
                out.append(PortMapping(proto=proto, container_port=port, host_ip="", host_port=0))
    return out


def check_ports(host_config: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """At create, as dockerd does (not first at start): every port key and host port of
    ``PortBindings`` and every ``ExposedPorts`` key parses, else the 400 of
    :func:`parse_port_key` / :func:`port_mappings`."""
    port_mappings(host_config, config)
    for key in config.get("ExposedPorts") or ():
        parse_port_key(key)


def ports_json(exposed: Sequence[str], published: Sequence[PublishedPort]) -> dict[str, Any]:
    """``NetworkSettings.Ports``: each exposed port (``null`` when not published) and each
    published one with the host addresses it is bound to."""
    out: dict[str, Any] = {}
    for key in exposed:
        port, proto = parse_port_key(key)
        out.setdefault(f"{port}/{proto}", None)
    for p in published:
        entries = out.get(p.key) or []
        entries.append({"HostIp": p.host_ip, "HostPort": str(p.host_port)})
        out[p.key] = entries
    return out
