"""Exec sessions: create, start (attached or detached), inspect, resize.

Sessions live in memory, like dockerd's: they belong to one run of a container and are
dropped when that run ends (``ExecIDs`` in inspect is then empty again). The process spec
of a session is the container's own ``process`` (capabilities, rlimits, no-new-privileges,
seccomp stay those of the container) with the exec's command, environment, working dir,
user and terminal; ``Privileged`` grants every capability.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from whaled.container.events import ContainerEvents
from whaled.container.model import Container
from whaled.container.state import Status
from whaled.container.store import ContainerStore
from whaled.daemon.bundle import read_in_root
from whaled.daemon.pump import Attacher, ClientIO, Detacher, PumpEnd
from whaled.daemon.runs import Runs
from whaled.daemon.tasks import BackgroundTasks
from whaled.errors import Conflict, InvalidParameter, NotFound, WhaledError
from whaled.runtime.backend.api import AttachStream, Process
from whaled.runtime.command import process_env
from whaled.runtime.defaults import effective_capabilities
from whaled.runtime.usermap import resolve_user

log = logging.getLogger("whaled.exec")


class NoSuchExec(NotFound):
    def __init__(self, exec_id: str) -> None:
        super().__init__(f"No such exec instance: {exec_id}")


@dataclass(slots=True, kw_only=True)
class ExecSession:
    id: str
    container_id: str
    cmd: list[str]
    tty: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    env: list[str]
    user: str
    working_dir: str
    privileged: bool
    detach_keys: str
    console_size: tuple[int, int] | None = None
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    process: Process | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


ConnectFn = Callable[[AttachStream], Awaitable[None]]


class ExecService:
    def __init__(
        self,
        *,
        store: ContainerStore,
        runs: Runs,
        events: ContainerEvents,
        tasks: BackgroundTasks,
        capability_bounding: frozenset[str] | None,
    ) -> None:
        self.store = store
        self.runs = runs
        self.events = events
        self.tasks = tasks
        self.capability_bounding = capability_bounding
        self._sessions: dict[str, ExecSession] = {}

    def ids_for(self, container_id: str) -> list[str]:
        """Sessions of the container that run or have not started (dockerd drops an exec
        from ExecIDs when it exits; it can still be inspected by ID)."""
        return [
            s.id
            for s in self._sessions.values()
            if s.container_id == container_id and (s.running or not s.started)
        ]

    def all_for(self, container_id: str) -> list[str]:
        return [s.id for s in self._sessions.values() if s.container_id == container_id]

    def drop_for(self, container_id: str) -> None:
        for exec_id in self.all_for(container_id):
            session = self._sessions[exec_id]
            if not session.running:
                del self._sessions[exec_id]

    def get(self, exec_id: str) -> ExecSession:
        session = self._sessions.get(exec_id)
        if session is None:
            raise NoSuchExec(exec_id)
        return session

    def create(self, name_or_id: str, body: Mapping[str, Any]) -> ExecSession:
        c = self.store.get(name_or_id)
        self._check_running(c)
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise InvalidParameter("No exec command specified")
        env = body.get("Env") or []
        if not isinstance(env, list):
            raise InvalidParameter("invalid Env: expected a list of KEY=value strings")
        size = body.get("ConsoleSize")
        session = ExecSession(
            id=secrets.token_hex(32),
            container_id=c.id,
            cmd=list(cmd),
            tty=bool(body.get("Tty")),
            attach_stdin=bool(body.get("AttachStdin")),
            attach_stdout=bool(body.get("AttachStdout")),
            attach_stderr=bool(body.get("AttachStderr")),
            env=[str(e) for e in env],
            user=str(body.get("User") or ""),
            working_dir=str(body.get("WorkingDir") or ""),
            privileged=bool(body.get("Privileged")),
            detach_keys=str(body.get("DetachKeys") or ""),
            console_size=(int(size[0]), int(size[1])) if size else None,
        )
        if session.working_dir and not session.working_dir.startswith("/"):
            raise InvalidParameter(
                f"the working directory '{session.working_dir}' is invalid, it needs to be an "
                "absolute path"
            )
        self._sessions[session.id] = session
        self.events.emit(c, "exec_create: " + " ".join(session.cmd), {"execID": session.id})
        return session

    def _check_running(self, c: Container) -> None:
        if c.state.status == Status.PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.state.status == Status.RESTARTING:
            raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
        if c.state.status != Status.RUNNING:
            raise Conflict(f"Container {c.id} is not running")

    def process_spec(self, c: Container, session: ExecSession) -> dict[str, Any]:
        run = self.runs.run_of(c.id)
        if run is None:
            raise Conflict(f"Container {c.id} is not running")
        bundle = run.runtime.options.bundle_dir
        with open(os.path.join(bundle, "config.json"), encoding="utf-8") as f:
            spec = json.load(f)
        process: dict[str, Any] = dict(spec["process"])
        root = spec["root"]["path"]
        base_env = list(c.config.get("Env") or [])
        hostname = str(c.config.get("Hostname") or c.id[:12])
        process["env"] = list(
            process_env(tuple(base_env + session.env), hostname=hostname, tty=session.tty)
        )
        process["args"] = list(session.cmd)
        process["terminal"] = session.tty
        if session.working_dir:
            process["cwd"] = session.working_dir
        if session.user:
            user = resolve_user(
                session.user,
                passwd=read_in_root(root, "/etc/passwd"),
                group=read_in_root(root, "/etc/group"),
            )
            process["user"] = {
                "uid": user.uid,
                "gid": user.gid,
                **({"additionalGids": list(user.additional_gids)} if user.additional_gids else {}),
            }
        if session.privileged:
            caps = list(effective_capabilities(privileged=True))
            bounding = self.capability_bounding
            if bounding is not None:
                caps = [cap for cap in caps if cap in bounding]
            process["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
        if session.console_size and session.tty:
            process["consoleSize"] = {
                "height": session.console_size[0],
                "width": session.console_size[1],
            }
        return process

    async def start(self, exec_id: str, *, connect: ConnectFn | None) -> ExecSession:
        """Start the session; ``connect`` (attached) is given the process's attach stream
        before the process runs (and owns it). Returns once the process started."""
        session = self.get(exec_id)
        if session.running:
            raise Conflict(f"Error: Exec command {exec_id} is already running")
        if session.started:
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        c = self.store.get(session.container_id)
        self._check_running(c)
        task = self.runs.running_task(c)
        spec = await asyncio.to_thread(self.process_spec, c, session)
        session.started = True
        try:
            process = await task.exec(
                exec_id,
                spec,
                tty=session.tty,
                stdin=session.attach_stdin,
                attach_ready=connect,
            )
        except WhaledError:
            session.exit_code = 126
            session.done.set()
            raise
        session.process = process
        session.pid = process.pid
        session.running = True
        self.events.emit(c, "exec_start: " + " ".join(session.cmd), {"execID": exec_id})
        self.tasks.spawn(f"exec-{exec_id[:12]}", self._watch(c, session, process))
        if session.console_size and session.tty:
            with contextlib.suppress(WhaledError, OSError):
                await process.resize(session.console_size[1], session.console_size[0])
        return session

    async def start_attached(
        self, exec_id: str, client: ClientIO, *, detacher: Detacher | None
    ) -> PumpEnd:
        """Start the session with ``client`` attached to its stdio; returns how the pump
        ended (errors of the start itself propagate)."""
        session = self.get(exec_id)
        attacher = Attacher(
            self.tasks.spawn,
            f"exec-io-{exec_id[:12]}",
            client,
            stdout=session.attach_stdout or not session.attach_stdin,
            stderr=session.attach_stderr or not session.attach_stdin,
            detacher=detacher,
        )
        await self.start(exec_id, connect=attacher)
        return await attacher.ended

    async def _watch(self, c: Container, session: ExecSession, process: Process) -> None:
        try:
            status = await process.wait()
            session.exit_code = status.exit_code
        except WhaledError as e:
            log.warning("exec %s: %s", session.id[:12], e)
            session.exit_code = 126
        session.running = False
        session.done.set()
        with contextlib.suppress(WhaledError, OSError):
            await process.release()
        self.events.emit(c, "exec_die", {"execID": session.id, "exitCode": str(session.exit_code)})

    async def detached(self, exec_id: str) -> None:
        """The client detached from the session's stream with the detach keys.

        dockerd then closes the session's stdin (the monitor already did: the client's
        connection to it is gone). With a TTY, containerd answers the end of stdin by
        closing the terminal, a hangup: the kernel sends the session leader SIGHUP and
        SIGCONT. conmon keeps the terminal open, so the same signals are sent here."""
        session = self.get(exec_id)
        process = session.process
        if not session.tty or process is None or not session.running:
            return
        for sig in (signal.SIGHUP, signal.SIGCONT):
            with contextlib.suppress(WhaledError, OSError):
                await process.kill(sig)

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        session = self.get(exec_id)
        if session.process is None or not session.running:
            raise Conflict(f"Exec {exec_id} is not running")
        await session.process.resize(width, height)

    def inspect(self, exec_id: str) -> dict[str, Any]:
        s = self.get(exec_id)
        return {
            "ID": s.id,
            "Running": s.running,
            "ExitCode": s.exit_code,
            "ProcessConfig": {
                "tty": s.tty,
                "entrypoint": s.cmd[0],
                "arguments": s.cmd[1:],
                "privileged": s.privileged,
                "user": s.user,
            },
            "OpenStdin": s.attach_stdin,
            "OpenStderr": s.attach_stderr,
            "OpenStdout": s.attach_stdout,
            "CanRemove": False,
            "ContainerID": s.container_id,
            "DetachKeys": s.detach_keys,
            "Pid": s.pid,
        }
