"""The local backend: one ``conmon`` per container (and per exec session) runs the OCI runtime.

What is where (see ``conmon_args`` for the file layout and conmon's behaviour):

- ``create`` starts conmon, which daemonizes (its first process exits at once) and runs
  ``<runtime> create``; conmon reports the container's pid on a sync pipe. The monitor is not
  whaled's child, so whaled can die and restart while containers keep running.
- ``wait`` needs no background task: the first waiter opens a pidfd for the monitor (after
  checking ``/proc/<pid>/cmdline`` so a recycled pid cannot fool it), waits for it to exit and
  reads the exit file; later waiters share that future. An exit file that is already there
  answers at once — also for a container that exited while whaled was down.
- Every runtime call uses the locked-in ``CreateOptions.runtime_path``.
- Re-adoption (``Backend.load`` + ``Container.task``) reads only files: conmon's pidfile, the
  container pidfile and the exit file, plus ``<runtime> state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal as signals
import socket
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from whaled.errors import Conflict, NotFound, SystemFailure, WhaledError
from whaled.osutil import spawn
from whaled.osutil.files import read_text
from whaled.osutil.tree import remove_tree

from . import execfifo
from .api import AttachReady, BeforeRuntime, CreateOptions, ExitStatus, TaskState, TaskStatus
from .conmon_args import (
    ConmonArgs,
    MonitorPaths,
    RuntimeCommand,
    build_conmon_argv,
    check_socket_path,
    container_paths,
    delete_argv,
    exec_cuuid,
    exec_paths,
    is_conmon_cmdline,
    kill_argv,
    parse_exit_file,
    parse_pid,
    parse_ps,
    parse_state,
    parse_stats,
    parse_sync_messages,
    pause_argv,
    ps_argv,
    reopen_log_message,
    resize_message,
    resume_argv,
    runtime_error,
    start_argv,
    state_argv,
    stats_argv,
    update_argv,
)
from .conmon_attach import ConmonAttachStream, open_attach_socket
from .direct_exec import DirectExecProcess, start_direct_exec
from .pidsignal import signal_process

log = logging.getLogger("whaled.runtime.backend")

# Exit code reported when a monitor vanished without recording one (dockerd uses 255 too).
UNKNOWN_EXIT_CODE = 255
_EXIT_FILE_GRACE = 1.0  # seconds to wait for the exit file after the monitor exited
_DELETE_WAIT = 10.0


# --- small I/O helpers -----------------------------------------------------------------------


def _read_pid(path: str) -> int | None:
    text = read_text(path)
    return parse_pid(text) if text is not None else None


def _tail(path: str, limit: int = 2000) -> str:
    text = read_text(path) or ""
    return text[-limit:].strip()


def _monitor_alive(paths: MonitorPaths) -> int | None:
    """The pid of this monitor's conmon if it still runs, else ``None``."""
    pid = _read_pid(paths.conmon_pidfile)
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # A zombie (state Z) has exited already; its cmdline reads empty anyway.
    state = stat.rsplit(b")", 1)[-1].split()[:1]
    if state == [b"Z"]:
        return None
    return pid if is_conmon_cmdline(cmdline, paths.container_id, paths.bundle_dir) else None


def _read_exit_status(paths: MonitorPaths) -> ExitStatus | None:
    try:
        with open(paths.exit_file, encoding="utf-8", errors="replace") as f:
            code = parse_exit_file(f.read())
            mtime = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return None
    if code is None:
        return None
    return ExitStatus(
        exit_code=code,
        exited_at=datetime.fromtimestamp(mtime, UTC),
        oom_killed=os.path.exists(paths.oom_file),
    )


async def _run(
    argv: list[str], *, input: bytes | None = None, timeout: float
) -> tuple[int, bytes, bytes]:
    try:
        return await spawn.run(argv, input=input, timeout=timeout)
    except TimeoutError:
        what = " ".join(argv[:3])
        raise SystemFailure(f"{what}: timed out after {timeout}s") from None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Runtime:
    """Calls of the locked-in runtime for one container."""

    def __init__(self, rt: RuntimeCommand, container_id: str, timeout: float) -> None:
        self.rt = rt
        self.container_id = container_id
        self.timeout = timeout

    async def call(self, command: str, argv: list[str], *, input: bytes | None = None) -> bytes:
        try:
            rc, out, err = await _run(argv, input=input, timeout=self.timeout)
        except OSError as e:
            raise SystemFailure(f"runtime {self.rt.path}: {e}") from e
        if rc != 0:
            raise runtime_error(command, self.container_id, err.decode(errors="replace"))
        return out

    async def state(self) -> TaskState | None:
        """``None`` when the runtime does not know the container."""
        try:
            out = await self.call("state", state_argv(self.rt, self.container_id))
        except NotFound:
            return None
        return parse_state(out.decode(errors="replace"))


class _SyncReader:
    """Reads conmon's JSON lines from the sync pipe without blocking the loop."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        os.set_blocking(fd, False)
        self._buf = b""
        self._eof = False

    async def message(self) -> tuple[int, str | None] | None:
        loop = asyncio.get_running_loop()
        while True:
            msgs = parse_sync_messages(self._buf)
            if msgs:
                first = msgs[0]
                self._buf = self._buf.split(b"\n", 1)[1]
                return first.data, first.message
            if self._eof:
                return None
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self._fd, _resolve, ready)
            try:
                await ready
            finally:
                loop.remove_reader(self._fd)
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self._eof = True
            self._buf += chunk

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


async def _launch(
    args: ConmonArgs,
    *,
    timeout: float,
    attach_ready: AttachReady | None = None,
    before_runtime: BeforeRuntime | None = None,
) -> tuple[int, int]:
    """Start conmon and wait until it reports the process started: (conmon pid, pid).

    ``before_runtime`` runs while conmon starts up; conmon runs the runtime only after it
    returned (and is killed, never released, when it raises)."""
    paths = args.paths
    check_socket_path(paths.attach_socket)
    for d in (paths.dir, paths.exit_dir, paths.persist_dir, paths.socket_dir):
        os.makedirs(d, exist_ok=True)
    sync_r, sync_w = os.pipe()
    pass_fds = [sync_w]
    env = dict(os.environ)
    env["_OCI_SYNCPIPE"] = str(sync_w)
    start_w = attach_r = -1
    if attach_ready is not None or before_runtime is not None:
        # conmon waits for a byte on the start pipe before it does anything.
        start_r, start_w = os.pipe()
        pass_fds.append(start_r)
        env["_OCI_STARTPIPE"] = str(start_r)
    if attach_ready is not None:
        # conmon signals on the attach pipe when its socket listens, then waits for a second
        # byte on the start pipe before it runs the process.
        attach_r, attach_w = os.pipe()
        pass_fds.append(attach_w)
        env["_OCI_ATTACHPIPE"] = str(attach_w)
    reader = _SyncReader(sync_r)
    argv = build_conmon_argv(args)
    # Started first: it runs (in its thread) while conmon is spawned and starts up.
    prepared = asyncio.ensure_future(before_runtime()) if before_runtime is not None else None
    try:
        with open(paths.conmon_log, "ab") as errlog:
            try:
                proc = spawn.start(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=errlog,
                    stderr=errlog,
                    pass_fds=pass_fds,
                    env=env,
                    # conmon also drops an "oom" file in its working directory: keep it ours.
                    cwd=paths.dir,
                    start_new_session=True,
                )
            except OSError as e:
                if prepared is not None:
                    await asyncio.gather(prepared, return_exceptions=True)
                raise SystemFailure(f"cannot start conmon ({args.conmon_path}): {e}") from e
            finally:
                for fd in pass_fds:
                    os.close(fd)
        try:
            if prepared is not None:
                try:
                    await prepared
                except BaseException:
                    # Killed before the byte: an EOF on the start pipe would let it go on.
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
                    raise
            if start_w >= 0:
                # The first byte lets conmon go on; with an exec attach a second byte below
                # releases the exec.
                os.write(start_w, b"0")
            rc = await asyncio.wait_for(proc.wait(), timeout)
            if attach_ready is not None:
                attach = _SyncReader(attach_r)
                attach_r = -1
                try:
                    ready = await asyncio.wait_for(attach.message(), timeout)
                finally:
                    attach.close()
                if ready is None or ready[0] < 0:
                    raise SystemFailure(
                        "conmon: attach socket not ready: "
                        + ((ready[1] or "") if ready else _tail(paths.conmon_log))
                    )
                try:
                    await attach_ready(await open_attach_socket(paths.attach_socket))
                finally:
                    os.write(start_w, b"0")
            msg = await asyncio.wait_for(reader.message(), timeout)
        except TimeoutError:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            await _kill_monitor(paths)
            raise SystemFailure(
                f"conmon for {args.container_id}: no answer within {timeout}s"
            ) from None
        if msg is None:
            raise SystemFailure(
                f"conmon for {args.container_id} exited ({rc}) without creating the process: "
                + (_tail(paths.conmon_log) or "no message")
            )
        pid, message = msg
        if pid <= 0:
            raise SystemFailure(f"OCI runtime failed: {message or _tail(paths.conmon_log)}")
        conmon_pid = _read_pid(paths.conmon_pidfile)
        if conmon_pid is None:
            raise SystemFailure(f"conmon for {args.container_id} wrote no pid file")
        return conmon_pid, pid
    finally:
        reader.close()
        for fd in (start_w, attach_r):
            if fd >= 0:
                os.close(fd)


async def _kill_monitor(paths: MonitorPaths) -> None:
    pid = _monitor_alive(paths)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signals.SIGKILL)
    await _ExitWatch(paths).monitor_exited(timeout=5.0)


class _ExitWatch:
    """Waits for one monitor to record an exit status."""

    def __init__(self, paths: MonitorPaths) -> None:
        self.paths = paths
        self._status: ExitStatus | None = None
        self._future: asyncio.Future[ExitStatus] | None = None

    def status(self) -> ExitStatus | None:
        if self._status is None:
            self._status = _read_exit_status(self.paths)
        return self._status

    async def monitor_exited(self, timeout: float | None = None) -> bool:
        """Wait until this monitor's conmon is gone; ``False`` on timeout."""
        pid = _monitor_alive(self.paths)
        if pid is None:
            return True
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()
        loop.add_reader(pidfd, _resolve, gone)
        try:
            # The pidfd was opened after the cmdline check: check again that it is ours.
            if _monitor_alive(self.paths) != pid:
                return True
            await asyncio.wait_for(gone, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)

    async def _watch(self) -> ExitStatus:
        status = self.status()
        if status is not None:
            return status
        await self.monitor_exited()
        deadline = asyncio.get_running_loop().time() + _EXIT_FILE_GRACE
        while True:
            status = self.status()
            if status is not None:
                return status
            if asyncio.get_running_loop().time() > deadline:
                log.warning(
                    "monitor of %s exited without an exit status (%s)",
                    self.paths.container_id,
                    self.paths.dir,
                )
                self._status = ExitStatus(
                    exit_code=UNKNOWN_EXIT_CODE, exited_at=datetime.now(UTC), oom_killed=False
                )
                return self._status
            await asyncio.sleep(0.05)

    async def wait(self) -> ExitStatus:
        status = self.status()
        if status is not None:
            return status
        if self._future is None or self._future.get_loop() is not asyncio.get_running_loop():
            self._future = asyncio.ensure_future(self._watch())
        return await asyncio.shield(self._future)


async def _write_ctl(paths: MonitorPaths, message: bytes) -> None:
    try:
        fd = os.open(paths.ctl_fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Conflict(f"container {paths.container_id}: no monitor control channel") from None
    except OSError as e:
        if e.errno == errno.ENXIO:  # nobody reads: the monitor is gone
            raise Conflict(f"container {paths.container_id} is not running") from None
        raise SystemFailure(f"container {paths.container_id}: {e}") from e
    try:
        os.write(fd, message)
    finally:
        os.close(fd)


async def _close_stdin(paths: MonitorPaths) -> None:
    """conmon closes the process's stdin when an attached client hangs up (unless started
    with ``--leave-stdin-open``): connect and hang up."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, paths.attach_socket)
        sock.shutdown(socket.SHUT_WR)
    except (FileNotFoundError, ConnectionRefusedError):
        raise Conflict(f"container {paths.container_id}: process is not running") from None
    finally:
        sock.close()


# --- the objects callers keep ----------------------------------------------------------------


class ConmonProcess:
    """An exec session (also the base of ``ConmonTask``)."""

    def __init__(self, process_id: str, paths: MonitorPaths, pid: int, log_path: str | None):
        self._id = process_id
        self._paths = paths
        self._pid = pid
        self._log_path = log_path
        self._exit = _ExitWatch(paths)

    @property
    def id(self) -> str:
        return self._id

    @property
    def pid(self) -> int:
        return self._pid

    async def attach(self) -> ConmonAttachStream:
        return await open_attach_socket(self._paths.attach_socket)

    @property
    def log_path(self) -> str | None:
        return self._log_path

    async def kill(self, signal: int) -> None:
        # A recycled pid would have a recorded exit by the time its pidfd is open.
        signal_process(
            self._pid, signal, exited=lambda: self._exit.status() is not None, what=self._id
        )

    async def wait(self) -> ExitStatus:
        return await self._exit.wait()

    def exit_status(self) -> ExitStatus | None:
        return self._exit.status()

    async def resize(self, width: int, height: int) -> None:
        await _write_ctl(self._paths, resize_message(width, height))

    async def close_stdin(self) -> None:
        await _close_stdin(self._paths)

    async def release(self) -> None:
        """Drop an exited exec session's files (its exit status stays on this object)."""
        if self._paths.dir == self._paths.bundle_dir and self._exit.status() is not None:
            await self._exit.monitor_exited(timeout=5.0)
            remove_tree(self._paths.dir, ignore_errors=True)
            _remove_socket_link(self._paths)


class ConmonTask(ConmonProcess):
    def __init__(self, container: ConmonContainer, pid: int) -> None:
        super().__init__(container.id, container.paths, pid, container.options.log_path)
        self._exit = container.exit_watch  # one watch per container: delete() records it too
        self._container = container
        self._runtime = container.runtime

    @property
    def container(self) -> ConmonContainer:
        return self._container

    async def kill(self, signal: int, all: bool = False) -> None:
        await self._runtime.call("kill", kill_argv(self._runtime.rt, self.id, signal, all=all))

    async def pause(self) -> None:
        await self._runtime.call("pause", pause_argv(self._runtime.rt, self.id))

    async def resume(self) -> None:
        await self._runtime.call("resume", resume_argv(self._runtime.rt, self.id))

    async def state(self) -> TaskState:
        state = await self._runtime.state()
        if state is None:
            return TaskState(status=TaskStatus.STOPPED, pid=0)
        return state

    async def pids(self) -> list[int]:
        out = await self._runtime.call("ps", ps_argv(self._runtime.rt, self.id))
        return parse_ps(out.decode(errors="replace"))

    async def update(self, resources: Mapping[str, Any]) -> None:
        await self._runtime.call(
            "update",
            update_argv(self._runtime.rt, self.id),
            input=json.dumps(dict(resources)).encode(),
        )

    async def stats(self) -> Mapping[str, Any]:
        out = await self._runtime.call("events", stats_argv(self._runtime.rt, self.id))
        return parse_stats(out.decode(errors="replace"))

    async def reopen_log(self) -> None:
        await _write_ctl(self._paths, reopen_log_message())

    async def exec(
        self,
        exec_id: str,
        process_spec: Mapping[str, Any],
        *,
        tty: bool = False,
        stdin: bool = False,
        log_path: str | None = None,
        attach_ready: AttachReady | None = None,
    ) -> ConmonProcess | DirectExecProcess:
        if self._exit.status() is not None:
            raise Conflict(f"container {self.id} is not running")
        options = self._container.options
        paths = exec_paths(self.id, options.state_dir, exec_id)
        if os.path.exists(paths.dir):
            raise Conflict(f"exec session {exec_id} already exists in container {self.id}")
        os.makedirs(paths.dir)
        spec = dict(process_spec)
        spec["terminal"] = tty
        with open(paths.process_spec, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        if attach_ready is not None and not tty and log_path is None:
            # Attached, no terminal, no log: the runtime in the foreground, no monitor.
            try:
                return await start_direct_exec(
                    self._runtime.rt,
                    self.id,
                    exec_id,
                    paths.dir,
                    paths.process_spec,
                    stdin=stdin,
                    attach_ready=attach_ready,
                    timeout=options.timeout,
                )
            except BaseException:
                remove_tree(paths.dir, ignore_errors=True)
                raise
        args = ConmonArgs(
            conmon_path=self._container.backend.conmon_path,
            container_id=self.id,
            cuuid=exec_cuuid(exec_id),
            name=options.name,
            runtime=self._runtime.rt,
            paths=paths,
            log_path=log_path,
            terminal=tty,
            stdin=stdin,
            log_level=self._container.backend.log_level,
            exec_process_spec=paths.process_spec,
            exec_attach=attach_ready is not None,
        )
        try:
            _, pid = await _launch(args, timeout=options.timeout, attach_ready=attach_ready)
        except WhaledError:
            # Keep nothing of a session that never ran.
            await _kill_monitor(paths)
            remove_tree(paths.dir, ignore_errors=True)
            _remove_socket_link(paths)
            raise
        return ConmonProcess(exec_id, paths, pid, log_path)

    def load_exec(self, exec_id: str) -> ConmonProcess:
        paths = exec_paths(self.id, self._container.options.state_dir, exec_id)
        pid = _read_pid(paths.pidfile)
        if pid is None:
            raise NotFound(f"exec session {exec_id} not found in container {self.id}")
        return ConmonProcess(exec_id, paths, pid, None)


def _remove_socket_link(paths: MonitorPaths) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(paths.socket_dir, paths.cuuid))


class ConmonContainer:
    def __init__(self, backend: ConmonBackend, options: CreateOptions) -> None:
        self.backend = backend
        self._options = options
        self.paths = container_paths(options.container_id, options.bundle_dir, options.state_dir)
        self.exit_watch = _ExitWatch(self.paths)
        self.runtime = _Runtime(
            RuntimeCommand(path=options.runtime_path, global_args=options.runtime_args),
            options.container_id,
            options.timeout,
        )

    @property
    def id(self) -> str:
        return self._options.container_id

    @property
    def options(self) -> CreateOptions:
        return self._options

    async def attach(self) -> ConmonAttachStream:
        return await open_attach_socket(self.paths.attach_socket)

    async def start(self) -> ConmonTask:
        pid = _read_pid(self.paths.pidfile)
        if pid is None:
            raise NotFound(f"container {self.id} is not created")
        fifo = self._options.exec_fifo
        if fifo is None or not await execfifo.release(fifo, pid, self._options.timeout):
            await self.runtime.call("start", start_argv(self.runtime.rt, self.id))
        return ConmonTask(self, pid)

    async def task(self) -> ConmonTask:
        pid = _read_pid(self.paths.pidfile)
        if pid is None:
            raise NotFound(f"container {self.id} has no task")
        if _read_exit_status(self.paths) is not None:
            return ConmonTask(self, pid)  # exited while nobody watched: wait() answers at once
        state = await self.runtime.state()
        if state is None or state.status == TaskStatus.STOPPED:
            if _monitor_alive(self.paths) is not None:
                return ConmonTask(self, pid)  # exiting right now: the monitor records it
            # Runtime state gone (e.g. host reboot) and no monitor: nothing to adopt.
            raise NotFound(f"container {self.id} has no task")
        if state.status == TaskStatus.CREATED:
            raise NotFound(f"container {self.id} was created but never started")
        return ConmonTask(self, pid)

    async def delete(self, *, force: bool = False) -> None:
        rt = self.runtime
        try:
            await rt.call("delete", delete_argv(rt.rt, self.id, force=force))
        except NotFound:
            pass
        except Conflict:
            if not force:
                raise Conflict(f"cannot delete container {self.id}: it is running") from None
            raise
        # The init process is gone, so exec sessions and monitors end on their own; bound
        # the wait and kill what is left.
        watches = [self.exit_watch]
        exec_root = os.path.join(self._options.state_dir, "x")
        with contextlib.suppress(FileNotFoundError):
            for exec_id in os.listdir(exec_root):
                watches.append(_ExitWatch(exec_paths(self.id, self._options.state_dir, exec_id)))
        for watch in watches:
            if not await watch.monitor_exited(timeout=_DELETE_WAIT):
                log.warning("monitor of %s did not exit; killing it", watch.paths.dir)
                await _kill_monitor(watch.paths)
        if _read_pid(self.paths.pidfile) is not None:
            # Keep the init process's exit status for the Task objects callers hold.
            with contextlib.suppress(WhaledError):
                await asyncio.wait_for(self.exit_watch.wait(), _EXIT_FILE_GRACE * 2)
        for name in ("attach", "ctl", "winsz"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.paths.bundle_dir, name))
        remove_tree(self._options.state_dir, ignore_errors=True)


class ConmonBackend:
    """``Backend`` over conmon. ``conmon_path``: the monitor binary; ``log_level``: conmon's
    own verbosity (its messages go to ``<state_dir>/conmon.log``)."""

    def __init__(self, *, conmon_path: str = "conmon", log_level: str = "error") -> None:
        self.conmon_path = conmon_path
        self.log_level = log_level

    async def create(
        self, options: CreateOptions, *, before_runtime: BeforeRuntime | None = None
    ) -> ConmonContainer:
        container = ConmonContainer(self, options)
        paths = container.paths
        # A fresh state dir: stale exit files or pid files must not answer for this run.
        if os.path.exists(options.state_dir):
            if _monitor_alive(paths) is not None:
                raise Conflict(f"container {options.container_id} already has a monitor")
            remove_tree(options.state_dir)
        os.makedirs(options.state_dir)
        stdio = options.stdio
        args = ConmonArgs(
            conmon_path=self.conmon_path,
            container_id=options.container_id,
            cuuid=paths.cuuid,
            name=options.name,
            runtime=container.runtime.rt,
            paths=paths,
            log_path=options.log_path,
            log_size_max=options.log_size_max,
            log_tag=options.log_tag,
            terminal=stdio.tty,
            stdin=stdio.stdin,
            leave_stdin_open=stdio.stdin and not stdio.stdin_once,
            exit_command=options.exit_command,
            log_level=self.log_level,
        )
        try:
            await _launch(args, timeout=options.timeout, before_runtime=before_runtime)
        except BaseException:
            await _kill_monitor(paths)
            with contextlib.suppress(WhaledError):
                await container.runtime.call(
                    "delete", delete_argv(container.runtime.rt, options.container_id, force=True)
                )
            remove_tree(options.state_dir, ignore_errors=True)
            raise
        return container

    def load(self, options: CreateOptions) -> ConmonContainer:
        return ConmonContainer(self, options)
