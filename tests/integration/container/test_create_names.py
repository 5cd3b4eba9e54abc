"""Generated names under concurrent creates: checked and reserved in one step."""

from __future__ import annotations

import threading
from typing import Any

from tests.support.whaled_proc import WhaledProcess

V = "/v1.45"
THREADS = 32
PER_THREAD = 12


def test_concurrent_unnamed_creates_never_conflict(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    statuses: list[int] = []
    bodies: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(PER_THREAD):
            status, _, body = whaled.request(
                "POST",
                f"{V}/containers/create",
                {"Image": busybox_image, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}},
                timeout=120,
            )
            with lock:
                statuses.append(status)
                if status != 201:
                    bodies.append(body)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(statuses) == THREADS * PER_THREAD
    assert bodies == [], bodies[:3]
    names: Any = whaled.client().api.containers(all=True)
    assert len({c["Names"][0] for c in names}) == THREADS * PER_THREAD
