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
import logging
import os
import random
import secrets
import signal as signals
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from whaled.config.model import Config
from whaled.container.create import (
    DaemonDefaults,
    check_request,
    complete_host_config,
    merge_config,
    validate_host_config,
)
from whaled.container.events import ContainerEvents
from whaled.container.exit import apply_exit, plan_exit
from whaled.container.health import HealthConfig, reset_for_start
from whaled.container.model import Container
from whaled.container.names import generate_name, validate_name
from whaled.container.spec_input import resources_of
from whaled.container.state import Event, Status, is_running, next_state
from whaled.container.store import ContainerStore
from whaled.container.update import plan_update
from whaled.daemon.bundle import RunFiles, SpecAssembler, log_options, write_bundle
from whaled.daemon.runs import AttachWaiter, Run, Runs, Slot
from whaled.daemon.system import HostFacts as DaemonFacts
from whaled.daemon.tasks import BackgroundTasks
from whaled.errors import (
    Conflict,
    InvalidParameter,
    NoSuchContainer,
    NotFound,
    NotModified,
    WhaledError,
)
from whaled.image.layers import LayerStore
from whaled.image.service import ImageService
from whaled.image.store import ImageUser
from whaled.logger.options import LogOptions, parse_log_config
from whaled.logger.rotate import LogRotator
from whaled.network.files import EtcPaths, write_etc_files
from whaled.network.mode import (
    check_join,
    check_network_config,
    default_hostname,
    joined_container,
)
from whaled.osutil.tree import remove_tree
from whaled.runtime.backend.api import (
    Backend,
    ExitStatus,
    Task,
)
from whaled.runtime.command import process_args
from whaled.runtime.registry import known_runtimes
from whaled.runtime.resources import to_oci_resources
from whaled.runtime.spec import NamespaceMode
from whaled.runtime.ulimits import Ulimit
from whaled.volume.mounts import check_mount_config
from whaled.volume.sources import check_bind_sources, create_bind_sources

log = logging.getLogger("whaled.containers")

DEFAULT_STOP_TIMEOUT = 10


def now_rfc3339() -> str:
    ns = time.time_ns()
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns % 1_000_000_000:09d}Z"


def exit_time(status: ExitStatus) -> str:
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


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateResult:
    id: str
    warnings: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitResult:
    status_code: int
    error: str | None = None


HealthRunner = Callable[[Container, Run], Coroutine[Any, Any, None]]


class ContainerService:
    def __init__(
        self,
        *,
        store: ContainerStore,
        runs: Runs,
        files: RunFiles,
        specs: SpecAssembler,
        images: ImageService,
        layers: LayerStore,
        events: ContainerEvents,
        facts: DaemonFacts,
        config: Callable[[], Config],
        backend: Backend,
        tasks: BackgroundTasks,
        health_runner: HealthRunner | None = None,
        on_run_ended: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.runs = runs
        self.files = files
        self.specs = specs
        self.images = images
        self.layers = layers
        self.events = events
        self.facts = facts
        self.config = config
        self.backend = backend
        self.tasks = tasks
        self._rng = random.Random()
        self._shutting_down = False
        #: Removals whose run directory waits for the runtime's delete (see ``remove``).
        self._finishing: set[asyncio.Task[None]] = set()
        self._trash_task: asyncio.Task[None] | None = None
        self._trash_again = False
        #: Runs a started container's healthcheck (the health service's).
        self._health_runner = health_runner
        #: Called when a run ends (exec sessions of that run are over).
        self._on_run_ended = on_run_ended

    # ------------------------------------------------------------------ lookups

    def get(self, name_or_id: str) -> Container:
        return self.store.get(name_or_id)

    def all(self) -> list[Container]:
        return self.store.all()

    def running_task(self, c: Container) -> Task:
        """The live task of a running container, or dockerd's 409."""
        return self.runs.running_task(c)

    def image_users(self, image_id: str) -> Sequence[ImageUser]:
        return [
            ImageUser(container_id=c.id, running=is_running(c.state.status))
            for c in self.store.all()
            if c.image_id == image_id
        ]

    def _save(self, c: Container) -> None:
        self.store.save(c)

    # ------------------------------------------------------------------ paths

    def _dir(self, cid: str) -> str:
        return self.store.dir_of(cid)

    # ------------------------------------------------------------------ create

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
        warnings += check_network_config(host_config)
        check_mount_config(host_config)
        log_config = host_config["LogConfig"]
        parse_log_config(str(log_config.get("Type")), log_config.get("Config") or {})
        HealthConfig.from_api(config.get("Healthcheck"))  # 400 for bad durations
        argv = process_args(tuple(config.get("Entrypoint") or ()), tuple(config.get("Cmd") or ()))
        if not argv:
            raise InvalidParameter("No command specified")
        self._check_joins(host_config)
        check_bind_sources(host_config)
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
            config["Hostname"] = default_hostname(
                str(host_config["NetworkMode"]), cid, self.facts.host.hostname
            )
        network = NamespaceMode.host() if host_config["NetworkMode"] == "host" else None
        warnings.extend(self.specs.check_runnable(cfg, c, network or NamespaceMode.private()))
        await asyncio.to_thread(self.layers.create_rw, cid, image.top_chain)
        try:
            if not name:
                # Chosen and reserved in one step (no await in between): a concurrent
                # create cannot take the same name meanwhile.
                c.name = self._free_name()
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
            )
        except BaseException:
            self.store.forget(cid)
            remove_tree(cdir, ignore_errors=True)
            with contextlib.suppress(WhaledError, OSError):
                await asyncio.to_thread(self.layers.remove_rw, cid)
            raise
        self.runs.slot(cid)
        self.events.emit(c, "create")
        return CreateResult(id=cid, warnings=warnings)

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

    # ------------------------------------------------------------------ start

    async def start(self, cfg: Config, name_or_id: str) -> None:
        c = self.store.get(name_or_id)
        slot = self.runs.slot(c.id)
        async with slot.lock:
            await self._start_locked(cfg, c, slot, manual=True)

    async def _start_locked(self, cfg: Config, c: Container, slot: Slot, *, manual: bool) -> None:
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
            create_bind_sources(c.host_config)
            rootfs = self.layers.mount(c.id)
            mounted = True
            write_bundle(bundle_dir, self.specs.spec_for(cfg, c, rootfs))

        try:
            runtime_path = await self.files.resolve_runtime(cfg, c)
            log_opts = log_options(c)
            options = self.files.runtime_options(c, runtime_path, log_opts)
            # The monitor starts while the rootfs is mounted and the bundle written: it waits
            # for them before it runs the runtime.
            runtime = await self.backend.create(
                options,
                before_runtime=lambda: asyncio.to_thread(prepare_bundle, options.bundle_dir),
            )
        except BaseException as e:
            if mounted:
                with contextlib.suppress(WhaledError, OSError):
                    await asyncio.to_thread(self.layers.unmount, c.id)
            raise self._start_failed(c, slot, e) from e
        try:
            await self.runs.connect_attachers(slot, runtime)
            task = await runtime.start()
        except BaseException as e:
            with contextlib.suppress(WhaledError, OSError):
                await runtime.delete(force=True)
            with contextlib.suppress(WhaledError, OSError):
                await asyncio.to_thread(self.layers.unmount, c.id)
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
        self.events.emit(c, "start")
        self.follow_run(c, slot, run, log_opts)

    def follow_run(self, c: Container, slot: Slot, run: Run, log_opts: LogOptions | None) -> None:
        """The background work of a started (or re-adopted) run: its exit watcher, log
        rotation and healthcheck."""
        self.tasks.spawn(f"watch-{c.id[:12]}", self._watch(c, slot, run))
        if log_opts is not None and log_opts.max_size:
            rotator = LogRotator(
                c.log_path, log_opts.max_size, log_opts.max_file, run.task.reopen_log
            )
            self.tasks.spawn(f"logrotate-{c.id[:12]}", rotator.run(run.stop_rotation))
        if c.state.health is not None and self._health_runner is not None:
            run.health_task = self.tasks.spawn(f"health-{c.id[:12]}", self._health_runner(c, run))

    def _start_failed(self, c: Container, slot: Slot, error: BaseException) -> BaseException:
        """Record a failed start; returns the error to raise (dockerd's translation: a
        missing or non-executable command is the caller's mistake, 400, exit code 127/126)."""
        self.runs.fail_attachers(slot, c)
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
            self.tasks.spawn(f"autoremove-{c.id[:12]}", self.auto_remove(c))
        return translated

    # ------------------------------------------------------------------ exit handling

    async def _watch(self, c: Container, slot: Slot, run: Run) -> None:
        try:
            status = await run.task.wait()
        except WhaledError as e:
            log.error("lost track of container %s: %s", c.id[:12], e)
            status = ExitStatus(exit_code=255, exited_at=datetime.now(UTC))
        await self._handle_exit(c, slot, run, status)

    async def _handle_exit(self, c: Container, slot: Slot, run: Run, status: ExitStatus) -> None:
        """Carry out :func:`whaled.container.exit.plan_exit` for the run's exit."""
        run.exit_status = status
        run.stop_rotation.set()
        if run.health_task is not None:
            run.health_task.cancel()
        plan = plan_exit(
            c,
            exit_code=status.exit_code,
            oom_killed=status.oom_killed,
            finished_at=exit_time(status),
            removing=slot.removing or c.id not in self.runs,
            record_exists=self.store.exists(c.id),
            daemon_shutting_down=self._shutting_down,
        )
        ran_for = time.monotonic() - run.started
        # State change, record, events and waiters in one step (no await in between), as
        # dockerd does: a ``next-exit`` wait sent after this point waits for the next run.
        apply_exit(c, plan)
        if plan.save:
            with contextlib.suppress(OSError, NoSuchContainer):
                self._save(c)
        for event in plan.events:
            self.events.emit(c, event.action, event.attributes)
        waiters, slot.exit_waiters = slot.exit_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(status)
        run.exited.set()
        await self._clean_up_run(c, run, auto_remove=plan.auto_remove)
        if plan.restart:
            delay = slot.backoff.next_delay(ran_for)
            slot.restart_timer = self.tasks.spawn(
                f"restart-{c.id[:12]}", self._restart_later(c, slot, delay)
            )

    async def _clean_up_run(self, c: Container, run: Run, *, auto_remove: bool) -> None:
        """The process is gone: the runtime's delete and the unmount are independent, and
        an auto-removal needs only the unmount (it leaves the run directory to the end)."""
        delete = asyncio.ensure_future(run.runtime.delete(force=True))
        try:
            try:
                await asyncio.to_thread(self.layers.unmount, c.id)
            except Exception as e:
                log.warning("clean-up after the exit of %s: %s", c.id[:12], e)
            run.released.set()
            if auto_remove:
                self.tasks.spawn(f"autoremove-{c.id[:12]}", self.auto_remove(c))
            try:
                await delete
            except Exception as e:
                log.warning("clean-up after the exit of %s: %s", c.id[:12], e)
            if self._on_run_ended is not None:
                self._on_run_ended(c.id)
        finally:
            if not delete.done():
                delete.cancel()
            run.released.set()
            run.cleaned.set()

    async def _restart_later(self, c: Container, slot: Slot, delay: float) -> None:
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

    async def auto_remove(self, c: Container) -> None:
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
        slot = self.runs.slot(c.id)
        async with slot.lock:
            if c.state.status == Status.RESTARTING:
                self._cancel_restart(c, slot)
                return
            if not is_running(c.state.status):
                raise NotModified("container already stopped")
            await self._stop_locked(c, slot, timeout=timeout, signal=signal)

    def _cancel_restart(self, c: Container, slot: Slot) -> None:
        if slot.restart_timer is not None:
            slot.restart_timer.cancel()
            slot.restart_timer = None
        c.manually_stopped = True
        c.state.status = Status.EXITED
        self._save(c)
        self.events.emit(c, "stop")

    def stop_signal(self, c: Container, override: str | None) -> int:
        return parse_signal(override or c.config.get("StopSignal"), signals.SIGTERM)

    async def _stop_locked(
        self, c: Container, slot: Slot, *, timeout: int | None, signal: str | None
    ) -> None:
        run = slot.run
        assert run is not None
        if timeout is None:
            configured = c.config.get("StopTimeout")
            timeout = int(configured) if configured is not None else DEFAULT_STOP_TIMEOUT
        c.manually_stopped = True
        self._save(c)
        sig = self.stop_signal(c, signal)
        await self.signal(c, run, sig)
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
                await self.signal(c, run, signals.SIGKILL)
                await run.exited.wait()
        self.events.emit(c, "stop")

    async def signal(self, c: Container, run: Run, sig: int) -> None:
        if run.exit_status is not None:
            return
        self.events.emit(c, "kill", {"signal": str(sig)})
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
        slot = self.runs.slot(c.id)
        async with slot.lock:
            run = slot.run
            if not is_running(c.state.status) or run is None or run.exit_status is not None:
                raise Conflict(f"Container {c.id} is not running")
            if sig in (signals.SIGKILL, self.stop_signal(c, None)):
                c.manually_stopped = True
                self._save(c)
            await self.signal(c, run, sig)
            if sig == signals.SIGKILL:
                await run.exited.wait()

    async def restart(self, cfg: Config, name_or_id: str, *, timeout: int | None) -> None:
        c = self.store.get(name_or_id)
        slot = self.runs.slot(c.id)
        async with slot.lock:
            if c.state.status == Status.RESTARTING:
                self._cancel_restart(c, slot)
            elif is_running(c.state.status):
                await self._stop_locked(c, slot, timeout=timeout, signal=None)
            await self._start_locked(cfg, c, slot, manual=True)
            self.events.emit(c, "restart")

    # ------------------------------------------------------------------ pause

    async def pause(self, name_or_id: str) -> None:
        c = self.store.get(name_or_id)
        slot = self.runs.slot(c.id)
        async with slot.lock:
            if c.state.status == Status.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status != Status.RUNNING or slot.run is None:
                raise Conflict(f"Container {c.id} is not running")
            await slot.run.task.pause()
            c.state.status = next_state(c.state.status, Event.PAUSE)
            self._save(c)
            self.events.emit(c, "pause")

    async def unpause(self, name_or_id: str) -> None:
        c = self.store.get(name_or_id)
        slot = self.runs.slot(c.id)
        async with slot.lock:
            if c.state.status != Status.PAUSED or slot.run is None:
                raise Conflict(f"Container {c.id} is not paused")
            await slot.run.task.resume()
            c.state.status = next_state(c.state.status, Event.UNPAUSE)
            self._save(c)
            self.events.emit(c, "unpause")

    # ------------------------------------------------------------------ wait

    async def wait(self, name_or_id: str, condition: str) -> WaitResult:
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidParameter(f'invalid condition: "{condition}"')
        c = self.store.get(name_or_id)
        slot = self.runs.slot(c.id)
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
        slot = self.runs.slot(c.id)
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
                    await self.signal(c, run, signals.SIGKILL)
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
        self.events.emit(c, "destroy")
        self.runs.forget(c.id)
        run = slot.run
        if run is None or run.cleaned.is_set():
            await asyncio.to_thread(remove_tree, self.files.run_dir(c.id), ignore_errors=True)
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
                self.layers.remove_rw(c.id)  # unmounts whatever mounts remain
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
            await asyncio.to_thread(self.layers.empty_trash)
            await asyncio.to_thread(self.store.empty_trash)
            if not self._trash_again:
                return

    async def _remove_run_dir(self, cid: str, run: Run) -> None:
        await run.cleaned.wait()
        await asyncio.to_thread(remove_tree, self.files.run_dir(cid), ignore_errors=True)

    # ------------------------------------------------------------------ rename / update

    async def rename(self, name_or_id: str, new_name: str) -> None:
        c = self.store.get(name_or_id)  # 404 first, like dockerd
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        new_name = validate_name(new_name)
        slot = self.runs.slot(c.id)
        async with slot.lock:
            old = c.name
            if old == new_name:
                raise InvalidParameter(
                    "Renaming a container with the same name as its current name"
                )
            self.store.rename(c, new_name)
            self.events.emit(c, "rename", {"oldName": "/" + old})

    async def update(self, name_or_id: str, body: Mapping[str, Any]) -> list[str]:
        c = self.store.get(name_or_id)
        slot = self.runs.slot(c.id)
        cgroup_version: Literal[1, 2] = 2 if self.facts.cgroups.version == 2 else 1
        async with slot.lock:
            plan = plan_update(
                c.id,
                c.host_config,
                body,
                cgroup_version=cgroup_version,
                host_cpus=self.facts.host.ncpu,
            )
            running = c.state.status in (Status.RUNNING, Status.PAUSED)
            if plan.resources_changed and running and slot.run:
                resources = to_oci_resources(
                    resources_of(plan.host_config),
                    cgroup_version=cgroup_version,
                    swap_limit=self.facts.cgroups.capabilities.swap_limit,
                )
                try:
                    await slot.run.task.update(resources)
                except WhaledError as e:
                    raise InvalidParameter(f"Cannot update container {c.id}: {e}") from e
            c.host_config = plan.host_config
            self._save(c)
            self.events.emit(c, "update")
        return []

    # ------------------------------------------------------------------ attach (stdio)

    async def attach_socket(self, c: Container, connect: AttachWaiter) -> None:
        """Connect ``connect`` to the container's attach socket now (running) or right
        before the process starts (created / exited: the next start waits for it)."""
        await self.runs.attach(c, connect)

    # ------------------------------------------------------------------ shutdown

    def begin_shutdown(self) -> None:
        """No restart from now on (exits are recorded, nothing is started again)."""
        self._shutting_down = True
        for slot in self.runs:
            if slot.restart_timer is not None:
                slot.restart_timer.cancel()

    def pending_cleanups(self) -> list[Awaitable[Any]]:
        """Exit clean-ups and removals still running."""
        pending: list[Awaitable[Any]] = [
            s.run.cleaned.wait()
            for s in self.runs
            if s.run is not None and s.run.exit_status is not None and not s.run.cleaned.is_set()
        ]
        return pending + list(self._finishing)

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


def _ulimit(name: str, soft: int, hard: int) -> Ulimit:
    return Ulimit(name=name, soft=soft, hard=hard)
