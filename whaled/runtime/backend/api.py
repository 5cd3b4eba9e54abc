"""The backend interface the daemon talks to (libcontainerd's split).

Callers keep the objects instead of looking IDs up on every call:

- ``Backend``: makes ``Container`` objects — ``create`` for a new container, ``load`` to get
  one back after a daemon restart (live-restore) from the same ``CreateOptions``.
- ``Container``: a created container with its monitor. ``start`` runs its init process and
  returns the ``Task``; ``task`` re-attaches to a task that already runs (or has exited while
  the daemon was down); ``delete`` removes it from the runtime.
- ``Task``: the container's init ``Process`` plus pause/resume/exec/pids/update/stats/state.
- ``Process``: an exec'd process (and the base of ``Task``): kill, wait, resize, close_stdin.

Every runtime call a container makes goes through ``CreateOptions.runtime_path``, the
executable locked in when the container was created, whatever the daemon config says later.

Stdio and logs: the monitor holds the process's stdio. Output is written to ``log_path`` in
the CRI ("k8s-file") format — one record per line,
``<RFC3339Nano timestamp> <stdout|stderr> <F|P> <data>``, ``P`` marking a partial line —
which the logger turns into json-file semantics (``docker logs``); see
``whaled.logger.crilog``. Live I/O goes through an :class:`AttachStream` (``attach()`` on a
container or a process): what the client sends is the process's stdin, what it receives are
chunks of output tagged ``STREAM_STDOUT`` or ``STREAM_STDERR``. How that is carried is the
backend's business (conmon: its SOCK_SEQPACKET attach socket, ``conmon_attach``).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# The stream of a chunk of output (conmon's own numbering).
STREAM_STDOUT = 2
STREAM_STDERR = 3


class AttachStream(Protocol):
    """A live connection to a process's stdio."""

    async def recv(self) -> tuple[int, bytes] | None:
        """The next chunk of output as ``(STREAM_STDOUT|STREAM_STDERR, data)``; None once
        the output ended (the process exited and its output was all read)."""
        ...

    async def send(self, data: bytes) -> bool:
        """Write to the process's stdin; False when the process is gone."""
        ...

    def close_stdin(self) -> None:
        """End the process's stdin (its output goes on arriving)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitStatus:
    """How a process ended. ``exit_code`` is 128+N when signal N killed it."""

    exit_code: int
    exited_at: datetime
    oom_killed: bool = False


class TaskStatus(enum.StrEnum):
    """The runtime's view of a container (``<runtime> state``)."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    PAUSING = "pausing"
    STOPPED = "stopped"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskState:
    status: TaskStatus
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StdioOptions:
    """``tty``: allocate a pseudo-terminal. ``stdin``: keep a stdin pipe (``-i``).
    ``stdin_once``: close the process's stdin when the first attached client disconnects
    (Docker's StdinOnce); otherwise stdin stays open across attaches."""

    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateOptions:
    """Everything the backend needs to create — and, given the same value, later re-adopt — a
    container. The daemon persists it with the container.

    - ``bundle_dir``: the OCI bundle (``config.json`` + rootfs). The monitor also puts its
      attach socket and control FIFOs there, so keep the path short (a unix socket path must
      stay under 108 bytes).
    - ``state_dir``: a directory the backend owns for this container (pid files, exit
      files, exec sessions). Created if missing; emptied by ``Container.delete``.
    - ``runtime_path``: the locked-in OCI runtime executable (a binary or a wrapper script).
    - ``runtime_args``: global runtime arguments given to every runtime call (e.g. ``--root``).
    - ``log_path``: where the CRI-format log goes; ``None`` disables logging (log driver
      ``none``). ``log_size_max``: the monitor truncates the log beyond this many bytes
      (a backstop; rotation is the logger's job, see ``Task.reopen_log``).
    - ``exec_fifo``: see the field.
    """

    container_id: str
    bundle_dir: str
    state_dir: str
    runtime_path: str
    runtime_args: tuple[str, ...] = ()
    name: str = ""
    stdio: StdioOptions = field(default_factory=StdioOptions)
    log_path: str | None = None
    log_size_max: int | None = None
    log_tag: str | None = None
    exit_command: tuple[str, ...] = ()
    timeout: float = 30.0
    #: Set only when the runtime is runc itself (no wrapper): where ``runc create`` leaves
    #: the exec FIFO that ``start`` reads (see ``execfifo``); the backend then starts the
    #: container without another runtime process.
    exec_fifo: str | None = None


# Run by ``Backend.create`` while the monitor starts (e.g. writing the bundle); the runtime
# is called only once it returned.
BeforeRuntime = Callable[[], Awaitable[None]]

# Called with the attach stream of an exec session before the process starts, so a client
# misses no output. The process starts when it returns.
AttachReady = Callable[[AttachStream], Awaitable[None]]


class Process(Protocol):
    """A process under a monitor: the container's init process or an exec session."""

    @property
    def id(self) -> str: ...

    @property
    def pid(self) -> int: ...

    @property
    def log_path(self) -> str | None: ...

    async def attach(self) -> AttachStream:
        """Connect to the running process's stdio (``Conflict`` when it is not running)."""
        ...

    async def kill(self, signal: int) -> None: ...

    async def wait(self) -> ExitStatus:
        """Wait until the process has exited; returns the same value on every call."""
        ...

    def exit_status(self) -> ExitStatus | None:
        """The exit status if the process has already exited (no waiting)."""
        ...

    async def resize(self, width: int, height: int) -> None: ...

    async def close_stdin(self) -> None: ...

    async def release(self) -> None:
        """Remove the files of an exited exec session (no-op for a running one and for the
        container's own task, whose files ``Container.delete`` removes)."""
        ...


class Task(Process, Protocol):
    """The container's init process plus the container-wide operations."""

    async def kill(self, signal: int, all: bool = False) -> None: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def state(self) -> TaskState: ...

    async def pids(self) -> list[int]: ...

    async def update(self, resources: Mapping[str, Any]) -> None:
        """Apply OCI ``LinuxResources`` (the subset the runtime's ``update`` accepts)."""
        ...

    async def stats(self) -> Mapping[str, Any]:
        """The runtime's raw stats object (``<runtime> events --stats``: ``data`` field)."""
        ...

    async def exec(
        self,
        exec_id: str,
        process_spec: Mapping[str, Any],
        *,
        tty: bool = False,
        stdin: bool = False,
        log_path: str | None = None,
        attach_ready: AttachReady | None = None,
    ) -> Process:
        """Start ``process_spec`` (an OCI ``process`` object) in the container."""
        ...

    def load_exec(self, exec_id: str) -> Process:
        """Re-attach to an exec session started earlier (e.g. before a daemon restart)."""
        ...

    async def reopen_log(self) -> None:
        """Ask the monitor to reopen ``log_path`` (after the logger renamed it: rotation)."""
        ...


class Container(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def options(self) -> CreateOptions: ...

    async def start(self) -> Task: ...

    async def attach(self) -> AttachStream:
        """Connect to the stdio of the container's running (or starting) process
        (``Conflict`` when none runs)."""
        ...

    async def task(self) -> Task:
        """The task of a started container, alive or exited while nobody watched.
        Raises ``NotFound`` when the container never started or is gone."""
        ...

    async def delete(self, *, force: bool = False) -> None:
        """Remove the container from the runtime and its backend state. ``force`` kills a
        live task first; without it a live task is a ``Conflict``."""
        ...


class Backend(Protocol):
    async def create(
        self, options: CreateOptions, *, before_runtime: BeforeRuntime | None = None
    ) -> Container:
        """Create the container (runtime ``create`` under a fresh monitor); not started.
        ``before_runtime``: awaited while the monitor starts, before the runtime runs (its
        exception fails the create, and nothing of it is left)."""
        ...

    def load(self, options: CreateOptions) -> Container:
        """The container created earlier with ``options`` (after a daemon restart)."""
        ...
