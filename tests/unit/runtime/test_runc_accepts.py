"""Hand generated specs to the real runc and check it accepts them — without running anything.

``runc create`` decodes config.json, validates it and converts it to its own configuration
(namespaces, mounts, devices, cgroup resources, capabilities, seccomp) *before* it creates its
state directory. Pointing ``--root`` somewhere that cannot be created (under /proc) makes it
stop right there: reaching the "mkdir" error means the spec passed every check before it, and
no container, cgroup or process is ever made. Skipped without runc or without root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from whaled.runtime.devices import Device
from whaled.runtime.mounts import BindMount, TmpfsMount
from whaled.runtime.resources import Resources
from whaled.runtime.spec import HostFacts, IpcMode, NamespaceMode, SpecInput, build_spec
from whaled.runtime.ulimits import Ulimit
from whaled.runtime.usermap import ResolvedUser

RUNC = shutil.which("runc")
UNCREATABLE_ROOT = "/proc/whaled-spec-check-does-not-exist"

pytestmark = pytest.mark.skipif(
    RUNC is None or os.geteuid() != 0, reason="needs runc and root (runs no container)"
)


def runc_verdict(tmp_path: Path, spec: dict[str, Any]) -> str:
    assert RUNC is not None
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    spec["root"]["path"] = str(bundle / "rootfs")
    (bundle / "config.json").write_text(json.dumps(spec))
    result = subprocess.run(
        [RUNC, "--root", UNCREATABLE_ROOT, "create", "--bundle", str(bundle), "whaled-spec-check"],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    return result.stderr


def accepted(stderr: str) -> bool:
    return f"mkdir {UNCREATABLE_ROOT}" in stderr


def rich_input(host: HostFacts, **kw: Any) -> SpecInput:
    fields: dict[str, Any] = {
        "container_id": "c0ffee" * 10 + "abcd",
        "host": host,
        "rootfs": "/placeholder",
        "entrypoint": ("/bin/sh",),
        "cmd": ("-c", "true"),
        "env": ("A=1",),
        "user": ResolvedUser(uid=1000, gid=1000, additional_gids=(5,)),
        "working_dir": "/tmp",
        "hostname": "box",
        "domainname": "example.org",
        "readonly_rootfs": True,
        "mounts": (
            BindMount(source="/etc", destination="/host-etc", readonly=True),
            TmpfsMount(destination="/run", options=("exec", "size=16m")),
        ),
        "hosts_path": "/etc/hosts",
        "resolv_conf_path": "/etc/resolv.conf",
        "init_path": "/bin/true",
        "cap_add": ("SYS_ADMIN", "NET_ADMIN"),
        "cap_drop": ("MKNOD",),
        "security_opt": ("no-new-privileges",),
        "devices": (
            Device(
                path="/dev/fuse",
                type="c",
                major=10,
                minor=229,
                file_mode=0o666,
                uid=0,
                gid=0,
                permissions="rw",
            ),
        ),
        "device_cgroup_rules": ("c 42:* rm",),
        "ulimits": (
            Ulimit(name="nofile", soft=1024, hard=4096),
            Ulimit(name="core", soft=-1, hard=-1),
        ),
        "resources": Resources(
            memory=64 << 20,
            memory_swap=128 << 20,
            memory_reservation=32 << 20,
            cpu_shares=512,
            nano_cpus=500_000_000,
            cpuset_cpus="0",
            pids_limit=64,
            blkio_weight=300,
        ),
        "oom_score_adj": 100,
        "sysctls": {"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmax": "4096"},
        "ipc": IpcMode(kind="shareable", shm_source="/dev/shm"),
        "stop_signal": "SIGQUIT",
    }
    fields.update(kw)
    return SpecInput(**fields)


@pytest.mark.parametrize("version", [1, 2])
def test_runc_accepts_rich_spec(tmp_path: Path, version: int) -> None:
    host = HostFacts(cgroup_version=1 if version == 1 else 2)
    stderr = runc_verdict(tmp_path, build_spec(rich_input(host)))
    assert accepted(stderr), stderr


def test_runc_accepts_privileged_host_namespaces(tmp_path: Path) -> None:
    null = Device(path="/dev/null", type="c", major=1, minor=3, file_mode=0o666, uid=0, gid=0)
    inp = rich_input(
        HostFacts(cgroup_version=1),
        privileged=True,
        host_devices=(null,),
        network=NamespaceMode.host(),
        pid=NamespaceMode.host(),
        uts=NamespaceMode.host(),
        ipc=IpcMode(kind="host", shm_source="/dev/shm"),
        sysctls={},
        domainname="",
        security_opt=(),
    )
    stderr = runc_verdict(tmp_path, build_spec(inp))
    assert accepted(stderr), stderr


def test_check_discriminates(tmp_path: Path) -> None:
    spec = build_spec(rich_input(HostFacts(cgroup_version=1)))
    spec["linux"]["namespaces"].append({"type": "bogus"})
    stderr = runc_verdict(tmp_path, spec)
    assert not accepted(stderr) and "bogus" in stderr
