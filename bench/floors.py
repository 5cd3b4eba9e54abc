"""Floors: what the same work costs with no engine at all.

- the OCI runtime alone: ``runc run`` / ``create`` / ``start`` / ``kill`` / ``delete`` /
  ``exec`` of a bundle made from the busybox rootfs, with its own ``--root`` state dir and a
  unique container id per run. Two kinds of bundle: the *same* bundle whaled hands to runc
  (its ``config.json``, captured at bench time from a private whaled and rewritten by
  ``floor_spec``: seccomp, namespaces including network, masked/readonly paths, devices and
  resources as generated), and a *minimal* one (``runc spec``'s default: no seccomp, no
  network namespace);
- ``tar -x`` of the image's layer tars;
- writing/reading the log payload with plain shell tools.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
