"""The Daemon: the services one request may need, and the live config snapshot.

Deliberately small (no god object): it only holds the per-resource services that the
composition root (``whaled.wiring``) built. Handlers call ``config()`` once per operation
and pass that snapshot down.
"""

from __future__ import annotations

from dataclasses import dataclass

from whaled.config.model import Config
from whaled.config.store import ConfigStore
from whaled.daemon.builder import BuildService
from whaled.daemon.container_io import ContainerIO
from whaled.daemon.containers import ContainerService
from whaled.daemon.distribution import DistributionService
from whaled.daemon.execs import ExecService
from whaled.daemon.images import ImageService
from whaled.daemon.networks import NetworkService
from whaled.daemon.reload import ReloadService
from whaled.daemon.system import SystemService
from whaled.daemon.volumes import VolumeService
from whaled.events import EventBus


@dataclass(slots=True, kw_only=True)
class Daemon:
    store: ConfigStore
    events: EventBus
    system: SystemService
    reloader: ReloadService
    images: ImageService
    volumes: VolumeService
    networks: NetworkService
    distribution: DistributionService
    containers: ContainerService
    execs: ExecService
    container_io: ContainerIO
    builder: BuildService

    def config(self) -> Config:
        return self.store.current()
