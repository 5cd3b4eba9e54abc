"""``docker update``: a request → the container's new HostConfig (pure).

dockerd's rules: only the resource keys and the restart policy can change; a key given as 0
or null keeps its value (``PidsLimit`` excepted: 0 and -1 are values); a memory limit above
the swap limit already set needs ``MemorySwap`` in the same request; a restart policy cannot
be set on an ``--rm`` container; ``NanoCpus`` cannot be set over ``CpuQuota``/``CpuPeriod``;
the result must pass the same resource validation as a create.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from whaled.container.restart import RestartPolicy
from whaled.container.spec_input import resources_of
from whaled.errors import InvalidParameter
from whaled.runtime.resources import (
    UNKNOWN_CPUSETS,
    CgroupVersion,
    HostCpusets,
    validate_resources,
)

UPDATABLE_RESOURCES = (
    "BlkioWeight",
    "CpuShares",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpusetCpus",
    "CpusetMems",
    "Memory",
    "MemorySwap",
    "MemoryReservation",
    "KernelMemory",
    "NanoCpus",
    "PidsLimit",
    "OomKillDisable",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdatePlan:
    host_config: dict[str, Any]  # the new HostConfig (a copy)
    resources_changed: bool  # the running container's cgroup must be updated


def plan_update(
    container_id: str,
    host_config: Mapping[str, Any],
    body: Mapping[str, Any],
    *,
    cgroup_version: CgroupVersion,
    host_cpus: int | None,
    cpusets: HostCpusets = UNKNOWN_CPUSETS,
) -> UpdatePlan:
    """The container's HostConfig after the update request ``body`` (400 for what dockerd
    refuses)."""
    hc = dict(host_config)
    changed: dict[str, Any] = {}
    for key in UPDATABLE_RESOURCES:
        if key in body and body[key] is not None and body[key] != 0:
            changed[key] = body[key]
    if body.get("PidsLimit") is not None:
        changed["PidsLimit"] = body["PidsLimit"]
    memory = int(changed.get("Memory") or 0)
    swap = int(hc.get("MemorySwap") or 0)
    if memory and "MemorySwap" not in changed and swap > 0 and memory > swap:
        raise InvalidParameter(
            f"Cannot update container {container_id}: Memory limit should be smaller than "
            "already set memoryswap limit, update the memoryswap at the same time"
        )
    policy = body.get("RestartPolicy")
    if policy and policy.get("Name") is not None:
        if hc.get("AutoRemove") and policy.get("Name") not in ("", "no"):
            raise InvalidParameter(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
            )
        hc["RestartPolicy"] = {
            "Name": policy.get("Name") or "no",
            "MaximumRetryCount": int(policy.get("MaximumRetryCount") or 0),
        }
        RestartPolicy.from_api(hc["RestartPolicy"]).validate()
    if "NanoCpus" in changed and (hc.get("CpuQuota") or hc.get("CpuPeriod")):
        raise InvalidParameter(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
        )
    hc.update(changed)
    validate_resources(
        resources_of(hc), cgroup_version=cgroup_version, host_cpus=host_cpus, cpusets=cpusets
    )
    return UpdatePlan(host_config=hc, resources_changed=bool(changed))
