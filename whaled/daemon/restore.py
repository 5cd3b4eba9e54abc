"""Daemon start and shutdown for containers.

At start :meth:`ContainerRestorer.restore` re-adopts the containers whose monitor still
runs and marks the others exited (``wiring.serve`` then starts what their restart policies
want, :meth:`~ContainerRestorer.start_restored`); at shutdown
:meth:`~ContainerRestorer.shutdown` stops running containers within ``shutdown-timeout``
unless live-restore is on. The runs themselves are the container service's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal as signals
import time
from collections.abc import Sequence

from whaled.config.model import Config
from whaled.container.model import Container
from whaled.container.restart import RestartPolicy, should_restart
from whaled.container.state import Status, adopted_status, is_running
from whaled.container.store import ContainerStore
from whaled.container.times import exit_time, now_rfc3339
from whaled.daemon.bundle import RunFiles, log_options
from whaled.daemon.containers import DEFAULT_STOP_TIMEOUT, ContainerService
from whaled.daemon.runs import Run, Runs, Slot
from whaled.daemon.tasks import BackgroundTasks
from whaled.daemon.trash import Trash
from whaled.errors import NotFound, WhaledError
from whaled.image.layers import LayerStore
from whaled.osutil.tree import remove_tree
from whaled.runtime.backend.api import Backend, Task, TaskStatus

log = logging.getLogger("whaled.containers")

#: How long shutdown waits for exit clean-ups (runtime delete, unmount) still running.
SHUTDOWN_CLEANUP_SECONDS = 10.0


class ContainerRestorer:
    def __init__(
        self,
        *,
        containers: ContainerService,
        store: ContainerStore,
        runs: Runs,
        layers: LayerStore,
        backend: Backend,
        files: RunFiles,
        trash: Trash,
        tasks: BackgroundTasks,
    ) -> None:
        self.containers = containers
        self.store = store
        self.runs = runs
        self.layers = layers
        self.backend = backend
        self.files = files
        self.trash = trash
        self.tasks = tasks

    async def restore(self) -> list[Container]:
        """Adopt what survived the last daemon; mark the rest exited. Returns the containers
        whose restart policy wants them running again (see :meth:`start_restored`)."""
        loaded = await asyncio.to_thread(self.store.load_all)
        # RW layers no container owns (a crash between create_rw and store.reserve).
        await asyncio.to_thread(self.layers.rw.remove_orphans, self.store.owner_ids())
        to_start: list[Container] = []
        for c in loaded:
            slot = self.runs.slot(c.id)
            live = c.state.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)
            if live and c.runtime_path:
                if await self._adopt(c, slot):
                    continue
            elif live:
                c.state.status = Status.EXITED
                self.store.save(c)
            elif c.state.status == Status.REMOVING:
                c.state.status = Status.DEAD
                self.store.save(c)
            await asyncio.to_thread(self._unmount_all, c.id)
            remove_tree(self.files.run_dir(c.id), ignore_errors=True)
        adopted = {c.id for c in loaded if self.runs.slot(c.id).run is not None}
        await self._sweep_leftovers(adopted)
        for c in loaded:
            # dockerd's rule: a --rm container found not running at start is removed.
            if c.host_config.get("AutoRemove") and c.id not in adopted:
                self.tasks.spawn(f"autoremove-{c.id[:12]}", self.containers.auto_remove(c))
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
            names = os.listdir(self.files.runtime_state)
        except FileNotFoundError:
            names = []
        for cid in names:
            if cid in live or not os.path.isdir(os.path.join(self.files.runtime_state, cid)):
                continue
            known = self.store.by_id(cid)
            path = (known.runtime_path if known is not None else "") or self.files.builtin.get(
                "runc"
            )
            if not path:
                continue
            try:
                await self.backend.load(self.files.bare_options(cid, path)).delete(force=True)
                log.info("removed the runtime's leftover state of container %s", cid[:12])
            except (WhaledError, OSError) as e:
                log.warning("leftover runtime state of %s: %s", cid[:12], e)
        keep = {cid[:16] for cid in live}
        runs = os.path.join(self.files.exec_root, "c")
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
                await self.containers.start(cfg, c.id)
            except WhaledError as e:
                log.error("could not restart container %s: %s", c.id[:12], e)

    async def _adopt(self, c: Container, slot: Slot) -> bool:
        log_opts = log_options(c)
        options = self.files.runtime_options(c, c.runtime_path, log_opts)
        runtime = self.backend.load(options)
        try:
            task = await runtime.task()
        except WhaledError:
            task = None
        if task is not None:
            status = task.exit_status()
            if status is None:
                # Re-mount: the rootfs stays mounted while the container lives.
                await asyncio.to_thread(self.layers.rw.mount, c.id)
                run = Run(runtime=runtime, task=task, started=time.monotonic())
                slot.run = run
                await self._reconcile_pause(c, task)
                self.store.save(c)
                self.containers.follow_run(c, slot, run, log_opts)
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
            c.state.finished_at = exit_time(status)
        else:
            c.state.exit_code = 255 if not c.state.exit_code else c.state.exit_code
            c.state.finished_at = now_rfc3339()
        c.state.health = None
        self.store.save(c)
        return False

    async def _reconcile_pause(self, c: Container, task: Task) -> None:
        """Status of a re-adopted container from the runtime's view (``adopted_status``):
        a commit's pause, or a pause cut short before its record, is undone."""
        try:
            runtime_paused = (await task.state()).status in (TaskStatus.PAUSED, TaskStatus.PAUSING)
        except WhaledError as e:
            log.warning("state of container %s: %s", c.id[:12], e)
            runtime_paused = c.state.status == Status.PAUSED
        status, resume = adopted_status(
            c.state.status, paused_for_commit=c.paused_for_commit, runtime_paused=runtime_paused
        )
        if resume:
            try:
                await task.resume()
                log.info("resumed container %s, paused by a commit or a cut-short pause", c.id[:12])
            except WhaledError as e:
                log.warning("could not resume container %s: %s", c.id[:12], e)
                status = Status.PAUSED
        c.state.status = status
        c.paused_for_commit = False

    def _unmount_all(self, cid: str) -> None:
        with contextlib.suppress(NotFound, OSError):
            while self.layers.rw.is_mounted(cid):
                self.layers.rw.unmount(cid)

    async def shutdown(self, cfg: Config) -> None:
        """Stop running containers within ``shutdown-timeout`` unless live-restore is on;
        exits being cleaned up right now finish first (no mount or monitor is left behind)."""
        self.runs.begin_shutdown()
        if not cfg.live_restore:
            await self._stop_all(cfg)
        pending = self.runs.cleanups_pending() + self.trash.pending()
        if pending:
            await asyncio.wait(
                [asyncio.ensure_future(p) for p in pending], timeout=SHUTDOWN_CLEANUP_SECONDS
            )

    async def _stop_all(self, cfg: Config) -> None:
        running = [c for c in self.store.all() if is_running(c.state.status)]
        if not running:
            return

        async def stop_one(c: Container) -> None:
            slot = self.runs.slot(c.id)
            run = slot.run
            if run is None:
                return
            timeout = c.config.get("StopTimeout")
            t = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
            t = min(t, cfg.shutdown_timeout) if cfg.shutdown_timeout >= 0 else t
            await self.containers.signal(c, run, self.containers.stop_signal(c, None))
            try:
                await asyncio.wait_for(asyncio.shield(run.cleaned.wait()), t)
            except TimeoutError:
                await self.containers.signal(c, run, signals.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(run.cleaned.wait()), 10)

        log.info("stopping %d running containers", len(running))
        await asyncio.gather(*(stop_one(c) for c in running), return_exceptions=True)
