"""Container queries and file operations: list, inspect views, logs, top, stats samples,
``docker cp``, export, changes, commit and prune. Blocking work runs in worker threads.

File operations see the container's file system as a process inside it would: the overlay
root (mounted for the duration of the operation, ref-counted, so a running container's
mount is shared) plus the bind mounts the daemon made (/etc/hosts, /etc/resolv.conf,
/etc/hostname and the user's binds); ``whaled.container.archive`` resolves every path inside
that view and never follows a link out to the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from whaled.archive.tarsafe import Readable
from whaled.container import archive as cp
from whaled.container.events import ContainerEvents
from whaled.container.initpaths import hide_init_paths, init_exclusions
from whaled.container.listing import select
from whaled.container.model import Container
from whaled.container.state import Status, is_running
from whaled.container.top import (
    DEFAULT_PS_ARGS,
    parse_ps,
    ps_argvs,
    ps_error,
    validate_ps_args,
)
from whaled.daemon.containers import ContainerService
from whaled.daemon.execs import ExecService
from whaled.daemon.images import ImageService, SaveStream
from whaled.daemon.networks import Attachment, NetworkService
from whaled.daemon.pump import Attacher, ClientIO, Detacher, PumpEnd
from whaled.daemon.runs import Runs
from whaled.daemon.system import HostFacts
from whaled.daemon.tasks import BackgroundTasks
from whaled.errors import Conflict, InvalidParameter, NotFound, SystemFailure, WhaledError
from whaled.host.procstat import online_cpus, system_cpu_ns
from whaled.image.filters import match_labels, parse_timestamp
from whaled.image.layers import LayerStore
from whaled.image.rwlayers import ChangeKind
from whaled.logger.options import check_readable, parse_log_config
from whaled.logger.reader import LogEntry, read_log_batches
from whaled.network.netstats import parse_net_dev
from whaled.osutil import spawn
from whaled.volume.mounts import parse_bind

log = logging.getLogger("whaled.containers")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerSummary:
    """What list/inspect need beside the record (the API layer shapes it)."""

    container: Container
    graph_driver: Mapping[str, str]
    exec_ids: Sequence[str]
    size_rw: int | None
    size_root_fs: int | None
    networks: Sequence[Attachment] = ()
    ports: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsSample:
    container_id: str
    name: str
    raw: Mapping[str, Any]  # the runtime's stats; {} when the container is not running
    read: datetime
    system_cpu_ns: int
    online_cpus: int
    cgroup_version: int
    host_memory: int
    running: bool
    #: per-interface counters of the container's own network namespace (empty otherwise)
    networks: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


def _read_text(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def parse_log_time(text: str, now: float | None = None) -> int:
    """``since``/``until``: Unix seconds (with fraction), RFC 3339, or a Go duration meaning
    "that long ago" → Unix nanoseconds; "" → 0."""
    if not text:
        return 0
    now = time.time() if now is None else now
    m = _DURATION.match(text)
    if m:
        return int((now - float(m.group(1)) * _DURATION_UNITS[m.group(2)]) * 1e9)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        whole, _, frac = text.partition(".")
        return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
    try:
        stamp = text.replace("Z", "+00:00")
        main, dot, rest = stamp.partition(".")
        nanos = 0
        if dot:
            digits = re.match(r"\d+", rest)
            assert digits is not None
            nanos = int((digits.group(0) + "000000000")[:9])
            stamp = main + rest[digits.end() :]
        parsed = datetime.fromisoformat(stamp)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp()) * 1_000_000_000 + nanos
    except (ValueError, AssertionError):
        raise InvalidParameter(
            f'invalid value for "since"/"until": {text!r} is not a timestamp or duration'
        ) from None


def format_timestamp(ns: int) -> str:
    """dockerd's RFC3339NanoFixed (always nine digits, UTC)."""
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns % 1_000_000_000:09d}Z"


class ContainerIO:
    def __init__(
        self,
        *,
        containers: ContainerService,
        execs: ExecService,
        runs: Runs,
        images: ImageService,
        layers: LayerStore,
        events: ContainerEvents,
        facts: HostFacts,
        tasks: BackgroundTasks,
        networks: NetworkService,
    ) -> None:
        self.networks = networks
        self.svc = containers
        self.tasks = tasks
        self.execs = execs
        self.runs = runs
        self.images = images
        self.layers = layers
        self.events = events
        self.facts = facts

    # ------------------------------------------------------------------ attach (stdio)

    async def attach(
        self,
        c: Container,
        client: ClientIO,
        *,
        stdout: bool,
        stderr: bool,
        detacher: Detacher | None,
        eof_closes_stdin: bool,
    ) -> PumpEnd:
        """Pump ``client``'s stdio to the container's process: now if it runs, else from
        its next start (which waits until the client is connected). Returns how it ended."""
        attacher = Attacher(
            self.tasks.spawn,
            f"attach-{c.id[:12]}",
            client,
            stdout=stdout,
            stderr=stderr,
            detacher=detacher,
            eof_closes_stdin=eof_closes_stdin,
        )
        await self.runs.attach(c, attacher)
        return await attacher.ended

    # ------------------------------------------------------------------ list / inspect

    def _summary(self, c: Container, *, size: bool) -> ContainerSummary:
        layers = self.layers
        try:
            graph: Mapping[str, str] = layers.rw.paths(c.id)
        except (NotFound, OSError):
            graph = {}  # half-removed: the RW layer is gone, inspect still answers
        size_rw = size_root = None
        if size:
            try:
                size_rw = layers.rw.size(c.id)
            except (NotFound, OSError):
                size_rw = 0
            try:
                rw = layers.rw.get(c.id)
                size_root = size_rw + layers.chain_size(rw.parent)
            except (NotFound, OSError):
                size_root = size_rw
        return ContainerSummary(
            container=c,
            graph_driver=graph,
            exec_ids=self.execs.ids_for(c.id),
            size_rw=size_rw,
            size_root_fs=size_root,
            networks=tuple(self.networks.attachments(c.id)),
            ports=self.networks.ports_of(c.id, c.config),
        )

    async def list_containers(
        self, *, filters: Mapping[str, Sequence[str]], all: bool, limit: int, size: bool
    ) -> list[ContainerSummary]:
        if not size:
            return self.summaries(filters=filters, all=all, limit=limit)
        chosen = self._select(filters, all=all, limit=limit)
        return await asyncio.to_thread(lambda: [self._summary(c, size=True) for c in chosen])

    def summaries(
        self, *, filters: Mapping[str, Sequence[str]], all: bool, limit: int
    ) -> list[ContainerSummary]:
        """``list_containers`` without sizes, which needs no thread: from memory."""
        return [self._summary(c, size=False) for c in self._select(filters, all=all, limit=limit)]

    def _select(
        self, filters: Mapping[str, Sequence[str]], *, all: bool, limit: int
    ) -> list[Container]:
        return select(
            self.svc.all(),
            filters,
            all=all,
            limit=limit,
            lookup=self.svc.get,
            image_matches=self._ancestor,
        )

    def _ancestor(self, ref: str) -> Callable[[str], bool]:
        images = self.images.stores
        try:
            target = images.resolve(ref).id
        except WhaledError:
            return lambda _: False

        def matches(image_id: str) -> bool:
            seen = 0
            current: str | None = image_id
            while current and seen < 256:
                if current == target:
                    return True
                try:
                    current = images.images.get(current).parent
                except WhaledError:
                    return False
                seen += 1
            return False

        return matches

    async def view(self, name_or_id: str, *, size: bool) -> ContainerSummary:
        if not size:
            return self.summary(name_or_id)
        return await asyncio.to_thread(self._summary, self.svc.get(name_or_id), size=True)

    def summary(self, name_or_id: str) -> ContainerSummary:
        """``view`` without sizes: from memory."""
        return self._summary(self.svc.get(name_or_id), size=False)

    # ------------------------------------------------------------------ logs

    def logs(
        self,
        name_or_id: str,
        *,
        stdout: bool,
        stderr: bool,
        since_ns: int = 0,
        until_ns: int = 0,
        tail: int | None = None,
        follow: bool = False,
        coalesce: bool = False,
    ) -> AsyncIterator[list[LogEntry]]:
        c = self.svc.get(name_or_id)
        lc = c.host_config.get("LogConfig") or {}
        driver = str(lc.get("Type") or "json-file")
        options = parse_log_config(driver, lc.get("Config") or {})
        check_readable(options)
        run = self.runs.run_of(c.id)
        done = asyncio.Event()
        if run is not None and is_running(c.state.status) and run.exit_status is None:
            done = run.cleaned
        else:
            done.set()
        return read_log_batches(
            c.log_path,
            stdout=stdout,
            stderr=stderr,
            since_ns=since_ns,
            until_ns=until_ns,
            tail=tail,
            follow=follow,
            done=done,
            max_files=options.max_file,
            coalesce=coalesce,
        )

    parse_log_time = staticmethod(parse_log_time)
    format_timestamp = staticmethod(format_timestamp)

    # ------------------------------------------------------------------ top / stats

    async def top(self, name_or_id: str, ps_args: str) -> tuple[list[str], list[list[str]]]:
        c = self.svc.get(name_or_id)
        task = self.runs.running_task(c)
        args = validate_ps_args(ps_args or DEFAULT_PS_ARGS)
        pids = set(await task.pids())
        first, fallback = ps_argvs(args, pids)
        out, err, code = await _run(first)
        if code != 0:
            out, err2, code = await _run(fallback)
            if code != 0:
                raise ps_error(err2 or err, f"exit status {code}", client_args=bool(ps_args))
        try:
            return parse_ps(out, pids, ps_args or DEFAULT_PS_ARGS)
        except SystemFailure as e:
            if not ps_args:
                raise
            # The client's columns (``-o comm``: no PID field) are the client's error.
            raise InvalidParameter(e.message) from None

    def is_running(self, name_or_id: str) -> bool:
        try:
            return is_running(self.svc.get(name_or_id).state.status)
        except NotFound:
            return False

    async def stats_sample(self, name_or_id: str) -> StatsSample:
        c = self.svc.get(name_or_id)
        run = self.runs.run_of(c.id)
        raw: Mapping[str, Any] = {}
        running = run is not None and c.state.status in (Status.RUNNING, Status.PAUSED)
        if running and run is not None:
            try:
                raw = await run.task.stats()
            except WhaledError as e:
                log.debug("stats of %s: %s", c.id[:12], e)
                raw = {}
        facts = self.facts
        return StatsSample(
            container_id=c.id,
            name=c.name,
            raw=raw,
            read=datetime.now(UTC),
            system_cpu_ns=await asyncio.to_thread(system_cpu_ns),
            online_cpus=online_cpus(),
            cgroup_version=2 if facts.cgroups.version == 2 else 1,
            host_memory=facts.host.mem_total,
            running=running,
            networks=await self._net_counters(c) if running else {},
        )

    async def _net_counters(self, c: Container) -> dict[str, dict[str, int]]:
        if not c.state.pid or not os.path.exists(self.networks.netns_path(c.id)):
            return {}  # host, none, container: modes have no interfaces of their own
        try:
            text = await asyncio.to_thread(_read_text, f"/proc/{c.state.pid}/net/dev")
        except OSError:
            return {}
        return parse_net_dev(text)

    # ------------------------------------------------------------------ files

    def _mounts_of(self, c: Container) -> dict[str, str]:
        hc = c.host_config
        mounts = {
            "/etc/hosts": c.hosts_path,
            "/etc/resolv.conf": c.resolv_conf_path,
            "/etc/hostname": c.hostname_path,
        }
        for bind in hc.get("Binds") or []:
            with contextlib.suppress(WhaledError):
                b = parse_bind(str(bind))
                mounts[b.destination] = b.source
        for m in hc.get("Mounts") or []:
            if m.get("Type") == "bind":
                mounts[str(m.get("Target"))] = str(m.get("Source"))
        for p in c.mount_points:  # volumes: docker cp sees through them, as dockerd
            source = str(p.get("source") or "")
            if source:
                sub = str(p.get("subpath") or "")
                mounts[str(p["destination"])] = os.path.join(source, sub) if sub else source
        return mounts

    def _readonly_mounts(self, c: Container) -> list[str]:
        out = []
        for bind in c.host_config.get("Binds") or []:
            with contextlib.suppress(WhaledError):
                b = parse_bind(str(bind))
                if b.readonly:
                    out.append(b.destination)
        for m in c.host_config.get("Mounts") or []:
            if m.get("Type") == "bind" and m.get("ReadOnly"):
                out.append(str(m.get("Target")))
        out.extend(str(p["destination"]) for p in c.mount_points if not p.get("rw", True))
        return out

    @contextlib.contextmanager
    def _rootfs(self, c: Container) -> Iterator[str]:
        layers = self.layers
        try:
            root = layers.rw.mount(c.id)
        except NotFound:
            raise Conflict(f"container {c.id} has no file system (it is being removed)") from None
        try:
            yield root
        finally:
            with contextlib.suppress(WhaledError, OSError):
                layers.rw.unmount(c.id)

    async def stat_path(self, name_or_id: str, path: str) -> dict[str, Any]:
        c = self.svc.get(name_or_id)

        def work() -> dict[str, Any]:
            with self._rootfs(c) as root:
                return cp.stat_path(root, self._mounts_of(c), path, container=c.name)

        return await asyncio.to_thread(work)

    async def archive(
        self, name_or_id: str, path: str
    ) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        c = self.svc.get(name_or_id)
        layers = self.layers

        def prepare() -> tuple[dict[str, Any], Iterator[bytes]]:
            root = layers.rw.mount(c.id)
            try:
                stat, chunks = cp.archive_path(root, self._mounts_of(c), path, container=c.name)
            except BaseException:
                layers.rw.unmount(c.id)
                raise
            return stat, _then(chunks, lambda: layers.rw.unmount(c.id))

        stat, chunks = await asyncio.to_thread(prepare)
        return stat, aiter(SaveStream(chunks))

    async def extract(
        self,
        name_or_id: str,
        path: str,
        body: Readable,
        *,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> None:
        c = self.svc.get(name_or_id)

        def work() -> None:
            with self._rootfs(c) as root:
                cp.extract_to(
                    root,
                    self._mounts_of(c),
                    path,
                    body,
                    no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                    copy_uid_gid=copy_uid_gid,
                    readonly_rootfs=bool(c.host_config.get("ReadonlyRootfs")),
                    readonly_mounts=self._readonly_mounts(c),
                    container=c.name,
                )

        await asyncio.to_thread(work)
        self.events.emit(c, "extract-to-dir", {"path": path})

    async def export(self, name_or_id: str) -> AsyncIterator[bytes]:
        c = self.svc.get(name_or_id)
        layers = self.layers

        def prepare() -> Iterator[bytes]:
            root = layers.rw.mount(c.id)
            return _then(cp.export_rootfs(root), lambda: layers.rw.unmount(c.id))

        chunks = await asyncio.to_thread(prepare)
        self.events.emit(c, "export")
        return aiter(SaveStream(chunks))

    async def changes(self, name_or_id: str) -> list[dict[str, Any]]:
        c = self.svc.get(name_or_id)
        try:
            changes = await asyncio.to_thread(self.layers.rw.changes, c.id)
        except (NotFound, FileNotFoundError):
            raise Conflict(
                f"container {c.id} has no file system (it is being removed or is dead)"
            ) from None
        changes = hide_init_paths(changes)
        return [{"Path": ch.path, "Kind": int(ChangeKind(ch.kind))} for ch in changes]

    async def commit(
        self,
        name_or_id: str,
        *,
        repo: str | None,
        tag: str | None,
        comment: str,
        author: str,
        pause: bool,
        changes: Sequence[str],
        config: Mapping[str, Any] | None,
    ) -> str:
        c = self.svc.get(name_or_id)
        paused_here = False
        if pause and c.state.status == Status.RUNNING:
            with contextlib.suppress(Conflict):
                await self.svc.pause(c.id, for_commit=True)
                paused_here = True
        try:
            container_config = dict(c.config)
            if config:
                container_config.update({k: v for k, v in config.items() if v})
            image_id = await self.images.commit(
                c.id,
                parent_image=c.image_id,
                container_config=container_config,
                changes=changes,
                author=author,
                comment=comment,
                repo=repo,
                tag=tag,
                exclude=init_exclusions(),
            )
        finally:
            if paused_here:
                with contextlib.suppress(Conflict):
                    await self.svc.unpause(c.id)
        self.events.emit(c, "commit", {"comment": comment} if comment else None)
        return image_id

    async def prune(self, filters: Mapping[str, Sequence[str]]) -> tuple[list[str], int]:
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidParameter(f"invalid filter '{key}'")
        until: float | None = None
        for value in filters.get("until", ()):
            until = parse_timestamp(value, time.time())
        deleted: list[str] = []
        reclaimed = 0
        for c in list(self.svc.all()):
            if c.state.status not in (Status.CREATED, Status.EXITED, Status.DEAD):
                continue
            if not match_labels(filters, c.config.get("Labels") or {}):
                continue
            if until is not None and parse_log_time(c.created) / 1e9 >= until:
                continue
            try:
                size = await asyncio.to_thread(self.layers.rw.size, c.id)
            except (NotFound, OSError):
                size = 0
            try:
                await self.svc.remove(c.id, force=False, volumes=False)
            except WhaledError as e:
                log.warning("prune: could not remove %s: %s", c.id[:12], e)
                continue
            deleted.append(c.id)
            reclaimed += size
        self.events.emit_pruned(reclaimed)
        return deleted, reclaimed


#: ``docker top``'s ``ps`` is killed after this long
_PS_TIMEOUT = 60.0


async def _run(argv: list[str]) -> tuple[str, str, int]:
    try:
        # Popen (osutil.spawn): the loop's subprocess forks the whole daemon on uvloop
        code, out, err = await spawn.run(argv, timeout=_PS_TIMEOUT)
    except FileNotFoundError:
        raise SystemFailure("ps is not installed on this host (package procps)") from None
    except TimeoutError:
        raise SystemFailure(f"ps did not finish in {_PS_TIMEOUT:g}s") from None
    return out.decode(errors="replace"), err.decode(errors="replace"), code


def _then(chunks: Iterator[bytes], after: Callable[[], None]) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        with contextlib.suppress(WhaledError, OSError):
            after()
