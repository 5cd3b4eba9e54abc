"""Helpers shared by the container API tests (the autouse clean-up is in ``conftest.py``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.support.whaled_proc import WhaledProcess

T = TypeVar("T")
NONE = "none"
V = "/v1.45"


def poll(fn: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.05) -> T:
    """``fn()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        time.sleep(interval)


def run_bg(client: Any, image: str, *cmd: str, **kw: Any) -> Any:
    """``client.containers.run`` detached, without a network unless ``network_mode`` is given."""
    kw.setdefault("network_mode", NONE)
    return client.containers.run(image, list(cmd), detach=True, **kw)


def run_until_file(client: Any, image: str, path: str, script: str, **kw: Any) -> Any:
    """``run_bg`` of ``sh -c script``, returned once ``path`` exists in the container."""
    c = run_bg(client, image, "sh", "-c", script, **kw)
    poll(lambda: c.exec_run(["test", "-f", path]).exit_code == 0)
    return c


def create_id(
    api: Any, image: str, cmd: list[str], *, host: dict[str, Any] | None = None, **kw: Any
) -> str:
    """A container created (not started) through the low-level API without a network;
    ``host``: more ``create_host_config`` arguments, ``kw``: more ``create_container`` ones."""
    host_config = api.create_host_config(network_mode=NONE, **(host or {}))
    cid: str = api.create_container(image, cmd, host_config=host_config, **kw)["Id"]
    return cid


def raw_json(w: WhaledProcess, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """Raw request on ``path`` (with its API version); returns (status, decoded JSON body or
    None)."""
    status, _, out = w.request(method, path, body)
    return status, json.loads(out) if out.strip() else None


def call(w: WhaledProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """``raw_json`` on ``path`` under the API version ``V``."""
    return raw_json(w, V + path, method, body)


def is_zombie(pid: int) -> bool:
    """True when ``pid`` is a zombie or gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
