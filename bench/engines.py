"""The engines under test: whaled and (with ``--reference``) dockerd, each in its own temp root.

Every engine owns ``/tmp/<prefix>XXXXXXXX/`` with its data-root, exec-root, pidfile, config
file, log and unix socket. Stopping signals only the PID we started (through ``Popen``), then
kills, by pidfd after re-checking the start time, processes started after the engine whose
command line names the temp root (managed containerd, shims, conmon, runtime calls) and their
descendants, unmounts everything under the root (deepest first) and deletes it. Nothing is
ever found or signalled by name.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Protocol

from tests.support.whaled_proc import (
    ProcInfo,
    WhaledProcess,
    all_processes,
    kill_exact,
    mounts_under,
    proc_cmdline,
    proc_info,
    processes_referencing,
    unix_request,
    unmount_all_under,
)

DOCKERD = "/usr/sbin/dockerd"
MONITOR_NAMES = frozenset({"conmon", "containerd-shim-runc-v2", "containerd-shim", "shim"})
CGROUP_ROOT = "/sys/fs/cgroup"


class EngineError(RuntimeError):
    pass


# --- /proc ------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 when gone or a kernel thread)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pids: Iterable[int]) -> float:
    return sum(rss_kib(p) for p in pids) / 1024.0


def descendants(root_pids: Iterable[int], procs: dict[int, ProcInfo]) -> set[int]:
    """``root_pids`` and all their descendants (present in ``procs``)."""
    out = {p for p in root_pids if p in procs}
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    stack = list(out)
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in out:
                out.add(c)
                stack.append(c)
    return out


def exe_name(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        argv = proc_cmdline(pid)
        return os.path.basename(argv[0]) if argv else ""


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def wait_ping(sock: str, deadline: float, alive: Any = None) -> bool:
    """Poll ``GET /_ping`` every 5 ms until 200 or ``deadline`` (monotonic); ``alive()`` false
    stops early."""
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            status, _, _ = unix_request(sock, "GET", "/_ping", timeout=2.0)
            if status == 200:
                return True
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.005)
    return False


# --- engines ----------------------------------------------------------------------------------


class Engine(ABC):
    name: str
    root: str
    sock: str

    @property
    @abstractmethod
    def pid(self) -> int | None: ...

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def cleanup(self) -> None: ...

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def log_tail(self, lines: int = 40) -> str: ...

    def timed_start(self, timeout: float = 60.0) -> float:
        """Start and return the seconds until the first successful ``/_ping``."""
        t0 = time.perf_counter()
        self.start()
        if not wait_ping(self.sock, time.monotonic() + timeout, self.alive):
            last = (self.log_tail(1).splitlines() or [""])[-1].strip()
            what = (
                "exited before answering"
                if not self.alive()
                else f"did not answer in {timeout:g} s"
            )
            raise EngineError(
                f"{self.name} {what} /_ping (last log line: {last[:200]!r})\n{self.log_tail()}"
            )
        return time.perf_counter() - t0

    def version(self) -> dict[str, Any]:
        status, _, body = unix_request(self.sock, "GET", "/version", timeout=10)
        if status != 200:
            return {"error": f"/version: {status}"}
        data: dict[str, Any] = json.loads(body)
        return data

    # -- process sets for memory figures --

    def monitors(self, procs: dict[int, ProcInfo] | None = None) -> set[int]:
        """Per-container monitor processes (conmon, containerd-shim) of this engine."""
        procs = procs if procs is not None else all_processes()
        ours = {p.pid for p in processes_referencing(self.root)}
        if self.pid is not None:
            ours |= descendants([self.pid], procs)
        return {p for p in ours if exe_name(p) in MONITOR_NAMES}

    def daemon_pids(self, procs: dict[int, ProcInfo] | None = None) -> set[int]:
        """The daemon and its descendants (dockerd: + managed containerd), without monitors
        and what runs below them (the containers)."""
        procs = procs if procs is not None else all_processes()
        if self.pid is None:
            return set()
        mons = self.monitors(procs)
        return descendants([self.pid], procs) - descendants(mons, procs)

    def daemon_rss_mib(self) -> float:
        return rss_mib(self.daemon_pids())

    def monitor_rss_mib(self) -> tuple[float, int]:
        mons = self.monitors()
        return rss_mib(mons), len(mons)


class EngineFactory(Protocol):
    """Makes an engine (not started). ``default_bridge=False``: none, as the reference
    dockerd always runs here (``--bridge=none``), for figures that compare like with like."""

    def __call__(self, *, default_bridge: bool = True) -> Engine: ...


class WhaledEngine(Engine):
    """whaled through the test suite's ``WhaledProcess`` (temp root ``/tmp/wd-*``), with a
    default bridge of its own unless ``default_bridge`` is False."""

    name = "whaled"

    def __init__(self, *, default_bridge: bool = True) -> None:
        self.proc = WhaledProcess(config={} if default_bridge else {"bridge": "none"})
        self.root = self.proc.root
        self.sock = self.proc.sock

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc.running else None

    def start(self) -> None:
        self.proc.start()

    def alive(self) -> bool:
        return self.proc.running

    def stop(self) -> None:
        self.proc.stop(timeout=30)
        self.proc.kill_strays()

    def cleanup(self) -> None:
        self.proc.cleanup(stop_timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        return self.proc.log_tail(lines)


def _cgroup_hierarchies() -> list[str]:
    """Mount points of the cgroup hierarchies (v1 controllers and the v2 one)."""
    out: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] in ("cgroup", "cgroup2"):
                out.append(fields[1])
    return out


class DockerdEngine(Engine):
    """Debian's dockerd (20.10) with its own managed containerd, all under ``/tmp/wbd-*``."""

    name = "dockerd"

    def __init__(self, dockerd: str = DOCKERD) -> None:
        self.dockerd = dockerd
        self.root = tempfile.mkdtemp(prefix="wbd-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.data_root = os.path.join(self.root, "data")
        self.exec_root = os.path.join(self.root, "exec")
        self.sock = os.path.join(self.root, "docker.sock")
        self.pidfile = os.path.join(self.root, "docker.pid")
        self.config_path = os.path.join(self.root, "daemon.json")
        self.log_path = os.path.join(self.root, "dockerd.log")
        # Containers go to a cgroup parent of our own, removed at cleanup (not /docker).
        self.cgroup_parent = "/" + os.path.basename(self.root)
        os.mkdir(self.data_root, 0o755)
        os.mkdir(self.exec_root, 0o711)
        # 20.10 writes its libtrust key to /etc/docker/key.json unless told otherwise (a
        # daemon.json key only, no flag).
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump({"deprecated-key-path": os.path.join(self.root, "key.json")}, f)
        self._proc: subprocess.Popen[bytes] | None = None
        self._first_ticks: int | None = None
        self._cleaned = False

    def argv(self) -> list[str]:
        return [
            self.dockerd,
            "--data-root", self.data_root,
            "--exec-root", self.exec_root,
            "--pidfile", self.pidfile,
            "--config-file", self.config_path,
            "-H", f"unix://{self.sock}",
            "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--cgroup-parent", self.cgroup_parent,
        ]  # fmt: skip

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self._cleaned:
            raise EngineError("dockerd engine already cleaned up")
        if self.alive():
            raise EngineError("dockerd already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        if self._first_ticks is None:
            info = proc_info(self._proc.pid)
            self._first_ticks = info.starttime if info is not None else 0

    def timed_start(self, timeout: float = 60.0) -> float:
        took = super().timed_start(timeout)
        self.check_containerd()
        return took

    def check_containerd(self) -> None:
        """Refuse to go on unless the managed containerd lives under our temp root."""
        procs = all_processes()
        assert self._proc is not None
        kids = descendants([self._proc.pid], procs) - {self._proc.pid}
        ctrd = [p for p in kids if exe_name(p) == "containerd"]
        if not ctrd:
            return  # not started yet / embedded: nothing outside our root
        for p in ctrd:
            argv = " ".join(proc_cmdline(p))
            if self.root + "/" not in argv:
                self.stop()
                raise EngineError(f"managed containerd runs outside {self.root}: {argv}")

    def containerd_argv(self) -> list[str]:
        if self._proc is None:
            return []
        procs = all_processes()
        for p in descendants([self._proc.pid], procs):
            if exe_name(p) == "containerd":
                return proc_cmdline(p)
        return []

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        self.kill_strays()

    def stray_processes(self) -> list[ProcInfo]:
        if self._first_ticks is None:
            return []
        return processes_referencing(self.root, self._first_ticks)

    def kill_strays(self, timeout: float = 15.0) -> list[ProcInfo]:
        strays = self.stray_processes()
        for p in strays:
            kill_exact(p, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [
                p
                for p in strays
                if (now := proc_info(p.pid)) is not None
                and now.starttime == p.starttime
                and not _is_zombie(p.pid)
            ]
            if not alive:
                break
            time.sleep(0.05)
        return strays

    def remove_cgroups(self) -> None:
        """rmdir our cgroup parent in every hierarchy (children first; only empty ones)."""
        for h in _cgroup_hierarchies():
            top = os.path.join(h, self.cgroup_parent.lstrip("/"))
            if not os.path.isdir(top):
                continue
            for dirpath, _, _ in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)

    def cleanup(self) -> None:
        if self._cleaned:
            return
        try:
            self.stop()
        finally:
            self.kill_strays()
        left = unmount_all_under(self.root)
        self.remove_cgroups()
        if left:
            raise EngineError(f"could not unmount under {self.root}: {left}")
        shutil.rmtree(self.root, ignore_errors=False)
        self._cleaned = True

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read().splitlines()[-lines:]
        except OSError:
            return ""
        return f"--- {self.log_path} ---\n" + "\n".join(tail)


# Made by dockerd 20.10 / containerd 1.6 whatever --exec-root says: the plugin discovery dir
# and the shim socket dir (the sockets in it go with their containers). Deepest first.
HOST_DIRS = ("/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd")


class HostDirs:
    """Remembers which of ``HOST_DIRS`` were absent before the bench, and removes those again
    afterwards — only when empty (``rmdir``), so nothing of anyone else's can go."""

    def __init__(self) -> None:
        self.absent = [d for d in HOST_DIRS if not os.path.lexists(d)]

    def restore(self) -> list[str]:
        left: list[str] = []
        for d in self.absent:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                left.append(f"{d} ({e.strerror})")
        return left


def leftovers(roots: Iterable[str]) -> list[str]:
    """What is still there of our temp roots: mounts and processes (for the final check)."""
    out: list[str] = []
    for r in roots:
        out.extend(f"mount {m}" for m in mounts_under(r))
        out.extend(
            f"process {p.pid} {' '.join(proc_cmdline(p.pid))[:120]}"
            for p in processes_referencing(r)
        )
    return out
