"""The bench's own set-up: dockerd (Debian's ``docker.io``) for ``--reference`` and matplotlib
for the chart. Not part of ``make test``; each step says what it does and, when it cannot,
returns a reason instead of failing the run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable

from bench.engines import DOCKERD

HERE = os.path.dirname(os.path.abspath(__file__))
OPTIONAL_REQUIREMENTS = os.path.join(HERE, "requirements-optional.txt")
POLICY_RC_D = "/usr/sbin/policy-rc.d"
_POLICY_DENY = "#!/bin/sh\n# written by whaled's bench/prereqs.py for one apt-get run\nexit 101\n"


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _policy_denies() -> bool:
    """True when invoke-rc.d will not start services (so installing docker.io does not start
    a system dockerd on /run/docker.sock)."""
    if not os.access(POLICY_RC_D, os.X_OK):
        return False
    try:
        done = subprocess.run([POLICY_RC_D, "docker", "start"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 101


def ensure_dockerd(log: Callable[[str], None] = print) -> str | None:
    """Install ``docker.io`` when ``/usr/sbin/dockerd`` is missing; return None when dockerd
    is there, else the reason it is not."""
    if os.access(DOCKERD, os.X_OK):
        return None
    if os.geteuid() != 0:
        return f"{DOCKERD} is missing and installing docker.io needs root"
    if shutil.which("apt-get") is None:
        return f"{DOCKERD} is missing and there is no apt-get to install docker.io"
    wrote_policy = False
    if not os.path.exists(POLICY_RC_D):
        # Keep apt from starting the system docker service: the bench never touches it.
        with open(POLICY_RC_D, "w", encoding="utf-8") as f:
            f.write(_POLICY_DENY)
        os.chmod(POLICY_RC_D, 0o755)
        wrote_policy = True
    elif not _policy_denies():
        return (
            f"{DOCKERD} is missing; not installing docker.io because {POLICY_RC_D} would let apt "
            "start the system docker service — install it yourself: apt-get install docker.io"
        )
    try:
        log("set-up: installing Debian's docker.io (dockerd, containerd) for --reference ...")
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io"]
        done = subprocess.run(cmd, env=_apt_env(), capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            log("set-up: apt-get install failed; running apt-get update once and retrying")
            subprocess.run(
                ["apt-get", "update", "-qq"], env=_apt_env(), capture_output=True, timeout=900
            )
            done = subprocess.run(cmd, env=_apt_env(), capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"apt-get install docker.io failed: {done.stderr.strip()[-500:]}"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"apt-get install docker.io failed: {e}"
    finally:
        if wrote_policy:
            os.unlink(POLICY_RC_D)
    if not os.access(DOCKERD, os.X_OK):
        return f"docker.io installed but {DOCKERD} is still missing"
    return None


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def ensure_matplotlib(log: Callable[[str], None] = print) -> str | None:
    """pip-install the bench's optional requirements (matplotlib) into this venv if missing;
    return None when importable, else why not."""
    if matplotlib_available():
        return None
    if sys.prefix == sys.base_prefix:
        return "matplotlib is missing and this Python is not a venv: not installing it"
    log(f"set-up: pip install -r {os.path.relpath(OPTIONAL_REQUIREMENTS)} (for the chart) ...")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "-r", OPTIONAL_REQUIREMENTS],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"pip install matplotlib failed: {e}"
    if done.returncode != 0:
        return f"pip install matplotlib failed: {done.stderr.strip()[-500:]}"
    importlib.invalidate_caches()
    return None if matplotlib_available() else "matplotlib still not importable after pip install"
