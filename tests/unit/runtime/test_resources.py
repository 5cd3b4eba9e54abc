from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.resources import (
    HostCpusets,
    Resources,
    adapt_resources,
    nano_cpus_to_cfs,
    parse_cpuset,
    to_oci_resources,
    validate_resources,
)

MiB = 1024 * 1024


def check(r: Resources, version: int = 1, cpus: int | None = None) -> list[str]:
    return validate_resources(r, cgroup_version=1 if version == 1 else 2, host_cpus=cpus)


def test_nothing_set_gives_nothing() -> None:
    assert to_oci_resources(Resources(), cgroup_version=1) == {}
    assert check(Resources()) == []


def test_memory_fields() -> None:
    r = Resources(memory=64 * MiB, memory_swap=128 * MiB, memory_reservation=32 * MiB)
    assert to_oci_resources(r, cgroup_version=1)["memory"] == {
        "limit": 64 * MiB,
        "reservation": 32 * MiB,
        "swap": 128 * MiB,
    }


def test_unlimited_swap() -> None:
    r = Resources(memory=64 * MiB, memory_swap=-1)
    assert to_oci_resources(r, cgroup_version=2)["memory"]["swap"] == -1


def test_swap_left_out_without_swap_accounting() -> None:
    r = Resources(memory=64 * MiB, memory_swap=128 * MiB)
    assert "swap" not in to_oci_resources(r, cgroup_version=1, swap_limit=False)["memory"]


def test_kernel_memory_ignored() -> None:
    r = Resources(kernel_memory=64 * MiB)
    assert to_oci_resources(r, cgroup_version=1) == {}
    assert any("kernel memory" in w for w in check(r))


def test_swappiness_and_oom_kill_disable_v1() -> None:
    r = Resources(memory=64 * MiB, memory_swappiness=10, oom_kill_disable=True)
    mem = to_oci_resources(r, cgroup_version=1)["memory"]
    assert mem["swappiness"] == 10 and mem["disableOOMKiller"] is True
    assert check(r) == []


def test_swappiness_and_oom_kill_disable_dropped_on_v2() -> None:
    r = Resources(memory=64 * MiB, memory_swappiness=10, oom_kill_disable=True)
    mem = to_oci_resources(r, cgroup_version=2)["memory"]
    assert mem == {"limit": 64 * MiB}
    warnings = check(r, version=2)
    assert any("swappiness" in w for w in warnings)
    assert any("OomKillDisable" in w for w in warnings)


def test_swappiness_unset_values() -> None:
    assert to_oci_resources(Resources(memory_swappiness=-1), cgroup_version=1) == {}
    assert check(Resources(memory_swappiness=-1), version=2) == []


def test_oom_kill_disable_without_memory_warns_on_v1() -> None:
    assert any("OOM killer is disabled" in w for w in check(Resources(oom_kill_disable=True)))


@pytest.mark.parametrize(
    ("r", "message"),
    [
        (Resources(memory=1 * MiB), "Minimum memory limit allowed is 6MB"),
        (Resources(memory_swap=64 * MiB), "You should always set the Memory limit"),
        (
            Resources(memory=64 * MiB, memory_swap=32 * MiB),
            "Minimum memoryswap limit should be larger than memory limit",
        ),
        (Resources(memory_swappiness=101), "valid memory swappiness range is 0-100"),
        (
            Resources(memory=64 * MiB, memory_reservation=128 * MiB),
            "Minimum memory limit can not be less than memory reservation limit",
        ),
        (Resources(memory_reservation=1 * MiB), "Minimum memory reservation allowed is 6MB"),
        (
            Resources(nano_cpus=10**9, cpu_period=100000),
            "Nano CPUs and CPU Period cannot both be set",
        ),
        (
            Resources(nano_cpus=10**9, cpu_quota=50000),
            "Nano CPUs and CPU Quota cannot both be set",
        ),
        (Resources(cpu_period=999), "CPU cfs period can not be less than 1ms"),
        (Resources(cpu_period=1_000_001), "larger than 1s"),
        (Resources(cpu_quota=999), "CPU cfs quota can not be less than 1ms"),
        (Resources(cpu_shares=-1), "invalid CPU shares"),
        (Resources(cpuset_cpus="0-"), "Invalid value 0- for cpuset cpus"),
        (Resources(cpuset_cpus="3-1"), "Invalid value 3-1 for cpuset cpus"),
        (Resources(cpuset_mems="a"), "Invalid value a for cpuset mems"),
        (Resources(blkio_weight=5), "Range of blkio weight is from 10 to 1000"),
        (Resources(blkio_weight=1001), "Range of blkio weight is from 10 to 1000"),
    ],
)
def test_refused(r: Resources, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        check(r)


def test_nano_cpus_range_uses_host_cpus() -> None:
    check(Resources(nano_cpus=2 * 10**9), cpus=2)
    with pytest.raises(
        InvalidParameter, match=r"^Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs"
    ):
        check(Resources(nano_cpus=3 * 10**9), cpus=2)


def test_a_cpuset_must_name_cpus_and_nodes_the_host_has() -> None:
    host = HostCpusets(cpus="0-1", mems="0")
    ok = Resources(cpuset_cpus="1", cpuset_mems="0")
    assert validate_resources(ok, cgroup_version=1, cpusets=host) == []
    with pytest.raises(
        InvalidParameter,
        match=r"^Requested CPUs are not available - requested 0-3, available: 0-1$",
    ):
        validate_resources(Resources(cpuset_cpus="0-3"), cgroup_version=1, cpusets=host)
    with pytest.raises(
        InvalidParameter,
        match=r"^Requested memory nodes are not available - requested 0,1, available: 0$",
    ):
        validate_resources(Resources(cpuset_mems="0,1"), cgroup_version=2, cpusets=host)
    # unknown host cpusets: nothing to check against
    assert check(Resources(cpuset_cpus="0-63")) == []


def test_parse_cpuset() -> None:
    assert parse_cpuset("0-2,7") == {0, 1, 2, 7}
    assert parse_cpuset("3\n") == {3}
    assert parse_cpuset("") == frozenset()


def test_nano_cpus_conversion() -> None:
    assert nano_cpus_to_cfs(1_500_000_000) == (150_000, 100_000)
    assert nano_cpus_to_cfs(10_000_000) == (1_000, 100_000)
    cpu = to_oci_resources(Resources(nano_cpus=500_000_000), cgroup_version=2)["cpu"]
    assert cpu == {"quota": 50_000, "period": 100_000}


def test_cpu_fields() -> None:
    r = Resources(
        cpu_shares=512, cpu_quota=50_000, cpu_period=100_000, cpuset_cpus="0,1", cpuset_mems="0"
    )
    assert to_oci_resources(r, cgroup_version=1)["cpu"] == {
        "shares": 512,
        "quota": 50_000,
        "period": 100_000,
        "cpus": "0,1",
        "mems": "0",
    }
    assert check(r) == []


def test_cpu_shares_clamped() -> None:
    assert to_oci_resources(Resources(cpu_shares=1), cgroup_version=1)["cpu"]["shares"] == 2
    big = to_oci_resources(Resources(cpu_shares=10**6), cgroup_version=1)
    assert big["cpu"]["shares"] == 262144


def test_pids_limit() -> None:
    assert to_oci_resources(Resources(pids_limit=100), cgroup_version=1)["pids"] == {"limit": 100}
    assert to_oci_resources(Resources(pids_limit=0), cgroup_version=1)["pids"] == {"limit": -1}
    assert to_oci_resources(Resources(pids_limit=-1), cgroup_version=2)["pids"] == {"limit": -1}
    assert "pids" not in to_oci_resources(Resources(pids_limit=None), cgroup_version=1)


def test_blkio_weight() -> None:
    r = Resources(blkio_weight=300)
    assert to_oci_resources(r, cgroup_version=1)["blockIO"] == {"weight": 300}
    assert to_oci_resources(r, cgroup_version=2)["blockIO"] == {"weight": 300}


def test_adapt_doubles_memory_for_swap() -> None:
    r = adapt_resources(Resources(memory=64 * MiB), swap_limit=True)
    assert r.memory_swap == 128 * MiB
    kept = adapt_resources(Resources(memory=64 * MiB, memory_swap=-1), swap_limit=True)
    assert kept.memory_swap == -1


def test_adapt_without_swap_accounting() -> None:
    assert adapt_resources(Resources(memory=64 * MiB), swap_limit=False).memory_swap == 0
    r = adapt_resources(Resources(memory=64 * MiB, memory_swap=96 * MiB), swap_limit=False)
    assert r.memory_swap == -1
