"""What the daemon keeps per container beside its record: the run table.

A :class:`Slot` per container holds its operation lock, its current :class:`Run` (from a
start to the end of that run's exit clean-up), the clients waiting for its exit or removal,
the attach clients waiting for its next start, and its restart timer and back-off. The
container, exec and health services share one :class:`Runs` (built in ``whaled.wiring``);
only ``ContainerService`` changes a slot's run.

Attach glue: a client attaching to a container that is not running yet is connected right
before the next start runs its process (:meth:`Runs.connect_attachers`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from whaled.container.model import Container
from whaled.container.restart import Backoff
from whaled.container.state import is_running
from whaled.daemon.tasks import BackgroundTasks
from whaled.errors import Conflict
from whaled.runtime.backend.api import AttachStream, ExitStatus, Task
from whaled.runtime.backend.api import Container as RuntimeContainer

#: How long a start waits for clients that asked to attach before it was started.
ATTACH_CONNECT_TIMEOUT = 5.0

AttachWaiter = Callable[[AttachStream], Awaitable[None]]


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
    rotation_task: asyncio.Task[None] | None = None
    health_task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class Slot:
    """What the daemon keeps per container beside the record."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    run: Run | None = None
    exit_waiters: list[asyncio.Future[ExitStatus]] = field(default_factory=list)
    removed_waiters: list[asyncio.Future[int]] = field(default_factory=list)
    attach_waiters: list[tuple[AttachWaiter, asyncio.Future[None]]] = field(default_factory=list)
    restart_timer: asyncio.Task[None] | None = None
    backoff: Backoff = field(default_factory=Backoff)
    removing: bool = False


class Runs:
    """The slots of all known containers (loop thread only)."""

    def __init__(self, tasks: BackgroundTasks) -> None:
        self._slots: dict[str, Slot] = {}
        self._tasks = tasks
        #: The daemon is shutting down: exits are recorded, nothing is restarted.
        self.shutting_down = False

    def slot(self, cid: str) -> Slot:
        """The container's slot, made on first use."""
        slot = self._slots.get(cid)
        if slot is None:
            slot = self._slots[cid] = Slot()
        return slot

    def __contains__(self, cid: str) -> bool:
        return cid in self._slots

    def __iter__(self) -> Iterator[Slot]:
        return iter(list(self._slots.values()))

    def begin_shutdown(self) -> None:
        """No restart from now on (pending restart timers are cancelled)."""
        self.shutting_down = True
        for slot in self._slots.values():
            if slot.restart_timer is not None:
                slot.restart_timer.cancel()

    def cleanups_pending(self) -> list[Awaitable[bool]]:
        """The exit clean-ups (runtime delete, unmount) still running."""
        return [
            s.run.cleaned.wait()
            for s in self._slots.values()
            if s.run is not None and s.run.exit_status is not None and not s.run.cleaned.is_set()
        ]

    def forget(self, cid: str) -> None:
        """The container is removed."""
        self._slots.pop(cid, None)

    def run_of(self, cid: str) -> Run | None:
        slot = self._slots.get(cid)
        return slot.run if slot is not None else None

    def running_task(self, c: Container) -> Task:
        """The live task of a running container, or dockerd's 409."""
        run = self.run_of(c.id)
        if run is None or not is_running(c.state.status) or run.exit_status is not None:
            raise Conflict(f"Container {c.id} is not running")
        return run.task

    async def attach(self, c: Container, connect: AttachWaiter) -> None:
        """Connect ``connect`` to the container's attach socket now (running) or right
        before the process starts (created / exited: the next start waits for it)."""
        slot = self.slot(c.id)
        run = slot.run
        if run is not None and run.exit_status is None and is_running(c.state.status):
            await _hand_over(connect, await run.runtime.attach())
            return
        connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot.attach_waiters.append((connect, connected))
        await connected

    async def connect_attachers(self, slot: Slot, runtime: RuntimeContainer) -> None:
        """Connect the clients waiting for this start (at most ``ATTACH_CONNECT_TIMEOUT``)."""
        waiters, slot.attach_waiters = slot.attach_waiters, []
        if not waiters:
            return
        for connect, connected in waiters:
            self._tasks.spawn("attach-connect", _run_attacher(connect, runtime, connected))
        await asyncio.wait([connected for _, connected in waiters], timeout=ATTACH_CONNECT_TIMEOUT)

    @staticmethod
    def fail_attachers(slot: Slot, c: Container) -> None:
        """The start failed: the clients waiting for it get a 409."""
        waiters, slot.attach_waiters = slot.attach_waiters, []
        for _, connected in waiters:
            if not connected.done():
                connected.set_exception(Conflict(f"container {c.id} did not start"))


async def _run_attacher(
    connect: AttachWaiter, runtime: RuntimeContainer, connected: asyncio.Future[None]
) -> None:
    try:
        await _hand_over(connect, await runtime.attach())
    except BaseException as e:
        if not connected.done():
            connected.set_exception(e)
        raise
    if not connected.done():
        connected.set_result(None)


async def _hand_over(connect: AttachWaiter, stream: AttachStream) -> None:
    """Give ``stream`` to ``connect`` (which owns it from then on; closed if it fails)."""
    try:
        await connect(stream)
    except BaseException:
        stream.close()
        raise
