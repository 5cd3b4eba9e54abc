"""Fixtures for the conmon backend on the real host: OCI bundles from the busybox rootfs.

``rig``: a temp root under /tmp (short: unix socket paths), a private runc ``--root``, and a
cgroup parent unique to the test. ``rig.bundle(cid, args)`` writes a bundle whose
``config.json`` is ``runc spec``'s default with the given args, no terminal, a new network
namespace (only ``lo``) and ``cgroupsPath`` under that parent. At teardown every container is
force-deleted, every conmon of the rig is killed (by the pid it wrote), and the test fails if
a mount, a monitor or a cgroup is left behind.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.busybox import busybox_available, busybox_tar_cached
from whaled.runtime.backend.api import CreateOptions, StdioOptions

RUNC = shutil.which("runc") or "/usr/sbin/runc"
CONMON = shutil.which("conmon") or "/usr/bin/conmon"
CGROUP_ROOT = "/sys/fs/cgroup"


def _tools_missing() -> str | None:
    for tool in (RUNC, CONMON):
        if not os.access(tool, os.X_OK):
            return f"{tool} not installed"
    if not busybox_available():
        return "busybox-static not installed"
    return None


@pytest.fixture(scope="session")
def default_spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    missing = _tools_missing()
    if missing:
        pytest.skip(missing)
    d = tmp_path_factory.mktemp("spec")
    subprocess.run([RUNC, "spec", "--bundle", str(d)], check=True)
    with open(d / "config.json") as f:
        spec: dict[str, Any] = json.load(f)
    return spec


@pytest.fixture(scope="session")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> str:
    missing = _tools_missing()
    if missing:
        pytest.skip(missing)
    return busybox_tar_cached(tmp_path_factory)


def _cgroup_dirs(parent: str) -> list[str]:
    out = []
    with contextlib.suppress(FileNotFoundError):
        for hierarchy in os.listdir(CGROUP_ROOT):
            path = os.path.join(CGROUP_ROOT, hierarchy, parent.strip("/"))
            if os.path.isdir(path):
                out.append(path)
    return out


def _mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == root or p.startswith(root + "/")]


def _conmon_pids_for(root: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if (
            cmd
            and os.path.basename(cmd[0]).startswith(b"conmon")
            and any(a.startswith(root.encode()) for a in cmd)
        ):
            pids.append(int(entry))
    return pids


@dataclass
class Rig:
    root: str
    default_spec: dict[str, Any]
    rootfs_tar: str
    runtime_path: str = RUNC
    cgroup_parent: str = ""
    ids: list[str] = field(default_factory=list)

    @property
    def runc_root(self) -> str:
        return os.path.join(self.root, "runc")

    def bundle(
        self, cid: str, args: Sequence[str], *, tty: bool = False, memory_limit: int | None = None
    ) -> str:
        bundle = os.path.join(self.root, cid)
        rootfs = os.path.join(bundle, "rootfs")
        os.makedirs(rootfs)
        subprocess.run(["tar", "-C", rootfs, "-xf", self.rootfs_tar], check=True)
        spec = copy.deepcopy(self.default_spec)
        spec["process"]["terminal"] = tty
        spec["process"]["args"] = list(args)
        spec["root"] = {"path": "rootfs", "readonly": False}
        spec["hostname"] = cid
        spec["linux"]["cgroupsPath"] = f"{self.cgroup_parent}/{cid}"
        if memory_limit is not None:
            spec["linux"].setdefault("resources", {})["memory"] = {
                "limit": memory_limit,
                "swap": memory_limit,
            }
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        self.ids.append(cid)
        return bundle

    def options(self, cid: str, bundle: str, **kw: Any) -> CreateOptions:
        return CreateOptions(
            container_id=cid,
            bundle_dir=bundle,
            state_dir=os.path.join(self.root, "st", cid),
            runtime_path=kw.pop("runtime_path", self.runtime_path),
            runtime_args=("--root", self.runc_root),
            name=cid,
            log_path=kw.pop("log_path", os.path.join(self.root, f"{cid}.log")),
            stdio=kw.pop("stdio", StdioOptions()),
            timeout=20.0,
            **kw,
        )

    def runc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RUNC, "--root", self.runc_root, *args], capture_output=True, text=True, timeout=30
        )

    def cgroup_dirs(self, cid: str = "") -> list[str]:
        return _cgroup_dirs(f"{self.cgroup_parent}/{cid}" if cid else self.cgroup_parent)

    def cleanup(self) -> list[str]:
        """Remove everything the test made; returns what had been left behind."""
        leaks: list[str] = []
        for cid in self.ids:
            state = self.runc("state", cid)
            if state.returncode == 0:
                leaks.append(f"runtime state of {cid}")
                self.runc("delete", "--force", cid)
        for pid in _conmon_pids_for(self.root):
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                    continue
            leaks.append(f"conmon pid {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for mount in reversed(_mounts_under(self.root)):
            leaks.append(f"mount {mount}")
            subprocess.run(["umount", "-l", mount], check=False)
        for cid in self.ids:
            for path in self.cgroup_dirs(cid):
                leaks.append(f"cgroup {path}")
                with contextlib.suppress(OSError):
                    os.rmdir(path)
        for path in self.cgroup_dirs():
            with contextlib.suppress(OSError):
                os.rmdir(path)
        shutil.rmtree(self.root, ignore_errors=True)
        return leaks


@pytest.fixture
def rig(default_spec: dict[str, Any], rootfs_tar: str) -> Iterator[Rig]:
    root = tempfile.mkdtemp(prefix="whb-", dir="/tmp")
    r = Rig(
        root=root,
        default_spec=default_spec,
        rootfs_tar=rootfs_tar,
        cgroup_parent=f"/whaled-test-{os.path.basename(root)}",
    )
    try:
        yield r
    finally:
        leaks = r.cleanup()
    assert not leaks, f"left behind: {leaks}"
