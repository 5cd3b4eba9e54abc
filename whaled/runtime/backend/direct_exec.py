"""Exec sessions without a monitor hop: ``<runtime> exec`` run in the foreground by the
daemon, the process's stdio on pipes.

An attached exec without a terminal (``docker exec``, docker-py's ``exec_run``,
healthchecks) needs nothing a monitor gives: no log, no terminal, no re-attach, and its
session lives in the daemon's memory anyway. Started under conmon, it paid for conmon's
start-up, its attach socket and ``runc exec --detach`` (a ``docker exec true`` takes ~5 ms
less without them on this machine: 51 against 56 ms). Here the runtime runs in the
foreground: it starts the process in the container, forwards signals to it, and exits with
its status (128+N for signal N), and its stdout and stderr are the process's. The runtime
writes the process's pid file once the process runs: until then the daemon only watches,
so a runtime that fails to start the process is reported as an error (its stderr is its
message), never as output of the session. Exec sessions with a TTY, or detached ones, keep conmon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from datetime import UTC, datetime

from whaled.errors import Conflict, SystemFailure
from whaled.osutil import spawn
from whaled.osutil.pidfile import read_pid
from whaled.osutil.tree import remove_tree
from whaled.runtime.backend.api import STREAM_STDERR, STREAM_STDOUT, AttachReady, ExitStatus
from whaled.runtime.backend.conmon_args import (
    RuntimeCommand,
    runtime_argv,
    runtime_error_message,
)
from whaled.runtime.backend.pidsignal import signal_process

#: Output chunk size read from the pipes.
_READ = 65536
#: How often the start is checked (the pid file, the runtime's exit) while it runs.
_START_POLL_SECONDS = 0.0005
_START_POLL_MAX_SECONDS = 0.001


def exec_argv(rt: RuntimeCommand, container_id: str, spec_path: str, pid_file: str) -> list[str]:
    """``<runtime> exec`` in the foreground of the process described by ``spec_path``."""
    return runtime_argv(rt, "exec", "--process", spec_path, "--pid-file", pid_file, container_id)


class _Stdio:
    """The foreground runtime's pipes, owned by the daemon (``osutil.spawn``)."""

    __slots__ = ("stderr", "stdin", "stdout")

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None and popen.stderr is not None
        self.stdin = spawn.PipeWriter(popen.stdin) if popen.stdin is not None else None
        self.stdout = spawn.PipeReader(popen.stdout)
        self.stderr = spawn.PipeReader(popen.stderr)

    def close_stdin(self) -> None:
        if self.stdin is not None:
            self.stdin.close()

    def close(self) -> None:
        self.close_stdin()
        self.stdout.close()
        self.stderr.close()


class PipeAttachStream:
    """A foreground runtime's stdio as an :class:`~whaled.runtime.backend.api.AttachStream`.
    Once closed, the output is still read and dropped, so the process never blocks on a
    full pipe (as under conmon, which drains it)."""

    def __init__(self, stdio: _Stdio) -> None:
        self._stdio = stdio
        self._open = {STREAM_STDOUT: stdio.stdout, STREAM_STDERR: stdio.stderr}
        self._reads: dict[int, asyncio.Task[bytes]] = {}
        self._drain: asyncio.Task[None] | None = None

    async def recv(self) -> tuple[int, bytes] | None:
        while self._open:
            for kind, reader in self._open.items():
                if kind not in self._reads:
                    self._reads[kind] = asyncio.ensure_future(reader.read(_READ))
            done, _ = await asyncio.wait(self._reads.values(), return_when=asyncio.FIRST_COMPLETED)
            for kind in (STREAM_STDOUT, STREAM_STDERR):  # stdout first when both are ready
                task = self._reads.get(kind)
                if task is None or task not in done:
                    continue
                del self._reads[kind]
                try:
                    data = task.result()
                except (OSError, ValueError):
                    data = b""
                if data:
                    return kind, data
                del self._open[kind]
        return None

    async def send(self, data: bytes) -> bool:
        stdin = self._stdio.stdin
        if stdin is None or stdin.is_closing():
            return False
        try:
            await stdin.write(data)
        except (ConnectionError, OSError):
            return False
        return True

    def close_stdin(self) -> None:
        self._stdio.close_stdin()

    def close(self) -> None:
        self.close_stdin()
        if self._drain is None and (self._open or self._reads):
            self._drain = asyncio.ensure_future(self._discard())

    async def _discard(self) -> None:
        while await self.recv() is not None:
            pass


class DirectExecProcess:
    """An exec session run by a foreground runtime (a :class:`Process` of the backend)."""

    def __init__(
        self, exec_id: str, directory: str, proc: spawn.Child, stdio: _Stdio, pid: int
    ) -> None:
        self._id = exec_id
        self._dir = directory
        self._proc = proc
        self._stdio = stdio
        self._pid = pid
        self._status: ExitStatus | None = None
        self._waiter: asyncio.Future[ExitStatus] | None = None

    @property
    def id(self) -> str:
        return self._id

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def log_path(self) -> str | None:
        return None

    async def attach(self) -> PipeAttachStream:
        raise Conflict(f"exec session {self._id} cannot be attached again")

    async def kill(self, signal: int) -> None:
        """Signal the process itself (the runtime would forward all but SIGKILL/SIGSTOP)."""
        # The runtime reaps the process: while it runs, the pid is still the process's.
        signal_process(
            self._pid, signal, exited=lambda: self._proc.returncode is not None, what=self._id
        )

    async def wait(self) -> ExitStatus:
        if self._status is not None:
            return self._status
        if self._waiter is None:
            self._waiter = asyncio.ensure_future(self._wait())
        return await asyncio.shield(self._waiter)

    async def _wait(self) -> ExitStatus:
        rc = await self._proc.wait()
        self._stdio.close_stdin()  # nobody reads it any more
        self._status = ExitStatus(
            exit_code=rc if rc >= 0 else 128 - rc, exited_at=datetime.now(UTC)
        )
        return self._status

    def exit_status(self) -> ExitStatus | None:
        return self._status

    async def resize(self, width: int, height: int) -> None:
        raise Conflict(f"exec session {self._id} has no terminal to resize")

    async def close_stdin(self) -> None:
        self._stdio.close_stdin()

    async def release(self) -> None:
        if self._status is not None:
            remove_tree(self._dir, ignore_errors=True)


async def start_direct_exec(
    rt: RuntimeCommand,
    container_id: str,
    exec_id: str,
    directory: str,
    spec_path: str,
    *,
    stdin: bool,
    attach_ready: AttachReady,
    timeout: float,
) -> DirectExecProcess:
    """Run ``<runtime> exec`` for the process in ``spec_path`` (written by the caller in
    ``directory``, which the session owns) and hand its stdio to ``attach_ready`` once the
    process runs. A runtime that fails to start it raises ``SystemFailure`` with its
    message (``Conflict`` when the container is not running)."""
    pid_file = os.path.join(directory, "pid")
    try:
        # Popen, not the loop's subprocess: uvloop's forks the whole daemon (osutil.spawn)
        proc = spawn.start(
            exec_argv(rt, container_id, spec_path, pid_file),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        raise SystemFailure(f"runtime {rt.path}: {e}") from e
    stdio = _Stdio(proc.popen)
    try:
        pid = await _started(proc, pid_file, timeout)
    except BaseException:
        proc.kill()
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        stdio.close()
        raise
    if pid is None:
        err = await stdio.stderr.read_all()
        stdio.close()
        message = runtime_error_message(err.decode(errors="replace"))
        if "not running" in message.lower() or "stopped" in message.lower():
            raise Conflict(f"container {container_id} is not running")
        raise SystemFailure(f"OCI runtime failed: {message or 'exec failed'}")
    process = DirectExecProcess(exec_id, directory, proc, stdio, pid)
    stream = PipeAttachStream(stdio)
    try:
        await attach_ready(stream)
    except BaseException:
        stream.close()  # the output is drained to its end, the pipes closed then
        raise
    return process


async def _started(proc: spawn.Child, pid_file: str, timeout: float) -> int | None:
    """The process's pid once the runtime wrote it; None when the runtime exited first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    exited = asyncio.ensure_future(proc.wait())
    pause = _START_POLL_SECONDS
    try:
        while True:
            pid = read_pid(pid_file)
            if pid is not None:
                return pid
            if exited.done():
                return read_pid(pid_file)  # written just before a quick process exited
            if loop.time() >= deadline:
                raise SystemFailure(f"runtime exec: no process after {timeout}s")
            await asyncio.wait({exited}, timeout=pause)
            pause = min(pause * 2, _START_POLL_MAX_SECONDS)
    finally:
        if not exited.done():
            exited.cancel()
