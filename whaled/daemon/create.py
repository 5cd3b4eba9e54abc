"""Container create: a request → a validated, stored container with its RW layer and
/etc files (dockerd's checks and wording; the pure rules are ``whaled.container.create``,
``whaled.network.mode`` and ``whaled.volume.mounts``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from whaled.config.model import Config
from whaled.container.create import (
    DaemonDefaults,
    check_request,
    complete_host_config,
    merge_config,
    validate_host_config,
)
from whaled.container.events import ContainerEvents
from whaled.container.health import HealthConfig
from whaled.container.model import Container
from whaled.container.names import generate_name, validate_name
from whaled.container.signals import parse_signal
from whaled.container.store import ContainerStore
from whaled.container.times import now_rfc3339
from whaled.daemon.bundle import RunFiles, SpecAssembler
from whaled.daemon.networks import Attachment, NetworkService
from whaled.daemon.runs import Runs
from whaled.daemon.system import HostFacts as DaemonFacts
from whaled.daemon.volumes import VolumeService
from whaled.errors import InvalidParameter, NotFound, WhaledError
from whaled.image.layers import LayerStore
from whaled.image.stores import ImageStores
from whaled.logger.options import parse_log_config
from whaled.network.files import EtcPaths, drop_hosts_name, write_etc_files
from whaled.network.links import (
    Link,
    hosts_line,
    link_env,
    parse_link,
    parse_links,
    stored_link,
    without_link_env,
)
from whaled.network.mode import (
    check_join,
    check_mac,
    check_network_config,
    default_hostname,
    joined_container,
)
from whaled.network.ports import check_ports
from whaled.osutil.tree import remove_tree
from whaled.runtime.command import process_args
from whaled.runtime.registry import known_runtimes
from whaled.runtime.spec import NamespaceMode
from whaled.runtime.ulimits import Ulimit
from whaled.volume.model import MountPoint
from whaled.volume.mounts import check_mount_config
from whaled.volume.sources import check_bind_sources


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateResult:
    id: str
    warnings: list[str]


class ContainerCreator:
    def __init__(
        self,
        *,
        store: ContainerStore,
        runs: Runs,
        images: ImageStores,
        layers: LayerStore,
        events: ContainerEvents,
        facts: DaemonFacts,
        files: RunFiles,
        specs: SpecAssembler,
        volumes: VolumeService,
        networks: NetworkService,
    ) -> None:
        self.volumes = volumes
        self.networks = networks
        self.store = store
        self.runs = runs
        self.images = images
        self.layers = layers
        self.events = events
        self.facts = facts
        self.files = files
        self.specs = specs
        self._rng = random.Random()

    def _defaults(self, cfg: Config) -> DaemonDefaults:
        cgroupns = cfg.default_cgroupns_mode or (
            "private" if self.facts.cgroups.version == 2 else "host"
        )
        return DaemonDefaults(
            default_runtime=cfg.default_runtime,
            runtimes=known_runtimes(cfg, self.files.builtin),
            shm_size=cfg.default_shm_size,
            ipc_mode=cfg.default_ipc_mode,
            cgroupns_mode=cgroupns,
            log_driver=cfg.log_driver,
            log_opts=dict(cfg.log_opts),
            ulimits=tuple(_ulimit(u.name, u.soft, u.hard) for u in cfg.default_ulimits.values()),
            init=cfg.init,
            swap_limit=self.facts.cgroups.capabilities.swap_limit,
        )

    async def create(
        self, cfg: Config, body: Mapping[str, Any], *, name: str | None, platform: str | None
    ) -> CreateResult:
        if not isinstance(body, Mapping):
            raise InvalidParameter("invalid container config: expected a JSON object")
        image_ref = body.get("Image")
        if not image_ref or not isinstance(image_ref, str):
            raise InvalidParameter("No image was specified")
        if platform:
            self._check_platform(platform)
        if name:
            name = validate_name(name)
        image = await asyncio.to_thread(self.images.resolve, image_ref)
        image_config = image.config.get("config") or {}
        host_request = body.get("HostConfig") or {}
        if not isinstance(host_request, Mapping):
            raise InvalidParameter("invalid HostConfig: expected a JSON object")
        request = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        config = merge_config(request, image_config)
        config["Image"] = image_ref
        defaults = self._defaults(cfg)
        host_config = complete_host_config(host_request, defaults)
        warnings = validate_host_config(host_config, defaults)
        mode = str(host_config["NetworkMode"])
        warnings += check_network_config(host_config, wired=self.networks.wired(mode))
        check_mount_config(host_config)
        log_config = host_config["LogConfig"]
        parse_log_config(str(log_config.get("Type")), log_config.get("Config") or {})
        HealthConfig.from_api(config.get("Healthcheck"))  # 400 for bad durations
        argv = process_args(tuple(config.get("Entrypoint") or ()), tuple(config.get("Cmd") or ()))
        if not argv:
            raise InvalidParameter("No command specified")
        self._check_joins(host_config)
        links = parse_links(host_config.get("Links"))
        if links and mode == "host":
            raise InvalidParameter(
                "conflicting options: host type networking can't be used with links. "
                "This would result in undefined behavior"
            )
        children = [self._link_child(link) for link in links]
        endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        # links asked on a network (the CLI puts --link there for user networks)
        net_links = [
            parse_link(str(e)) for ep in endpoints.values() for e in (ep or {}).get("Links") or ()
        ]
        net_children = [self._link_child(link) for link in net_links]
        check_bind_sources(host_config)
        check_request(request, host_config)
        check_ports(host_config, request)
        if config.get("StopSignal"):
            parse_signal(config["StopSignal"])
        cid = secrets.token_hex(32)
        while cid[:12].isdigit():  # dockerd avoids all-digit short IDs
            cid = secrets.token_hex(32)
        c = Container(
            id=cid,
            name=name or "",  # a generated one is chosen when it is reserved (below)
            created=now_rfc3339(),
            image_id=image.id,
            image_ref=image_ref,
            path=argv[0],
            args=list(argv[1:]),
            config=config,
            host_config=host_config,
            runtime=str(host_config["Runtime"]),
            platform=image.config.get("os") or "linux",
        )
        cdir = self.store.dir_of(cid)
        c.log_path = os.path.join(cdir, f"{cid}-json.log")
        c.hostname_path = os.path.join(cdir, "hostname")
        c.hosts_path = os.path.join(cdir, "hosts")
        c.resolv_conf_path = os.path.join(cdir, "resolv.conf")
        if not config.get("Hostname"):
            config["Hostname"] = default_hostname(
                str(host_config["NetworkMode"]), cid, self.facts.host.hostname
            )
        network = (
            NamespaceMode.host()
            if host_config["NetworkMode"] == "host"
            else NamespaceMode.private()
        )
        warnings.extend(self.specs.check_runnable(cfg, c, network))
        points = await self.volumes.prepare(config, host_config, owner=cid)
        points += self._volumes_from(host_config, {p.destination for p in points})
        c.mount_points = [p.to_json() for p in points]
        try:
            attached = await self.networks.attach_at_create(
                cid, mode, endpoints, mac=check_mac(str(config.get("MacAddress") or ""))
            )
            await asyncio.to_thread(self.layers.rw.create, cid, image.top_chain)
        except BaseException:
            await self.networks.release(cid, emit=False)
            await self.volumes.release(cid, points, remove_anonymous=True)
            raise
        try:
            if not name:
                # Chosen and reserved in one step (no await in between): a concurrent
                # create cannot take the same name meanwhile.
                c.name = self._free_name()
            link_lines = self._apply_links(c, list(zip(links, children, strict=True)), attached)
            link_lines += self._link_lines(
                list(zip(net_links, net_children, strict=True)), attached
            )
            self.store.reserve(c)
            await asyncio.to_thread(
                write_etc_files,
                EtcPaths(
                    hostname=c.hostname_path, hosts=c.hosts_path, resolv_conf=c.resolv_conf_path
                ),
                container_id=c.id,
                config=c.config,
                host_config=c.host_config,
                daemon=cfg,
                addresses=[a.endpoint.ip for a in attached]
                + [a.endpoint.ip6 for a in attached if a.endpoint.ip6],
                link_lines=link_lines,
                # user networks: their embedded DNS server, on the first network's gateway
                nameservers=[a.network.gateway for a in attached[:1] if a.network.name != "bridge"],
            )
        except BaseException:
            self.store.forget(cid)
            remove_tree(cdir, ignore_errors=True)
            with contextlib.suppress(WhaledError, OSError):
                await asyncio.to_thread(self.layers.rw.remove, cid)
            await self.volumes.release(cid, points, remove_anonymous=True)
            await self.networks.release(cid, emit=False)
            raise
        self.runs.slot(cid)
        self.events.emit(c, "create")
        return CreateResult(id=cid, warnings=warnings)

    def _link_child(self, link: Link) -> Container:
        try:
            return self.store.get(link.child)
        except NotFound:
            raise NotFound(
                f"could not get container for {link.child}: No such container: {link.child}"
            ) from None

    def _apply_links(
        self, c: Container, links: list[tuple[Link, Container]], attached: list[Attachment]
    ) -> list[str]:
        """``HostConfig.Links``: kept in dockerd's stored form; the children's /etc/hosts
        lines, and on the default bridge dockerd's link variables (``c.link_env``, added to
        the process environment at each start)."""
        if not links:
            return []
        c.host_config["Links"] = [stored_link(ch.name, c.name, lk.alias) for lk, ch in links]
        for link, child in links:
            shared = self._shared(child, attached)
            if shared is not None and shared.network.name == "bridge":
                c.link_env += link_env(
                    parent_name=c.name,
                    alias=link.alias,
                    ip=shared.endpoint.ip,
                    exposed_ports=list(child.config.get("ExposedPorts") or {}),
                    child_env=[str(e) for e in child.config.get("Env") or ()],
                )
        return self._link_lines(links, attached)

    def _link_lines(
        self, links: list[tuple[Link, Container]], attached: list[Attachment]
    ) -> list[str]:
        """The /etc/hosts line of each child on a network the container shares with it
        (whaled names links in the linking container's /etc/hosts on user networks too,
        where dockerd's embedded DNS answers them for the linking container only)."""
        lines = []
        for link, child in links:
            shared = self._shared(child, attached)
            if shared is not None:
                hostname = str(child.config.get("Hostname") or child.id[:12])
                lines.append(hosts_line(shared.endpoint.ip, link.alias, hostname, child.name))
        return lines

    def _shared(self, child: Container, attached: list[Attachment]) -> Attachment | None:
        mine = {a.network.id for a in attached}
        shared = [a for a in self.networks.attachments(child.id) if a.network.id in mine]
        return shared[0] if shared else None

    async def remove_link(self, parent_ref: str, alias: str) -> None:
        """``docker rm --link /parent/alias``: the link leaves ``HostConfig.Links``, its
        variables the next start's environment and its line the parent's /etc/hosts."""
        parent = self.store.get(parent_ref)
        async with self.runs.slot(parent.id).lock:
            kept = [
                str(e)
                for e in parent.host_config.get("Links") or ()
                if parse_link(str(e)).alias != alias
            ]
            parent.host_config["Links"] = kept or None
            parent.link_env = without_link_env(
                parent.link_env, alias, [parse_link(e).alias for e in kept]
            )
            self.store.save(parent)
            if parent.hosts_path:
                await asyncio.to_thread(drop_hosts_name, parent.hosts_path, alias)

    def _volumes_from(self, host_config: Mapping[str, Any], taken: set[str]) -> list[MountPoint]:
        """``--volumes-from name[:ro|:rw]``: that container's volumes, at the same paths
        (the container's own mounts win)."""
        out: list[MountPoint] = []
        for spec in host_config.get("VolumesFrom") or []:
            ref, _, mode = str(spec).partition(":")
            if mode not in ("", "ro", "rw"):
                raise InvalidParameter(f"invalid mode: {mode}")
            other = self.store.get(ref)
            for doc in other.mount_points:
                p = MountPoint.from_json(doc)
                if p.destination in taken:
                    continue
                taken.add(p.destination)
                rw = p.rw if not mode else mode == "rw"
                out.append(replace(p, rw=rw, mode=mode or p.mode))
        return out

    def _check_platform(self, platform: str) -> None:
        parts = platform.lower().split("/")
        host = self.facts.host
        wanted_os = parts[0]
        wanted_arch = parts[1] if len(parts) > 1 else host.go_arch
        if wanted_os != host.os_type or wanted_arch != host.go_arch:
            raise InvalidParameter(
                f"requested platform {platform!r} does not match this host "
                f"({host.os_type}/{host.go_arch}): whaled runs containers of the host's "
                "platform only"
            )

    def _check_joins(self, hc: Mapping[str, Any]) -> None:
        for key in ("NetworkMode", "IpcMode", "PidMode"):
            joined = joined_container(str(hc.get(key) or ""))
            if joined is not None:
                other = self.store.get(joined)
                check_join(key, str(other.host_config.get("NetworkMode") or ""))

    def _free_name(self) -> str:
        for retry in range(20):
            candidate = generate_name(self._rng, retry // 5)
            if not self.store.name_taken(candidate):
                return candidate
        return "whaled_" + secrets.token_hex(6)


def _ulimit(name: str, soft: int, hard: int) -> Ulimit:
    return Ulimit(name=name, soft=soft, hard=hard)
