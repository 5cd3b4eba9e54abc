"""Driving one engine: API calls over its unix socket and the real docker CLI, timed.

``NotImplementedByEngine`` is raised when the engine answers that it has no such route (404
"page not found", 405, 501): the figure that needed it is then reported as n/a, and starts to
report numbers by itself once the endpoint exists.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from bench.stats import NA_NOT_IMPLEMENTED
from tests.support.whaled_proc import UnixHTTPConnection, unix_request

DOCKER_CLI = "/usr/local/bin/docker"
_MISSING_MESSAGES = ("page not found", "not found", "404: not found", "method not allowed")
T = TypeVar("T")


class NotImplementedByEngine(Exception):
    """The engine does not have the endpoint a figure needs (yet)."""

    def __init__(self, method: str, path: str, status: int) -> None:
        self.method, self.path, self.status = method, path, status
        route = path.split("?", 1)[0]
        super().__init__(f"{NA_NOT_IMPLEMENTED}: {method} {route} -> {status}")


class APIError(RuntimeError):
    pass


def route_missing(status: int, body: bytes) -> bool:
    """True when the answer says "no such endpoint" rather than e.g. "no such container"."""
    if status == 501:
        return True
    if status not in (404, 405):
        return False
    text = body.strip()
    try:
        parsed = json.loads(text) if text else {}
        msg = str(parsed.get("message", "")) if isinstance(parsed, dict) else ""
    except ValueError:
        msg = text.decode(errors="replace")
    return msg.strip().lower() in _MISSING_MESSAGES or msg == ""


def parallel(fn: Callable[[T], Any], items: Iterable[T], workers: int = 8) -> list[Any]:
    """``fn`` over ``items`` on a thread pool; re-raises the first exception."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


class Client:
    """API + CLI for one engine socket. The CLI runs with a private ``DOCKER_CONFIG`` and no
    inherited ``DOCKER_*`` variables, so the user's docker set-up is never read."""

    def __init__(self, sock: str, docker_bin: str = DOCKER_CLI) -> None:
        self.sock = sock
        self.docker_bin = docker_bin
        self.config_dir = tempfile.mkdtemp(prefix="wb-dockercfg-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = self.config_dir
        env["DOCKER_CLI_HINTS"] = "false"
        self.env = env

    def close(self) -> None:
        shutil.rmtree(self.config_dir, ignore_errors=True)

    # -- API --

    def call(
        self,
        method: str,
        path: str,
        body: bytes | Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        ok: Sequence[int] = (200, 201, 204),
        timeout: float = 300.0,
    ) -> bytes:
        """One request; raises ``NotImplementedByEngine`` for a missing route and ``APIError``
        for any other status not in ``ok``."""
        headers = {"Content-Type": "application/x-tar"} if isinstance(body, bytes) else None
        status, _, out = unix_request(self.sock, method, path, body, headers, timeout)
        if route_missing(status, out):
            raise NotImplementedByEngine(method, path, status)
        if status not in ok:
            raise APIError(f"{method} {path}: {status} {out[:300].decode(errors='replace')}")
        return out

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        out = self.call(method, path, body, **kw)
        return json.loads(out) if out.strip() else None

    def require(self, method: str, path: str, body: Any = None) -> None:
        """Probe a route: only a "no such route" answer counts (4xx for a bad body is fine)."""
        status, _, out = unix_request(self.sock, method, path, body, None, 30)
        if route_missing(status, out):
            raise NotImplementedByEngine(method, path, status)

    def upload(self, method: str, path: str, file_path: str, timeout: float = 600.0) -> bytes:
        """Stream a file as the request body (``docker load``); check the JSON message
        stream for errors."""
        size = os.path.getsize(file_path)
        conn = UnixHTTPConnection(self.sock, timeout=timeout)
        try:
            with open(file_path, "rb") as f:
                conn.request(
                    method, path, body=f,
                    headers={"Content-Type": "application/x-tar", "Content-Length": str(size)},
                )  # fmt: skip
                resp = conn.getresponse()
                out = resp.read()
        finally:
            conn.close()
        if route_missing(resp.status, out):
            raise NotImplementedByEngine(method, path, resp.status)
        if resp.status != 200:
            raise APIError(f"{method} {path}: {resp.status} {out[:300]!r}")
        for line in out.splitlines():
            if b"errorDetail" in line or b'"error"' in line:
                raise APIError(f"{method} {path}: {line[:300].decode(errors='replace')}")
        return out

    def create(
        self, cmd: Sequence[str], name: str | None = None, image: str = "busybox:latest"
    ) -> str:
        q = "?" + urllib.parse.urlencode({"name": name}) if name else ""
        body = {"Image": image, "Cmd": list(cmd), "HostConfig": {"NetworkMode": "none"}}
        data = self.json("POST", f"/containers/create{q}", body)
        return str(data["Id"])

    def start(self, cid: str) -> None:
        self.call("POST", f"/containers/{cid}/start")

    def remove(self, cid: str) -> None:
        self.call("DELETE", f"/containers/{cid}?force=1&v=1", ok=(200, 204, 404))

    def wait(self, cid: str, timeout: float = 600.0) -> int:
        data = self.json("POST", f"/containers/{cid}/wait", timeout=timeout)
        return int(data.get("StatusCode", -1)) if isinstance(data, dict) else -1

    # -- CLI --

    def cli(
        self, *args: str, timeout: float = 300.0, check: bool = True, capture: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [self.docker_bin, "-H", f"unix://{self.sock}", *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise APIError(
                f"docker {' '.join(args)}: exit {done.returncode}: "
                f"{done.stderr.decode(errors='replace').strip()[-400:]}"
            )
        return done

    def timed_cli(self, *args: str, timeout: float = 300.0, capture: bool = True) -> float:
        """Wall time (ms) of one CLI call, which must succeed."""
        t0 = time.perf_counter()
        self.cli(*args, timeout=timeout, capture=capture)
        return (time.perf_counter() - t0) * 1000.0


def is_connection_error(e: BaseException) -> bool:
    return isinstance(e, OSError | http.client.HTTPException)
