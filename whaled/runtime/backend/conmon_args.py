"""Pure part of the local backend: where conmon's files live, conmon's and the OCI runtime's
argument lists, and parsers for what they answer. No I/O here.

Facts about conmon 2.1.6 that this module relies on (checked on the development host):

- Without ``--sync`` the conmon started by us forks, the parent exits at once and the
  child (the monitor) lives on, re-parented away from whaled; it writes its own pid to
  ``--conmon-pidfile``. When the runtime's ``create`` (or ``exec``) is done it writes one
  JSON line ``{"data": <pid>}`` to the fd named by ``$_OCI_SYNCPIPE`` (a negative ``data``
  plus a ``message`` on failure); for an exec session a second line carries the exit code.
- At exit it writes the exit code (decimal, ``128+N`` for signal N) to
  ``<exit-dir>/<cid>`` and ``<persist-dir>/exit``; an OOM kill creates ``<persist-dir>/oom``.
- It creates the attach socket ``attach`` and the FIFOs ``ctl`` and ``winsz`` in the
  ``--bundle`` directory, plus a symlink ``<socket-dir-path>/<cuuid>`` → bundle so the socket
  can be reached through a short path. ``ctl`` takes ``"1 <height> <width>\\n"`` (resize)
  and ``"2 0 0\\n"`` (reopen the log file).
- The log (``-l k8s-file:<path>``) is in the CRI format, see ``whaled.logger.crilog``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from whaled.errors import Conflict, NotFound, SystemFailure, WhaledError

from .api import TaskState, TaskStatus

CONMON_API_VERSION = "1"
CONTAINER_CUUID = "c"
UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL

# Messages for conmon's ``ctl`` FIFO.
CTL_RESIZE = 1
CTL_REOPEN_LOG = 2


# --- file layout ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorPaths:
    """Files of one monitored process (the container's init process or one exec session).

    ``bundle_dir`` is conmon's ``--bundle``: it holds ``attach``, ``ctl`` and ``winsz``."""

    dir: str
    bundle_dir: str
    socket_dir: str
    cuuid: str
    container_id: str

    @property
    def conmon_pidfile(self) -> str:
        return os.path.join(self.dir, "conmon.pid")

    @property
    def pidfile(self) -> str:
        return os.path.join(self.dir, "pid")

    @property
    def exit_dir(self) -> str:
        return os.path.join(self.dir, "exits")

    @property
    def exit_file(self) -> str:
        return os.path.join(self.exit_dir, self.container_id)

    @property
    def persist_dir(self) -> str:
        return os.path.join(self.dir, "persist")

    @property
    def oom_file(self) -> str:
        return os.path.join(self.persist_dir, "oom")

    @property
    def conmon_log(self) -> str:
        """conmon's own stderr (its warnings), not the container's output."""
        return os.path.join(self.dir, "conmon.log")

    @property
    def attach_socket(self) -> str:
        """The short path of the attach socket (through the socket-dir symlink)."""
        return os.path.join(self.socket_dir, self.cuuid, "attach")

    @property
    def ctl_fifo(self) -> str:
        return os.path.join(self.bundle_dir, "ctl")

    @property
    def process_spec(self) -> str:
        """Exec sessions only: the OCI process object given to ``--exec-process-spec``."""
        return os.path.join(self.dir, "process.json")


def container_paths(container_id: str, bundle_dir: str, state_dir: str) -> MonitorPaths:
    return MonitorPaths(
        dir=state_dir,
        bundle_dir=bundle_dir,
        socket_dir=os.path.join(state_dir, "s"),
        cuuid=CONTAINER_CUUID,
        container_id=container_id,
    )


def exec_cuuid(exec_id: str) -> str:
    return "x" + exec_id[:12]


def exec_paths(container_id: str, state_dir: str, exec_id: str) -> MonitorPaths:
    """An exec session lives in ``<state_dir>/x/<exec_id>``, which is also its conmon bundle
    (so its attach socket and FIFOs do not clash with the container's)."""
    if not exec_id or "/" in exec_id or exec_id in (".", ".."):
        raise ValueError(f"invalid exec id: {exec_id!r}")
    directory = os.path.join(state_dir, "x", exec_id)
    return MonitorPaths(
        dir=directory,
        bundle_dir=directory,
        socket_dir=os.path.join(state_dir, "s"),
        cuuid=exec_cuuid(exec_id),
        container_id=container_id,
    )


def check_socket_path(path: str) -> None:
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise ValueError(f"unix socket path too long ({len(path)} > {UNIX_PATH_MAX}): {path}")


# --- conmon argv -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeCommand:
    """The locked-in runtime executable and the global arguments every call gets."""

    path: str
    global_args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConmonArgs:
    """One conmon invocation. ``exec_process_spec`` set → an exec session (``--exec``)."""

    conmon_path: str = "conmon"
    container_id: str
    cuuid: str
    name: str
    runtime: RuntimeCommand
    paths: MonitorPaths
    log_path: str | None = None  # None → log driver "none"
    log_size_max: int | None = None
    log_tag: str | None = None
    terminal: bool = False
    stdin: bool = False
    leave_stdin_open: bool = False
    exit_command: tuple[str, ...] = ()
    log_level: str = "error"
    syslog: bool = False
    exec_process_spec: str | None = None
    exec_attach: bool = False
    timeout: int | None = None


def log_path_arg(log_path: str | None) -> str:
    return "none:" if log_path is None else f"k8s-file:{log_path}"


def build_conmon_argv(a: ConmonArgs) -> list[str]:
    p = a.paths
    argv = [
        a.conmon_path,
        "--api-version",
        CONMON_API_VERSION,
        "--cid",
        a.container_id,
        "--cuuid",
        a.cuuid,
        "--name",
        a.name or a.container_id,
        "--runtime",
        a.runtime.path,
        "--bundle",
        p.bundle_dir,
        "--container-pidfile",
        p.pidfile,
        "--conmon-pidfile",
        p.conmon_pidfile,
        "--exit-dir",
        p.exit_dir,
        "--persist-dir",
        p.persist_dir,
        "--socket-dir-path",
        p.socket_dir,
        "--log-path",
        log_path_arg(a.log_path),
        "--log-level",
        a.log_level,
    ]
    for arg in a.runtime.global_args:
        argv.append(f"--runtime-arg={arg}")
    if a.log_size_max is not None and a.log_size_max > 0:
        argv += ["--log-size-max", str(a.log_size_max)]
    if a.log_tag:
        argv += ["--log-tag", a.log_tag]
    if a.terminal:
        argv.append("--terminal")
    if a.stdin:
        argv.append("--stdin")
    if a.leave_stdin_open:
        argv.append("--leave-stdin-open")
    if a.syslog:
        argv.append("--syslog")
    if a.timeout is not None and a.timeout > 0:
        argv += ["--timeout", str(a.timeout)]
    if a.exit_command:
        argv += ["--exit-command", a.exit_command[0]]
        for arg in a.exit_command[1:]:
            argv += ["--exit-command-arg", arg]
    if a.exec_process_spec is not None:
        argv += ["--exec", "--exec-process-spec", a.exec_process_spec]
        if a.exec_attach:
            argv.append("--exec-attach")
    return argv


# --- runtime argv ----------------------------------------------------------------------------


def runtime_argv(rt: RuntimeCommand, *args: str) -> list[str]:
    return [rt.path, *rt.global_args, *args]


def start_argv(rt: RuntimeCommand, container_id: str) -> list[str]:
    return runtime_argv(rt, "start", container_id)


def kill_argv(
    rt: RuntimeCommand, container_id: str, signal: int, *, all: bool = False
) -> list[str]:
    return runtime_argv(rt, "kill", *(["--all"] if all else []), container_id, str(signal))


def pause_argv(rt: RuntimeCommand, container_id: str) -> list[str]:
    return runtime_argv(rt, "pause", container_id)


def resume_argv(rt: RuntimeCommand, container_id: str) -> list[str]:
    return runtime_argv(rt, "resume", container_id)


def state_argv(rt: RuntimeCommand, container_id: str) -> list[str]:
    return runtime_argv(rt, "state", container_id)


def delete_argv(rt: RuntimeCommand, container_id: str, *, force: bool = False) -> list[str]:
    return runtime_argv(rt, "delete", *(["--force"] if force else []), container_id)


def ps_argv(rt: RuntimeCommand, container_id: str) -> list[str]:
    return runtime_argv(rt, "ps", "--format", "json", container_id)


def update_argv(rt: RuntimeCommand, container_id: str) -> list[str]:
    """Resources JSON goes to the runtime's stdin."""
    return runtime_argv(rt, "update", "--resources", "-", container_id)


def stats_argv(rt: RuntimeCommand, container_id: str) -> list[str]:
    return runtime_argv(rt, "events", "--stats", container_id)


# --- parsers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncMessage:
    data: int
    message: str | None = None


def parse_sync_messages(raw: bytes) -> list[SyncMessage]:
    """The complete JSON lines conmon wrote to the sync pipe (an incomplete tail is ignored)."""
    out: list[SyncMessage] = []
    lines = raw.split(b"\n")
    for line in lines[:-1]:
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise SystemFailure(f"conmon: unexpected sync message {line!r}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("data"), int):
            raise SystemFailure(f"conmon: unexpected sync message {line!r}")
        message = obj.get("message")
        out.append(SyncMessage(data=obj["data"], message=str(message) if message else None))
    return out


def parse_exit_file(text: str) -> int | None:
    """The exit code in an exit file, or ``None`` while it is empty or half written."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_pid(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid > 0 else None


def parse_state(text: str) -> TaskState:
    """``<runtime> state`` JSON → ``TaskState``."""
    try:
        obj = json.loads(text)
    except ValueError:
        raise SystemFailure(f"runtime state: invalid JSON: {text[:200]!r}") from None
    if not isinstance(obj, dict):
        raise SystemFailure(f"runtime state: unexpected output: {text[:200]!r}")
    try:
        status = TaskStatus(str(obj.get("status", "")))
    except ValueError:
        status = TaskStatus.UNKNOWN
    pid = obj.get("pid")
    return TaskState(status=status, pid=pid if isinstance(pid, int) else 0)


def parse_ps(text: str) -> list[int]:
    """``<runtime> ps --format json`` → pids (``null`` when there are none)."""
    try:
        obj = json.loads(text or "null")
    except ValueError:
        raise SystemFailure(f"runtime ps: invalid JSON: {text[:200]!r}") from None
    if obj is None:
        return []
    if not isinstance(obj, list) or not all(isinstance(p, int) for p in obj):
        raise SystemFailure(f"runtime ps: unexpected output: {text[:200]!r}")
    return list(obj)


def parse_stats(text: str) -> dict[str, object]:
    """``<runtime> events --stats`` prints one event ``{"type": "stats", "data": {...}}``."""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("type") == "stats":
            data = obj.get("data")
            return data if isinstance(data, dict) else {}
    raise SystemFailure(f"runtime events --stats: no stats in output: {text[:200]!r}")


def runtime_error_message(stderr: str) -> str:
    """The runtime's error text: runc/crun ``--log-format json`` lines are reduced to their
    ``msg`` fields (errors preferred); plain text is kept as is."""
    messages: list[str] = []
    errors: list[str] = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "msg" in obj:
            msg = str(obj["msg"])
            messages.append(msg)
            if obj.get("level") in ("error", "fatal"):
                errors.append(msg)
        else:
            messages.append(line)
    return "; ".join(errors or messages)


_NOT_FOUND_MARKERS = ("does not exist", "not found", "no such file")
_CONFLICT_MARKERS = (
    "not running",
    "is not paused",
    "not paused",
    "is paused",
    "already paused",
    "cannot delete",
    "is running",
    "stopped",
)


def runtime_error(command: str, container_id: str, stderr: str) -> WhaledError:
    """A domain error for a failed runtime call, classified from its message."""
    message = runtime_error_message(stderr) or "failed without a message"
    text = f"runtime {command} {container_id}: {message}"
    lowered = message.lower()
    if "container" in lowered and any(m in lowered for m in _NOT_FOUND_MARKERS):
        return NotFound(text)
    if any(m in lowered for m in _CONFLICT_MARKERS):
        return Conflict(text)
    return SystemFailure(text)


def resize_message(width: int, height: int) -> bytes:
    if width < 0 or height < 0:
        raise ValueError("terminal size must not be negative")
    return f"{CTL_RESIZE} {height} {width}\n".encode()


def reopen_log_message() -> bytes:
    return f"{CTL_REOPEN_LOG} 0 0\n".encode()


def is_conmon_cmdline(cmdline: bytes, container_id: str, bundle_dir: str) -> bool:
    """Whether ``/proc/<pid>/cmdline`` is the conmon of this container/session (guards
    against a recycled pid when re-adopting)."""
    args = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    if not args or not os.path.basename(args[0]).startswith("conmon"):
        return False

    def value(flag: str, short: str) -> str | None:
        for i, a in enumerate(args):
            if a in (flag, short) and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
        return None

    return value("--cid", "-c") == container_id and value("--bundle", "-b") == bundle_dir
