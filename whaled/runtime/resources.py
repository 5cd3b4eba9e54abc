"""Container resource limits: dockerd's validation and the OCI ``linux.resources`` they
become, on cgroup v1 and v2 (pure).

Values are in the Docker API's units (bytes, CPU shares, microseconds, nano-CPUs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from whaled.errors import InvalidParameter

CgroupVersion = Literal[1, 2]

_MIN_MEMORY = 6 * 1024 * 1024
_NANO = 1_000_000_000
#: The CFS period dockerd uses to express ``--cpus`` (100 ms, in microseconds).
NANO_CPUS_PERIOD = 100_000
_MIN_SHARES, _MAX_SHARES = 2, 262144
_CPUSET_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """The resource fields of a HostConfig. 0 / None mean "not set" as in the API."""

    memory: int = 0
    #: memory + swap; -1 unlimited.
    memory_swap: int = 0
    memory_reservation: int = 0
    #: Accepted for compatibility and ignored (deprecated by Docker, unsupported on cgroup v2).
    kernel_memory: int = 0
    #: 0..100; None or -1: the host default.
    memory_swappiness: int | None = None
    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    nano_cpus: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    #: None: not set; <= 0: unlimited.
    pids_limit: int | None = None
    blkio_weight: int = 0
    oom_kill_disable: bool = False


@dataclass(frozen=True, slots=True)
class HostCpusets:
    """The CPUs and memory nodes containers may use (the root cpuset's, as the kernel lists
    them: "0-3,8"); "" when unknown, and then a request is not checked against them."""

    cpus: str = ""
    mems: str = ""


#: no cpusets known: requests are not checked against any
UNKNOWN_CPUSETS = HostCpusets()


def parse_cpuset(value: str) -> frozenset[int]:
    """The members of a cpuset list ("0-2,7" → {0, 1, 2, 7}); its syntax checked first."""
    out: set[int] = set()
    for part in value.strip().split(",") if value.strip() else ():
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return frozenset(out)


def _check_available(requested: str, available: str, message: str) -> None:
    if requested and available.strip() and not parse_cpuset(requested) <= parse_cpuset(available):
        raise InvalidParameter(f"{message} - requested {requested}, available: {available.strip()}")


def _check_cpuset(value: str, what: str) -> None:
    if value and not _CPUSET_RE.match(value):
        raise InvalidParameter(f"Invalid value {value} for cpuset {what}")
    for part in value.split(",") if value else ():
        low, _, high = part.partition("-")
        if high and int(high) < int(low):
            raise InvalidParameter(f"Invalid value {value} for cpuset {what}")


def validate_resources(
    r: Resources,
    *,
    cgroup_version: CgroupVersion,
    host_cpus: int | None = None,
    cpusets: HostCpusets = UNKNOWN_CPUSETS,
) -> list[str]:
    """Raise 400 for values dockerd refuses; return dockerd-style warnings for values that are
    accepted but dropped on this host (the create response's ``Warnings``). A cpuset naming
    CPUs or memory nodes the host does not have is refused here, at create or update, as
    dockerd does, rather than by the runtime at start."""
    warnings: list[str] = []
    if r.memory != 0 and r.memory < _MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if r.memory == 0 and r.memory_swap > 0:
        raise InvalidParameter(
            "You should always set the Memory limit when using Memoryswap limit, see usage."
        )
    if r.memory > 0 and 0 < r.memory_swap < r.memory:
        raise InvalidParameter(
            "Minimum memoryswap limit should be larger than memory limit, see usage."
        )
    swappiness = r.memory_swappiness
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidParameter(
            f"Invalid value: {swappiness}, valid memory swappiness range is 0-100"
        )
    if r.memory > 0 and r.memory_reservation > 0 and r.memory < r.memory_reservation:
        raise InvalidParameter(
            "Minimum memory limit can not be less than memory reservation limit, see usage."
        )
    if r.memory_reservation != 0 and r.memory_reservation < _MIN_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    if r.nano_cpus != 0:
        if r.cpu_period > 0:
            raise InvalidParameter(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set"
            )
        if r.cpu_quota > 0:
            raise InvalidParameter(
                "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
            )
        if host_cpus is not None and not 0 < r.nano_cpus <= host_cpus * _NANO:
            raise InvalidParameter(
                f"Range of CPUs is from 0.01 to {host_cpus}.00, "
                f"as there are only {host_cpus} CPUs available"
            )
        if r.nano_cpus < 0:
            raise InvalidParameter("Range of CPUs must be positive")
    if r.cpu_period != 0 and not 1000 <= r.cpu_period <= 1_000_000:
        raise InvalidParameter(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if 0 < r.cpu_quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if r.cpu_shares < 0:
        raise InvalidParameter(
            f"invalid CPU shares ({r.cpu_shares}): value must be a positive integer"
        )
    _check_cpuset(r.cpuset_cpus, "cpus")
    _check_cpuset(r.cpuset_mems, "mems")
    _check_available(r.cpuset_cpus, cpusets.cpus, "Requested CPUs are not available")
    _check_available(r.cpuset_mems, cpusets.mems, "Requested memory nodes are not available")
    if r.blkio_weight != 0 and not 10 <= r.blkio_weight <= 1000:
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")

    if r.kernel_memory:
        warnings.append(
            "Setting a kernel memory limit is not supported; the kernel memory limit was discarded."
        )
    if cgroup_version == 2:
        if swappiness is not None and swappiness != -1:
            warnings.append(
                "Your kernel does not support memory swappiness capabilities or the cgroup "
                "is not mounted. Memory swappiness discarded."
            )
        if r.oom_kill_disable:
            warnings.append(
                "Your kernel does not support OomKillDisable. OomKillDisable discarded."
            )
    elif r.oom_kill_disable and r.memory == 0:
        warnings.append(
            "OOM killer is disabled for the container, but no memory limit is set, "
            "this can result in the system running out of resources."
        )
    return warnings


def adapt_resources(r: Resources, *, swap_limit: bool) -> Resources:
    """dockerd's create-time defaults, stored in the HostConfig (so inspect shows them):
    a memory limit without a swap limit gets memory-swap = 2 * memory, where the host can
    limit swap; where it cannot, any swap limit is dropped (-1: unlimited)."""
    if not swap_limit:
        return replace(r, memory_swap=-1) if r.memory_swap > 0 else r
    if r.memory > 0 and r.memory_swap == 0:
        return replace(r, memory_swap=2 * r.memory)
    return r


def nano_cpus_to_cfs(nano_cpus: int) -> tuple[int, int]:
    """``--cpus`` as (quota, period) in microseconds: period 100 ms, quota in proportion."""
    return nano_cpus * NANO_CPUS_PERIOD // _NANO, NANO_CPUS_PERIOD


def to_oci_resources(
    r: Resources, *, cgroup_version: CgroupVersion, swap_limit: bool = True
) -> dict[str, Any]:
    """``linux.resources`` without ``devices`` (the spec builder adds those). Only the fields
    that are set appear; fields the cgroup version cannot honour are left out."""
    out: dict[str, Any] = {}

    memory: dict[str, Any] = {}
    if r.memory > 0:
        memory["limit"] = r.memory
    if r.memory_reservation > 0:
        memory["reservation"] = r.memory_reservation
    if r.memory_swap != 0 and swap_limit:
        memory["swap"] = r.memory_swap
    if cgroup_version == 1:
        if r.memory_swappiness is not None and r.memory_swappiness >= 0:
            memory["swappiness"] = r.memory_swappiness
        if r.oom_kill_disable:
            memory["disableOOMKiller"] = True
    if memory:
        out["memory"] = memory

    cpu: dict[str, Any] = {}
    if r.cpu_shares > 0:
        cpu["shares"] = min(max(r.cpu_shares, _MIN_SHARES), _MAX_SHARES)
    if r.nano_cpus > 0:
        cpu["quota"], cpu["period"] = nano_cpus_to_cfs(r.nano_cpus)
    else:
        if r.cpu_quota != 0:
            cpu["quota"] = r.cpu_quota
        if r.cpu_period != 0:
            cpu["period"] = r.cpu_period
    if r.cpuset_cpus:
        cpu["cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        cpu["mems"] = r.cpuset_mems
    if cpu:
        out["cpu"] = cpu

    if r.pids_limit is not None:
        # <= 0 is "unlimited" in the API; the runtime wants -1 for that (0 means "leave as is").
        out["pids"] = {"limit": r.pids_limit if r.pids_limit > 0 else -1}
    if r.blkio_weight > 0:
        out["blockIO"] = {"weight": r.blkio_weight}
    return out
