"""Network use cases: the ``/networks`` API (user-defined bridge networks and the built-in
``bridge``/``host``/``none``) and what containers need of networks: an endpoint (address) on
each network at create or connect, a network namespace wired to the bridges before the
process runs, torn down when it exits, endpoints freed at removal.

IPAM state lives in each network's record (``network/store.py``), saved before anything is
plugged: an address is never handed out twice, also across restarts. The netlink work is
blocking (worker threads); events (``create``, ``connect``, ``disconnect``, ``destroy``) are
emitted on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from whaled.config.model import Config
from whaled.container.times import now_rfc3339
from whaled.daemon.dns import NetworkDns
from whaled.daemon.portproxy import HostPorts
from whaled.errors import Conflict, Forbidden, InvalidParameter, NotFound, WhaledError
from whaled.events import EventBus
from whaled.image.filters import parse_rfc3339, parse_timestamp
from whaled.network import etcfiles, ipam, nat
from whaled.network.mode import check_mac
from whaled.network.model import (
    BRIDGE_DRIVER,
    BRIDGE_NAME_OPTION,
    MTU_OPTION,
    PREDEFINED,
    Endpoint,
    Network,
)
from whaled.network.ports import PublishedPort, port_mappings, ports_json
from whaled.network.store import NetworkStore
from whaled.regexp import filter_match

if TYPE_CHECKING:
    from whaled.network import rtnl

# ``netlink`` and ``rtnl`` (pyroute2, ~70 ms to import) are imported where they are used:
# a daemon without the default bridge or user networks starts without them.

log = logging.getLogger(__name__)

NETWORK_EVENT = "network"
FilterArgs = Mapping[str, Sequence[str]]
#: The default bridge network's Linux bridge (dockerd's is docker0).
DEFAULT_BRIDGE = "whaled0"
LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")
PRUNE_FILTERS = ("label", "label!", "until")
#: A container's name, for the Containers map of network inspect (None when it is gone).
ContainerName = Callable[[str], str | None]


def predefined_id(name: str) -> str:
    return hashlib.sha256(f"whaled-predefined-network-{name}".encode()).hexdigest()


PREDEFINED_NETWORKS = {
    name: Network(
        id=predefined_id(name),
        name=name,
        driver={"bridge": "bridge", "host": "host", "none": "null"}[name],
    )
    for name in PREDEFINED
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A container's endpoint on one network, for inspect."""

    network: Network
    endpoint: Endpoint


def _bool_filter(values: Sequence[str], key: str) -> bool | None:
    if not values:
        return None
    v = values[-1].lower()
    if v not in ("true", "false", "1", "0"):
        raise InvalidParameter(f"invalid filter '{key}={values[-1]}'")
    return v in ("true", "1")


def _label_match(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


class NetworkService:
    def __init__(
        self,
        *,
        store: NetworkStore,
        events: EventBus,
        exec_root: str,
        container_name: ContainerName,
    ) -> None:
        self.store = store
        self._events = events
        self._netns_dir = os.path.join(exec_root, "netns")
        self._container_name = container_name
        #: the embedded DNS server of each user network (names of its running containers)
        self.dns = NetworkDns(self.names)
        #: the host side of running containers' published ports
        self.ports = HostPorts()
        #: the ID of the default bridge network's record, None with ``bridge: none``
        self._default: str | None = None
        #: outbound NAT in whaled's own nftables table (off with ``iptables: false``)
        self._nat_table = nat.table_name(exec_root)
        self._nat = False

    def _emit(self, action: str, n: Network, extra: Mapping[str, str] | None = None) -> None:
        self._events.emit(
            NETWORK_EVENT, action, n.id, {"name": n.name, "type": n.driver, **(extra or {})}
        )

    # ------------------------------------------------------------------ lookups

    def find(self, ref: str) -> Network:
        if self._default is not None and ref in ("bridge", self._default):
            return self.store.find(self._default)
        for n in PREDEFINED_NETWORKS.values():
            if ref in (n.name, n.id):
                return n
        return self.store.find(ref)

    def is_user_network(self, mode: str) -> bool:
        if mode in PREDEFINED or mode in ("default", "") or mode.startswith("container:"):
            return False
        try:
            self.store.find(mode)
        except NotFound:
            return False
        return True

    def wired(self, mode: str) -> bool:
        """Whether containers of network mode ``mode`` get an endpoint and a wired
        namespace: user networks, and ``default``/``bridge`` when the default bridge is on."""
        if mode in ("default", "bridge", ""):
            return self._default is not None
        return self.is_user_network(mode)

    def _network_of_mode(self, mode: str) -> str | None:
        if mode in ("default", "bridge", ""):
            return self._default
        return mode if self.is_user_network(mode) else None

    def all(self) -> list[Network]:
        builtin = [
            n for n in PREDEFINED_NETWORKS.values() if n.name != "bridge" or not self._default
        ]
        return builtin + self.store.all()

    # ------------------------------------------------------------------ the default bridge

    async def start(self, cfg: Config) -> None:
        """Daemon start: NAT on (unless ``iptables: false``), the default bridge, every
        network's bridge and DNS server back, the NAT table rewritten."""
        self._nat = cfg.iptables
        self.ports.proxy = cfg.userland_proxy
        if self._nat and not nat.available():
            log.warning("libnftables not found (Debian package nftables): containers get no NAT")
            self._nat = False
        if self._nat and cfg.ip_forward:
            try:
                await asyncio.to_thread(nat.enable_ip_forward)
            except OSError as e:
                log.warning("cannot enable IPv4 forwarding: %s", e)
        await self.setup_default_bridge(cfg)
        await self.restore()
        await self._refresh_nat()

    async def _refresh_nat(self) -> None:
        """The NAT table from the records: every network's masquerade or isolation and
        the published ports of every running container (kept on its endpoint)."""
        if not self._nat:
            return
        networks = [n for n in self.store.all() if n.bridge and n.subnet]
        nets = [
            nat.BridgeNet(bridge=n.bridge, subnet=n.subnet, internal=n.internal) for n in networks
        ]
        forwards = [
            nat.PortForward(
                proto=p.proto,
                host_ip=p.host_ip,
                host_port=p.host_port,
                target_ip=ep.ip,
                target_port=p.container_port,
            )
            for n in networks
            for ep in n.endpoints.values()
            for p in ep.ports
        ]
        loopback_dnat = not self.ports.proxy
        try:
            if loopback_dnat:
                await asyncio.to_thread(_route_localnet, [n.bridge for n in networks])
            await asyncio.to_thread(
                nat.apply, self._nat_table, nets, forwards, loopback_dnat=loopback_dnat
            )
        except (WhaledError, OSError) as e:
            log.warning("NAT rules not updated: %s", e)

    async def shutdown(self, *, live_restore: bool) -> None:
        """Daemon stop: the sockets of published ports close. Without live-restore (the
        containers are stopped by now) the NAT table and the bridges go too; with it they
        stay, so the kernel keeps forwarding the running containers' ports."""
        self.ports.release_all()
        await self.dns.close()
        await asyncio.to_thread(self.store.flush)
        if live_restore:
            return
        if self._nat:
            try:
                await asyncio.to_thread(nat.remove, self._nat_table)
            except WhaledError as e:
                log.warning("NAT table %s not removed: %s", self._nat_table, e)
        for n in self.store.all():
            if not (n.endpoints or n.bridge):
                continue
            from whaled.network import netlink

            # the stopped containers' veths would go with their namespaces a moment
            # later; the daemon leaves none behind
            for ep in n.endpoints.values():
                await asyncio.to_thread(netlink.unplug, _host_ifname(ep))
            if n.bridge:
                await asyncio.to_thread(netlink.remove_bridge, n.bridge)

    async def setup_default_bridge(self, cfg: Config) -> None:
        """Daemon start: the built-in ``bridge`` network on device ``bridge`` (default
        ``whaled0``) with subnet ``bip`` (else a free one from the pools); ``bridge: none``
        leaves containers of the default mode with loopback only."""
        nid = predefined_id("bridge")
        if cfg.bridge == "none":
            self._default = None
            return
        from whaled.network import netlink

        device = cfg.bridge or DEFAULT_BRIDGE
        try:
            current: Network | None = self.store.find(nid)
        except NotFound:
            current = None
        if cfg.bip:
            gateway = cfg.bip.partition("/")[0]
            subnet = str(ipam.parse_network(cfg.bip))
        elif current is not None and current.bridge == device:
            gateway, subnet = current.gateway, current.subnet
        else:
            taken = [ipam.parse_network(n.subnet) for n in self.store.all() if n.id != nid]
            routes = await asyncio.to_thread(netlink.host_routes)
            mine = await asyncio.to_thread(netlink.bridge_networks, device)
            pools = [(p.base, p.size) for p in cfg.default_address_pools] or ipam.DEFAULT_POOLS
            chosen = (
                mine[0]
                if mine
                else ipam.pick_subnet(taken + [r for r in routes if r not in mine], pools)
            )
            subnet, gateway = str(chosen), str(chosen.network_address + 1)
        spec = ipam.check_pool(subnet, gateway, cfg.fixed_cidr)
        if current is not None and (current.bridge != device or current.subnet != subnet):
            if current.endpoints:
                log.warning(
                    "the default bridge network changed (%s %s → %s %s) while containers "
                    "are on it: kept as it was",
                    current.bridge,
                    current.subnet,
                    device,
                    subnet,
                )
                self._default = nid
                return
            current = None
        n = current or Network(
            id=nid,
            name="bridge",
            created=now_rfc3339(),
            subnet=str(spec.subnet),
            gateway=str(spec.gateway),
            ip_range=str(spec.ip_range) if spec.ip_range else "",
            options={
                "com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                BRIDGE_NAME_OPTION: device,
                MTU_OPTION: str(cfg.mtu or 1500),
            },
            bridge=device,
            mtu=cfg.mtu or 1500,
        )
        await asyncio.to_thread(_ensure_bridge, n)
        self.store.save(n)
        self._default = nid

    def container_name(self, cid: str) -> str:
        return self._container_name(cid) or ""

    def find_all(self, filters: FilterArgs) -> list[Network]:
        for key in filters:
            if key not in LIST_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        dangling = _bool_filter(filters.get("dangling", ()), "dangling")
        for kind in filters.get("type", ()):
            if kind not in ("builtin", "custom"):
                raise InvalidParameter(f"invalid filter '{kind}'")  # dockerd's wording
        out = []
        for n in self.all():
            builtin = n.name in PREDEFINED
            if filters.get("name") and not filter_match(filters["name"], n.name):
                continue
            if filters.get("id") and not filter_match(filters["id"], n.id):
                continue
            if filters.get("driver") and n.driver not in filters["driver"]:
                continue
            if filters.get("scope") and "local" not in filters["scope"]:
                continue
            types = filters.get("type", ())
            if types and ("builtin" if builtin else "custom") not in types:
                continue
            if not all(_label_match(n.labels, w) for w in filters.get("label", ())):
                continue
            if dangling is not None and (not n.endpoints and not builtin) != dangling:
                continue
            out.append(n)
        return out

    # ------------------------------------------------------------------ API

    async def create(
        self,
        name: str,
        *,
        driver: str = "",
        internal: bool = False,
        attachable: bool = False,
        labels: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        ipam_configs: Sequence[Mapping[str, Any]] = (),
        enable_ipv6: bool = False,
    ) -> Network:
        from whaled.network import netlink

        if not name:
            raise InvalidParameter("network name is required")
        if name in PREDEFINED:
            raise Forbidden(f"{name} is a pre-defined network and cannot be created")
        driver = driver or BRIDGE_DRIVER
        if driver != BRIDGE_DRIVER:
            raise NotFound(f'plugin "{driver}" not found')
        v6_configs = [c for c in ipam_configs if _is_v6_config(c)]
        v4_configs = [c for c in ipam_configs if not _is_v6_config(c)]
        if len(v4_configs) > 1 or len(v6_configs) > 1:
            raise InvalidParameter("one IPv4 and one IPv6 subnet per network are supported")
        if v6_configs and not enable_ipv6:
            raise InvalidParameter(
                f"subnet {v6_configs[0].get('Subnet')} is an IPv6 subnet: the network needs "
                "IPv6 enabled (--ipv6)"
            )
        options = dict(options or {})
        with self.store.lock:
            for n in self.store.all():
                if n.name == name:
                    raise Conflict(f"network with name {name} already exists")
        taken = [ipam.parse_network(n.subnet) for n in self.store.all() if n.subnet]
        routes = await asyncio.to_thread(netlink.host_routes)
        cfg = v4_configs[0] if v4_configs else {}
        if cfg.get("Subnet"):
            spec = ipam.check_pool(
                str(cfg["Subnet"]),
                str(cfg.get("Gateway") or ""),
                str(cfg.get("IPRange") or ""),
                {str(k): str(v) for k, v in (cfg.get("AuxiliaryAddresses") or {}).items()},
                taken=taken + routes,
            )
        else:
            if cfg.get("Gateway") or cfg.get("IPRange"):
                raise InvalidParameter("a gateway or ip-range needs a subnet")
            spec = ipam.check_pool(str(ipam.pick_subnet(taken + routes)))
        nid = secrets.token_hex(32)
        spec6 = None
        if enable_ipv6:
            cfg6 = v6_configs[0] if v6_configs else {}
            spec6 = (
                ipam.check_pool6(str(cfg6["Subnet"]), str(cfg6.get("Gateway") or ""))
                if cfg6.get("Subnet")
                else ipam.check_pool6(str(ipam.ula_subnet(bytes.fromhex(nid))))
            )
            for other in self.store.all():
                if other.subnet6 and spec6.subnet.overlaps(ipaddress.ip_network(other.subnet6)):
                    raise Conflict(
                        "invalid pool request: Pool overlaps with other one on this address space"
                    )
        bridge = options.get(BRIDGE_NAME_OPTION) or f"wh-{nid[:12]}"
        if len(bridge) > 15:
            raise InvalidParameter(f"bridge name {bridge} is longer than 15 characters")
        try:
            mtu = int(options.get(MTU_OPTION) or 1500)
        except ValueError:
            raise InvalidParameter(f"invalid MTU: {options.get(MTU_OPTION)}") from None
        with self.store.lock:
            for n in self.store.all():
                if n.bridge == bridge:
                    raise Conflict(f"bridge {bridge} is used by network {n.name}")
        n = Network(
            id=nid,
            name=name,
            driver=driver,
            created=now_rfc3339(),
            subnet=str(spec.subnet),
            gateway=str(spec.gateway),
            ip_range=str(spec.ip_range) if spec.ip_range else "",
            aux={k: str(v) for k, v in spec.aux.items()},
            internal=internal,
            attachable=attachable,
            labels=dict(labels or {}),
            options=options,
            bridge=bridge,
            mtu=mtu,
            subnet6=str(spec6.subnet) if spec6 else "",
            gateway6=str(spec6.gateway) if spec6 else "",
        )
        await asyncio.to_thread(_ensure_bridge, n)
        try:
            self.store.save(n)
        except BaseException:
            await asyncio.to_thread(netlink.remove_bridge, bridge)
            raise
        await self.dns.start(n)
        await self._refresh_nat()
        self._emit("create", n)
        return n

    async def remove(self, ref: str) -> None:
        from whaled.network import netlink

        n = self.find(ref)
        if n.name in PREDEFINED:
            raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
        if n.endpoints:
            raise Forbidden(
                f"error while removing network: network {n.name} id {n.id} has active endpoints"
            )
        self.store.delete(n.id)
        self.dns.stop(n.id)
        await asyncio.to_thread(netlink.remove_bridge, n.bridge)
        await self._refresh_nat()
        self._emit("destroy", n)

    async def prune(self, filters: FilterArgs) -> list[str]:
        for key in filters:
            if key not in PRUNE_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        now = time.time()
        untils = [parse_timestamp(v, now) for v in filters.get("until", ())]
        removed = []
        for n in self.store.all():
            if n.endpoints:
                continue
            if untils and not created_before(n.created, min(untils)):
                continue
            if not all(_label_match(n.labels, w) for w in filters.get("label", ())):
                continue
            if any(_label_match(n.labels, w) for w in filters.get("label!", ())):
                continue
            try:
                await self.remove(n.id)
            except WhaledError:
                continue
            removed.append(n.name)
        return removed

    async def restore(self) -> None:
        """Daemon start: every network's bridge is up again (after a host reboot too)."""
        for n in self.store.all():
            try:
                await asyncio.to_thread(_ensure_bridge, n)
            except WhaledError as e:
                log.warning("network %s: cannot restore bridge %s: %s", n.name, n.bridge, e)
                continue
            if n.name != "bridge":  # as dockerd: no embedded DNS on the default bridge
                await self.dns.start(n)

    def names(self, network_id: str, querier: str = "") -> dict[str, list[str]]:
        """Names the embedded DNS server of ``network_id`` answers a query from address
        ``querier``: each running container's name, aliases and short ID, with its address,
        on every user network the querying container is on (this one first, as dockerd's
        resolver answers across a container's networks), and the link aliases asked at
        ``network connect --link`` for that container only."""
        try:
            arrived = self.store.find(network_id)
        except NotFound:
            return {}
        asker = next((cid for cid, ep in arrived.endpoints.items() if ep.ip == querier), None)
        networks = [arrived]
        if asker is not None:
            networks += [
                n
                for n in self.store.all()
                if asker in n.endpoints and n.id != arrived.id and n.id != self._default
            ]
        out: dict[str, list[str]] = {}
        for n in networks:
            found: dict[str, list[str]] = {}
            for cid, ep in n.endpoints.items():
                if not os.path.exists(self.netns_path(cid)):
                    continue  # not running
                addresses = [ep.ip, ep.ip6] if ep.ip6 else [ep.ip]
                for name in (self.container_name(cid), *ep.aliases, cid[:12]):
                    if name:
                        found.setdefault(name.lower(), []).extend(addresses)
            if asker is not None and asker in n.endpoints:
                for entry in n.endpoints[asker].links:
                    child, _, alias = entry.partition(":")
                    ips = found.get(child.lower())
                    if ips:
                        found.setdefault((alias or child).lower(), ips)
            for name, ips in found.items():
                out.setdefault(name, ips)  # the network the query came on wins
        return out

    # ------------------------------------------------------------------ endpoints

    def _allocate(self, n: Network, cid: str, settings: Mapping[str, Any]) -> Network:
        """``n`` with an endpoint for ``cid`` (saved)."""
        if cid in n.endpoints:
            raise Forbidden(f"container {cid} is already connected to network {n.name}")
        spec = ipam.check_pool(n.subnet, n.gateway, n.ip_range, n.aux)
        wanted = str(((settings.get("IPAMConfig") or {}).get("IPv4Address")) or "")
        with self.store.lock:
            current = self.store.find(n.id)
            addr = ipam.allocate(
                spec,
                [e.ip for e in current.endpoints.values()],
                wanted=wanted,
                last=current.last_ip,
                network_name=f"{n.name} ({n.id})",
            )
            mac = check_mac(str(settings.get("MacAddress") or "")) or ipam.mac_for(addr)
            wanted6 = str(((settings.get("IPAMConfig") or {}).get("IPv6Address")) or "")
            ip6 = ""
            if current.subnet6:
                ip6 = str(
                    ipam.allocate6(
                        ipam.check_pool6(current.subnet6, current.gateway6),
                        [e.ip6 for e in current.endpoints.values()],
                        wanted=wanted6,
                        network_name=f"{n.name} ({n.id})",
                    )
                )
            elif wanted6:
                raise InvalidParameter(
                    f"invalid IPv6 address {wanted6}: network {n.name} has no IPv6"
                )
            ep = Endpoint(
                container_id=cid,
                endpoint_id=secrets.token_hex(32),
                ip=str(addr),
                ip6=ip6,
                mac=mac,
                aliases=tuple(str(a) for a in settings.get("Aliases") or ()),
                static=bool(wanted),
                links=tuple(str(x) for x in settings.get("Links") or ()),
            )
            updated = current.with_endpoint(ep)
            self.store.save(updated)
            return updated

    async def attach_at_create(
        self, cid: str, mode: str, endpoints_config: Mapping[str, Any], *, mac: str = ""
    ) -> list[Attachment]:
        """Endpoints for a new container: on its ``NetworkMode`` network (a user one) and
        any other network ``EndpointsConfig`` names. Nothing for built-in modes. ``mac``:
        the container-wide ``Config.MacAddress`` of API < 1.44, for the first network."""
        refs: list[str] = []
        first = self._network_of_mode(mode)
        if first is not None:
            refs.append(first)
        for key in endpoints_config:
            if key not in refs and key != mode and self.is_user_network(key):
                refs.append(key)
        done: list[Attachment] = []
        try:
            for ref in refs:
                n = self.store.find(ref)
                settings = (
                    endpoints_config.get(ref)
                    or endpoints_config.get(n.name)
                    or (endpoints_config.get(mode) if ref == first else None)
                    or {}
                )
                if ref == first and mac and not settings.get("MacAddress"):
                    settings = {**settings, "MacAddress": mac}
                updated = self._allocate(n, cid, settings)
                done.append(Attachment(network=updated, endpoint=updated.endpoints[cid]))
        except BaseException:
            await self.release(cid, emit=False)
            raise
        return done

    def attachments(self, cid: str) -> list[Attachment]:
        return [
            Attachment(network=n, endpoint=n.endpoints[cid])
            for n in self.store.all()
            if cid in n.endpoints
        ]

    def drop_orphans(self, containers: set[str]) -> list[str]:
        """Daemon start: endpoints of containers that do not exist are freed (a daemon
        killed between an address's allocation and the container's record leaves one).
        Returns the container IDs dropped."""
        dropped: list[str] = []
        with self.store.lock:
            for n in self.store.all():
                gone = [cid for cid in n.endpoints if cid not in containers]
                if not gone:
                    continue
                kept = n
                for cid in gone:
                    kept = kept.without(cid)
                self.store.save(kept)
                dropped += gone
        for cid in dropped:
            log.info("freed the address of container %s, which was never made", cid[:12])
        return dropped

    async def release(self, cid: str, *, emit: bool = True) -> None:
        """The container is gone: its endpoints (and addresses) are freed."""
        with self.store.lock:
            released = [n for n in self.store.all() if cid in n.endpoints]
            for n in released:
                # on disk a moment later: a removal does not wait for the fsync
                self.store.save(n.without(cid), later=True)
        if emit:
            for n in released:
                self._emit("disconnect", n, {"container": cid})

    def emit_connects(self, cid: str) -> None:
        for a in self.attachments(cid):
            self._emit("connect", a.network, {"container": cid})

    # ------------------------------------------------------------------ sandboxes

    def netns_path(self, cid: str) -> str:
        return os.path.join(self._netns_dir, cid)

    def sandbox_up(self, cid: str) -> str | None:
        """Blocking, before the container's process runs: its network namespace with a
        veth into each of its networks' bridges. None when it is on no user network."""
        attached = self.attachments(cid)
        if not attached:
            return None
        from whaled.network import netlink

        path = self.netns_path(cid)
        ordered = sorted(attached, key=lambda a: a.network.name)
        links = [
            _veth(a.network, a.endpoint, i, default_route=i == 0) for i, a in enumerate(ordered)
        ]
        try:
            try:
                netlink.make_sandbox(path, links)
            except netlink.BridgeGone:  # deleted by hand: made again, as at start
                for a in ordered:
                    _ensure_bridge(a.network)
                netlink.make_sandbox(path, links)
        except BaseException:
            self.sandbox_down(cid)
            raise
        return path

    def sandbox_down(self, cid: str) -> None:
        """Blocking: the container's namespace is gone (idempotent). Its veths go with it:
        the kernel destroys a namespace's devices, and their host ends, once nothing holds
        it (deleting each veth first costs ~20 ms of the exit path for nothing)."""
        path = self.netns_path(cid)
        if not os.path.lexists(path):  # never wired (on no user network)
            return
        from whaled.network import netlink

        netlink.remove_netns(path)

    def sweep_sandboxes(self, live: set[str]) -> None:
        """Daemon start: namespaces of containers that no longer run are removed."""
        try:
            names = os.listdir(self._netns_dir)
        except FileNotFoundError:
            return
        for name in names:
            if name not in live:
                self.sandbox_down(name)

    # ------------------------------------------------------------------ published ports

    async def publish(
        self, cid: str, name: str, host_config: Mapping[str, Any], config: Mapping[str, Any]
    ) -> None:
        """The container's published ports (it is about to run): host sockets bound, the
        ports kept on its first endpoint, the NAT rules rewritten."""
        mappings = port_mappings(host_config, config)
        if not mappings or host_config.get("NetworkMode") == "host":
            return  # (host: discarded, with a warning at create)
        attached = sorted(self.attachments(cid), key=lambda a: a.network.name)
        if not attached:
            raise InvalidParameter("port publishing needs a network with a bridge")
        first = attached[0]
        published = await self.ports.bind(cid, name, mappings, first.endpoint.ip)
        try:
            self._keep_ports(first.network.id, cid, tuple(published))
        except BaseException:
            self.ports.release(cid)
            raise
        await self._refresh_nat()

    def _keep_ports(self, network_id: str, cid: str, ports: tuple[PublishedPort, ...]) -> bool:
        """Record ``ports`` on the container's endpoint; False when nothing changed."""
        with self.store.lock:
            n = self.store.find(network_id)
            ep = n.endpoints.get(cid)
            if ep is None or ep.ports == ports:
                return False
            self.store.save(replace(n, endpoints={**n.endpoints, cid: replace(ep, ports=ports)}))
            return True

    async def unpublish(self, cid: str) -> None:
        """The container stopped (or its start failed): its ports and their rules go."""
        self.ports.release(cid)
        changed = False
        for a in self.attachments(cid):
            if a.endpoint.ports:
                changed |= self._keep_ports(a.network.id, cid, ())
        if changed:
            await self._refresh_nat()

    async def resume_ports(self, running: set[str]) -> None:
        """Daemon start, after the containers were restored: the ports of those still
        running are bound again (their rules never went away); the others' are dropped."""
        changed = False
        for n in self.store.all():
            for cid, ep in n.endpoints.items():
                if not ep.ports:
                    continue
                if cid in running:
                    kept = tuple(await self.ports.rebind(cid, ep.ports, ep.ip))
                else:
                    kept = ()
                changed |= self._keep_ports(n.id, cid, kept)
        if changed:
            await self._refresh_nat()

    def ports_of(self, cid: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """``NetworkSettings.Ports`` of a container: while it runs on a user network, each
        exposed port (``null`` unless published) and the published ones; else empty."""
        published = [p for a in self.attachments(cid) for p in a.endpoint.ports]
        if not published and not os.path.exists(self.netns_path(cid)):
            return {}
        return ports_json(list(config.get("ExposedPorts") or {}), published)

    # ------------------------------------------------------------------ connect

    async def connect(
        self,
        ref: str,
        cid: str,
        settings: Mapping[str, Any],
        *,
        running: bool,
        resolv_conf: str = "",
    ) -> None:
        """Connect a container; while it runs, its veth is plugged now, and a container
        that had no embedded DNS server yet (the default bridge) gets this network's
        in its ``resolv_conf`` (rewritten in place: it is bind-mounted), as dockerd's
        resolver starts when a sandbox joins its first user network."""
        from whaled.network import netlink

        n = self.find(ref)
        if n.name in PREDEFINED and n.id != self._default:
            raise Forbidden(f"container cannot be connected to the built-in network {n.name}")
        updated = self._allocate(n, cid, settings)
        if running and os.path.exists(self.netns_path(cid)):
            index = len(self.attachments(cid)) - 1
            ep = updated.endpoints[cid]
            try:
                link = _veth(n, ep, index, default_route=False)
                await asyncio.to_thread(netlink.plug, self.netns_path(cid), link, index)
            except BaseException:
                self.store.save(self.store.find(n.id).without(cid))
                raise
            if resolv_conf and n.id != self._default:
                embedded = {m.gateway for m in self.store.all() if m.id != self._default}
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(_use_nameserver, resolv_conf, n.gateway, embedded)
        self._emit("connect", updated, {"container": cid})

    async def disconnect(self, ref: str, cid: str, *, force: bool) -> None:
        from whaled.network import netlink

        n = self.find(ref)
        ep = n.endpoints.get(cid)
        if ep is None:
            if force:
                return
            raise Forbidden(f"container {cid} is not connected to network {n.name}")
        await asyncio.to_thread(netlink.unplug, _host_ifname(ep))
        self.store.save(self.store.find(n.id).without(cid))
        self._emit("disconnect", n, {"container": cid})


def _is_v6_config(cfg: Mapping[str, Any]) -> bool:
    return ipam.is_ipv6_cidr(str(cfg.get("Subnet") or cfg.get("Gateway") or ""))


def _veth(n: Network, ep: Endpoint, position: int, *, default_route: bool) -> rtnl.Veth:
    """The container's ``eth<position>`` on ``n``; the default routes go through the
    network's gateways only with ``default_route`` (the first network, never an internal
    one)."""
    from whaled.network import rtnl

    routed = default_route and not n.internal
    return rtnl.Veth(
        bridge=n.bridge,
        host_ifname=_host_ifname(ep),
        ifname=f"eth{position}",
        mac=ep.mac,
        mtu=n.mtu,
        address=ep.ip,
        prefixlen=n.prefixlen,
        gateway=n.gateway if routed else None,
        address6=ep.ip6,
        prefixlen6=n.prefixlen6,
        gateway6=n.gateway6 if routed and ep.ip6 else None,
    )


def _ensure_bridge(n: Network) -> None:
    from whaled.network import netlink

    netlink.ensure_bridge(n.bridge, n.gateway, n.prefixlen, n.mtu, n.gateway6, n.prefixlen6)


def _use_nameserver(path: str, nameserver: str, embedded: set[str]) -> None:
    with open(path, "r+", encoding="utf-8") as f:
        text = etcfiles.with_nameserver(f.read(), nameserver, embedded)
        if text is not None:
            f.seek(0)
            f.truncate()
            f.write(text)


def _route_localnet(bridges: Sequence[str]) -> None:
    for bridge in bridges:
        with contextlib.suppress(FileNotFoundError):
            nat.route_localnet(bridge)


def _host_ifname(ep: Endpoint) -> str:
    """The host end of an endpoint's veth (15 characters at most; the peer adds "p")."""
    return "wh" + ep.endpoint_id[:11]


def created_before(created: str, until: float) -> bool:
    """Whether a network created at ``created`` (RFC 3339; empty for the predefined ones)
    is older than ``until`` (unix seconds): prune's ``until`` filter, as dockerd's."""
    if not created:
        return True
    try:
        return parse_rfc3339(created) < until
    except ValueError:
        return False
