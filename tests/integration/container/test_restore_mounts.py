"""A container re-adopted after a daemon crash that then exits (found by the crash-safety
harness, tests/robustness/test_crash_safety.py): its rootfs stayed mounted for good, because
the mount found at start was counted once by the RW layer store and once more by the
adoption, and the exit released only one. Now only the adoption counts it."""

from __future__ import annotations

import time
from typing import Any

from tests.support.whaled_proc import WhaledProcess, mounts_under


def _wait_exited(api: Any, cid: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while api.inspect_container(cid)["State"]["Status"] != "exited":
        assert time.monotonic() < deadline, "the container did not exit"
        time.sleep(0.1)


def test_rootfs_of_an_adopted_container_is_unmounted_at_its_exit(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    api = whaled.api()
    cid = api.create_container(busybox_image, ["sh", "-c", "sleep 2"])["Id"]
    api.start(cid)
    whaled.kill9()
    whaled.restart()
    api = whaled.api()
    assert api.inspect_container(cid)["State"]["Status"] == "running"  # re-adopted
    assert len(mounts_under(whaled.data_root)) == 1
    _wait_exited(api, cid)
    deadline = time.monotonic() + 10
    while mounts_under(whaled.data_root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mounts_under(whaled.data_root) == []
    # and it starts again as usual (mounted once more, unmounted at its exit)
    api.start(cid)
    _wait_exited(api, cid)
    deadline = time.monotonic() + 10
    while mounts_under(whaled.data_root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mounts_under(whaled.data_root) == []


def test_rootfs_of_an_adopted_container_is_unmounted_at_stop(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    api = whaled.api()
    cid = api.create_container(busybox_image, ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"])[
        "Id"
    ]
    api.start(cid)
    whaled.kill9()
    whaled.restart()
    api = whaled.api()
    api.stop(cid, timeout=5)
    deadline = time.monotonic() + 10
    while mounts_under(whaled.data_root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mounts_under(whaled.data_root) == []
