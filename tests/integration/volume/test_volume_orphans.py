"""Anonymous volumes across a daemon killed mid-operation (found by the crash-safety harness,
tests/robustness/test_crash_safety.py): a create cut short after its anonymous volume was
made, or an ``rm -v`` cut short after the container's record went, left a volume that no
container would ever remove. Such a volume now records its owner until the container is
removed, and the start drops anonymous volumes whose owner is gone, while keeping those a
user chose to keep (``rm`` without ``-v``) or another container still mounts."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.support.whaled_proc import WhaledProcess


def _volume_names(api: Any) -> set[str]:
    return {v["Name"] for v in api.volumes().get("Volumes") or []}


def _anonymous_volume(api: Any, cid: str) -> str:
    (mount,) = [m for m in api.inspect_container(cid)["Mounts"] if m["Type"] == "volume"]
    return str(mount["Name"])


def _kill_and_restart(whaled: WhaledProcess) -> Any:
    whaled.kill9()
    whaled.restart()
    return whaled.api()


def test_volume_of_a_container_whose_record_is_gone_is_dropped_at_start(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    api = whaled.api()
    cid = api.create_container(busybox_image, ["true"], volumes=["/data"])["Id"]
    name = _anonymous_volume(api, cid)
    whaled.kill9()
    # What a kill between the volume and the record of a create leaves (and what a kill
    # between the record and the volume of an ``rm -v`` leaves): the volume, no record.
    record = os.path.join(whaled.data_root, "volumes", name, "volume.json")
    with open(record, encoding="utf-8") as f:
        assert json.load(f)["WhaledOwner"] == cid
    os.unlink(os.path.join(whaled.data_root, "containers", cid, "container.json"))
    whaled.restart()
    api = whaled.api()
    assert api.containers(all=True) == []
    assert name not in _volume_names(api)
    assert not os.path.exists(os.path.join(whaled.data_root, "volumes", name))


def test_volume_kept_by_rm_without_v_survives_a_restart(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    api = whaled.api()
    cid = api.create_container(busybox_image, ["true"], volumes=["/data"])["Id"]
    name = _anonymous_volume(api, cid)
    api.remove_container(cid)  # no -v: the user keeps the volume
    api = _kill_and_restart(whaled)
    assert name in _volume_names(api)


def test_volume_still_mounted_by_another_container_survives_its_owner(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    api = whaled.api()
    owner = api.create_container(busybox_image, ["true"], volumes=["/data"])["Id"]
    name = _anonymous_volume(api, owner)
    other = api.create_container(
        busybox_image, ["true"], host_config=api.create_host_config(volumes_from=[owner])
    )["Id"]
    api.remove_container(owner, v=True)  # kept: ``other`` mounts it
    assert name in _volume_names(api)
    api.remove_container(other)  # no -v: kept for good
    api = _kill_and_restart(whaled)
    assert name in _volume_names(api)


def test_rm_v_and_autoremove_still_remove_the_volume(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    api = whaled.api()
    cid = api.create_container(busybox_image, ["true"], volumes=["/data"])["Id"]
    name = _anonymous_volume(api, cid)
    api.remove_container(cid, v=True)
    assert name not in _volume_names(api)
    api = _kill_and_restart(whaled)
    assert _volume_names(api) == set()
