"""The container lifecycle (create, start, exit, restart policies, stop, kill, --rm, removal,
shutdown) of ``ContainerService`` against a fake ``Backend``: no root, no runtime, no mounts;
files only under a temp dir (the record store, run dirs, /etc files)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from whaled.config.model import Config
from whaled.container.events import ContainerEvents
from whaled.container.state import Status
from whaled.container.store import ContainerStore
from whaled.daemon.bundle import RunFiles, SpecAssembler
from whaled.daemon.containers import ContainerService
from whaled.daemon.create import ContainerCreator
from whaled.daemon.environment import Environment
from whaled.daemon.networks import NetworkService
from whaled.daemon.restore import ContainerRestorer
from whaled.daemon.runs import Runs
from whaled.daemon.system import HostFacts
from whaled.daemon.tasks import BackgroundTasks
from whaled.daemon.trash import Trash
from whaled.daemon.volumes import VolumeService
from whaled.errors import Conflict, NoSuchContainer
from whaled.events import EventBus
from whaled.host.cgroups import CgroupInfo, CgroupMode
from whaled.host.sysinfo import HostInfo
from whaled.image.layers import LayerStore
from whaled.image.stores import ImageStores
from whaled.network.store import NetworkStore
from whaled.runtime.backend.api import (
    BeforeRuntime,
    CreateOptions,
    ExitStatus,
    Process,
    TaskState,
    TaskStatus,
)
from whaled.volume.store import VolumeStore

RUNC = "/usr/bin/runc"


# --------------------------------------------------------------------------- fakes


class FakeTask:
    """The init process: exits when the test says so, or when killed (128+signal)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._exit: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self.signals: list[int] = []
        self.paused = False
        #: Ignore SIGTERM (a process that must be killed).
        self.stubborn = False

    @property
    def id(self) -> str:
        return "init"

    @property
    def pid(self) -> int:
        return self._pid

    async def attach(self) -> Any:
        raise Conflict("the fake backend has no stdio to attach to")

    @property
    def log_path(self) -> str | None:
        return None

    def exit(self, code: int, *, oom: bool = False) -> None:
        if not self._exit.done():
            self._exit.set_result(
                ExitStatus(exit_code=code, exited_at=datetime.now(UTC), oom_killed=oom)
            )

    async def kill(self, signal_number: int, all: bool = False) -> None:
        self.signals.append(signal_number)
        if signal_number == signal.SIGTERM and self.stubborn:
            return
        if signal_number in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
            self.exit(128 + signal_number)

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._exit)

    def exit_status(self) -> ExitStatus | None:
        return self._exit.result() if self._exit.done() else None

    async def resize(self, width: int, height: int) -> None:
        pass

    async def close_stdin(self) -> None:
        pass

    async def release(self) -> None:
        pass

    async def pause(self) -> None:
        self.paused = True

    async def resume(self) -> None:
        self.paused = False

    async def state(self) -> TaskState:
        return TaskState(status=TaskStatus.RUNNING, pid=self._pid)

    async def pids(self) -> list[int]:
        return [self._pid]

    async def update(self, resources: Mapping[str, Any]) -> None:
        self.updated = dict(resources)

    async def stats(self) -> Mapping[str, Any]:
        return {}

    async def exec(self, exec_id: str, process_spec: Mapping[str, Any], **kw: Any) -> Process:
        raise NotImplementedError

    def load_exec(self, exec_id: str) -> Process:
        raise NotImplementedError

    async def reopen_log(self) -> None:
        pass


@dataclass
class FakeRuntimeContainer:
    backend: FakeBackend
    options: CreateOptions
    started: FakeTask | None = None
    deleted: bool = False

    @property
    def id(self) -> str:
        return self.options.container_id

    async def start(self) -> FakeTask:
        if self.backend.fail_start:
            raise Conflict(self.backend.fail_start)
        self.backend.next_pid += 1
        self.started = FakeTask(self.backend.next_pid)
        self.backend.tasks.append(self.started)
        return self.started

    async def task(self) -> FakeTask:
        assert self.started is not None
        return self.started

    async def attach(self) -> Any:
        raise Conflict("the fake backend has no stdio to attach to")

    async def delete(self, *, force: bool = False) -> None:
        self.deleted = True
        self.backend.deleted.append(self.options.container_id)


@dataclass
class FakeBackend:
    created: list[CreateOptions] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    tasks: list[FakeTask] = field(default_factory=list)
    next_pid: int = 1000
    fail_start: str = ""

    async def create(
        self, options: CreateOptions, *, before_runtime: BeforeRuntime | None = None
    ) -> FakeRuntimeContainer:
        if before_runtime is not None:
            await before_runtime()  # mounts the rootfs and writes the bundle
        self.created.append(options)
        return FakeRuntimeContainer(self, options)

    def load(self, options: CreateOptions) -> FakeRuntimeContainer:
        return FakeRuntimeContainer(self, options)


@dataclass(frozen=True)
class FakeImage:
    id: str = "sha256:" + "1" * 64
    top_chain: str = "sha256:" + "2" * 64
    config: Mapping[str, Any] = field(
        default_factory=lambda: {"os": "linux", "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}}
    )


class FakeImages:
    def resolve(self, ref: str) -> FakeImage:
        return FakeImage()


class FakeRWLayers:
    """RW layers as plain directories; "mounting" returns the directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounts: dict[str, int] = {}

    def create(self, cid: str, chain: str) -> None:
        (self.root / cid).mkdir(parents=True)

    def mount(self, cid: str) -> str:
        self.mounts[cid] = self.mounts.get(cid, 0) + 1
        return str(self.root / cid)

    def unmount(self, cid: str) -> None:
        if self.mounts.get(cid):
            self.mounts[cid] -= 1

    def is_mounted(self, cid: str) -> bool:
        return bool(self.mounts.get(cid))

    def remove(self, cid: str) -> None:
        self.mounts.pop(cid, None)
        (self.root / cid).rmdir()

    def remove_orphans(self, owners: set[str]) -> None:
        pass

    def empty_trash(self) -> None:
        pass


class FakeLayers:
    """The layer store as the container use cases see it: its RW layers (``rw``)."""

    def __init__(self, root: Path) -> None:
        self.rw = FakeRWLayers(root)


def facts() -> HostFacts:
    return HostFacts(
        host=HostInfo(
            kernel_version="6.1.0",
            os_type="linux",
            operating_system="Debian GNU/Linux 12 (bookworm)",
            os_version="12",
            architecture="x86_64",
            go_arch="amd64",
            ncpu=2,
            mem_total=1 << 30,
            hostname="host",
            ipv4_forwarding=True,
            bridge_nf_iptables=True,
            bridge_nf_ip6tables=True,
            seccomp_available=True,
            apparmor_enabled=False,
            selinux_enabled=False,
            cgroup_namespaces=True,
        ),
        cgroups=CgroupInfo(version=2, mode=cast(CgroupMode, "unified")),
        binaries={},
        backing_fs="extfs",
    )


@dataclass
class Daemon:
    svc: ContainerService
    restorer: ContainerRestorer
    backend: FakeBackend
    layers: FakeLayers
    bus: EventBus
    store: ContainerStore
    tasks: BackgroundTasks
    ended: list[str]

    def actions(self, cid: str) -> list[str]:
        return [e.action for e in self.bus.history() if e.actor_id == cid]


def build(tmp_path: Path, cfg: Config) -> Daemon:
    tasks = BackgroundTasks()
    bus = EventBus()
    store = ContainerStore(str(tmp_path / "data"))
    runs = Runs(tasks)
    events = ContainerEvents(bus)
    backend = FakeBackend()
    layers = FakeLayers(tmp_path / "layers")
    host = facts()
    files = RunFiles(str(tmp_path / "exec"), {"runc": RUNC, "crun": None})
    specs = SpecAssembler(facts=host, capability_bounding=None, store=store, runs=runs)
    trash = Trash(store=store, layers=cast(LayerStore, layers), files=files, tasks=tasks)
    ended: list[str] = []
    volumes = VolumeService(
        store=VolumeStore(str(tmp_path / "data")), events=bus, users=lambda name: []
    )
    networks = NetworkService(
        store=NetworkStore(str(tmp_path / "data")),
        events=bus,
        exec_root=str(tmp_path / "exec"),
        container_name=lambda cid: None,
    )
    svc = ContainerService(
        store=store,
        runs=runs,
        files=files,
        specs=specs,
        creator=ContainerCreator(
            store=store,
            runs=runs,
            images=cast(ImageStores, FakeImages()),
            layers=cast(LayerStore, layers),
            volumes=volumes,
            networks=networks,
            events=events,
            facts=host,
            files=files,
            specs=specs,
        ),
        layers=cast(LayerStore, layers),
        trash=trash,
        events=events,
        facts=host,
        config=lambda: cfg,
        backend=backend,
        tasks=tasks,
        environment=Environment(
            layers=cast(LayerStore, layers), specs=specs, volumes=volumes, networks=networks
        ),
        on_run_ended=ended.append,
    )
    restorer = ContainerRestorer(
        containers=svc,
        store=store,
        runs=runs,
        layers=cast(LayerStore, layers),
        backend=backend,
        files=files,
        trash=trash,
        tasks=tasks,
    )
    return Daemon(svc, restorer, backend, layers, bus, store, tasks, ended)


def run(tmp_path: Path, scenario: Callable[[Daemon], Awaitable[None]]) -> None:
    async def main() -> None:
        d = build(tmp_path, Config())
        try:
            await scenario(d)
        finally:
            await d.tasks.cancel_all()

    asyncio.run(main())


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def create(d: Daemon, **host_config: Any) -> str:
    body = {"Image": "busybox", "Cmd": ["sleep", "9"], "HostConfig": host_config}
    result = await d.svc.create(Config(), body, name=None, platform=None)
    return result.id


# --------------------------------------------------------------------------- tests


def test_create_start_and_exit(tmp_path: Path) -> None:
    async def scenario(d: Daemon) -> None:
        cid = await create(d, NetworkMode="none")
        c = d.svc.get(cid)
        assert d.svc.get(cid).state.status == Status.CREATED and c.name
        assert os.path.exists(c.hosts_path) and os.path.exists(c.resolv_conf_path)
        await d.svc.start(Config(), cid)
        assert c.state.status == Status.RUNNING and c.state.pid == 1001
        assert c.runtime_path == RUNC
        bundle = d.backend.created[0].bundle_dir
        assert os.path.exists(os.path.join(bundle, "config.json"))
        assert d.layers.rw.is_mounted(cid)
        waiter = asyncio.ensure_future(d.svc.wait(cid, "next-exit"))
        await asyncio.sleep(0)
        d.backend.tasks[0].exit(3)
        assert (await waiter).status_code == 3
        await until(lambda: cid in d.backend.deleted and cid in d.ended)
        assert c.state.status == Status.EXITED and c.state.exit_code == 3 and c.state.pid == 0
        assert not d.layers.rw.is_mounted(cid)
        assert d.actions(cid) == ["create", "start", "die"]
        assert d.store.by_id(cid) is not None  # the exit was persisted
        assert ContainerStore(str(tmp_path / "data")).load_all()[0].state.exit_code == 3

    run(tmp_path, scenario)


def test_oom_exit_announces_oom_before_die(tmp_path: Path) -> None:
    async def scenario(d: Daemon) -> None:
        cid = await create(d)
        await d.svc.start(Config(), cid)
        d.backend.tasks[0].exit(137, oom=True)
        await until(lambda: d.svc.get(cid).state.status == Status.EXITED)
        assert d.svc.get(cid).state.oom_killed
        assert d.actions(cid) == ["create", "start", "oom", "die"]

    run(tmp_path, scenario)


def test_on_failure_policy_restarts_after_the_backoff(tmp_path: Path) -> None:
    async def scenario(d: Daemon) -> None:
        cid = await create(d, RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 1})
        await d.svc.start(Config(), cid)
        d.backend.tasks[0].exit(1)
        c = d.svc.get(cid)
        await until(lambda: c.state.status == Status.RESTARTING)
        await until(lambda: len(d.backend.tasks) == 2 and c.state.status == Status.RUNNING)
        assert c.restart_count == 1
        d.backend.tasks[1].exit(1)  # the retry budget is used up
        await until(lambda: c.state.status == Status.EXITED)
        await asyncio.sleep(0.3)
        assert len(d.backend.tasks) == 2 and c.state.status == Status.EXITED

    run(tmp_path, scenario)


def test_stop_by_user_is_not_restarted(tmp_path: Path) -> None:
    async def scenario(d: Daemon) -> None:
        cid = await create(d, RestartPolicy={"Name": "always"})
        await d.svc.start(Config(), cid)
        await d.svc.stop(cid, timeout=5)
        c = d.svc.get(cid)
        assert d.backend.tasks[0].signals == [signal.SIGTERM]
        assert c.state.status == Status.EXITED and c.state.exit_code == 143
        assert c.manually_stopped
        await asyncio.sleep(0.3)
        assert len(d.backend.tasks) == 1
        assert d.actions(cid) == ["create", "start", "kill", "die", "stop"]

    run(tmp_path, scenario)


def test_stop_kills_after_the_timeout(tmp_path: Path) -> None:
    async def scenario(d: Daemon) -> None:
        cid = await create(d)
        await d.svc.start(Config(), cid)
        d.backend.tasks[0].stubborn = True
        await d.svc.stop(cid, timeout=0)
        assert d.backend.tasks[0].signals == [signal.SIGTERM, signal.SIGKILL]
        assert d.svc.get(cid).state.exit_code == 137

    run(tmp_path, scenario)


def test_auto_remove_after_exit(tmp_path: Path) -> None:
    async def scenario(d: Daemon) -> None:
        cid = await create(d, AutoRemove=True)
        await d.svc.start(Config(), cid)
        removed = asyncio.ensure_future(d.svc.wait(cid, "removed"))
        await asyncio.sleep(0)
        d.backend.tasks[0].exit(0)
        assert (await removed).status_code == 0
        assert d.store.by_id(cid) is None
        assert d.actions(cid) == ["create", "start", "die", "destroy"]
        with pytest.raises(NoSuchContainer):
            d.svc.get(cid)

    run(tmp_path, scenario)


def test_remove_needs_force_while_running(tmp_path: Path) -> None:
    async def scenario(d: Daemon) -> None:
        cid = await create(d)
        await d.svc.start(Config(), cid)
        with pytest.raises(Conflict, match="You cannot remove a running container"):
            await d.svc.remove(cid, force=False, volumes=False)
        await d.svc.remove(cid, force=True, volumes=False)
        assert d.backend.tasks[0].signals == [signal.SIGKILL]
        assert d.store.by_id(cid) is None
        assert d.actions(cid)[-3:] == ["kill", "die", "destroy"]

    run(tmp_path, scenario)


def test_failed_start_records_the_exit_code(tmp_path: Path) -> None:
    async def scenario(d: Daemon) -> None:
        cid = await create(d)
        d.backend.fail_start = 'exec: "sleep": executable file not found in $PATH'
        with pytest.raises(Exception, match="executable file not found") as e:
            await d.svc.start(Config(), cid)
        assert type(e.value).__name__ == "InvalidParameter"
        c = d.svc.get(cid)
        assert c.state.exit_code == 127 and c.state.status == Status.CREATED
        assert not d.layers.rw.is_mounted(cid)

    run(tmp_path, scenario)


def test_shutdown_stops_running_containers_without_restarting(tmp_path: Path) -> None:
    async def scenario(d: Daemon) -> None:
        cid = await create(d, RestartPolicy={"Name": "always"})
        await d.svc.start(Config(), cid)
        await d.restorer.shutdown(Config())
        c = d.svc.get(cid)
        assert c.state.status == Status.EXITED and c.state.exit_code == 143
        assert not c.manually_stopped  # comes back at the next daemon start
        assert cid in d.backend.deleted

    run(tmp_path, scenario)
