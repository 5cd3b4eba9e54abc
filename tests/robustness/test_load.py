"""Load (issue 17, part 7): 64 concurrent clients against one whaled for a bounded time.

Each client is a thread with its own docker-py ``APIClient`` and its own containers (at most
:data:`PER_CLIENT` at a time), and mixes list, inspect, create, start, logs, exec, stop and
rm at random (seeded; the seed is printed). Asserted: no 5xx and no other refused request
(a client only touches its own containers, so every request is valid), no request hung
beyond :data:`REQUEST_TIMEOUT`, the daemon still answers ``/_ping`` at the end (no
deadlock), and every container ends in the state its client's last successful operation
implies; then all are removed and none is left (nor a rootfs mount). p50/p99 latency per
operation and overall are printed (``-s``) for docs/robustness.md.

CI runs it for ~45 s; ``make robustness-long`` (``WHALED_ROBUSTNESS_LONG=1``) for 5 minutes.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest
import requests

from tests.robustness.conftest import LONG
from tests.support.whaled_proc import API_VERSION, WhaledProcess, mounts_under

CLIENTS = 64
DURATION = 300.0 if LONG else 45.0
REQUEST_TIMEOUT = 60
PER_CLIENT = 2
IMAGE = "loadbase:latest"
CMD = ["sh", "-c", "trap 'exit 0' TERM; while true; do echo tick; sleep 1; done"]
OPS = ("list", "inspect", "create", "start", "logs", "exec", "stop", "rm")
WEIGHTS = (4, 4, 2, 2, 2, 2, 2, 2)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(1, int(q * len(ordered) + 0.999999))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Client:
    """One client thread: its API client, its containers and what it saw."""

    whaled: WhaledProcess
    index: int
    rng: random.Random
    deadline: float
    #: container ID -> the state its last successful operation implies.
    expected: dict[str, str] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    made: int = 0

    def timed(self, op: str, call: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        try:
            return call()
        except docker.errors.APIError as e:
            self.failures.append(f"client {self.index} {op}: {e.status_code} {e.explanation}")
            return None
        except requests.exceptions.Timeout:
            self.failures.append(f"client {self.index} {op}: hung over {REQUEST_TIMEOUT}s")
            return None
        finally:
            self.latencies.setdefault(op, []).append(time.monotonic() - t0)

    def mine(self, state: str | None = None) -> list[str]:
        return [c for c, s in self.expected.items() if state is None or s == state]

    def pick(self, items: list[str]) -> str | None:
        return items[self.rng.randrange(len(items))] if items else None

    def run(self) -> None:
        api = docker.APIClient(
            base_url=self.whaled.url, version=API_VERSION, timeout=REQUEST_TIMEOUT
        )
        try:
            while time.monotonic() < self.deadline and len(self.failures) < 5:
                self.step(api, self.rng.choices(OPS, WEIGHTS)[0])
        except Exception as e:  # a client error that is not the daemon's answer
            self.failures.append(f"client {self.index}: {type(e).__name__}: {e}")
        finally:
            api.close()

    def step(self, api: Any, op: str) -> None:
        if op == "create" and len(self.expected) >= PER_CLIENT:
            op = "rm"
        if op == "list":
            self.timed(op, lambda: api.containers(all=True))
        elif op == "inspect":
            cid = self.pick(self.mine())
            if cid is not None:
                found = self.timed(op, lambda: api.inspect_container(cid))
                if found is not None and found["State"]["Status"] != self.expected[cid]:
                    self.failures.append(
                        f"client {self.index}: {cid[:12]} is {found['State']['Status']}, "
                        f"expected {self.expected[cid]}"
                    )
        elif op == "create":
            self.made += 1
            name = f"load{self.index}-{self.made}"
            made = self.timed(op, lambda: api.create_container(IMAGE, CMD, name=name))
            if made is not None:
                self.expected[made["Id"]] = "created"
        elif op == "start":
            cid = self.pick(self.mine("created") + self.mine("exited"))
            if cid is not None and self.timed(op, lambda: api.start(cid) or True):
                self.expected[cid] = "running"
        elif op == "logs":
            cid = self.pick(self.mine())
            if cid is not None:
                self.timed(op, lambda: api.logs(cid, tail=5))
        elif op == "exec":
            cid = self.pick(self.mine("running"))
            if cid is not None:
                self.timed(op, lambda: self._exec(api, cid))
        elif op == "stop":
            cid = self.pick(self.mine("running"))
            if cid is not None and self.timed(op, lambda: api.stop(cid, timeout=5) or True):
                self.expected[cid] = "exited"
        elif op == "rm":
            cid = self.pick(self.mine())
            if cid is not None and self.timed(
                op, lambda: api.remove_container(cid, force=True) or True
            ):
                del self.expected[cid]

    def _exec(self, api: Any, cid: str) -> bool:
        e = api.exec_create(cid, ["echo", "hi"])
        out = api.exec_start(e["Id"])
        if out.strip() != b"hi":
            self.failures.append(f"client {self.index}: exec printed {out!r}")
        return True


@pytest.mark.timeout(DURATION + 2 * REQUEST_TIMEOUT + 300)
def test_64_concurrent_clients(whaled: WhaledProcess, busybox_tar: str) -> None:
    seed = int(os.environ.get("WHALED_LOAD_SEED") or random.randrange(1 << 32))
    print(f"\nload seed: WHALED_LOAD_SEED={seed} ({CLIENTS} clients, {DURATION:.0f} s)")
    rng = random.Random(seed)
    whaled.import_image(busybox_tar, IMAGE)
    deadline = time.monotonic() + DURATION
    clients = [Client(whaled, i, random.Random(rng.random()), deadline) for i in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, name=f"load-{c.index}") for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        # Each client stops issuing requests at the deadline; one last request may take
        # up to REQUEST_TIMEOUT: beyond that something hangs.
        t.join(timeout=max(0.0, deadline - time.monotonic()) + REQUEST_TIMEOUT + 30)
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"clients still blocked after the deadline: {hung}"

    status, _, body = whaled.request("GET", "/_ping", timeout=10)
    assert (status, body) == (200, b"OK"), "the daemon no longer answers /_ping"

    report(clients)
    failures = [f for c in clients for f in c.failures]
    assert not failures, "\n".join(failures[:50])

    api = whaled.api(timeout=REQUEST_TIMEOUT)
    wrong = []
    for c in clients:
        for cid, state in c.expected.items():
            actual = api.inspect_container(cid)["State"]["Status"]
            if actual != state:
                wrong.append(f"{cid[:12]} of client {c.index}: {actual}, expected {state}")
    assert not wrong, "\n".join(wrong)
    for c in clients:
        for cid in c.expected:
            api.remove_container(cid, force=True)
    assert api.containers(all=True) == []
    deadline = time.monotonic() + 10
    while mounts_under(whaled.data_root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mounts_under(whaled.data_root) == [], "rootfs mounts left after every rm"


def report(clients: list[Client]) -> None:
    merged: dict[str, list[float]] = {}
    for c in clients:
        for op, values in c.latencies.items():
            merged.setdefault(op, []).extend(values)
    merged["overall"] = [v for op in OPS for v in merged.get(op, [])]
    print(f"{'op':<10}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for op in (*OPS, "overall"):
        values = merged.get(op) or []
        if values:
            print(
                f"{op:<10}{len(values):>8}{percentile(values, 0.5) * 1000:>10.1f}"
                f"{percentile(values, 0.99) * 1000:>10.1f}{max(values) * 1000:>10.1f}"
            )
