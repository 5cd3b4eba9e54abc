"""Config reload latency under load: SIGHUP → the ``reload`` event on ``/events``.

While 32 keep-alive clients hammer ``GET /_ping`` and ``GET /containers/json`` (16 each),
the engine's config file gets a new label and the engine a SIGHUP; the time until its
``daemon`` ``reload`` event arrives on an ``/events`` stream opened beforehand is one sample.
Every request of the load must succeed (200): one failure fails the figure — a reload must
never disturb the API. Works for whaled and for dockerd alike (both emit that event).

The load runs in a child process (``python -m bench.reload load SOCK``: asyncio, one
request in flight per connection) so that the measuring side — a blocking socket reading the
event stream — is never held up by the load generator's event loop. The child prints
``ready`` once every client has had an answer, and its counts as JSON when its stdin closes.

Figures (registered as the ``reload`` group in ``bench/figures.py``):
``latency`` (all samples: the table shows p50 [min-p95]), ``p99`` (one value per run) and
``load`` (requests/s the clients got meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bench.engines import Engine
from bench.httpclient import build_request, read_response
from bench.stats import Better, percentile
from tests.support.whaled_proc import REPO_ROOT, UnixHTTPConnection

CLIENTS = 32
PATHS = ("/_ping", "/containers/json")
RELOADS_QUICK = 50
RELOADS_FULL = 200
GAP_SECONDS = 0.02  # between one reload's event and the next SIGHUP
EVENT_TIMEOUT = 30.0

# (key, name, unit, better): bench/figures.py turns these into FigureSpecs.
FIGURES: tuple[tuple[str, str, str, Better], ...] = (
    ("latency", f"reload: SIGHUP -> reload event, {CLIENTS} clients loading", "ms", "lower"),
    ("p99", "reload: p99 of the same reloads", "ms", "lower"),
    ("load", "reload: /_ping + /containers/json served meanwhile", "req/s", "higher"),
)


class ReloadBenchError(RuntimeError):
    pass


# --- the measuring side -----------------------------------------------------------------------


def _config_path(engine: Engine) -> str:
    path = getattr(engine, "config_path", None)
    if path is None:  # WhaledEngine keeps it on its WhaledProcess
        path = getattr(getattr(engine, "proc", None), "config_path", None)
    if not isinstance(path, str):
        raise ReloadBenchError(f"{engine.name}: no config file to reload")
    return path


def _write_json(path: str, value: Any) -> None:
    tmp = f"{path}.bench-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(tmp, path)


class DaemonEvents:
    """A blocking ``/events?filters={"type":["daemon"]}`` stream."""

    def __init__(self, sock: str) -> None:
        self.conn = UnixHTTPConnection(sock, timeout=EVENT_TIMEOUT)
        filters = quote(json.dumps({"type": ["daemon"]}))
        self.conn.request("GET", f"/events?filters={filters}")
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            raise ReloadBenchError(f"GET /events: {self.resp.status}")

    def next_action(self) -> tuple[str, dict[str, str]]:
        line = self.resp.readline()
        if not line:
            raise ReloadBenchError("the event stream ended")
        event = json.loads(line)
        return str(event.get("Action")), dict(event.get("Actor", {}).get("Attributes", {}))

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True, slots=True)
class LoadResult:
    ok: int
    failed: int
    seconds: float
    errors: list[str]


class LoadProcess:
    """The child process generating the load (see the module docstring)."""

    def __init__(self, sock: str, clients: int = CLIENTS, paths: Sequence[str] = PATHS) -> None:
        argv = [sys.executable, "-m", "bench.reload", "load", sock, str(clients), *paths]
        self.proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def wait_ready(self) -> None:
        """Until every client had an answer (the child gives up by itself after 30 s)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.kill()
            raise ReloadBenchError(f"the load generator did not start: {line.strip()!r}")

    def stop(self, timeout: float = 30.0) -> LoadResult:
        out, _ = self.proc.communicate(input="", timeout=timeout)
        if self.proc.returncode != 0 or not out.strip():
            raise ReloadBenchError(f"the load generator failed (exit {self.proc.returncode})")
        data = json.loads(out.strip().splitlines()[-1])
        return LoadResult(
            ok=int(data["ok"]),
            failed=int(data["failed"]),
            seconds=float(data["seconds"]),
            errors=list(data["errors"]),
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def reload_once(pid: int, events: DaemonEvents) -> float:
    """SIGHUP ``pid``; return the ms until its ``reload`` event arrived."""
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGHUP)
    action, attrs = events.next_action()
    took = (time.perf_counter() - t0) * 1000.0
    if action != "reload":
        raise ReloadBenchError(f"reload failed: {action} {attrs.get('error', '')}".strip())
    return took


def measure(engine: Engine, *, quick: bool, log: Callable[[str], None]) -> dict[str, list[float]]:
    """Samples per figure key (see ``FIGURES``) for one running engine."""
    pid = engine.pid
    if pid is None:
        raise ReloadBenchError(f"{engine.name} is not running")
    path = _config_path(engine)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    base: dict[str, Any] = json.loads(text) if text.strip() else {}
    reloads = RELOADS_QUICK if quick else RELOADS_FULL
    load = LoadProcess(engine.sock)
    events: DaemonEvents | None = None
    latencies: list[float] = []
    try:
        load.wait_ready()
        events = DaemonEvents(engine.sock)
        for i in range(reloads + 1):  # the first one is a warm-up
            _write_json(path, {**base, "labels": [f"whaled.bench.reload={i}"]})
            took = reload_once(pid, events)
            if i > 0:
                latencies.append(took)
            time.sleep(GAP_SECONDS)
        result = load.stop()
    finally:
        load.kill()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        if events is not None:
            with contextlib.suppress(ReloadBenchError, OSError):
                reload_once(pid, events)  # back to the engine's own config
            events.close()
    total = result.ok + result.failed
    if result.failed:
        first = "; ".join(result.errors[:3])
        raise ReloadBenchError(f"{result.failed} of {total} requests failed during the reloads: "
                               f"{first}")  # fmt: skip
    if result.ok == 0:
        raise ReloadBenchError("the load generator got no answer at all")
    p99 = percentile(latencies, 99.0)
    log(f"  {engine.name}: {reloads} reloads, p50 {percentile(latencies, 50.0):.1f} ms, "
        f"p99 {p99:.1f} ms; {total} requests, 0 failed")  # fmt: skip
    return {"latency": latencies, "p99": [p99], "load": [result.ok / result.seconds]}


# --- the load generator (child process) -------------------------------------------------------


class _Load:
    def __init__(self, sock: str, clients: int, paths: Sequence[str]) -> None:
        self.sock = sock
        self.clients = clients
        self.paths = paths
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self.stop = False
        self.answered = 0
        self.all_answered = asyncio.Event()

    def _failure(self, text: str) -> None:
        self.failed += 1
        if len(self.errors) < 10:
            self.errors.append(text)

    async def worker(self, path: str) -> None:
        request = build_request("GET", path)
        first = True
        while not self.stop:
            try:
                reader, writer = await asyncio.open_unix_connection(self.sock)
            except OSError as e:
                self._failure(f"connect: {e}")
                await asyncio.sleep(0.01)
                continue
            try:
                while not self.stop:
                    writer.write(request)
                    resp = await read_response(reader)
                    if resp.status != 200:
                        self._failure(f"GET {path}: {resp.status} {resp.body[:200]!r}")
                    else:
                        self.ok += 1
                        if first:
                            first = False
                            self.answered += 1
                            if self.answered == self.clients:
                                self.all_answered.set()
                    if resp.headers.get("connection", "").lower() == "close":
                        break
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                self._failure(f"GET {path}: {type(e).__name__}: {e}")
            finally:
                writer.close()

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        tasks = [
            asyncio.create_task(self.worker(self.paths[i % len(self.paths)]))
            for i in range(self.clients)
        ]
        await asyncio.wait_for(self.all_answered.wait(), 30)
        t0 = time.perf_counter()
        self.ok = 0  # count from "ready" on (failures count from the start)
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        seconds = time.perf_counter() - t0
        ok = self.ok
        self.stop = True
        _, pending = await asyncio.wait(tasks, timeout=10)
        for t in pending:
            t.cancel()
        return {"ok": ok, "failed": self.failed, "seconds": seconds, "errors": self.errors}


def _load_main(argv: Sequence[str]) -> int:
    sock, clients, paths = argv[0], int(argv[1]), list(argv[2:]) or list(PATHS)
    result = asyncio.run(_Load(sock, clients, paths).run())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["load"]:
        print("usage: python -m bench.reload load SOCK CLIENTS [PATH...]", file=sys.stderr)
        sys.exit(2)
    sys.exit(_load_main(sys.argv[2:]))
