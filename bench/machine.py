"""Machine facts recorded with every result (so figures from different hosts are not mixed)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

from bench.client import DOCKER_CLI
from bench.engines import DOCKERD

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({type(e).__name__})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else f"unavailable (exit {done.returncode})"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_mib() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def cgroup_layout() -> str:
    """``v2`` (unified), ``v1 hybrid`` (v1 controllers + a cgroup2 mount) or ``v1``."""
    kinds: set[str] = set()
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] in ("cgroup", "cgroup2"):
                    kinds.add(fields[2])
    except OSError:
        return "unknown"
    if kinds == {"cgroup2"}:
        return "v2"
    if kinds == {"cgroup", "cgroup2"}:
        return "v1 hybrid"
    return "v1" if "cgroup" in kinds else "none"


def git_commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{rev}{'+dirty' if dirty else ''}" if rev else "unknown"


def facts() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "mem_total_mib": mem_total_mib(),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "cgroups": cgroup_layout(),
        "python": sys.version.split()[0],
        "whaled_commit": git_commit(),
        "runc": _first_line(["runc", "--version"]),
        "crun": _first_line(["crun", "--version"]),
        "conmon": _first_line(["conmon", "--version"]),
        "dockerd": _first_line([DOCKERD, "--version"]) if os.path.exists(DOCKERD) else "absent",
        "containerd": _first_line(["containerd", "--version"]),
        "docker_cli": _first_line([DOCKER_CLI, "--version"]),
    }
