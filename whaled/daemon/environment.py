"""A container's environment around its process: the mounted rootfs, its volumes, its
network namespace and published ports — set up before the process runs, taken down when it
exits or a start fails, released when the container is removed. The container service calls
these at the right moments; the volume and network services do the work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from whaled.config.model import Config
from whaled.container.model import Container
from whaled.daemon.bundle import SpecAssembler, write_bundle
from whaled.daemon.networks import NetworkService
from whaled.daemon.volumes import VolumeService
from whaled.errors import WhaledError
from whaled.image.layers import LayerStore
from whaled.volume.model import MountPoint
from whaled.volume.sources import create_bind_sources

log = logging.getLogger(__name__)


def mount_points(c: Container) -> list[MountPoint]:
    return [MountPoint.from_json(p) for p in c.mount_points]


class Environment:
    def __init__(
        self,
        *,
        layers: LayerStore,
        specs: SpecAssembler,
        volumes: VolumeService,
        networks: NetworkService,
    ) -> None:
        self.layers = layers
        self.specs = specs
        self.volumes = volumes
        self.networks = networks
        #: containers whose rootfs ``prepare`` mounted for a start not finished yet
        self._mounting: set[str] = set()
        #: wires network namespaces beside the rest of a start's preparation
        self._sandboxes = ThreadPoolExecutor(4, thread_name_prefix="sandbox")

    def prepare(self, cfg: Config, c: Container, bundle_dir: str) -> None:
        """Blocking, while the monitor waits: bind sources, the rootfs mounted, volumes
        ready (copy-up), the network namespace wired, then the bundle's spec written.
        The namespace is wired on another thread meanwhile (netlink round trips and the
        mounts are independent); a failure of either is raised, and ``undo`` takes down
        whatever the other made."""
        wired = self._sandboxes.submit(self.networks.sandbox_up, c.id)
        try:
            create_bind_sources(c.host_config)
            rootfs = self.layers.rw.mount(c.id)
            self._mounting.add(c.id)
            volumes = self.volumes.mount_for_start(mount_points(c), rootfs)
        finally:
            netns = wired.result()  # waited for even when the mount failed
        write_bundle(bundle_dir, self.specs.spec_for(cfg, c, rootfs, volumes, netns))

    async def publish(self, c: Container) -> None:
        """The published ports listen (the process is about to start)."""
        await self.networks.publish(c.id, c.name, c.host_config, c.config)

    async def undo(self, c: Container) -> None:
        """A start failed: whatever ``prepare``/``publish`` set up goes (idempotent)."""
        await self.networks.unpublish(c.id)
        if c.id in self._mounting:
            self._mounting.discard(c.id)
            with contextlib.suppress(WhaledError, OSError):
                await asyncio.to_thread(self.layers.rw.unmount, c.id)
        with contextlib.suppress(WhaledError, OSError):
            await asyncio.to_thread(self.networks.sandbox_down, c.id)

    def started(self, c: Container) -> None:
        """Events of a started container's volumes and networks (before its ``start``);
        its rootfs is the run's from now on."""
        self._mounting.discard(c.id)
        self.volumes.mounted(c.id, mount_points(c))
        self.networks.emit_connects(c.id)

    async def exited(self, c: Container) -> None:
        """The process is gone: ports and the namespace go (the rootfs is the run's
        clean-up)."""
        self.volumes.unmounted(c.id, mount_points(c))
        await self.networks.unpublish(c.id)
        with contextlib.suppress(WhaledError, OSError):
            await asyncio.to_thread(self.networks.sandbox_down, c.id)

    async def keep_volumes(self, c: Container) -> None:
        """Before the record of a container removed without ``-v`` goes: its anonymous
        volumes are kept (not orphans of a removal cut short)."""
        await self.volumes.keep(mount_points(c))

    async def release(self, c: Container, *, remove_anonymous: bool) -> None:
        """The container is removed: its endpoints are freed, its anonymous volumes go
        with ``remove_anonymous`` (``rm -v``, ``--rm``)."""
        await self.volumes.release(c.id, mount_points(c), remove_anonymous=remove_anonymous)
        await self.networks.release(c.id)
