"""Volume rules: names, what a create asks for, filters and prune selection."""

from __future__ import annotations

from typing import Any

import pytest

from whaled.errors import InvalidParameter, NotFound
from whaled.volume import rules
from whaled.volume.model import ANONYMOUS_LABEL, MountPoint, Volume
from whaled.volume.store import mount_args


def test_names() -> None:
    assert rules.check_name("data_1.x-y") == "data_1.x-y"
    for bad in ("a", "-x", "with space", "a/b", "/abs"):
        with pytest.raises(InvalidParameter, match="includes invalid characters"):
            rules.check_name(bad)


def test_drivers_and_options() -> None:
    assert rules.check_driver("") == "local"
    with pytest.raises(NotFound, match='plugin "nfs3" not found'):
        rules.check_driver("nfs3")
    rules.check_driver_opts({"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    with pytest.raises(InvalidParameter):
        rules.check_driver_opts({"colour": "blue"})


def _req(config: dict[str, Any], hc: dict[str, Any]) -> list[tuple[str | None, str, bool, bool]]:
    return [(r.name, r.destination, r.rw, r.nocopy) for r in rules.volume_requests(config, hc)]


def test_requests_from_binds_mounts_and_config_volumes() -> None:
    hc = {
        "Binds": ["data:/data:ro,nocopy", "/host:/host", "cache:/cache"],
        "Mounts": [
            {"Type": "volume", "Source": "named", "Target": "/m", "ReadOnly": True},
            {"Type": "volume", "Target": "/anon"},
            {"Type": "tmpfs", "Target": "/tmp"},
        ],
    }
    config = {"Volumes": {"/data": {}, "/image-vol": {}, "/tmp": {}}}
    assert _req(config, hc) == [
        ("data", "/data", False, True),
        ("cache", "/cache", True, False),
        ("named", "/m", False, False),
        (None, "/anon", True, False),
        (None, "/image-vol", True, False),  # /data and /tmp are already covered
    ]


@pytest.mark.parametrize(
    ("hc", "message"),
    [
        ({"Binds": ["data:/x", "other:/x"]}, "Duplicate mount point: /x"),
        ({"Binds": ["data:relative"]}, "invalid volume specification"),
        ({"Binds": ["data:/x:shared"]}, "invalid mode: shared"),
        ({"Mounts": [{"Type": "volume"}]}, "field Target must not be empty"),
        ({"Mounts": [{"Type": "volume", "Target": "x"}]}, "mount path must be absolute"),
        (
            {
                "Mounts": [
                    {"Type": "volume", "Target": "/x", "BindOptions": {"Propagation": "shared"}}
                ]
            },
            "field BindOptions must not be specified",
        ),
        (
            {"Mounts": [{"Type": "volume", "Target": "/x", "VolumeOptions": {"Subpath": "../up"}}]},
            "subpath must be a relative path",
        ),
    ],
)
def test_refused_requests(hc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        rules.volume_requests({}, hc)


def test_filters_and_prune() -> None:
    anon = Volume(name="a" * 64, labels={ANONYMOUS_LABEL: ""})
    named = Volume(name="db", labels={"tier": "data"})
    assert rules.matches(named, {"name": ["d"]}, in_use=False)
    assert not rules.matches(named, {"name": ["x"]}, in_use=False)
    assert rules.matches(named, {"name": ["^d[a-c]$"]}, in_use=False)  # a Go regexp
    assert not rules.matches(named, {"name": ["^b"]}, in_use=False)
    assert not rules.matches(named, {"name": ["("]}, in_use=False)  # invalid: matches nothing
    assert rules.matches(named, {"label": ["tier=data"]}, in_use=True)
    assert not rules.matches(named, {"label": ["tier=web"]}, in_use=True)
    assert rules.matches(named, {"dangling": ["true"]}, in_use=False)
    assert not rules.matches(named, {"dangling": ["true"]}, in_use=True)
    assert rules.prunable(anon, {}, all_volumes=False)
    assert not rules.prunable(named, {}, all_volumes=False)
    assert rules.prunable(named, {}, all_volumes=True)
    assert not rules.prunable(named, {"label!": ["tier"]}, all_volumes=True)
    with pytest.raises(InvalidParameter, match="invalid filter 'colour'"):
        rules.check_filters({"colour": ["x"]}, rules.LIST_FILTERS)


def test_records_round_trip() -> None:
    p = MountPoint(name="v", destination="/d", source="/s", rw=False, mode="ro", anonymous=True)
    assert MountPoint.from_json(p.to_json()) == p
    v = Volume(name="v", labels={"a": "b"}, options={"type": "tmpfs"}, created_at="t")
    assert Volume.from_json(v.to_json()) == v


def test_mount_args_of_driver_options() -> None:
    assert mount_args({"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000"}) == (
        "tmpfs",
        "tmpfs",
        0,
        "size=1m,uid=1000",
    )
    assert mount_args({"type": "none", "device": "/srv", "o": "bind,ro"}) == (
        "/srv",
        "",
        4096 | 1,
        "",
    )
