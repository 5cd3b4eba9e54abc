from __future__ import annotations

from typing import Any

import pytest

from whaled.container.update import plan_update
from whaled.errors import InvalidParameter

CID = "c" * 64


def update(hc: dict[str, Any], body: dict[str, Any]) -> Any:
    return plan_update(CID, hc, body, cgroup_version=2, host_cpus=4)


def test_zero_and_null_keep_the_value_pids_limit_excepted() -> None:
    hc = {"Memory": 64 << 20, "CpuShares": 512, "PidsLimit": 100}
    plan = update(hc, {"Memory": 0, "CpuShares": None, "PidsLimit": 0})
    assert plan.host_config == {"Memory": 64 << 20, "CpuShares": 512, "PidsLimit": 0}
    assert plan.resources_changed
    assert hc["PidsLimit"] == 100  # the input is not changed


def test_restart_policy_only_is_no_resource_change() -> None:
    plan = update({}, {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}})
    assert plan.host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert not plan.resources_changed


def test_memory_above_the_swap_already_set_needs_memory_swap() -> None:
    with pytest.raises(InvalidParameter, match="update the memoryswap at the same time"):
        update({"MemorySwap": 100 << 20}, {"Memory": 200 << 20})
    plan = update({"MemorySwap": 100 << 20}, {"Memory": 200 << 20, "MemorySwap": 400 << 20})
    assert plan.host_config["MemorySwap"] == 400 << 20


def test_restart_policy_refused_with_auto_remove() -> None:
    with pytest.raises(InvalidParameter, match="AutoRemove is enabled"):
        update({"AutoRemove": True}, {"RestartPolicy": {"Name": "always"}})
    update({"AutoRemove": True}, {"RestartPolicy": {"Name": "no"}})


def test_bad_restart_policy_and_nano_cpus_over_quota() -> None:
    with pytest.raises(InvalidParameter, match="unknown policy"):
        update({}, {"RestartPolicy": {"Name": "sometimes"}})
    with pytest.raises(InvalidParameter, match="CPU Quota cannot be updated"):
        update({"CpuQuota": 50000}, {"NanoCpus": 10**9})


def test_resources_validated_like_create() -> None:
    with pytest.raises(InvalidParameter, match="Minimum memory limit"):
        update({}, {"Memory": 1024})
