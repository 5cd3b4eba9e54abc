"""Volume use cases: the ``/volumes`` API, and what containers need of volumes (create the
ones a container asks for, mount them at its start with copy-up, release them at removal).

Which containers use a volume is read from the container records (``Container.mount_points``)
through ``users``, so reference counts are rebuilt at every daemon start by construction.
The store and the copy-up are blocking and run in worker threads; events (``create``,
``mount``, ``unmount``, ``destroy``) are emitted on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from whaled.container.times import now_rfc3339
from whaled.errors import Conflict, InvalidParameter, NotFound
from whaled.events import EventBus
from whaled.runtime.mounts import BindMount
from whaled.volume import rules
from whaled.volume.copyup import copy_tree, is_empty_dir
from whaled.volume.model import MountPoint, Volume
from whaled.volume.store import VolumeStore

log = logging.getLogger("whaled.volumes")

VOLUME_EVENT = "volume"
FilterArgs = Mapping[str, Sequence[str]]
#: Which containers (IDs) mount a volume, from the container records.
VolumeUsers = Callable[[str], list[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeView:
    volume: Volume
    mountpoint: str
    ref_count: int
    size: int = -1  # bytes, -1 when not computed


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneReport:
    deleted: list[str]
    reclaimed: int


class VolumeService:
    def __init__(self, *, store: VolumeStore, events: EventBus, users: VolumeUsers) -> None:
        self.store = store
        self._events = events
        self._users = users

    def _emit(self, action: str, name: str, attributes: Mapping[str, str] | None = None) -> None:
        self._events.emit(VOLUME_EVENT, action, name, {"driver": "local", **(attributes or {})})

    def _view(self, v: Volume, *, size: bool = False) -> VolumeView:
        return VolumeView(
            volume=v,
            mountpoint=self.store.data_dir(v.name),
            ref_count=len(self._users(v.name)),
            size=self.store.size(v.name) if size else -1,
        )

    # ------------------------------------------------------------------ API

    async def create(
        self,
        name: str,
        *,
        driver: str = "",
        labels: Mapping[str, str] | None = None,
        driver_opts: Mapping[str, str] | None = None,
    ) -> VolumeView:
        rules.check_driver(driver)
        opts = dict(driver_opts or {})
        rules.check_driver_opts(opts)
        if name:
            rules.check_name(name)
        else:
            name = secrets.token_hex(32)
        volume, made = await asyncio.to_thread(
            self.store.create, name, labels=labels or {}, options=opts, created_at=now_rfc3339()
        )
        if made:
            self._emit("create", name)
        return self._view(volume)

    def inspect(self, name: str) -> VolumeView:
        return self._view(self.store.get(name))

    def find(self, filters: FilterArgs) -> list[VolumeView]:
        rules.check_filters(filters, rules.LIST_FILTERS)
        out = []
        for v in self.store.all():
            view = self._view(v)
            if rules.matches(v, filters, view.ref_count > 0):
                out.append(view)
        return out

    async def remove(self, name: str, *, force: bool = False) -> None:
        try:
            self.store.get(name)
        except NotFound:
            if force:
                return
            raise
        users = self._users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        await asyncio.to_thread(self.store.remove, name)
        self._emit("destroy", name)

    async def prune(self, filters: FilterArgs) -> PruneReport:
        rules.check_filters(filters, rules.PRUNE_FILTERS)
        all_volumes = any(v.lower() in ("true", "1") for v in filters.get("all", ()))
        deleted: list[str] = []
        reclaimed = 0
        for v in self.store.all():
            if self._users(v.name) or not rules.prunable(v, filters, all_volumes=all_volumes):
                continue
            size = await asyncio.to_thread(self.store.size, v.name)
            try:
                await self.remove(v.name)
            except (Conflict, NotFound):
                continue
            deleted.append(v.name)
            reclaimed += max(size, 0)
        return PruneReport(deleted=deleted, reclaimed=reclaimed)

    def sizes(self) -> list[VolumeView]:
        """Every volume with its size (``system df``; blocking)."""
        return [self._view(v, size=True) for v in self.store.all()]

    # ------------------------------------------------------------------ containers

    async def prepare(
        self, config: Mapping[str, Any], host_config: Mapping[str, Any], *, owner: str = ""
    ) -> list[MountPoint]:
        """The volumes a container create asks for, made where missing (named ones and
        anonymous ones, the latter owned by container ``owner`` until it is removed): its
        mount points, to keep in its record."""
        points: list[MountPoint] = []
        for request in rules.volume_requests(config, host_config):
            name = request.name or secrets.token_hex(32)
            labels = dict(request.labels)
            if request.name is None:
                labels = rules.anonymous_labels(labels)
            if request.driver_opts:
                rules.check_driver_opts(request.driver_opts)
            volume, made = await asyncio.to_thread(
                self.store.create,
                name,
                labels=labels,
                options=request.driver_opts,
                created_at=now_rfc3339(),
                owner=owner if request.name is None else "",
            )
            if made:
                self._emit("create", name)
            points.append(
                MountPoint(
                    name=name,
                    destination=request.destination,
                    source=self.store.data_dir(name),
                    rw=request.rw,
                    mode=request.mode,
                    nocopy=request.nocopy,
                    subpath=request.subpath,
                    anonymous=request.name is None or volume.anonymous,
                )
            )
        return points

    def mount_for_start(self, points: Sequence[MountPoint], rootfs: str) -> list[BindMount]:
        """Blocking, while the container's rootfs is mounted and before its process runs:
        mount volumes with driver options, copy the image's content into empty volumes,
        and give the bind mounts for the spec."""
        binds: list[BindMount] = []
        for p in points:
            volume = self.store.get(p.name)
            self.store.ensure_mounted(volume)
            data = self.store.data_dir(p.name)
            source = data
            if p.subpath:
                source = os.path.join(data, p.subpath)
                if not os.path.isdir(source):
                    raise InvalidParameter(
                        f"cannot access path {source}: the subpath does not exist in "
                        f"volume {p.name}"
                    )
            elif not p.nocopy and is_empty_dir(data):
                image_dir = _inside(rootfs, p.destination)
                if image_dir is not None:
                    copy_tree(image_dir, data)
            binds.append(BindMount(source=source, destination=p.destination, readonly=not p.rw))
        return binds

    def mounted(self, container_id: str, points: Sequence[MountPoint]) -> None:
        for p in points:
            self._emit(
                "mount",
                p.name,
                {
                    "container": container_id,
                    "destination": p.destination,
                    "propagation": "",
                    "read/write": "true" if p.rw else "false",
                },
            )

    def unmounted(self, container_id: str, points: Sequence[MountPoint]) -> None:
        for p in points:
            self._emit("unmount", p.name, {"container": container_id})

    async def release(
        self, container_id: str, points: Sequence[MountPoint], *, remove_anonymous: bool
    ) -> None:
        """The container is gone: with ``remove_anonymous`` (``rm -v``, ``--rm``) its
        anonymous volumes go too, unless another container still uses them."""
        if not remove_anonymous:
            return
        await self._remove_anonymous(container_id, points)

    async def keep(self, points: Sequence[MountPoint]) -> None:
        """A container is about to be removed without ``-v``: its anonymous volumes are
        kept, so they lose their owner (before its record goes: see ``drop_orphans``)."""
        for p in points:
            if p.anonymous:
                with contextlib.suppress(NotFound):
                    await asyncio.to_thread(self.store.disown, p.name)

    def drop_orphans(self, containers: set[str]) -> list[str]:
        """Daemon start: anonymous volumes whose owner does not exist and that no container
        mounts (a daemon killed between a volume's creation and its container's record, or
        between a removal's record and its ``rm -v``) are removed. Returns their names."""
        dropped = []
        for v in self.store.all():
            if v.owner and v.owner not in containers and not self._users(v.name):
                try:
                    self.store.remove(v.name)
                except (NotFound, Conflict) as e:
                    log.warning("orphaned volume %s: %s", v.name, e)
                    continue
                log.info("removed volume %s of container %s, which is gone", v.name, v.owner[:12])
                dropped.append(v.name)
        return dropped

    async def _remove_anonymous(self, container_id: str, points: Sequence[MountPoint]) -> None:
        for p in points:
            if not p.anonymous:
                continue
            if [u for u in self._users(p.name) if u != container_id]:
                # Still mounted by another container (--volumes-from): kept, owner-less.
                with contextlib.suppress(NotFound):
                    await asyncio.to_thread(self.store.disown, p.name)
                continue
            try:
                await asyncio.to_thread(self.store.remove, p.name)
            except NotFound:
                continue
            self._emit("destroy", p.name)


def _inside(rootfs: str, destination: str) -> str | None:
    """The directory at ``destination`` in the container's rootfs, resolved without
    leaving it (symlinks followed as if the rootfs were /); None if there is none."""
    parts = [p for p in destination.split("/") if p and p != "."]
    current = rootfs
    hops = 0
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == "..":
            current = os.path.dirname(current) if current != rootfs else rootfs
            i += 1
            continue
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            rest = [p for p in target.split("/") if p and p != "."]
            if target.startswith("/"):
                current = rootfs
            parts = parts[:i] + rest + parts[i + 1 :]
            continue
        current = candidate
        i += 1
    return current if os.path.isdir(current) and not os.path.islink(current) else None


def volume_users(
    records: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], name: str
) -> list[str]:
    """IDs of the containers whose mount points (``Container.mount_points``) use ``name``."""
    return [cid for cid, points in records if any(p.get("name") == name for p in points)]
