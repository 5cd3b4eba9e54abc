"""Container use cases: create, start, stop, kill, wait, remove, restart policies, restore.

One :class:`ContainerService` owns every container's lifecycle. Its rules:

- Each container has an operation lock (start/stop/kill/pause/remove/rename/update take it),
  so two requests never interleave on one container. The exit of a container is handled by
  the watcher task of that run, which does not take the lock (a stop holding the lock waits
  for it); a start first waits until the previous run's clean-up finished.
- A start resolves the runtime against the config snapshot taken for that request and
  locks the resolved executable into the container (``runtime_path``); every later runtime
  call of that run (kill, exec, pause, update, delete) goes through the backend objects made
  with that path, whatever later reloads do.
- Every state change is persisted (atomic write) before it is announced by an event.
- At daemon start :meth:`restore` re-adopts the containers whose monitor still runs and
  marks the others exited (then applies their restart policy); at shutdown
  :meth:`shutdown` stops running containers within ``shutdown-timeout`` unless live-restore
  is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import resource
import secrets
import shutil
import signal as signals
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from whaled.config.model import Config
from whaled.container import archive as cp
from whaled.container import etcfiles
from whaled.container.create import (
    DaemonDefaults,
    check_request,
    complete_host_config,
    merge_config,
    validate_host_config,
)
from whaled.container.health import HealthConfig, mark_stopped, reset_for_start
from whaled.container.model import Container
from whaled.container.names import generate_name, validate_name
from whaled.container.restart import Backoff, RestartPolicy, should_restart
from whaled.container.spec_input import build_spec_input, resources_of
from whaled.container.state import Event, Status, is_running, next_state
from whaled.container.store import ContainerStore
from whaled.daemon.system import HostFacts as DaemonFacts
from whaled.daemon.tasks import BackgroundTasks
from whaled.errors import (
    Conflict,
    InvalidParameter,
    NoSuchContainer,
    NotFound,
    NotModified,
    SystemFailure,
    WhaledError,
)
from whaled.events import EventBus
from whaled.host.devices import all_device_nodes, device_node
from whaled.host.sysinfo import read_capability_bounding_mask
from whaled.image.service import ImageService
from whaled.image.store import ImageUser
from whaled.logger.options import LogOptions, parse_log_config
from whaled.logger.rotate import LogRotator
from whaled.osutil.atomic import replace_file
from whaled.osutil.files import read_text
from whaled.osutil.tree import remove_tree
from whaled.runtime.backend.api import (
    Backend,
    CreateOptions,
    ExitStatus,
    StdioOptions,
    Task,
)
from whaled.runtime.backend.api import Container as RuntimeContainer
from whaled.runtime.command import process_args
from whaled.runtime.defaults import capabilities_from_mask
from whaled.runtime.devices import Device
from whaled.runtime.registry import known_runtimes, resolve_runtime
from whaled.runtime.resources import to_oci_resources, validate_resources
from whaled.runtime.spec import HostFacts, NamespaceMode, build_spec, validate_spec_input
from whaled.runtime.ulimits import Ulimit
from whaled.runtime.usermap import ResolvedUser, resolve_user
from whaled.runtime.wrappers import ensure_wrapper

log = logging.getLogger("whaled.containers")

DEFAULT_STOP_TIMEOUT = 10
#: How long shutdown waits for exit clean-ups (runtime delete, unmount) still running.
SHUTDOWN_CLEANUP_SECONDS = 10.0
#: How long a start waits for clients that asked to attach before it was started.
ATTACH_CONNECT_TIMEOUT = 5.0
CONTAINER_EVENT = "container"


def now_rfc3339() -> str:
    ns = time.time_ns()
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns % 1_000_000_000:09d}Z"


def _exit_time(status: ExitStatus) -> str:
    ts = status.exited_at.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond:06d}000Z"


def parse_signal(value: str | int | None, default: int = signals.SIGKILL) -> int:
    """``9``, ``KILL``, ``SIGKILL`` → 9; dockerd's 400 for anything else."""
    if value is None or value == "":
        return default
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
        raise InvalidParameter(f"Invalid signal: {text}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise InvalidParameter(f"Invalid signal: {text}") from None


@dataclass(slots=True)
class Run:
    """One run of a container: from its start to the end of its exit clean-up."""

    runtime: RuntimeContainer
    task: Task
    started: float
    #: The exit is recorded (state, events, waiters): what stop and kill wait for.
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    #: The root filesystem is unmounted: the container's files may go (what remove waits for).
    released: asyncio.Event = field(default_factory=asyncio.Event)
    #: The runtime forgot the container too: it may start again.
    cleaned: asyncio.Event = field(default_factory=asyncio.Event)
    exit_status: ExitStatus | None = None
    stop_rotation: asyncio.Event = field(default_factory=asyncio.Event)
    health_task: asyncio.Task[None] | None = None


AttachWaiter = Callable[[str], Awaitable[None]]


@dataclass(slots=True)
class _Slot:
    """What the service keeps per container beside the record."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    run: Run | None = None
    exit_waiters: list[asyncio.Future[ExitStatus]] = field(default_factory=list)
    removed_waiters: list[asyncio.Future[int]] = field(default_factory=list)
    attach_waiters: list[tuple[AttachWaiter, asyncio.Future[None]]] = field(default_factory=list)
    restart_timer: asyncio.Task[None] | None = None
    backoff: Backoff = field(default_factory=Backoff)
    removing: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateResult:
    id: str
    warnings: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitResult:
    status_code: int
    error: str | None = None


class ContainerService:
    def __init__(
        self,
        *,
        data_root: str,
        exec_root: str,
        images: ImageService,
        events: EventBus,
        facts: DaemonFacts,
        config: Callable[[], Config],
        backend: Backend,
        tasks: BackgroundTasks,
    ) -> None:
        self.store = ContainerStore(data_root)
        self.data_root = data_root
        self.exec_root = exec_root
        self.images = images
        self.events = events
        self.facts = facts
        self.config = config
        self.backend = backend
        self.tasks = tasks
        self.wrappers_dir = os.path.join(exec_root, "runtimes")
        self.runtime_state = os.path.join(exec_root, "runc")
        self._slots: dict[str, _Slot] = {}
        self._rng = random.Random()
        self._shutting_down = False
        #: Removals whose run directory waits for the runtime's delete (see ``remove``).
        self._finishing: set[asyncio.Task[None]] = set()
        self._trash_task: asyncio.Task[None] | None = None
        self._trash_again = False
        mask = read_capability_bounding_mask()
        self.capability_bounding = capabilities_from_mask(mask) if mask is not None else None
        #: Called when a run ends (exec sessions of that run are over).
        self.on_exec_cleanup: Callable[[str], None] | None = None
        #: Runs a started container's healthcheck (set by the health service).
        self.health_runner: Callable[[Container, Run], Coroutine[Any, Any, None]] | None = None

    # ------------------------------------------------------------------ lookups

    def _slot(self, cid: str) -> _Slot:
        slot = self._slots.get(cid)
        if slot is None:
            slot = self._slots[cid] = _Slot()
        return slot

    def get(self, name_or_id: str) -> Container:
        return self.store.get(name_or_id)

    def all(self) -> list[Container]:
        return self.store.all()

    def run_of(self, cid: str) -> Run | None:
        slot = self._slots.get(cid)
        return slot.run if slot is not None else None

    def running_task(self, c: Container) -> Task:
        """The live task of a running container, or dockerd's 409."""
        run = self.run_of(c.id)
        if run is None or not is_running(c.state.status) or run.exit_status is not None:
            raise Conflict(f"Container {c.id} is not running")
        return run.task

    def image_users(self, image_id: str) -> Sequence[ImageUser]:
        return [
            ImageUser(container_id=c.id, running=is_running(c.state.status))
            for c in self.store.all()
            if c.image_id == image_id
        ]

    def _event(self, c: Container, action: str, extra: Mapping[str, str] | None = None) -> None:
        attributes = {"image": c.image_ref, "name": c.name}
        for key, value in (c.config.get("Labels") or {}).items():
            attributes[key] = str(value)
        if extra:
            attributes.update(extra)
        self.events.emit(CONTAINER_EVENT, action, c.id, attributes)

    def _save(self, c: Container) -> None:
        self.store.save(c)

    # ------------------------------------------------------------------ paths

    def _dir(self, cid: str) -> str:
        return self.store.dir_of(cid)

    def _run_dir(self, cid: str) -> str:
        # Short: conmon's attach socket lives below (unix socket paths < 108 bytes).
        return os.path.join(self.exec_root, "c", cid[:16])

    def _bare_options(self, cid: str, runtime_path: str) -> CreateOptions:
        """Where a container's runtime files are: enough to delete it from the runtime."""
        base = self._run_dir(cid)
        return CreateOptions(
            container_id=cid,
            bundle_dir=base,
            state_dir=os.path.join(base, "m"),
            runtime_path=runtime_path,
            runtime_args=("--root", self.runtime_state),
        )

    def _runtime_options(self, c: Container, runtime_path: str) -> CreateOptions:
        cfg = c.config
        log_opts = self._log_options(c)
        return dataclasses.replace(
            self._bare_options(c.id, runtime_path),
            name=c.name,
            stdio=StdioOptions(
                tty=bool(cfg.get("Tty")),
                stdin=bool(cfg.get("OpenStdin")),
                # dockerd closes the process's stdin at a client's EOF only without a TTY.
                stdin_once=bool(cfg.get("StdinOnce")) and not cfg.get("Tty"),
            ),
            log_path=c.log_path if log_opts is not None else None,
            timeout=30.0,
            exec_fifo=(
                os.path.join(self.runtime_state, c.id, "exec.fifo")
                if runtime_path == self._builtin_paths().get("runc")
                else None
            ),
        )

    def _log_options(self, c: Container) -> LogOptions | None:
        lc = c.host_config.get("LogConfig") or {}
        driver = str(lc.get("Type") or "json-file")
        if driver == "none":
            return None
        return parse_log_config(driver, lc.get("Config") or {})

    # ------------------------------------------------------------------ create

    def _defaults(self, cfg: Config) -> DaemonDefaults:
        cgroupns = cfg.default_cgroupns_mode or (
            "private" if self.facts.cgroups.version == 2 else "host"
        )
        return DaemonDefaults(
            default_runtime=cfg.default_runtime,
            runtimes=known_runtimes(cfg, self._builtin_paths()),
            shm_size=cfg.default_shm_size,
            ipc_mode=cfg.default_ipc_mode,
            cgroupns_mode=cgroupns,
            log_driver=cfg.log_driver,
            log_opts=dict(cfg.log_opts),
            ulimits=tuple(_ulimit(u.name, u.soft, u.hard) for u in cfg.default_ulimits.values()),
            init=cfg.init,
            swap_limit=self.facts.cgroups.capabilities.swap_limit,
        )

    def _builtin_paths(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name in ("runc", "crun"):
            b = self.facts.binaries.get(name)
            out[name] = b.path if b is not None and b.path else None
        return out

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
        log_config = host_config["LogConfig"]
        parse_log_config(str(log_config.get("Type")), log_config.get("Config") or {})
        HealthConfig.from_api(config.get("Healthcheck"))  # 400 for bad durations
        argv = process_args(tuple(config.get("Entrypoint") or ()), tuple(config.get("Cmd") or ()))
        if not argv:
            raise InvalidParameter("No command specified")
        self._check_network_mode(host_config)
        _check_bind_sources(host_config)
        check_request(request, host_config)
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
        cdir = self._dir(cid)
        c.log_path = os.path.join(cdir, f"{cid}-json.log")
        c.hostname_path = os.path.join(cdir, "hostname")
        c.hosts_path = os.path.join(cdir, "hosts")
        c.resolv_conf_path = os.path.join(cdir, "resolv.conf")
        if not config.get("Hostname"):
            if host_config["NetworkMode"] == "host":
                config["Hostname"] = self.facts.host.hostname
            else:
                config["Hostname"] = cid[:12]
        warnings.extend(self._check_runnable(cfg, c))
        await asyncio.to_thread(self.images.layers.rw.create, cid, image.top_chain)
        try:
            if not name:
                # Chosen and reserved in one step (no await in between): a concurrent
                # create cannot take the same name meanwhile.
                c.name = self._free_name()
            self.store.reserve(c)
            await asyncio.to_thread(self._write_etc_files, c, cfg)
        except BaseException:
            self.store.forget(cid)
            remove_tree(cdir, ignore_errors=True)
            with contextlib.suppress(WhaledError, OSError):
                await asyncio.to_thread(self.images.layers.rw.remove, cid)
            raise
        self._slot(cid)
        self._event(c, "create")
        return CreateResult(id=cid, warnings=warnings)

    def _check_runnable(self, cfg: Config, c: Container) -> list[str]:
        """What a start would refuse for the container's settings alone (resources, OOM score,
        capabilities, sysctls, security options, ...), refused at create as dockerd does;
        returns the warnings for settings this host drops."""
        hc = c.host_config
        inp = build_spec_input(
            c,
            host=self._host_facts(),
            rootfs="/",
            user=ResolvedUser(uid=0, gid=0),
            network=(
                NamespaceMode.host()
                if hc.get("NetworkMode") == "host"
                else NamespaceMode.private()
            ),
            hosts_path=None,
            resolv_conf_path=None,
            hostname_path=None,
            init_path=None,
            cgroup_parent=cfg.cgroup_parent,
        )
        inp = dataclasses.replace(
            inp, device_cgroup_rules=tuple(hc.get("DeviceCgroupRules") or ())
        )
        return validate_spec_input(inp)

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

    def _check_network_mode(self, hc: Mapping[str, Any]) -> None:
        for key in ("NetworkMode", "IpcMode", "PidMode"):
            mode = str(hc.get(key) or "")
            if mode.startswith("container:"):
                other = self.store.get(mode.removeprefix("container:"))
                if key == "NetworkMode" and other.host_config.get("NetworkMode", "").startswith(
                    "container:"
                ):
                    raise InvalidParameter("cannot join a container that joins another one")

    def _free_name(self) -> str:
        for retry in range(20):
            candidate = generate_name(self._rng, retry // 5)
            if not self.store.name_taken(candidate):
                return candidate
        return "whaled_" + secrets.token_hex(6)

    def _write_etc_files(self, c: Container, run_cfg: Config) -> None:
        cfg, hc = c.config, c.host_config
        host_net = hc.get("NetworkMode") == "host"
        hostname = str(cfg.get("Hostname") or c.id[:12])
        _write(c.hostname_path, etcfiles.hostname_file(hostname))
        _write(
            c.hosts_path,
            etcfiles.hosts_file(
                hostname=hostname,
                domainname=str(cfg.get("Domainname") or ""),
                extra_hosts=list(hc.get("ExtraHosts") or []),
                host_network=host_net,
                host_hosts=read_text("/etc/hosts"),
                host_gateway_ip=run_cfg.host_gateway_ip or None,
            ),
        )
        _write(
            c.resolv_conf_path,
            etcfiles.resolv_conf_file(
                host_resolv=read_text("/etc/resolv.conf"),
                dns=list(hc.get("Dns") or run_cfg.dns),
                dns_search=list(hc.get("DnsSearch") or run_cfg.dns_search),
                dns_options=list(hc.get("DnsOptions") or run_cfg.dns_opts),
                host_network=host_net,
            ),
        )

    # ------------------------------------------------------------------ start

    async def start(self, cfg: Config, name_or_id: str) -> None:
        c = self.store.get(name_or_id)
        slot = self._slot(c.id)
        async with slot.lock:
            await self._start_locked(cfg, c, slot, manual=True)

    async def _start_locked(self, cfg: Config, c: Container, slot: _Slot, *, manual: bool) -> None:
        if slot.removing or c.state.status in (Status.REMOVING, Status.DEAD):
            raise Conflict(f"container {c.id} is marked for removal and cannot be started")
        if c.state.status == Status.PAUSED:
            raise Conflict("cannot start a paused container, try unpause instead")
        if c.state.status == Status.RUNNING:
            raise NotModified("container already started")
        if slot.run is not None:
            await slot.run.cleaned.wait()
        if slot.restart_timer is not None and manual:
            slot.restart_timer.cancel()
            slot.restart_timer = None
        if manual:
            c.manually_stopped = False
            slot.backoff.reset()
        mounted = False

        def prepare_bundle(bundle_dir: str) -> None:
            nonlocal mounted
            _create_bind_sources(c.host_config)
            rootfs = self.images.layers.rw.mount(c.id)
            mounted = True
            _write_bundle(bundle_dir, self._spec_for(cfg, c, rootfs))

        try:
            runtime_path = await self._resolve_runtime(cfg, c)
            options = self._runtime_options(c, runtime_path)
            log_opts = self._log_options(c)
            # The monitor starts while the rootfs is mounted and the bundle written: it waits
            # for them before it runs the runtime.
            runtime = await self.backend.create(
                options,
                before_runtime=lambda: asyncio.to_thread(prepare_bundle, options.bundle_dir),
            )
        except BaseException as e:
            if mounted:
                with contextlib.suppress(WhaledError, OSError):
                    await asyncio.to_thread(self.images.layers.rw.unmount, c.id)
            raise self._start_failed(c, slot, e) from e
        try:
            await self._connect_attachers(slot, runtime)
            task = await runtime.start()
        except BaseException as e:
            with contextlib.suppress(WhaledError, OSError):
                await runtime.delete(force=True)
            with contextlib.suppress(WhaledError, OSError):
                await asyncio.to_thread(self.images.layers.rw.unmount, c.id)
            raise self._start_failed(c, slot, e) from e
        c.runtime_path = runtime_path
        c.state.status = next_state(c.state.status, Event.START)
        c.state.pid = task.pid
        c.state.exit_code = 0
        c.state.error = ""
        c.state.oom_killed = False
        c.state.started_at = now_rfc3339()
        if HealthConfig.from_api(c.config.get("Healthcheck")) is not None:
            c.state.health = reset_for_start(c.state.health)
        else:
            c.state.health = None
        run = Run(runtime=runtime, task=task, started=time.monotonic())
        slot.run = run
        self._save(c)
        self._event(c, "start")
        self.tasks.spawn(f"watch-{c.id[:12]}", self._watch(c, slot, run))
        if log_opts is not None and log_opts.max_size:
            rotator = LogRotator(c.log_path, log_opts.max_size, log_opts.max_file, task.reopen_log)
            self.tasks.spawn(f"logrotate-{c.id[:12]}", rotator.run(run.stop_rotation))
        if c.state.health is not None and self.health_runner is not None:
            run.health_task = self.tasks.spawn(f"health-{c.id[:12]}", self.health_runner(c, run))

    def _start_failed(self, c: Container, slot: _Slot, error: BaseException) -> BaseException:
        """Record a failed start; returns the error to raise (dockerd's translation: a
        missing or non-executable command is the caller's mistake, 400, exit code 127/126)."""
        waiters, slot.attach_waiters = slot.attach_waiters, []
        for _, connected in waiters:
            if not connected.done():
                connected.set_exception(Conflict(f"container {c.id} did not start"))
        if not isinstance(error, WhaledError):
            return error
        message = str(error)
        low = message.lower()
        translated: BaseException = error
        if "executable file not found" in low or "no such file or directory" in low:
            c.state.exit_code = 127
            translated = InvalidParameter(message)
        elif "permission denied" in low:
            c.state.exit_code = 126
            translated = InvalidParameter(message)
        else:
            c.state.exit_code = 128
        c.state.error = message
        with contextlib.suppress(OSError):
            self._save(c)
        if c.host_config.get("AutoRemove"):
            self.tasks.spawn(f"autoremove-{c.id[:12]}", self._auto_remove(c))
        return translated

    async def _resolve_runtime(self, cfg: Config, c: Container) -> str:
        resolved = resolve_runtime(cfg, c.runtime, self._builtin_paths(), shutil.which)
        if resolved.wrapper is not None:
            await asyncio.to_thread(ensure_wrapper, self.wrappers_dir, resolved.wrapper)
        return resolved.executable(self.wrappers_dir)

    async def _connect_attachers(self, slot: _Slot, runtime: RuntimeContainer) -> None:
        waiters, slot.attach_waiters = slot.attach_waiters, []
        if not waiters:
            return
        path = attach_socket_of(runtime)
        for connect, connected in waiters:
            self.tasks.spawn("attach-connect", _run_attacher(connect, path, connected))
        await asyncio.wait([connected for _, connected in waiters], timeout=ATTACH_CONNECT_TIMEOUT)

    def _spec_for(self, cfg: Config, c: Container, rootfs: str) -> dict[str, Any]:
        hc = c.host_config
        passwd = read_in_root(rootfs, "/etc/passwd")
        group = read_in_root(rootfs, "/etc/group")
        user = resolve_user(
            str(c.config.get("User") or ""),
            passwd=passwd,
            group=group,
            group_add=[str(g) for g in hc.get("GroupAdd") or []],
        )
        init_path = None
        if hc.get("Init"):
            init_path = cfg.init_path or _init_binary(self.facts)
            if not init_path:
                raise InvalidParameter(
                    "--init needs an init binary (catatonit or tini); none is installed"
                )
        inp = build_spec_input(
            c,
            host=self._host_facts(),
            rootfs=rootfs,
            user=user,
            network=self._namespace(c, "NetworkMode", "net"),
            hosts_path=c.hosts_path,
            resolv_conf_path=c.resolv_conf_path,
            hostname_path=c.hostname_path,
            init_path=init_path,
            cgroup_parent=cfg.cgroup_parent,
        )
        overrides: dict[str, Any] = {"devices": tuple(self._devices(hc))}
        if hc.get("Privileged"):
            overrides["host_devices"] = tuple(
                Device(path=p, type=t, major=ma, minor=mi, file_mode=m, uid=u, gid=g)  # type: ignore[arg-type]
                for p, t, ma, mi, m, u, g in all_device_nodes()
            )
        overrides["device_cgroup_rules"] = tuple(hc.get("DeviceCgroupRules") or ())
        pid_mode = str(hc.get("PidMode") or "")
        if pid_mode.startswith("container:"):
            overrides["pid"] = self._namespace(c, "PidMode", "pid")
        if cfg.no_new_privileges and "no-new-privileges" not in " ".join(inp.security_opt):
            overrides["security_opt"] = (*inp.security_opt, "no-new-privileges")
        inp = dataclasses.replace(inp, **overrides)
        return build_spec(inp)

    def _devices(self, hc: Mapping[str, Any]) -> list[Device]:
        out = []
        for d in hc.get("Devices") or []:
            host_path = str(d.get("PathOnHost") or "")
            kind, major, minor, mode, uid, gid = device_node(host_path)
            out.append(
                Device(
                    path=str(d.get("PathInContainer") or host_path),
                    type=kind,  # type: ignore[arg-type]
                    major=major,
                    minor=minor,
                    file_mode=mode,
                    uid=uid,
                    gid=gid,
                    permissions=str(d.get("CgroupPermissions") or "rwm"),
                )
            )
        return out

    def _namespace(self, c: Container, key: str, kind: str) -> NamespaceMode:
        mode = str(c.host_config.get(key) or "")
        if mode == "host":
            return NamespaceMode.host()
        if mode.startswith("container:"):
            other = self.store.get(mode.removeprefix("container:"))
            run = self.run_of(other.id)
            if run is None or other.state.status != Status.RUNNING:
                raise Conflict(f"cannot join container {other.id}: it is not running")
            return NamespaceMode.join(f"/proc/{run.task.pid}/ns/{kind}")
        return NamespaceMode.private()

    def _host_facts(self) -> HostFacts:
        caps = self.facts.cgroups.capabilities
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        limits = {"nofile": hard}
        if nproc != resource.RLIM_INFINITY:
            limits["nproc"] = nproc
        version: Literal[1, 2] = 2 if self.facts.cgroups.version == 2 else 1
        return HostFacts(
            cgroup_version=version,
            machine=self.facts.host.architecture,
            seccomp=self.facts.host.seccomp_available,
            swap_limit=caps.swap_limit,
            cpus=self.facts.host.ncpu,
            rlimit_hard=limits,
            capability_bounding=self.capability_bounding,
            absent_syscall_abis=self.facts.host.absent_syscall_abis,
        )

    # ------------------------------------------------------------------ exit handling

    async def _watch(self, c: Container, slot: _Slot, run: Run) -> None:
        try:
            status = await run.task.wait()
        except WhaledError as e:
            log.error("lost track of container %s: %s", c.id[:12], e)
            status = ExitStatus(exit_code=255, exited_at=datetime.now(UTC))
        await self._handle_exit(c, slot, run, status)

    async def _handle_exit(self, c: Container, slot: _Slot, run: Run, status: ExitStatus) -> None:
        run.exit_status = status
        run.stop_rotation.set()
        if run.health_task is not None:
            run.health_task.cancel()
        if c.state.status in (Status.RUNNING, Status.PAUSED):
            c.state.status = next_state(c.state.status, Event.EXIT)
        c.state.pid = 0
        c.state.exit_code = status.exit_code
        c.state.oom_killed = status.oom_killed
        c.state.finished_at = _exit_time(status)
        if c.state.health is not None:
            mark_stopped(c.state.health)
        ran_for = time.monotonic() - run.started
        policy = RestartPolicy.from_api(c.host_config.get("RestartPolicy") or {})
        restart = (
            not slot.removing
            and c.id in self._slots
            and should_restart(
                policy,
                exit_code=status.exit_code,
                manually_stopped=c.manually_stopped,
                restart_count=c.restart_count,
                daemon_shutting_down=self._shutting_down,
            )
        )
        if restart:
            c.state.status = next_state(c.state.status, Event.RESTART)
        auto_remove = not restart and c.host_config.get("AutoRemove") and not slot.removing
        # State change, record, events and waiters in one step (no await in between), as
        # dockerd does: a ``next-exit`` wait sent after this point waits for the next run.
        # A record about to be removed is not written again (after a crash the daemon finds
        # the exit and removes the container then).
        with contextlib.suppress(OSError, NoSuchContainer):
            if self.store.exists(c.id) and not auto_remove:
                self._save(c)
        if status.oom_killed:
            self._event(c, "oom")
        self._event(c, "die", {"exitCode": str(status.exit_code)})
        waiters, slot.exit_waiters = slot.exit_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(status)
        run.exited.set()
        # The process is gone: the runtime's delete and the unmount are independent, and
        # an auto-removal needs only the unmount (it leaves the run directory to the end).
        delete = asyncio.ensure_future(run.runtime.delete(force=True))
        try:
            try:
                await asyncio.to_thread(self.images.layers.rw.unmount, c.id)
            except Exception as e:
                log.warning("clean-up after the exit of %s: %s", c.id[:12], e)
            run.released.set()
            if auto_remove:
                self.tasks.spawn(f"autoremove-{c.id[:12]}", self._auto_remove(c))
            try:
                await delete
            except Exception as e:
                log.warning("clean-up after the exit of %s: %s", c.id[:12], e)
            if self.on_exec_cleanup is not None:
                self.on_exec_cleanup(c.id)
        finally:
            if not delete.done():
                delete.cancel()
            run.released.set()
            run.cleaned.set()
        if restart:
            delay = slot.backoff.next_delay(ran_for)
            slot.restart_timer = self.tasks.spawn(
                f"restart-{c.id[:12]}", self._restart_later(c, slot, delay)
            )

    async def _restart_later(self, c: Container, slot: _Slot, delay: float) -> None:
        await asyncio.sleep(delay)
        async with slot.lock:
            slot.restart_timer = None
            if c.state.status != Status.RESTARTING or slot.removing or self._shutting_down:
                return
            c.restart_count += 1
            try:
                await self._start_locked(self.config(), c, slot, manual=False)
            except WhaledError as e:
                log.error("restarting container %s failed: %s", c.id[:12], e)
                c.state.status = Status.EXITED
                with contextlib.suppress(OSError):
                    self._save(c)

    async def _auto_remove(self, c: Container) -> None:
        try:
            await self.remove(c.id, force=True, volumes=True)
        except NotFound:
            pass
        except WhaledError as e:
            log.error("auto-removing container %s failed: %s", c.id[:12], e)

    # ------------------------------------------------------------------ stop / kill

    async def stop(
        self, name_or_id: str, *, timeout: int | None = None, signal: str | None = None
    ) -> None:
        c = self.store.get(name_or_id)
        slot = self._slot(c.id)
        async with slot.lock:
            if c.state.status == Status.RESTARTING:
                self._cancel_restart(c, slot)
                return
            if not is_running(c.state.status):
                raise NotModified("container already stopped")
            await self._stop_locked(c, slot, timeout=timeout, signal=signal)

    def _cancel_restart(self, c: Container, slot: _Slot) -> None:
        if slot.restart_timer is not None:
            slot.restart_timer.cancel()
            slot.restart_timer = None
        c.manually_stopped = True
        c.state.status = Status.EXITED
        self._save(c)
        self._event(c, "stop")

    def _stop_signal(self, c: Container, override: str | None) -> int:
        return parse_signal(override or c.config.get("StopSignal"), signals.SIGTERM)

    async def _stop_locked(
        self, c: Container, slot: _Slot, *, timeout: int | None, signal: str | None
    ) -> None:
        run = slot.run
        assert run is not None
        if timeout is None:
            configured = c.config.get("StopTimeout")
            timeout = int(configured) if configured is not None else DEFAULT_STOP_TIMEOUT
        c.manually_stopped = True
        self._save(c)
        sig = self._stop_signal(c, signal)
        await self._signal(c, run, sig)
        if timeout < 0:
            await run.exited.wait()
        else:
            try:
                await asyncio.wait_for(asyncio.shield(run.exited.wait()), timeout)
            except TimeoutError:
                log.info(
                    "Container %s failed to exit within %d seconds of signal %d - using the force",
                    c.id[:12],
                    timeout,
                    sig,
                )
                await self._signal(c, run, signals.SIGKILL)
                await run.exited.wait()
        self._event(c, "stop")

    async def _signal(self, c: Container, run: Run, sig: int) -> None:
        if run.exit_status is not None:
            return
        self._event(c, "kill", {"signal": str(sig)})
        try:
            await run.task.kill(sig)
        except (Conflict, NotFound):
            return  # already gone: the watcher records the exit
        if c.state.status == Status.PAUSED and sig in (signals.SIGKILL, signals.SIGTERM):
            with contextlib.suppress(WhaledError):
                await run.task.resume()

    async def kill(self, name_or_id: str, signal: str | None) -> None:
        sig = parse_signal(signal, signals.SIGKILL)
        c = self.store.get(name_or_id)
        slot = self._slot(c.id)
        async with slot.lock:
            run = slot.run
            if not is_running(c.state.status) or run is None or run.exit_status is not None:
                raise Conflict(f"Container {c.id} is not running")
            if sig in (signals.SIGKILL, self._stop_signal(c, None)):
                c.manually_stopped = True
                self._save(c)
            await self._signal(c, run, sig)
            if sig == signals.SIGKILL:
                await run.exited.wait()

    async def restart(self, cfg: Config, name_or_id: str, *, timeout: int | None) -> None:
        c = self.store.get(name_or_id)
        slot = self._slot(c.id)
        async with slot.lock:
            if c.state.status == Status.RESTARTING:
                self._cancel_restart(c, slot)
            elif is_running(c.state.status):
                await self._stop_locked(c, slot, timeout=timeout, signal=None)
            await self._start_locked(cfg, c, slot, manual=True)
            self._event(c, "restart")

    # ------------------------------------------------------------------ pause

    async def pause(self, name_or_id: str) -> None:
        c = self.store.get(name_or_id)
        slot = self._slot(c.id)
        async with slot.lock:
            if c.state.status == Status.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status != Status.RUNNING or slot.run is None:
                raise Conflict(f"Container {c.id} is not running")
            await slot.run.task.pause()
            c.state.status = next_state(c.state.status, Event.PAUSE)
            self._save(c)
            self._event(c, "pause")

    async def unpause(self, name_or_id: str) -> None:
        c = self.store.get(name_or_id)
        slot = self._slot(c.id)
        async with slot.lock:
            if c.state.status != Status.PAUSED or slot.run is None:
                raise Conflict(f"Container {c.id} is not paused")
            await slot.run.task.resume()
            c.state.status = next_state(c.state.status, Event.UNPAUSE)
            self._save(c)
            self._event(c, "unpause")

    # ------------------------------------------------------------------ wait

    async def wait(self, name_or_id: str, condition: str) -> WaitResult:
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidParameter(f'invalid condition: "{condition}"')
        c = self.store.get(name_or_id)
        slot = self._slot(c.id)
        loop = asyncio.get_running_loop()
        if condition == "removed":
            fut: asyncio.Future[int] = loop.create_future()
            slot.removed_waiters.append(fut)
            code = await fut
            return WaitResult(status_code=code)
        if (
            condition in ("", "not-running")
            and not is_running(c.state.status)
            and (c.state.status != Status.RESTARTING)
        ):
            return WaitResult(status_code=c.state.exit_code, error=c.state.error or None)
        exit_fut: asyncio.Future[ExitStatus] = loop.create_future()
        slot.exit_waiters.append(exit_fut)
        status = await exit_fut
        return WaitResult(status_code=status.exit_code)

    # ------------------------------------------------------------------ remove

    async def remove(self, name_or_id: str, *, force: bool, volumes: bool) -> None:
        c = self.store.get(name_or_id)
        slot = self._slot(c.id)
        if slot.removing:
            raise Conflict(f"removal of container {c.id} is already in progress")
        async with slot.lock:
            if not self.store.exists(c.id):
                raise NoSuchContainer(name_or_id)
            if c.state.status == Status.PAUSED and not force:
                raise Conflict(
                    f"You cannot remove a paused container {c.id}. Unpause and then stop the "
                    "container before attempting removal or force remove"
                )
            if c.state.status == Status.RESTARTING and not force:
                raise Conflict(
                    f'cannot remove container "/{c.name}": container is restarting: stop the '
                    "container before removing or force remove"
                )
            if is_running(c.state.status) and not force:
                raise Conflict(
                    f"You cannot remove a running container {c.id}. Stop the container "
                    "before attempting removal or force remove"
                )
            slot.removing = True
            try:
                if slot.restart_timer is not None:
                    slot.restart_timer.cancel()
                    slot.restart_timer = None
                run = slot.run
                if is_running(c.state.status) and run is not None:
                    await self._signal(c, run, signals.SIGKILL)
                    await run.released.wait()
                elif run is not None:
                    await run.released.wait()
                c.state.status = Status.REMOVING
                await self._remove_files(c)
            except BaseException:
                slot.removing = False
                if self.store.exists(c.id):
                    c.state.status = Status.DEAD
                    with contextlib.suppress(OSError):
                        self._save(c)
                raise
        self._event(c, "destroy")
        self._slots.pop(c.id, None)
        run = slot.run
        if run is None or run.cleaned.is_set():
            await asyncio.to_thread(remove_tree, self._run_dir(c.id), ignore_errors=True)
        else:
            # The runtime's delete still reads its files there; the directory goes after it.
            task = self.tasks.spawn(f"rundir-{c.id[:12]}", self._remove_run_dir(c.id, run))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)
        for w in slot.removed_waiters:
            if not w.done():
                w.set_result(c.state.exit_code)
        for ew in slot.exit_waiters:
            if not ew.done():
                ew.set_result(ExitStatus(exit_code=c.state.exit_code, exited_at=datetime.now(UTC)))

    async def _remove_files(self, c: Container) -> None:
        def remove() -> None:
            with contextlib.suppress(NotFound):
                self.images.layers.rw.remove(c.id)  # unmounts whatever mounts remain
            self.store.delete(c.id)

        await asyncio.to_thread(remove)
        self._empty_trash_soon()

    def _empty_trash_soon(self) -> None:
        """The removed container's files go in the background (one task at a time)."""
        self._trash_again = True
        if self._trash_task is None or self._trash_task.done():
            self._trash_task = self.tasks.spawn("empty-trash", self._empty_trash())

    async def _empty_trash(self) -> None:
        await asyncio.sleep(0)  # let the removal's answer go out first
        while True:
            self._trash_again = False
            await asyncio.to_thread(self.images.layers.rw.empty_trash)
            await asyncio.to_thread(self.store.empty_trash)
            if not self._trash_again:
                return

    async def _remove_run_dir(self, cid: str, run: Run) -> None:
        await run.cleaned.wait()
        await asyncio.to_thread(remove_tree, self._run_dir(cid), ignore_errors=True)

    # ------------------------------------------------------------------ rename / update

    async def rename(self, name_or_id: str, new_name: str) -> None:
        c = self.store.get(name_or_id)  # 404 first, like dockerd
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        new_name = validate_name(new_name)
        slot = self._slot(c.id)
        async with slot.lock:
            old = c.name
            if old == new_name:
                raise InvalidParameter(
                    "Renaming a container with the same name as its current name"
                )
            self.store.rename(c, new_name)
            self._event(c, "rename", {"oldName": "/" + old})

    async def update(self, name_or_id: str, body: Mapping[str, Any]) -> list[str]:
        c = self.store.get(name_or_id)
        slot = self._slot(c.id)
        keys = (
            "BlkioWeight",
            "CpuShares",
            "CpuPeriod",
            "CpuQuota",
            "CpuRealtimePeriod",
            "CpuRealtimeRuntime",
            "CpusetCpus",
            "CpusetMems",
            "Memory",
            "MemorySwap",
            "MemoryReservation",
            "KernelMemory",
            "NanoCpus",
            "PidsLimit",
            "OomKillDisable",
        )
        async with slot.lock:
            hc = dict(c.host_config)
            changed: dict[str, Any] = {}
            for key in keys:
                if key in body and body[key] is not None and body[key] != 0:
                    changed[key] = body[key]
            if body.get("PidsLimit") is not None:
                changed["PidsLimit"] = body["PidsLimit"]
            memory = int(changed.get("Memory") or 0)
            swap = int(hc.get("MemorySwap") or 0)
            if memory and "MemorySwap" not in changed and swap > 0 and memory > swap:
                raise InvalidParameter(
                    f"Cannot update container {c.id}: Memory limit should be smaller than "
                    "already set memoryswap limit, update the memoryswap at the same time"
                )
            policy = body.get("RestartPolicy")
            if policy and policy.get("Name") is not None:
                if hc.get("AutoRemove") and policy.get("Name") not in ("", "no"):
                    raise InvalidParameter(
                        "Restart policy cannot be updated because AutoRemove is enabled for "
                        "the container"
                    )
                hc["RestartPolicy"] = {
                    "Name": policy.get("Name") or "no",
                    "MaximumRetryCount": int(policy.get("MaximumRetryCount") or 0),
                }
                RestartPolicy.from_api(hc["RestartPolicy"]).validate()
            if "NanoCpus" in changed and (hc.get("CpuQuota") or hc.get("CpuPeriod")):
                raise InvalidParameter(
                    "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already "
                    "been set"
                )
            hc.update(changed)
            validate_resources(
                resources_of(hc),
                cgroup_version=2 if self.facts.cgroups.version == 2 else 1,
                host_cpus=self.facts.host.ncpu,
            )
            if changed and c.state.status in (Status.RUNNING, Status.PAUSED) and slot.run:
                resources = to_oci_resources(
                    resources_of(hc),
                    cgroup_version=2 if self.facts.cgroups.version == 2 else 1,
                    swap_limit=self.facts.cgroups.capabilities.swap_limit,
                )
                try:
                    await slot.run.task.update(resources)
                except WhaledError as e:
                    raise InvalidParameter(f"Cannot update container {c.id}: {e}") from e
            c.host_config = hc
            self._save(c)
            self._event(c, "update")
        return []

    # ------------------------------------------------------------------ attach (stdio)

    async def attach_socket(self, c: Container, connect: AttachWaiter) -> None:
        """Connect ``connect`` to the container's attach socket now (running) or right
        before the process starts (created / exited: the next start waits for it)."""
        slot = self._slot(c.id)
        run = slot.run
        if run is not None and run.exit_status is None and is_running(c.state.status):
            await connect(attach_socket_of(run.runtime))
            return
        connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot.attach_waiters.append((connect, connected))
        await connected

    # ------------------------------------------------------------------ restore / shutdown

    async def restore(self) -> list[Container]:
        """Adopt what survived the last daemon; mark the rest exited. Returns the containers
        whose restart policy wants them running again (see :meth:`start_restored`)."""
        loaded = await asyncio.to_thread(self.store.load_all)
        # RW layers no container owns (a crash between create_rw and store.reserve).
        await asyncio.to_thread(self.images.layers.rw.remove_orphans, self.store.owner_ids())
        to_start: list[Container] = []
        for c in loaded:
            slot = self._slot(c.id)
            live = c.state.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)
            if live and c.runtime_path:
                if await self._adopt(c, slot):
                    continue
            elif live:
                c.state.status = Status.EXITED
                self._save(c)
            elif c.state.status == Status.REMOVING:
                c.state.status = Status.DEAD
                self._save(c)
            await asyncio.to_thread(self._unmount_all, c.id)
            remove_tree(self._run_dir(c.id), ignore_errors=True)
        adopted = {c.id for c in loaded if self._slots[c.id].run is not None}
        await self._sweep_leftovers(adopted)
        for c in loaded:
            # dockerd's rule: a --rm container found not running at start is removed.
            if c.host_config.get("AutoRemove") and c.id not in adopted:
                self.tasks.spawn(f"autoremove-{c.id[:12]}", self._auto_remove(c))
        for c in loaded:
            # dockerd's rule at daemon start: ``always`` comes back even after a manual
            # stop, ``unless-stopped`` only if not stopped by hand, ``on-failure`` after a
            # failure within its retry budget.
            if c.state.status == Status.EXITED and should_restart(
                RestartPolicy.from_api(c.host_config.get("RestartPolicy") or {}),
                exit_code=c.state.exit_code,
                manually_stopped=c.manually_stopped,
                restart_count=c.restart_count,
                daemon_shutting_down=False,
                at_daemon_start=True,
            ):
                to_start.append(c)
        return to_start

    async def _sweep_leftovers(self, live: set[str]) -> None:
        """Runtime state and run directories that no live container owns: what a daemon
        that died between a container's exit (or removal) and the end of its clean-up left."""
        try:
            names = os.listdir(self.runtime_state)
        except FileNotFoundError:
            names = []
        for cid in names:
            if cid in live or not os.path.isdir(os.path.join(self.runtime_state, cid)):
                continue
            known = self.store.by_id(cid)
            path = (known.runtime_path if known is not None else "") or self._builtin_paths().get(
                "runc"
            )
            if not path:
                continue
            try:
                await self.backend.load(self._bare_options(cid, path)).delete(force=True)
                log.info("removed the runtime's leftover state of container %s", cid[:12])
            except (WhaledError, OSError) as e:
                log.warning("leftover runtime state of %s: %s", cid[:12], e)
        keep = {cid[:16] for cid in live}
        runs = os.path.join(self.exec_root, "c")
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(runs):
                if name not in keep:
                    path = os.path.join(runs, name)
                    await asyncio.to_thread(remove_tree, path, ignore_errors=True)

    def live_runtime_paths(self) -> list[str]:
        """Runtime executables that running (adopted) containers are locked to."""
        return [
            c.runtime_path
            for c in self.store.all()
            if c.runtime_path and is_running(c.state.status)
        ]

    async def start_restored(self, cfg: Config, containers: Sequence[Container]) -> None:
        for c in containers:
            try:
                await self.start(cfg, c.id)
            except WhaledError as e:
                log.error("could not restart container %s: %s", c.id[:12], e)

    async def _adopt(self, c: Container, slot: _Slot) -> bool:
        options = self._runtime_options(c, c.runtime_path)
        runtime = self.backend.load(options)
        try:
            task = await runtime.task()
        except WhaledError:
            task = None
        if task is not None:
            status = task.exit_status()
            if status is None:
                # Re-mount: the rootfs stays mounted while the container lives.
                await asyncio.to_thread(self.images.layers.rw.mount, c.id)
                run = Run(runtime=runtime, task=task, started=time.monotonic())
                slot.run = run
                if c.state.status == Status.RESTARTING:
                    c.state.status = Status.RUNNING
                self._save(c)
                self.tasks.spawn(f"watch-{c.id[:12]}", self._watch(c, slot, run))
                log_opts = self._log_options(c)
                if log_opts is not None and log_opts.max_size:
                    rotator = LogRotator(
                        c.log_path, log_opts.max_size, log_opts.max_file, task.reopen_log
                    )
                    self.tasks.spawn(f"logrotate-{c.id[:12]}", rotator.run(run.stop_rotation))
                if c.state.health is not None and self.health_runner is not None:
                    run.health_task = self.tasks.spawn(
                        f"health-{c.id[:12]}", self.health_runner(c, run)
                    )
                log.info("re-adopted running container %s", c.id[:12])
                return True
        else:
            status = None
        with contextlib.suppress(WhaledError, OSError):
            await runtime.delete(force=True)
        c.state.status = Status.EXITED
        c.state.pid = 0
        if status is not None:
            c.state.exit_code = status.exit_code
            c.state.oom_killed = status.oom_killed
            c.state.finished_at = _exit_time(status)
        else:
            c.state.exit_code = 255 if not c.state.exit_code else c.state.exit_code
            c.state.finished_at = now_rfc3339()
        c.state.health = None
        self._save(c)
        return False

    def _unmount_all(self, cid: str) -> None:
        with contextlib.suppress(NotFound, OSError):
            while self.images.layers.rw.is_mounted(cid):
                self.images.layers.rw.unmount(cid)

    async def shutdown(self, cfg: Config) -> None:
        self._shutting_down = True
        for slot in self._slots.values():
            if slot.restart_timer is not None:
                slot.restart_timer.cancel()
        if not cfg.live_restore:
            await self._stop_all(cfg)
        # Exits being cleaned up right now finish first: no mount or monitor is left behind.
        pending: list[Awaitable[Any]] = [
            s.run.cleaned.wait()
            for s in self._slots.values()
            if s.run is not None and s.run.exit_status is not None and not s.run.cleaned.is_set()
        ]
        pending += list(self._finishing)
        if pending:
            await asyncio.wait(
                [asyncio.ensure_future(p) for p in pending], timeout=SHUTDOWN_CLEANUP_SECONDS
            )

    async def _stop_all(self, cfg: Config) -> None:
        running = [c for c in self.store.all() if is_running(c.state.status)]
        if not running:
            return

        async def stop_one(c: Container) -> None:
            slot = self._slot(c.id)
            run = slot.run
            if run is None:
                return
            timeout = c.config.get("StopTimeout")
            t = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
            t = min(t, cfg.shutdown_timeout) if cfg.shutdown_timeout >= 0 else t
            await self._signal(c, run, self._stop_signal(c, None))
            try:
                await asyncio.wait_for(asyncio.shield(run.cleaned.wait()), t)
            except TimeoutError:
                await self._signal(c, run, signals.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(run.cleaned.wait()), 10)

        log.info("stopping %d running containers", len(running))
        await asyncio.gather(*(stop_one(c) for c in running), return_exceptions=True)

    # ------------------------------------------------------------------ counts

    def counts(self) -> tuple[int, int, int, int]:
        total = running = paused = 0
        for c in self.store.all():
            total += 1
            if c.state.status == Status.PAUSED:
                paused += 1
            elif c.state.status == Status.RUNNING:
                running += 1
        return total, running, paused, total - running - paused


def attach_socket_of(runtime: RuntimeContainer) -> str:
    paths = getattr(runtime, "paths", None)
    if paths is None:
        raise SystemFailure("the runtime backend has no attach socket")
    return str(paths.attach_socket)


async def _run_attacher(connect: AttachWaiter, path: str, connected: asyncio.Future[None]) -> None:
    try:
        await connect(path)
    except BaseException as e:
        if not connected.done():
            connected.set_exception(e)
        raise
    if not connected.done():
        connected.set_result(None)


def _ulimit(name: str, soft: int, hard: int) -> Ulimit:
    return Ulimit(name=name, soft=soft, hard=hard)


def _init_binary(facts: DaemonFacts) -> str:
    init = facts.binaries.get("init")
    return init.path if init is not None and init.path else ""


def _write(path: str, text: str) -> None:
    """hosts / hostname / resolv.conf: derived from the container's record (which is
    fsynced), like dockerd's plain writes of them."""
    replace_file(path, text.encode(), 0o644)


def _check_bind_sources(hc: Mapping[str, Any]) -> None:
    """``--mount type=bind`` needs an existing source (dockerd's 400 and message)."""
    for m in hc.get("Mounts") or []:
        source = str(m.get("Source") or "")
        if m.get("Type") == "bind" and source and not os.path.exists(source):
            raise InvalidParameter(
                f'invalid mount config for type "bind": bind source path does not exist: {source}'
            )


def _create_bind_sources(hc: Mapping[str, Any]) -> None:
    """``-v /host/path:/path`` creates a missing host directory at start, as dockerd does."""
    for bind in hc.get("Binds") or []:
        source = str(bind).split(":", 1)[0]
        if source.startswith("/") and not os.path.lexists(source):
            os.makedirs(source, 0o755, exist_ok=True)


def _write_bundle(bundle_dir: str, spec: Mapping[str, Any]) -> None:
    """``config.json`` is written anew at every start and read only by the runtime's
    ``create`` right after: no state to recover, so no fsync."""
    os.makedirs(bundle_dir, mode=0o700, exist_ok=True)
    replace_file(os.path.join(bundle_dir, "config.json"), json.dumps(spec).encode(), 0o600)


def read_in_root(root: str, path: str) -> str | None:
    """A file of the container's root file system, its path resolved inside the container
    (``whaled.container.archive.resolve``: links never lead to the host); None if missing."""
    try:
        return read_text(cp.resolve(root, {}, path))
    except WhaledError:
        return None
