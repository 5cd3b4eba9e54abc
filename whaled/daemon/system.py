"""System facts for /version and /info, gathered once at start and per request.

Counts of containers and images come from the container and image services
(``ServiceInventory`` over the ``Inventory`` protocol).
"""

from __future__ import annotations

import asyncio
import os
import platform
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from whaled import __version__
from whaled.config.model import Config
from whaled.daemon.runtimes import builtin_runtime_paths
from whaled.host.binaries import BinaryVersion, probe_binary
from whaled.host.cgroups import CgroupInfo, cgroup_warnings, read_cgroup_info
from whaled.host.sysinfo import HostInfo, network_warnings, read_host_info, read_open_fd_count
from whaled.runtime.registry import RuntimeDescription, describe_runtimes
from whaled.runtime.resources import HostCpusets


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerCounts:
    total: int = 0
    running: int = 0
    paused: int = 0
    stopped: int = 0


class Inventory(Protocol):
    def container_counts(self) -> ContainerCounts: ...

    def image_count(self) -> int: ...


class ListenerCount(Protocol):
    def __call__(self) -> int: ...


class ImageCounter(Protocol):
    def count(self) -> int: ...


class ContainerCounter(Protocol):
    def counts(self) -> tuple[int, int, int, int]:
        """(total, running, paused, stopped)."""
        ...


class ServiceInventory:
    """Counts for /info from the image and container services."""

    def __init__(self, images: ImageCounter, containers: ContainerCounter) -> None:
        self._images = images
        self._containers = containers

    def container_counts(self) -> ContainerCounts:
        total, running, paused, stopped = self._containers.counts()
        return ContainerCounts(total=total, running=running, paused=paused, stopped=stopped)

    def image_count(self) -> int:
        return self._images.count()


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFacts:
    """Facts read once at daemon start."""

    host: HostInfo
    cgroups: CgroupInfo
    binaries: Mapping[str, BinaryVersion]  # runc, crun, conmon, init
    backing_fs: str
    python_version: str = field(default_factory=platform.python_version)

    @property
    def cpusets(self) -> HostCpusets:
        """The CPUs and memory nodes a container's cpuset may name."""
        return HostCpusets(self.cgroups.cpuset_cpus, self.cgroups.cpuset_mems)


# One runtime of /info: name, binary as configured, runtimeArgs (never a wrapper's path).
RuntimeView = RuntimeDescription


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionView:
    version: str
    os: str
    arch: str
    kernel_version: str
    experimental: bool
    python_version: str
    components: tuple[BinaryVersion, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoView:
    engine_id: str
    config: Config
    facts: HostFacts
    containers: ContainerCounts
    images: int
    runtimes: tuple[RuntimeView, ...]
    events_listeners: int
    open_fds: int
    threads: int
    system_time_ns: int
    warnings: tuple[str, ...]


async def gather_host_facts(data_root: str) -> HostFacts:
    names = ("runc", "crun", "conmon", "catatonit", "tini")
    probes = dict(zip(names, await asyncio.gather(*(probe_binary(n) for n in names)), strict=True))
    binaries = {name: probes[name] for name in ("runc", "crun", "conmon")}
    binaries["init"] = probes["catatonit"] if probes["catatonit"].ok else probes["tini"]
    return HostFacts(
        host=read_host_info(),
        cgroups=read_cgroup_info(),
        binaries=binaries,
        backing_fs=backing_filesystem(data_root),
    )


def backing_filesystem(path: str) -> str:
    """The filesystem type under ``path`` as dockerd names it (ext4 → "extfs")."""
    best, fstype = "", "unknown"
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and (path + "/").startswith(parts[1].rstrip("/") + "/"):
                    if len(parts[1]) >= len(best):
                        best, fstype = parts[1], parts[2]
    except OSError:
        pass
    return {"ext2": "extfs", "ext3": "extfs", "ext4": "extfs"}.get(fstype, fstype)


class SystemService:
    def __init__(
        self,
        *,
        engine_id: str,
        facts: HostFacts,
        inventory: Inventory,
        events_listeners: ListenerCount,
    ) -> None:
        self.engine_id = engine_id
        self.facts = facts
        self.inventory = inventory
        self._listeners = events_listeners

    def version(self, cfg: Config) -> VersionView:
        host = self.facts.host
        components = tuple(
            b for key in ("runc", "conmon", "init") if (b := self.facts.binaries.get(key)) and b.ok
        )
        return VersionView(
            version=__version__,
            os=host.os_type,
            arch=host.go_arch,
            kernel_version=host.kernel_version,
            experimental=cfg.experimental,
            python_version=self.facts.python_version,
            components=components,
        )

    def runtimes(self, cfg: Config) -> tuple[RuntimeView, ...]:
        """The runtimes of this snapshot, from the registry (the names a container create
        accepts, nothing more)."""
        return describe_runtimes(cfg, builtin_runtime_paths(self.facts.binaries))

    def info(self, cfg: Config) -> InfoView:
        warnings = list(cgroup_warnings(self.facts.cgroups))
        warnings.extend(network_warnings(self.facts.host))
        return InfoView(
            engine_id=self.engine_id,
            config=cfg,
            facts=self.facts,
            containers=self.inventory.container_counts(),
            images=self.inventory.image_count(),
            runtimes=self.runtimes(cfg),
            events_listeners=self._listeners(),
            open_fds=read_open_fd_count(),
            threads=threading.active_count(),
            system_time_ns=time.time_ns(),
            warnings=tuple(warnings),
        )


def default_init_binary(facts: HostFacts) -> str:
    init = facts.binaries.get("init")
    return os.path.basename(init.path) if init is not None and init.path else ""
