"""Start, drive and clean up a real whaled for integration tests.

A ``WhaledProcess`` owns one temp root ``/tmp/wd-XXXXXXXX/`` (short: unix socket paths must
stay under 108 bytes) holding ``data/``, ``exec/``, ``whaled.sock``, ``whaled.pid``,
``daemon.json`` and ``whaled.log``, and runs ``python -m whaled`` with flags pointing there.

Safety: it signals only the daemon it started (through its ``Popen``, which never signals a
reaped PID) and, at cleanup, processes that the daemon left behind. Those are found, never by
name, as processes started after the daemon whose command line names the temp root (conmon,
runtime calls), plus their descendants (container processes), and are killed through a pidfd
taken after re-checking the process start time, so a recycled PID is never hit. Mounts are
undone (deepest first) before anything is deleted, and the tree is deleted only when no mount
under it is left, so a bind mount can never lead ``rmtree`` into a host directory.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import secrets
import signal as signal_mod
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import docker

from whaled.osutil.tree import remove_tree

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API_VERSION = "1.45"
UNIX_PATH_MAX = 108
JsonBody = Mapping[str, Any] | Sequence[Any]


class WhaledStartError(RuntimeError):
    """whaled exited or did not answer ``/_ping`` in time; the message ends with its log."""


class CleanupError(RuntimeError):
    """Something under the temp root could not be undone (the tree was left in place)."""


# --- HTTP over a unix socket ------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client.HTTPConnection`` that connects to an AF_UNIX socket."""

    def __init__(self, socket_path: str, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def unix_request(
    socket_path: str,
    method: str,
    path: str,
    body: bytes | str | JsonBody | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One HTTP/1.1 request; returns (status, headers, whole body). JSON-encodes dict/list."""
    hdrs = dict(headers or {})
    data: bytes | None
    if body is None:
        data = None
    elif isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k in hdrs):
            hdrs["Content-Type"] = "application/json"
    conn = UnixHTTPConnection(socket_path, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


# --- /proc helpers ----------------------------------------------------------------------------


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


def mounts_under(root: str) -> list[str]:
    """Mount points (in mount order, stacked mounts repeated) at or below ``root``."""
    root = os.path.realpath(root)
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 4:
                point = _unescape_mountinfo(fields[4])
                if _under(point, root):
                    points.append(point)
    return points


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcInfo:
    pid: int
    ppid: int
    starttime: int  # clock ticks after boot (/proc/PID/stat field 22)


def proc_info(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ..." — comm may hold spaces and parentheses.
    rest = stat[stat.rindex(")") + 2 :].split()
    return ProcInfo(pid=pid, ppid=int(rest[1]), starttime=int(rest[19]))


def all_processes() -> dict[int, ProcInfo]:
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = proc_info(int(name))
            if info is not None:
                procs[info.pid] = info
    return procs


def _proc_strings(pid: int, name: str) -> list[str]:
    """A NUL-separated file of ``/proc/<pid>`` (cmdline, environ); [] when unreadable."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="surrogateescape") for a in raw.split(b"\0") if a]


def proc_cmdline(pid: int) -> list[str]:
    return _proc_strings(pid, "cmdline")


def _ancestors(pid: int, procs: Mapping[int, ProcInfo]) -> set[int]:
    seen: set[int] = set()
    while pid in procs and pid not in seen and pid > 1:
        seen.add(pid)
        pid = procs[pid].ppid
    return seen


def proc_environ(pid: int) -> list[str]:
    return _proc_strings(pid, "environ")


def processes_referencing(
    root: str, started_at_or_after: int = 0, *, environ: bool = False
) -> list[ProcInfo]:
    """Processes whose command line names ``root`` (or a path below it), plus descendants.
    With ``environ``, also those whose environment does: the ``runc init`` of a container
    that was created but never started names its state directory only there, and is
    re-parented to init once its monitor is gone.

    Only processes started at or after ``started_at_or_after`` (boot clock ticks) count, and
    the caller and its ancestors never do.
    """
    root = root.rstrip("/")
    procs = all_processes()
    exclude = _ancestors(os.getpid(), procs)
    hits: set[int] = set()

    def names_root(args: list[str]) -> bool:
        return any(root + "/" in arg or arg.endswith(root) for arg in args)

    for p in procs.values():
        if p.pid in exclude or p.starttime < started_at_or_after:
            continue
        if names_root(proc_cmdline(p.pid)) or (environ and names_root(proc_environ(p.pid))):
            hits.add(p.pid)
    # Add descendants (container processes are children of their monitor).
    changed = True
    while changed:
        changed = False
        for p in procs.values():
            if p.pid not in hits and p.ppid in hits and p.pid not in exclude:
                hits.add(p.pid)
                changed = True
    return sorted((procs[pid] for pid in hits), key=lambda p: p.pid)


def kill_exact(info: ProcInfo, sig: int = signal_mod.SIGKILL) -> bool:
    """Signal the process ``info`` describes, unless its PID now names another process."""
    try:
        fd = os.pidfd_open(info.pid)
    except OSError:
        return False
    try:
        now = proc_info(info.pid)
        if now is None or now.starttime != info.starttime:
            return False
        signal_mod.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def unmount_all_under(root: str, attempts: int = 10) -> list[str]:
    """Unmount every mount at or below ``root``, deepest first; return what is left."""
    for _ in range(attempts):
        points = mounts_under(root)
        if not points:
            return []
        # Deepest first; for one mount point, the most recent (top of the stack) first.
        order = sorted(enumerate(points), key=lambda ip: (ip[1].count("/"), ip[0]), reverse=True)
        for _, point in order:
            done = subprocess.run(["umount", point], capture_output=True, timeout=30)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
    return mounts_under(root)


# --- the daemon -------------------------------------------------------------------------------


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


#: What test daemons reach for docker.io names: a loopback port nothing listens on.
HUB_STANDIN = "http://127.0.0.1:9"


def remove_nat_table(exec_root: str) -> None:
    """Delete the daemon's own nftables table (its outbound NAT), if it made one."""
    from whaled.network import nat

    if nat.available():
        with contextlib.suppress(Exception):
            nat.remove(nat.table_name(exec_root))


def remove_link(name: str) -> None:
    """Delete network device ``name`` (a test daemon's bridge) if it exists."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            with contextlib.suppress(Exception):
                ipr.link("del", index=index)


class WhaledProcess:
    """One real whaled on its own socket, data-root and exec-root under a fresh temp root."""

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        *,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = tempfile.mkdtemp(prefix="wd-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.data_root = os.path.join(self.root, "data")
        self.exec_root = os.path.join(self.root, "exec")
        self.sock = os.path.join(self.root, "whaled.sock")
        self.pidfile = os.path.join(self.root, "whaled.pid")
        self.config_path = os.path.join(self.root, "daemon.json")
        self.log_path = os.path.join(self.root, "whaled.log")
        # Containers' cgroups go below a parent of this daemon's own (not the shared
        # default /whaled), removed at cleanup.
        self.cgroup_parent = "/whaled-test-" + os.path.basename(self.root)
        if len(self.sock.encode()) >= UNIX_PATH_MAX:
            raise ValueError(f"socket path too long for AF_UNIX: {self.sock}")
        os.mkdir(self.data_root, 0o755)
        os.mkdir(self.exec_root, 0o755)
        # The default bridge network of a test daemon: a device and a subnet of its own
        # (never the host-wide default whaled0), removed at cleanup.
        self.bridge_name = "wt" + secrets.token_hex(5)
        self.bridge_bip = f"10.{random.randint(216, 223)}.{random.randint(0, 255)}.1/24"
        self.write_config(config or {})
        self.extra_args: list[str] = list(extra_args)
        self.python = python
        self.env = dict(env) if env is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self._first_start_ticks: int | None = None
        self._clients: list[Any] = []
        self._cleaned = False

    # -- properties --

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def argv(self) -> list[str]:
        return [
            self.python, "-m", "whaled",
            "-H", self.url,
            "--data-root", self.data_root,
            "--exec-root", self.exec_root,
            "--pidfile", self.pidfile,
            "--config-file", self.config_path,
            "--cgroup-parent", self.cgroup_parent,
            *self.extra_args,
        ]  # fmt: skip

    # -- lifecycle --

    def start(self) -> None:
        """Launch the daemon (without waiting); see ``wait_ready``."""
        if self._cleaned:
            raise RuntimeError("WhaledProcess already cleaned up")
        if self.running:
            raise RuntimeError(f"whaled already running (pid {self.pid})")
        env = dict(os.environ if self.env is None else self.env)
        for key in [k for k in env if k.startswith("DOCKER_")]:
            del env[key]
        env["PYTHONUNBUFFERED"] = "1"
        # Docker Hub is a closed loopback port for test daemons: a test that names a
        # docker.io image by mistake gets "connection refused", never a lookup or a pull
        # from the internet.
        env.setdefault("_WHALED_HUB_ENDPOINT", HUB_STANDIN)
        self._starts += 1
        with open(self.log_path, "ab") as log:
            if self._starts > 1:
                log.write(f"--- whaled_proc: start #{self._starts} ---\n".encode())
                log.flush()
            self._proc = subprocess.Popen(
                self.argv(),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        if self._first_start_ticks is None:
            info = proc_info(self._proc.pid)
            self._first_start_ticks = info.starttime if info is not None else 0

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Poll ``GET /_ping`` until it answers 200 "OK", then wait until the API itself
        answers (``GET /version``: the first pings are answered while the daemon still
        starts, ``whaled.api.early``); raise ``WhaledStartError`` if not."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            if self._proc is None:
                raise WhaledStartError("whaled was not started")
            code = self._proc.poll()
            if code is not None:
                raise WhaledStartError(
                    f"whaled exited with code {code} before it was ready\n{self.log_tail()}"
                )
            try:
                status, _, body = self.request("GET", "/_ping", timeout=2.0)
                if status == 200 and body == b"OK":
                    left = max(deadline - time.monotonic(), 1.0)
                    status, _, body = self.request("GET", "/version", timeout=left)
                    if status == 200:
                        return
                last = f"status {status}, body {body[:200]!r}"
            except (OSError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() >= deadline:
                raise WhaledStartError(
                    f"whaled (pid {self.pid}) not ready after {timeout}s ({last})\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the daemon; no-op when it has already exited."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def reload(self) -> None:
        self.signal(signal_mod.SIGHUP)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; return the exit code (None if never
        started). A negative code is the signal that ended it."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal_mod.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        return proc.returncode

    def kill9(self) -> int | None:
        """SIGKILL the daemon (simulated crash); return its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        return proc.returncode

    def restart(
        self,
        extra_args: Sequence[str] | None = None,
        *,
        wait: bool = True,
        timeout: float = 20.0,
    ) -> None:
        """Stop (if running) and start again on the same roots; ``extra_args`` replaces the
        previous extra arguments when given."""
        self.stop()
        if extra_args is not None:
            self.extra_args = list(extra_args)
        self.start()
        if wait:
            self.wait_ready(timeout)

    def write_config(self, config: Mapping[str, Any] | str) -> None:
        """(Re)write daemon.json atomically; a ``str`` is written as is (e.g. invalid JSON)."""
        if not isinstance(config, str) and "bridge" not in config:
            config = {**config, "bridge": self.bridge_name}
            if "bip" not in config:
                config["bip"] = self.bridge_bip
        text = config if isinstance(config, str) else json.dumps(config, indent=2)
        _atomic_write(self.config_path, text.encode())

    # -- clients --

    def client(self, timeout: int = 60) -> Any:
        """A ``docker.DockerClient`` on this daemon (closed at cleanup)."""
        c = docker.DockerClient(base_url=self.url, version=API_VERSION, timeout=timeout)
        self._clients.append(c)
        return c

    def api(self, timeout: int = 60) -> Any:
        """A low-level ``docker.APIClient`` on this daemon (closed at cleanup)."""
        c = docker.APIClient(base_url=self.url, version=API_VERSION, timeout=timeout)
        self._clients.append(c)
        return c

    def connection(self, timeout: float = 60.0) -> UnixHTTPConnection:
        """A raw HTTP connection (e.g. for upgrade/hijack tests); the caller closes it."""
        return UnixHTTPConnection(self.sock, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | JsonBody | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Raw HTTP/1.1 request: (status, headers, body bytes)."""
        return unix_request(self.sock, method, path, body, headers, timeout)

    def import_image(self, tar_path: str, ref: str) -> str:
        """Import a rootfs tar as image ``ref`` the way ``docker import`` does
        (``POST /images/create?fromSrc=-``); return the last status (the image ID)."""
        name, sep, tag = ref.rpartition(":")
        if not sep or "/" in tag:
            name, tag = ref, "latest"
        with open(tar_path, "rb") as f:
            data = f.read()
        query = urllib.parse.urlencode({"fromSrc": "-", "repo": name, "tag": tag})
        status, _, out = self.request(
            "POST",
            f"/v{API_VERSION}/images/create?{query}",
            data,
            {"Content-Type": "application/x-tar"},
            timeout=120,
        )
        if status != 200:
            raise RuntimeError(f"importing {ref} failed: {status} {out[:500]!r}")
        last = ""
        for line in out.splitlines():
            if line.strip():
                msg = json.loads(line)
                if "error" in msg or "errorDetail" in msg:
                    raise RuntimeError(f"importing {ref} failed: {msg}")
                last = str(msg.get("status", last))
        return last

    # -- logs --

    def log_text(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- {self.log_path} (last {len(tail)} lines) ---\n" + "\n".join(tail)

    # -- teardown --

    def stray_processes(self) -> list[ProcInfo]:
        """Processes left behind by this daemon (see the module docstring)."""
        if self._first_start_ticks is None:
            return []
        return processes_referencing(self.root, self._first_start_ticks, environ=True)

    def kill_strays(self, timeout: float = 10.0) -> list[ProcInfo]:
        """SIGKILL the stray processes (by pidfd) and wait until they are gone."""
        strays = self.stray_processes()
        for info in strays:
            kill_exact(info)
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

    def cleanup(self, stop_timeout: float = 20.0) -> None:
        """Stop the daemon, kill its leftovers, unmount everything under the temp root
        (deepest first) and delete the root. Idempotent. Raises ``CleanupError`` (leaving
        the tree in place) if a mount cannot be removed."""
        if self._cleaned:
            return
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()
        self._clients.clear()
        try:
            self.stop(stop_timeout)
        finally:
            # Even if stopping failed: leftovers go, mounts go, before anything is deleted.
            self.kill_strays()
        left = unmount_all_under(self.root)
        if left:
            raise CleanupError(f"could not unmount under {self.root}: {left}")
        remove_cgroups(self.cgroup_parent)
        remove_link(self.bridge_name)
        remove_nat_table(self.exec_root)
        remove_tree(self.root)  # iterative: a container may have left a very deep tree
        self._cleaned = True

    def __enter__(self) -> WhaledProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<WhaledProcess pid={self.pid} root={self.root}>"


def remove_cgroups(parent: str, cgroup_root: str = "/sys/fs/cgroup") -> None:
    """Remove the (empty) cgroup directories of ``parent`` in every hierarchy, deepest
    first; a cgroup that still has processes stays (rmdir refuses it)."""
    if not parent.strip("/") or not os.path.isdir(cgroup_root):
        return
    tops = [os.path.join(cgroup_root, parent.strip("/"))]
    for hierarchy in os.listdir(cgroup_root):
        tops.append(os.path.join(cgroup_root, hierarchy, parent.strip("/")))
    for top in tops:
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda e: -e[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].startswith("Z")
