from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.devices import (
    Device,
    DeviceRule,
    device_rules_for,
    device_to_oci,
    parse_device_cgroup_rule,
    validate_device,
)

FUSE = Device(
    path="/dev/fuse", type="c", major=10, minor=229, file_mode=0o666, uid=0, gid=0, permissions="rw"
)


def test_default_rules_deny_all_then_allow_standard_devices() -> None:
    rules = device_rules_for([], [], privileged=False)
    assert rules[0] == {"allow": False, "access": "rwm"}
    allowed = {(r.get("type"), r.get("major"), r.get("minor"), r["access"]) for r in rules[1:]}
    assert ("c", None, None, "m") in allowed  # c *:* m
    assert ("b", None, None, "m") in allowed  # b *:* m
    for major, minor in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)]:
        assert ("c", major, minor, "rwm") in allowed
    assert ("c", 136, None, "rwm") in allowed  # /dev/pts/*
    assert all(r["allow"] for r in rules[1:])


def test_devices_and_rules_appended() -> None:
    rule = parse_device_cgroup_rule("b 8:* r")
    rules = device_rules_for([FUSE], [rule], privileged=False)
    assert rules[-2] == {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}
    assert rules[-1] == {"allow": True, "type": "b", "major": 8, "access": "r"}


def test_privileged_allows_everything() -> None:
    assert device_rules_for([FUSE], [], privileged=True) == [{"allow": True, "access": "rwm"}]


def test_device_to_oci() -> None:
    assert device_to_oci(FUSE) == {
        "path": "/dev/fuse",
        "type": "c",
        "major": 10,
        "minor": 229,
        "fileMode": 0o666,
        "uid": 0,
        "gid": 0,
    }
    assert device_to_oci(Device(path="/dev/x", type="b", major=8, minor=0)) == {
        "path": "/dev/x",
        "type": "b",
        "major": 8,
        "minor": 0,
    }


def test_parse_rules() -> None:
    assert parse_device_cgroup_rule("c 1:3 mr") == DeviceRule(
        allow=True, type="c", major=1, minor=3, access="mr"
    )
    assert parse_device_cgroup_rule("a *:* rwm") == DeviceRule(allow=True, access="rwm")


@pytest.mark.parametrize("text", ["c 1:3", "x 1:3 rwm", "c a:3 r", "c 1:3 rwx", ""])
def test_parse_bad_rules(text: str) -> None:
    with pytest.raises(InvalidParameter, match="invalid device cgroup format"):
        parse_device_cgroup_rule(text)


def test_validate_device() -> None:
    with pytest.raises(InvalidParameter, match="not an absolute path"):
        validate_device(Device(path="dev/x", type="c", major=1, minor=1))
    with pytest.raises(InvalidParameter, match="invalid device mode"):
        validate_device(Device(path="/dev/x", type="c", major=1, minor=1, permissions="rx"))
