"""Floors: what the same work costs with no engine at all.

- the OCI runtime alone: ``runc run`` / ``create`` / ``start`` / ``kill`` / ``delete`` /
  ``exec`` of a bundle made from the busybox rootfs, with its own ``--root`` state dir and a
  unique container id per run. Two kinds of bundle: the *same* bundle whaled hands to runc
  (its ``config.json``, captured at bench time from a private whaled and rewritten by
  ``floor_spec``: seccomp, namespaces including network, masked/readonly paths, devices and
  resources as generated), and a *minimal* one (``runc spec``'s default: no seccomp, no
  network namespace);
- ``tar -x`` of the image's layer tars;
- writing/reading the log payload with plain shell tools;
- the network: two raw network namespaces on a bridge of the bench's own (``NetnsFloor``),
  busybox ``nc`` / ``dd`` in them through ``ip netns exec``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.engines import wait_ping

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNC = "/usr/sbin/runc"
BUSYBOX = "/bin/busybox"
STOPPABLE_CMD = ("sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait")


class FloorError(RuntimeError):
    pass


def _run(argv: Sequence[str], timeout: float = 60.0) -> None:
    # stderr to a file, not a pipe: a detached container inherits runc's stdio and would keep
    # a pipe open (and us waiting) for as long as it runs.
    with tempfile.TemporaryFile() as err:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=timeout,
        )
        if done.returncode != 0:
            err.seek(0)
            text = err.read().decode(errors="replace").strip()
            raise FloorError(f"{' '.join(argv)}: exit {done.returncode}: {text[-500:]}")


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


@dataclass(frozen=True, slots=True)
class BindFile:
    """A file a captured spec bind-mounts from under whaled's temp root (copied, since that
    root is deleted right after the capture)."""

    index: int  # in spec["mounts"]
    data: bytes
    mode: int


@dataclass(frozen=True, slots=True)
class WhaledSpec:
    """The ``config.json`` whaled generated for a container, as captured."""

    spec: dict[str, Any]
    root: str  # the whaled temp root it was captured under (gone by now)
    files: tuple[BindFile, ...]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def capture_bind_files(spec: Mapping[str, Any], root: str) -> tuple[BindFile, ...]:
    """Read every bind-mount source of ``spec`` that lies under ``root`` (whaled's hosts,
    hostname, resolv.conf). Only regular files can be carried over."""
    out: list[BindFile] = []
    for i, m in enumerate(spec.get("mounts") or []):
        src = str(m.get("source", ""))
        if not _under(src, root):
            continue
        if not os.path.isfile(src):
            raise FloorError(f"captured spec bind-mounts {src!r}, not a regular file")
        with open(src, "rb") as f:
            data = f.read()
        out.append(BindFile(index=i, data=data, mode=os.stat(src).st_mode & 0o7777))
    return tuple(out)


def floor_spec(captured: WhaledSpec, bundle_dir: str, rootfs: str) -> dict[str, Any]:
    """whaled's spec made runnable as a floor bundle in ``bundle_dir``: root.path = our own
    ``rootfs``, no linux.cgroupsPath (runc's default cgroup for the container id), and the
    bind-mounted files under whaled's root copied into ``bundle_dir/mounts/`` with the mounts
    pointing there. Everything else (process, seccomp, namespaces including network,
    masked/readonly paths, devices, resources, other mounts) stays as captured; args and
    terminal are set per run by ``RuncBundle.write_spec``."""
    spec: dict[str, Any] = json.loads(json.dumps(captured.spec))
    spec["root"]["path"] = rootfs
    spec.get("linux", {}).pop("cgroupsPath", None)
    mounts_dir = os.path.join(bundle_dir, "mounts")
    os.makedirs(mounts_dir, exist_ok=True)
    for bf in captured.files:
        m = spec["mounts"][bf.index]
        dest = os.path.join(mounts_dir, f"{bf.index}-{os.path.basename(m['source'])}")
        with open(dest, "wb") as f:
            f.write(bf.data)
        os.chmod(dest, bf.mode)
        m["source"] = dest
    where = [k for k, v in _flatten(spec) if isinstance(v, str) and captured.root in v]
    if where:
        raise FloorError(
            f"captured spec still refers to whaled's root {captured.root}: {', '.join(where)}"
        )
    return spec


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in _flatten(v, f"{prefix}.{k}".lstrip("."))]
    if isinstance(obj, list):
        return [kv for i, v in enumerate(obj) for kv in _flatten(v, f"{prefix}[{i}]")]
    return [(prefix, obj)]


class RuncBundle:
    """A runc bundle + state root under ``workdir``; every container it made is deleted by
    ``cleanup`` (ids are unique per bundle). With ``whaled`` the bundle is the one whaled
    generated (see ``floor_spec``), else ``runc spec``'s minimal default without a network
    namespace."""

    def __init__(
        self,
        workdir: str,
        rootfs_tar: str,
        runc: str = RUNC,
        whaled: WhaledSpec | None = None,
    ) -> None:
        self.runc = runc
        self.dir = os.path.join(workdir, "runc-bundle")
        self.state = os.path.join(workdir, "runc-state")
        self.rootfs = os.path.join(self.dir, "rootfs")
        self.prefix = f"wb-{os.getpid()}-{os.path.basename(workdir)[-6:]}"
        self._n = 0
        self._ids: set[str] = set()
        os.makedirs(self.rootfs, exist_ok=True)
        os.makedirs(self.state, exist_ok=True)
        _run(["tar", "-xf", rootfs_tar, "-C", self.rootfs])
        self.config_path = os.path.join(self.dir, "config.json")
        if whaled is not None:
            self.base_spec = floor_spec(whaled, self.dir, self.rootfs)
        else:
            _run([runc, "spec", "--bundle", self.dir])
            with open(self.config_path, encoding="utf-8") as f:
                spec: dict[str, Any] = json.load(f)
            spec["linux"]["namespaces"] = [
                ns for ns in spec["linux"]["namespaces"] if ns.get("type") != "network"
            ]
            self.base_spec = spec

    def write_spec(self, args: Sequence[str]) -> None:
        spec = json.loads(json.dumps(self.base_spec))
        spec["process"]["args"] = list(args)
        spec["process"]["terminal"] = False
        spec["process"].pop("consoleSize", None)
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(spec, f)

    def new_id(self) -> str:
        self._n += 1
        cid = f"{self.prefix}-{self._n}"
        self._ids.add(cid)
        return cid

    def rc(self, *args: str) -> list[str]:
        return [self.runc, "--root", self.state, *args]

    def run_true(self) -> float:
        """``runc run`` of ``true`` (foreground, removed at exit): wall ms."""
        cid = self.new_id()
        t0 = time.perf_counter()
        _run(self.rc("run", "--bundle", self.dir, cid))
        took = _ms_since(t0)
        self.delete(cid)
        return took

    def lifecycle(self) -> dict[str, float]:
        """create / start / stop (TERM, wait for exit) / delete of a stoppable sleep: ms each."""
        cid = self.new_id()
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        _run(self.rc("create", "--bundle", self.dir, cid))
        out["create"] = _ms_since(t0)
        t0 = time.perf_counter()
        _run(self.rc("start", cid))
        out["start"] = _ms_since(t0)
        pid = self.pid_of(cid)
        t0 = time.perf_counter()
        _run(self.rc("kill", cid, "TERM"))
        wait_pid_gone(pid)
        out["stop"] = _ms_since(t0)
        self.wait_stopped(cid)
        t0 = time.perf_counter()
        _run(self.rc("delete", cid))
        out["rm"] = _ms_since(t0)
        self._ids.discard(cid)
        return out

    def pid_of(self, cid: str) -> int:
        done = subprocess.run(self.rc("state", cid), capture_output=True, timeout=30)
        return int(json.loads(done.stdout).get("pid", 0)) if done.returncode == 0 else 0

    def state_of(self, cid: str) -> str:
        done = subprocess.run(self.rc("state", cid), capture_output=True, timeout=30)
        if done.returncode != 0:
            return "gone"
        return str(json.loads(done.stdout).get("status", ""))

    def wait_stopped(self, cid: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.state_of(cid) not in ("stopped", "gone"):
            if time.monotonic() > deadline:
                raise FloorError(f"runc container {cid} did not stop")
            time.sleep(0.002)

    def start_sleeper(self) -> str:
        cid = self.new_id()
        _run(self.rc("run", "--detach", "--bundle", self.dir, cid))
        return cid

    def exec_true(self, cid: str) -> float:
        t0 = time.perf_counter()
        _run(self.rc("exec", cid, "true"))
        return _ms_since(t0)

    def delete(self, cid: str) -> None:
        subprocess.run(
            self.rc("delete", "--force", cid), capture_output=True, timeout=60, check=False
        )
        self._ids.discard(cid)

    def cleanup(self) -> None:
        for cid in list(self._ids):
            self.delete(cid)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)


def wait_pid_gone(pid: int, timeout: float = 30.0) -> None:
    """Until ``pid`` has exited (gone or a zombie); polls /proc every 0.5 ms."""
    deadline = time.monotonic() + timeout
    while pid > 0 and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            return
        if stat[stat.rindex(")") + 2 :].startswith(("Z", "X")):
            return
        time.sleep(0.0005)


def tar_extract_ms(layers: Sequence[str], workdir: str) -> float:
    """``tar -x`` of each layer into its own fresh directory: total wall ms (removal untimed)."""
    dest = os.path.join(workdir, "tar-floor")
    shutil.rmtree(dest, ignore_errors=True)
    dirs = [os.path.join(dest, str(i)) for i in range(len(layers))]
    for d in dirs:
        os.makedirs(d)
    t0 = time.perf_counter()
    for layer, d in zip(layers, dirs, strict=True):
        _run(["tar", "-xf", layer, "-C", d], timeout=600)
    took = _ms_since(t0)
    shutil.rmtree(dest, ignore_errors=True)
    return took


def log_line() -> str:
    """The 100-byte line the logs figure writes (99 characters + newline)."""
    return "".join(str(i % 10) for i in range(99))


def log_writer_cmd(nbytes: int) -> list[str]:
    return ["sh", "-c", f"yes {log_line()} | head -c {nbytes}"]


def log_floor_ms(nbytes: int, workdir: str) -> tuple[float, float]:
    """(write ms, read ms): the same busybox pipeline into a file, then ``cat`` of the file."""
    path = os.path.join(workdir, "log-floor.txt")
    with open(path, "wb") as out:
        t0 = time.perf_counter()
        subprocess.run(
            [BUSYBOX, "sh", "-c", f"yes {log_line()} | head -c {nbytes}"],
            stdout=out, check=True, timeout=600,
        )  # fmt: skip
        write_ms = _ms_since(t0)
    t0 = time.perf_counter()
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True, timeout=600)
    read_ms = _ms_since(t0)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return write_ms, read_ms


class FloorServer:
    """``bench.floorserver`` in its own process on ``sock``, answering canned responses."""

    def __init__(self, workdir: str, name: str, responses: dict[str, bytes]) -> None:
        self.sock = os.path.join(workdir, f"{name}.sock")
        self.table = os.path.join(workdir, f"{name}.json")
        with open(self.table, "w", encoding="utf-8") as f:
            json.dump({k: v.hex() for k, v in responses.items()}, f)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def alive(self) -> bool:
        return self.pid is not None

    def start_answering(self, timeout: float = 30.0) -> None:
        """Start it and wait until it answers ``/_ping``; RuntimeError if it does not (the
        caller still stops it)."""
        self.start()
        if not wait_ping(self.sock, time.monotonic() + timeout, self.alive):
            raise RuntimeError(f"floor server {os.path.basename(self.sock)} did not answer /_ping")

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.floorserver", self.sock, self.table],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock)


# --- network: two raw namespaces on a bridge of our own ---------------------------------------

NET_MIB = 200  # the TCP figures' transfer: 200 blocks of 1 MiB
TCP_PORT = 5001
PUB_PORT = 8000
# Every command of these scripts is a busybox applet, in the image and on the floor alike.
# The server answers each connection (``-ll``: forks per connection, keeps listening) with
# dd's record count after reading exactly NET_MIB full MiB blocks: the client's proof that
# every byte arrived, and the moment the transfer is done.
TCP_SERVER_CMD = (
    "nc", "-ll", "-p", str(TCP_PORT), "-e", "sh", "-c",
    f"dd of=/dev/null bs=1M count={NET_MIB} iflag=fullblock 2>&1",
)  # fmt: skip
PUB_SERVER_CMD = ("nc", "-ll", "-p", str(PUB_PORT), "-e", "echo", "x")
NET_DONE_LINE = f"{NET_MIB}+0 records in"


def tcp_client_script(server_ip: str, piped: bool) -> str:
    """A ``sh -c`` script sending NET_MIB MiB of zeros to ``server_ip``:TCP_PORT, printing
    ``busybox ts`` microsecond timestamps of its start ("s"), the server's answer and its end.

    ``piped``: ``dd | nc`` (busybox nc copies stdin to the socket 1 KiB at a time: bound by
    that copy loop's syscalls, not by the network); else ``nc -e dd`` (dd writes 1 MiB
    blocks straight into the connected socket and then reads the answer)."""
    dd = f"dd if=/dev/zero bs=1M count={NET_MIB} 2>/dev/null"
    if piped:
        send = f"{dd} | nc -w 5 {server_ip} {TCP_PORT}"
    else:
        send = f"nc -w 5 {server_ip} {TCP_PORT} -e sh -c '{dd} && cat >&2'"
    return f"{{ echo s; {send}; echo e; }} 2>&1 | ts %.s"


def transfer_seconds(output: str) -> float:
    """Start to the server's answer, from ``tcp_client_script``'s timestamped output; raises
    ``FloorError`` unless the server read all NET_MIB MiB."""
    stamps: dict[str, float] = {}
    for line in output.splitlines():
        stamp, _, text = line.strip().partition(" ")
        with contextlib.suppress(ValueError):
            stamps.setdefault(text.strip(), float(stamp))
    if "s" not in stamps or NET_DONE_LINE not in stamps:
        raise FloorError(f"transfer incomplete: no {NET_DONE_LINE!r} in {output[-300:]!r}")
    return stamps[NET_DONE_LINE] - stamps["s"]


def listening(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in the network namespace of ``pid``."""
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}", encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):
                return True
    return False


def wait_listening(pid: int, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not listening(pid, port):
        if time.monotonic() > deadline:
            raise FloorError(f"nothing listens on port {port} in the netns of pid {pid}")
        time.sleep(0.01)


def connect_reply_ms(host: str, port: int, expect: bytes = b"x\n", timeout: float = 5.0) -> float:
    """TCP connect to ``host:port``, read the one-line answer, close: wall ms."""
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as s:
        got = b""
        while not got.endswith(b"\n"):
            chunk = s.recv(64)
            if not chunk:
                break
            got += chunk
    took = _ms_since(t0)
    if got != expect:
        raise FloorError(f"{host}:{port} answered {got!r}, expected {expect!r}")
    return took


IP_BIN = shutil.which("ip") or "/usr/sbin/ip"
NETNS_PREFIX = "wbfloor"


def routed_overlaps(net: str) -> list[str]:
    """Host routes (every table) and addresses overlapping ``net``: a subnet the bench is
    about to use must be free."""
    want = ipaddress.ip_network(net)
    done = subprocess.run([IP_BIN, "-j", "-4", "route", "show", "table", "all"],
                          capture_output=True, timeout=30, check=True)  # fmt: skip
    out: list[str] = []
    for r in json.loads(done.stdout or b"[]"):
        dst = str(r.get("dst", ""))
        if dst in ("", "default"):
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(dst, strict=False).overlaps(want):
                out.append(f"{dst} dev {r.get('dev', '?')} table {r.get('table', 'main')}")
    return out


def _host_links() -> list[str]:
    done = subprocess.run([IP_BIN, "-j", "link", "show"], capture_output=True, timeout=30,
                          check=True)  # fmt: skip
    return [str(link.get("ifname", "")) for link in json.loads(done.stdout or b"[]")]


def _host_netns() -> list[str]:
    return sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []


def floor_net_leftovers() -> list[str]:
    """Links and named network namespaces of the host whose names start with ``wbfloor``."""
    return [f"link {n}" for n in _host_links() if n.startswith(NETNS_PREFIX)] + [
        f"netns {n}" for n in _host_netns() if n.startswith(NETNS_PREFIX)
    ]


class NetnsFloor:
    """Two raw network namespaces ``wbfloor-a`` / ``wbfloor-b``, each with one veth
    (host ends ``wbfloor-va`` / ``wbfloor-vb``) on a bridge ``wbfloorbr0``, all made here;
    addresses 10.214.250.2 (a), .3 (b) and .1 on the bridge (the host's way in). No default
    route anywhere: nothing sent there can leave the bridge. Processes run in them by
    ``ip netns exec`` with busybox's applets only (``PATH`` leads nowhere and busybox-static
    prefers its applets); they are ended by their PID (``Popen``). ``cleanup`` deletes
    exactly what ``create`` made and then checks that nothing named ``wbfloor*`` is left."""

    NET = "10.214.250.0/24"
    BRIDGE = f"{NETNS_PREFIX}br0"
    BRIDGE_IP = "10.214.250.1"
    ADDRS = {"a": "10.214.250.2", "b": "10.214.250.3"}

    RUN_NETNS = "/run/netns"  # made (a directory bind-mounted on itself) by `ip netns add`

    def __init__(self) -> None:
        self._links: list[str] = []
        self._netns: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._made_run_netns = False

    @staticmethod
    def ns(which: str) -> str:
        return f"{NETNS_PREFIX}-{which}"

    def create(self) -> None:
        taken = floor_net_leftovers()
        if taken:
            raise FloorError(f"already on the host (an earlier run's?): {', '.join(taken)}")
        busy = routed_overlaps(self.NET)
        if busy:
            raise FloorError(f"{self.NET} is routed on this host already: {'; '.join(busy)}")
        self._made_run_netns = not os.path.lexists(self.RUN_NETNS)
        try:
            for which in self.ADDRS:
                _run([IP_BIN, "netns", "add", self.ns(which)])
                self._netns.append(self.ns(which))
            _run([IP_BIN, "link", "add", self.BRIDGE, "type", "bridge"])
            self._links.append(self.BRIDGE)
            _run([IP_BIN, "addr", "add", f"{self.BRIDGE_IP}/24", "dev", self.BRIDGE])
            _run([IP_BIN, "link", "set", self.BRIDGE, "up"])
            for which, addr in self.ADDRS.items():
                ns = self.ns(which)
                host_end, ns_end = f"{NETNS_PREFIX}-v{which}", f"{NETNS_PREFIX}-p{which}"
                _run([IP_BIN, "link", "add", host_end, "type", "veth", "peer", "name", ns_end,
                      "netns", ns])  # fmt: skip
                self._links.append(host_end)
                _run([IP_BIN, "link", "set", host_end, "master", self.BRIDGE, "up"])
                _run([IP_BIN, "-n", ns, "addr", "add", f"{addr}/24", "dev", ns_end])
                _run([IP_BIN, "-n", ns, "link", "set", ns_end, "up"])
                _run([IP_BIN, "-n", ns, "link", "set", "lo", "up"])
        except BaseException:
            self.cleanup()
            raise

    def _argv(self, which: str, argv: Sequence[str]) -> list[str]:
        return [IP_BIN, "netns", "exec", self.ns(which), BUSYBOX, *argv]

    _ENV = {"PATH": "/nonexistent"}  # busybox applets only

    def spawn(self, which: str, argv: Sequence[str]) -> int:
        """Start ``busybox argv…`` in namespace ``which`` (in the background); its PID."""
        proc = subprocess.Popen(
            self._argv(which, argv), env=self._ENV, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._procs.append(proc)
        # `ip netns exec` enters the namespace, then execs busybox: from then on the PID's
        # /proc/PID/net is the namespace's.
        deadline = time.monotonic() + 15
        while _exe(proc.pid) != os.path.realpath(BUSYBOX):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise FloorError(f"{' '.join(argv)[:80]} did not start in {self.ns(which)}")
            time.sleep(0.002)
        return proc.pid

    def run(self, which: str, argv: Sequence[str], timeout: float = 120.0) -> tuple[float, str]:
        """``busybox argv…`` in namespace ``which``, to its end: (wall ms, stdout)."""
        t0 = time.perf_counter()
        done = subprocess.run(self._argv(which, argv), env=self._ENV, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)  # fmt: skip
        took = _ms_since(t0)
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip()[-300:]
            raise FloorError(f"in {self.ns(which)}: {' '.join(argv)[:80]}: exit "
                             f"{done.returncode}: {err}")  # fmt: skip
        return took, done.stdout.decode(errors="replace")

    def cleanup(self) -> None:
        """Stop what ``spawn`` started (by PID), delete the links and namespaces ``create``
        made; raise ``FloorError`` naming anything ``wbfloor*`` still on the host."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self._procs.clear()
        failed: list[str] = []
        for link in reversed(self._links):  # veths first (their peers go with them)
            done = subprocess.run([IP_BIN, "link", "del", link], capture_output=True,
                                  timeout=30, check=False)  # fmt: skip
            if done.returncode != 0:
                failed.append(f"ip link del {link}: {done.stderr.decode(errors='replace')}")
        self._links.clear()
        for ns in reversed(self._netns):
            done = subprocess.run([IP_BIN, "netns", "del", ns], capture_output=True, timeout=30,
                                  check=False)  # fmt: skip
            if done.returncode != 0:
                failed.append(f"ip netns del {ns}: {done.stderr.decode(errors='replace')}")
        self._netns.clear()
        if self._made_run_netns:
            failed.extend(self._remove_run_netns())
        left = floor_net_leftovers()
        if failed or left:
            raise FloorError(f"network floor left over: {'; '.join(failed + left)}")

    def _remove_run_netns(self) -> list[str]:
        """Undo what ``ip netns add`` did to a host that had no ``/run/netns``: its mount(s)
        on itself and the directory, only while it is empty (nobody else's namespace)."""
        d = self.RUN_NETNS
        if not os.path.isdir(d) or os.listdir(d):
            return [] if not os.path.lexists(d) else [f"{d} (not empty, kept)"]
        while d in _mount_points():
            done = subprocess.run(["umount", d], capture_output=True, timeout=30, check=False)
            if done.returncode != 0:
                return [f"umount {d}: {done.stderr.decode(errors='replace').strip()}"]
        try:
            os.rmdir(d)
        except OSError as e:
            return [f"rmdir {d}: {e.strerror}"]
        self._made_run_netns = False
        return []


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        return {line.split()[4] for line in f if len(line.split()) > 4}
