"""A removed container's files: moved aside in one step each, deleted in the background.

``remove_files`` moves the RW layer and the container directory aside (``LayerStore.remove_rw``,
``ContainerStore.delete``) and has the trash emptied by one background task at a time;
``remove_run_dir`` drops the run directory now, or after the runtime's delete of the last run
(which still reads its files there). Shutdown waits for those still pending.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

from whaled.container.store import ContainerStore
from whaled.daemon.bundle import RunFiles
from whaled.daemon.runs import Run
from whaled.daemon.tasks import BackgroundTasks
from whaled.errors import NotFound
from whaled.image.layers import LayerStore
from whaled.osutil.tree import remove_tree


class Trash:
    def __init__(
        self,
        *,
        store: ContainerStore,
        layers: LayerStore,
        files: RunFiles,
        tasks: BackgroundTasks,
    ) -> None:
        self.store = store
        self.layers = layers
        self.files = files
        self.tasks = tasks
        #: Run directories that wait for the runtime's delete.
        self._finishing: set[asyncio.Task[None]] = set()
        self._trash_task: asyncio.Task[None] | None = None
        self._trash_again = False

    async def remove_files(self, cid: str) -> None:
        """Move the container's RW layer and directory aside (the trash empties later)."""

        def remove() -> None:
            with contextlib.suppress(NotFound):
                self.layers.rw.remove(cid)  # unmounts whatever mounts remain
            self.store.delete(cid)

        await asyncio.to_thread(remove)
        self._empty_soon()

    async def remove_run_dir(self, cid: str, run: Run | None) -> None:
        if run is None or run.cleaned.is_set():
            await asyncio.to_thread(remove_tree, self.files.run_dir(cid), ignore_errors=True)
            return
        # The runtime's delete still reads its files there; the directory goes after it.
        task = self.tasks.spawn(f"rundir-{cid[:12]}", self._remove_run_dir_after(cid, run))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    def pending(self) -> list[Awaitable[Any]]:
        return list(self._finishing)

    def _empty_soon(self) -> None:
        """One emptying task at a time; a removal during one has it go round again."""
        self._trash_again = True
        if self._trash_task is None or self._trash_task.done():
            self._trash_task = self.tasks.spawn("empty-trash", self._empty())

    async def _empty(self) -> None:
        await asyncio.sleep(0)  # let the removal's answer go out first
        while True:
            self._trash_again = False
            await asyncio.to_thread(self.layers.rw.empty_trash)
            await asyncio.to_thread(self.store.empty_trash)
            if not self._trash_again:
                return

    async def _remove_run_dir_after(self, cid: str, run: Run) -> None:
        await run.cleaned.wait()
        await asyncio.to_thread(remove_tree, self.files.run_dir(cid), ignore_errors=True)
