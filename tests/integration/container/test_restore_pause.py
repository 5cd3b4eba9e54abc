"""A daemon killed during a commit (found by the crash-safety harness,
tests/robustness/test_crash_safety.py): the commit had paused the container, and after the
restart it stayed paused for good though nobody had asked for it (exec refused with 409).
Now the record says when a pause is a commit's, and the restart resumes such a container;
it also trusts the runtime over a record that a pause or unpause cut short left behind. A
pause the user asked for still survives a restart."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from tests.support.whaled_proc import WhaledProcess

CMD = ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]


def _runc(whaled: WhaledProcess, runtime: str, cid: str, *args: str) -> None:
    """The container's runtime, on the daemon's runtime state (the daemon being down)."""
    root = os.path.join(whaled.exec_root, os.path.basename(runtime))
    subprocess.run([runtime, "--root", root, *args, cid], check=True, timeout=30)


def _edit_record(whaled: WhaledProcess, cid: str, **changes: Any) -> None:
    path = os.path.join(whaled.data_root, "containers", cid, "container.json")
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    for key, value in changes.items():
        if key == "status":
            record["state"]["status"] = value
        else:
            record[key] = value
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)


def _running_container(whaled: WhaledProcess, image: str) -> tuple[Any, str, str]:
    """(API client, container ID, its runtime's path)."""
    api = whaled.api()
    cid = api.create_container(image, CMD)["Id"]
    api.start(cid)
    return api, cid, str(api.inspect_container(cid)["WhaledRuntimePath"])


def _execs(api: Any, cid: str) -> bytes:
    e = api.exec_create(cid, ["echo", "alive"])
    return bytes(api.exec_start(e["Id"])).strip()


def test_container_paused_by_a_commit_cut_short_is_resumed(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    api, cid, runtime = _running_container(whaled, busybox_image)
    whaled.kill9()
    # What a kill in the middle of ``docker commit`` (pause on) leaves.
    _runc(whaled, runtime, cid, "pause")
    _edit_record(whaled, cid, status="paused", paused_for_commit=True)
    whaled.restart()
    api = whaled.api()
    state = api.inspect_container(cid)["State"]
    assert (state["Status"], state["Paused"]) == ("running", False)
    assert _execs(api, cid) == b"alive"


def test_pause_cut_before_its_record_is_undone(whaled: WhaledProcess, busybox_image: str) -> None:
    api, cid, runtime = _running_container(whaled, busybox_image)
    whaled.kill9()
    _runc(whaled, runtime, cid, "pause")  # the record still says running
    whaled.restart()
    api = whaled.api()
    assert api.inspect_container(cid)["State"]["Status"] == "running"
    assert _execs(api, cid) == b"alive"


def test_unpause_cut_before_its_record_shows_running(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    api, cid, runtime = _running_container(whaled, busybox_image)
    api.pause(cid)
    whaled.kill9()
    _runc(whaled, runtime, cid, "resume")  # the record still says paused
    whaled.restart()
    api = whaled.api()
    assert api.inspect_container(cid)["State"]["Status"] == "running"
    assert _execs(api, cid) == b"alive"


def test_pause_the_user_asked_for_survives_a_restart(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    api, cid, _runtime = _running_container(whaled, busybox_image)
    api.pause(cid)
    whaled.kill9()
    whaled.restart()
    api = whaled.api()
    assert api.inspect_container(cid)["State"]["Status"] == "paused"
    api.unpause(cid)
    assert _execs(api, cid) == b"alive"


def test_commit_leaves_no_pause_mark(whaled: WhaledProcess, busybox_image: str) -> None:
    api, cid, _runtime = _running_container(whaled, busybox_image)
    api.commit(cid, repository="committed", tag="1")
    path = os.path.join(whaled.data_root, "containers", cid, "container.json")
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    assert record["state"]["status"] == "running" and not record["paused_for_commit"]
