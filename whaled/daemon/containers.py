"""Container use cases: start, stop, kill, pause, wait, remove, rename, update, restart
policies and the handling of exits.

One :class:`ContainerService` owns every container's lifecycle; its collaborators come in
the constructor (``whaled.wiring``): create is ``daemon/create.py``, the run table and attach
glue ``daemon/runs.py``, runtime files and the OCI spec ``daemon/bundle.py``, removed files
``daemon/trash.py``, daemon start and shutdown ``daemon/restore.py``; the decisions are pure
rules in ``whaled.container`` (``exit.plan_exit``, ``update.plan_update``, ``restart``,
``remove``, ``start``). Its rules:

- Each container has an operation lock (start/stop/kill/pause/remove/rename/update take it),
  so two requests never interleave on one container. The exit of a container is handled by
  the watcher task of that run, which does not take the lock (a stop holding the lock waits
  for it); a start first waits until the previous run's clean-up finished.
- A start resolves the runtime against the config snapshot taken for that request and
  locks the resolved executable into the container (``runtime_path``); every later runtime
  call of that run (kill, exec, pause, update, delete) goes through the backend objects made
  with that path, whatever later reloads do.
- Every state change is persisted (atomic write) before it is announced by an event.
- An exit is decided by ``plan_exit`` (events in, commands out) and carried out by
  :meth:`ContainerService._handle_exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal as signals
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from whaled.config.model import Config
from whaled.container.events import ContainerEvents
from whaled.container.exit import apply_exit, plan_exit
from whaled.container.health import HealthConfig, reset_for_start
from whaled.container.listing import count_by_state, image_users
from whaled.container.model import Container
from whaled.container.names import validate_name
from whaled.container.remove import check_removable
from whaled.container.signals import parse_signal
from whaled.container.spec_input import resources_of
from whaled.container.start import classify_start_failure
from whaled.container.state import Event, Status, is_running, next_state
from whaled.container.store import ContainerStore
from whaled.container.times import exit_time, now_rfc3339
from whaled.container.update import plan_update
from whaled.daemon.bundle import RunFiles, SpecAssembler, log_options
from whaled.daemon.create import ContainerCreator, CreateResult
from whaled.daemon.environment import Environment
from whaled.daemon.runs import Run, Runs, Slot
from whaled.daemon.system import HostFacts as DaemonFacts
from whaled.daemon.tasks import BackgroundTasks
from whaled.daemon.trash import Trash
from whaled.errors import (
    Conflict,
    InvalidParameter,
    NoSuchContainer,
    NotFound,
    NotModified,
    WhaledError,
)
from whaled.image.layers import LayerStore
from whaled.image.store import ImageUser
from whaled.logger.options import LogOptions
from whaled.logger.rotate import LogRotator
from whaled.runtime.backend.api import Backend, ExitStatus, Task
from whaled.runtime.resources import to_oci_resources

log = logging.getLogger("whaled.containers")

DEFAULT_STOP_TIMEOUT = 10
_LOG_SETTLE_TIMEOUT = 5.0  # seconds an exit waits for log rotation to finish its cut


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
        creator: ContainerCreator,
        layers: LayerStore,
        trash: Trash,
        events: ContainerEvents,
        facts: DaemonFacts,
        config: Callable[[], Config],
        backend: Backend,
        tasks: BackgroundTasks,
        environment: Environment,
        health_runner: HealthRunner | None = None,
        on_run_ended: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.runs = runs
        self.files = files
        self.specs = specs
        self.creator = creator
        self.layers = layers
        self.trash = trash
        self.events = events
        self.facts = facts
        self.config = config
        self.backend = backend
        self.tasks = tasks
        self.environment = environment
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
        return image_users(self.store.all(), image_id)

    def _save(self, c: Container) -> None:
        self.store.save(c)

    # ------------------------------------------------------------------ create

    async def create(
        self, cfg: Config, body: Mapping[str, Any], *, name: str | None, platform: str | None
    ) -> CreateResult:
        return await self.creator.create(cfg, body, name=name, platform=platform)

    async def remove_link(self, parent_ref: str, alias: str) -> None:
        await self.creator.remove_link(parent_ref, alias)

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
        try:
            runtime_path = await self.files.resolve_runtime(cfg, c)
            log_opts = log_options(c)
            options = self.files.runtime_options(c, runtime_path, log_opts)
            # The monitor starts while the rootfs is mounted and the bundle written: it waits
            # for them before it runs the runtime.
            runtime = await self.backend.create(
                options,
                before_runtime=lambda: asyncio.to_thread(
                    self.environment.prepare, cfg, c, options.bundle_dir
                ),
            )
        except BaseException as e:
            await self.environment.undo(c)
            raise self._start_failed(c, slot, e) from e
        try:
            await self.environment.publish(c)
            await self.runs.connect_attachers(slot, runtime)
            task = await runtime.start()
        except BaseException as e:
            with contextlib.suppress(WhaledError, OSError):
                await runtime.delete(force=True)
            await self.environment.undo(c)
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
        self.environment.started(c)
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
            run.rotation_task = self.tasks.spawn(
                f"logrotate-{c.id[:12]}", rotator.run(run.stop_rotation)
            )
        if c.state.health is not None and self._health_runner is not None:
            run.health_task = self.tasks.spawn(f"health-{c.id[:12]}", self._health_runner(c, run))

    def _start_failed(self, c: Container, slot: Slot, error: BaseException) -> BaseException:
        """Record a failed start; returns the error to raise (dockerd's translation: a
        missing or non-executable command is the caller's mistake, 400, exit code 127/126)."""
        self.runs.fail_attachers(slot, c)
        if not isinstance(error, WhaledError):
            return error
        failure = classify_start_failure(str(error))
        c.state.exit_code = failure.exit_code
        c.state.error = str(error)
        with contextlib.suppress(OSError):
            self._save(c)
        if c.host_config.get("AutoRemove"):
            self.tasks.spawn(f"autoremove-{c.id[:12]}", self.auto_remove(c))
        return InvalidParameter(str(error)) if failure.callers_mistake else error

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
        run.stop_rotation.set()
        if run.rotation_task is not None:
            # The log is complete: let rotation cut what a last burst left too large before
            # the exit shows (dockerd too finishes its log copy first).
            await asyncio.wait({run.rotation_task}, timeout=_LOG_SETTLE_TIMEOUT)
        run.exit_status = status
        if run.health_task is not None:
            run.health_task.cancel()
        plan = plan_exit(
            c,
            exit_code=status.exit_code,
            oom_killed=status.oom_killed,
            finished_at=exit_time(status),
            removing=slot.removing or c.id not in self.runs,
            record_exists=self.store.exists(c.id),
            daemon_shutting_down=self.runs.shutting_down,
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
        # (only now an await: a wait that arrives meanwhile is for the next run)
        await self.environment.exited(c)
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
                await asyncio.to_thread(self.layers.rw.unmount, c.id)
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
            if c.state.status != Status.RESTARTING or slot.removing or self.runs.shutting_down:
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

    async def pause(self, name_or_id: str, *, for_commit: bool = False) -> None:
        """Freeze the container; ``for_commit``: only while a commit reads its files (a
        daemon restart resumes it)."""
        c = self.store.get(name_or_id)
        slot = self.runs.slot(c.id)
        async with slot.lock:
            if c.state.status == Status.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status != Status.RUNNING or slot.run is None:
                raise Conflict(f"Container {c.id} is not running")
            await slot.run.task.pause()
            c.state.status = next_state(c.state.status, Event.PAUSE)
            c.paused_for_commit = for_commit
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
            c.paused_for_commit = False
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
            if not force:
                check_removable(c)
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
                if not volumes:
                    await self.environment.keep_volumes(c)
                await self.trash.remove_files(c.id)
            except BaseException:
                slot.removing = False
                if self.store.exists(c.id):
                    c.state.status = Status.DEAD
                    with contextlib.suppress(OSError):
                        self._save(c)
                raise
        self.events.emit(c, "destroy")
        await self.environment.release(c, remove_anonymous=volumes)
        self.runs.forget(c.id)
        await self.trash.remove_run_dir(c.id, slot.run)
        for w in slot.removed_waiters:
            if not w.done():
                w.set_result(c.state.exit_code)
        for ew in slot.exit_waiters:
            if not ew.done():
                ew.set_result(ExitStatus(exit_code=c.state.exit_code, exited_at=datetime.now(UTC)))

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
                cpusets=self.facts.cpusets,
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

    # ------------------------------------------------------------------ counts

    def counts(self) -> tuple[int, int, int, int]:
        return count_by_state(self.store.all())
