"""Networks and their endpoints, as records (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from whaled.network.ports import PublishedPort

BRIDGE_DRIVER = "bridge"
#: Built-in networks (listed, never created or removed through the API).
PREDEFINED = ("bridge", "host", "none")
#: The option that names a bridge network's Linux bridge device.
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MTU_OPTION = "com.docker.network.driver.mtu"


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """A container on a network."""

    container_id: str
    endpoint_id: str
    ip: str
    mac: str
    ip6: str = ""  # on an IPv6 network
    aliases: tuple[str, ...] = ()
    static: bool = False  # the address was asked for (--ip)
    #: published ports while the container runs (on its first network's endpoint)
    ports: tuple[PublishedPort, ...] = ()
    #: ``--link name:alias`` asked on this network (EndpointSettings.Links)
    links: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id,
            "endpoint_id": self.endpoint_id,
            "ip": self.ip,
            "ip6": self.ip6,
            "mac": self.mac,
            "aliases": list(self.aliases),
            "static": self.static,
            "ports": [p.to_json() for p in self.ports],
            "links": list(self.links),
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> Endpoint:
        return Endpoint(
            container_id=str(doc["container_id"]),
            endpoint_id=str(doc["endpoint_id"]),
            ip=str(doc["ip"]),
            ip6=str(doc.get("ip6") or ""),
            mac=str(doc.get("mac") or ""),
            aliases=tuple(str(a) for a in doc.get("aliases") or ()),
            static=bool(doc.get("static")),
            ports=tuple(PublishedPort.from_json(p) for p in doc.get("ports") or ()),
            links=tuple(str(x) for x in doc.get("links") or ()),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    id: str
    name: str
    driver: str = BRIDGE_DRIVER
    created: str = ""
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    aux: Mapping[str, str] = field(default_factory=dict)
    internal: bool = False
    attachable: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    bridge: str = ""  # the Linux bridge device
    mtu: int = 1500
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)  # by container ID
    last_ip: str = ""  # the last address handed out (round-robin allocation)
    subnet6: str = ""  # with --ipv6
    gateway6: str = ""

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.split("/", 1)[1]) if "/" in self.subnet else 0

    @property
    def prefixlen6(self) -> int:
        return int(self.subnet6.split("/", 1)[1]) if "/" in self.subnet6 else 0

    def with_endpoint(self, ep: Endpoint) -> Network:
        # a static address (--ip) does not move the round-robin
        last = self.last_ip if ep.static else ep.ip
        return replace(self, endpoints={**self.endpoints, ep.container_id: ep}, last_ip=last)

    def without(self, container_id: str) -> Network:
        return replace(
            self, endpoints={k: v for k, v in self.endpoints.items() if k != container_id}
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "driver": self.driver,
            "created": self.created,
            "subnet": self.subnet,
            "gateway": self.gateway,
            "ip_range": self.ip_range,
            "aux": dict(self.aux),
            "internal": self.internal,
            "attachable": self.attachable,
            "labels": dict(self.labels),
            "options": dict(self.options),
            "bridge": self.bridge,
            "mtu": self.mtu,
            "endpoints": [e.to_json() for e in self.endpoints.values()],
            "last_ip": self.last_ip,
            "subnet6": self.subnet6,
            "gateway6": self.gateway6,
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> Network:
        endpoints = [Endpoint.from_json(e) for e in doc.get("endpoints") or []]
        return Network(
            id=str(doc["id"]),
            name=str(doc["name"]),
            driver=str(doc.get("driver") or BRIDGE_DRIVER),
            created=str(doc.get("created") or ""),
            subnet=str(doc.get("subnet") or ""),
            gateway=str(doc.get("gateway") or ""),
            ip_range=str(doc.get("ip_range") or ""),
            aux={str(k): str(v) for k, v in (doc.get("aux") or {}).items()},
            internal=bool(doc.get("internal")),
            attachable=bool(doc.get("attachable")),
            labels={str(k): str(v) for k, v in (doc.get("labels") or {}).items()},
            options={str(k): str(v) for k, v in (doc.get("options") or {}).items()},
            bridge=str(doc.get("bridge") or ""),
            mtu=int(doc.get("mtu") or 1500),
            endpoints={e.container_id: e for e in endpoints},
            last_ip=str(doc.get("last_ip") or ""),
            subnet6=str(doc.get("subnet6") or ""),
            gateway6=str(doc.get("gateway6") or ""),
        )
