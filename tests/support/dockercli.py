"""Run the real docker CLI against one whaled socket, isolated from the user's set-up.

Every call gets ``-H unix://SOCK``, ``DOCKER_CONFIG`` pointing to a private temp dir (so
``~/.docker`` — contexts, credentials, plugins config — is never read or written), no
inherited ``DOCKER_*`` variables and ``DOCKER_CLI_HINTS=false`` (no "What's next" footer).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from types import TracebackType

DOCKER_BIN = "/usr/local/bin/docker"


class DockerCLIError(subprocess.CalledProcessError):
    """A docker command failed; ``str()`` shows its stdout and stderr."""

    def __str__(self) -> str:
        def text(v: object) -> str:
            if isinstance(v, bytes):
                return v.decode(errors="replace")
            return "" if v is None else str(v)

        return (
            f"{super().__str__()}\n--- stdout ---\n{text(self.stdout)}"
            f"\n--- stderr ---\n{text(self.stderr)}"
        )


class DockerCLI:
    """``docker`` bound to one daemon socket."""

    def __init__(self, sock: str, docker_bin: str = DOCKER_BIN) -> None:
        self.sock = sock
        self.docker_bin = docker_bin
        self.config_dir = tempfile.mkdtemp(prefix="whaled-dockercfg-")
        self._popens: list[subprocess.Popen[bytes]] = []

    def argv(self, *args: str) -> list[str]:
        return [self.docker_bin, "-H", f"unix://{self.sock}", *args]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = self.config_dir
        env["DOCKER_CLI_HINTS"] = "false"
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 60,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` with text stdin/stdout/stderr captured."""
        done = subprocess.run(
            self.argv(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(env),
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise DockerCLIError(done.returncode, done.args, done.stdout, done.stderr)
        return done

    def run_bytes(
        self,
        *args: str,
        input: bytes | None = None,
        timeout: float = 60,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Like ``run`` with binary stdin/stdout/stderr (``save``, ``export``, ``cp -``)."""
        done = subprocess.run(
            self.argv(*args),
            input=input,
            capture_output=True,
            timeout=timeout,
            env=self.env(env),
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise DockerCLIError(done.returncode, done.args, done.stdout, done.stderr)
        return done

    def popen(
        self,
        *args: str,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.PIPE,
        stderr: int | None = subprocess.PIPE,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``docker ARGS`` in the background (``logs -f``, ``events``, ``attach``).
        Still running at ``close()``, it is killed (by its own PID)."""
        proc = subprocess.Popen(
            self.argv(*args), stdin=stdin, stdout=stdout, stderr=stderr, env=self.env(env)
        )
        self._popens.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._popens:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            try:
                proc.communicate(timeout=10)
            except (subprocess.TimeoutExpired, ValueError, OSError):
                pass
        self._popens.clear()
        shutil.rmtree(self.config_dir, ignore_errors=True)

    def __enter__(self) -> DockerCLI:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
