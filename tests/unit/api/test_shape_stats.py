from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from whaled.api.shape.stats import (
    V1_MEMORY_STAT_KEYS,
    V2_MEMORY_STAT_KEYS,
    ZERO_TIME,
    go_time,
    shape_stats,
    zero_cpu_stats,
)

GiB = 1024**3
HOST_MEMORY = 24 * GiB
CID = "c" * 64

# `runc events --stats` data of a busybox container on this (cgroup v1) host, 64 MiB memory
# limit, 50 pids limit, 50% CPU quota, after writing 20 MiB with dd conv=fsync (trimmed: the
# cpuset/hugetlb/intel_rdt sections whaled does not use).
RUNC_V1: dict[str, Any] = {
    "cpu": {
        "usage": {
            "total": 18921947,
            "percpu": [1944882, 16977065],
            "percpu_kernel": [0, 12000000],
            "percpu_user": [0, 0],
            "kernel": 10000000,
            "user": 0,
        },
        "throttling": {"periods": 2},
    },
    "memory": {
        "cache": 20987904,
        "usage": {"limit": 67108864, "usage": 22110208, "max": 23539712, "failcnt": 0},
        "swap": {"limit": 9223372036854771712, "usage": 22110208, "max": 23539712, "failcnt": 0},
        "kernel": {"limit": 9223372036854771712, "usage": 827392, "max": 1183744, "failcnt": 0},
        "kernelTCP": {"limit": 9223372036854771712, "failcnt": 0},
        "raw": {
            "active_anon": 0,
            "active_file": 12288,
            "cache": 20987904,
            "dirty": 8192,
            "hierarchical_memory_limit": 67108864,
            "hierarchical_memsw_limit": 9223372036854771712,
            "inactive_anon": 0,
            "inactive_file": 20971520,
            "mapped_file": 0,
            "pgfault": 1111,
            "pgmajfault": 0,
            "pgpgin": 779,
            "pgpgout": 737,
            "rss": 53248,
            "rss_huge": 0,
            "shmem": 0,
            "swap": 0,
            "swapcached": 0,
            "total_active_anon": 0,
            "total_active_file": 12288,
            "total_cache": 20987904,
            "total_dirty": 8192,
            "total_inactive_anon": 0,
            "total_inactive_file": 20971520,
            "total_mapped_file": 0,
            "total_pgfault": 1111,
            "total_pgmajfault": 0,
            "total_pgpgin": 779,
            "total_pgpgout": 737,
            "total_rss": 53248,
            "total_rss_huge": 0,
            "total_shmem": 0,
            "total_swap": 0,
            "total_swapcached": 0,
            "total_unevictable": 0,
            "total_workingset_refault_anon": 0,
            "total_workingset_refault_file": 3,
            "total_writeback": 0,
            "unevictable": 0,
            "workingset_refault_anon": 0,
            "workingset_refault_file": 3,
            "writeback": 0,
        },
    },
    "pids": {"current": 1, "limit": 50},
    "blkio": {},
    "hugetlb": {},
    "intel_rdt": {},
    "network_interfaces": None,
}

# The same container without limits (runc reports the v1 "unlimited" page-rounded max).
RUNC_V1_UNLIMITED: dict[str, Any] = {
    "cpu": {
        "usage": {"total": 309786965, "percpu": [300586067, 9200898], "user": 300000000},
        "throttling": {},
    },
    "memory": {
        "cache": 12288,
        "usage": {"limit": 9223372036854771712, "usage": 491520, "max": 2535424, "failcnt": 0},
        "raw": {"total_inactive_file": 0, "cache": 12288, "rss": 53248},
    },
    "pids": {"current": 1},
    "blkio": {},
}

# cgroup v2 as runc's fs2 reports it: usage/limit from memory.current/max, memory.stat keys in
# raw, io.stat as capitalised Read/Write entries in two lists.
RUNC_V2: dict[str, Any] = {
    "cpu": {
        "usage": {"total": 5_000_000_000, "kernel": 1_000_000_000, "user": 4_000_000_000},
        "throttling": {"periods": 10, "throttledPeriods": 3, "throttledTime": 7_000_000},
    },
    "memory": {
        "usage": {"limit": 18446744073709551615, "usage": 100 * 1024 * 1024},
        "raw": {
            "anon": 60 * 1024 * 1024,
            "file": 40 * 1024 * 1024,
            "inactive_file": 30 * 1024 * 1024,
            "workingset_refault_file": 7,
        },
    },
    "pids": {"current": 4, "limit": 100},
    "blkio": {
        "ioServiceBytesRecursive": [
            {"major": 8, "op": "Read", "value": 4096},
            {"major": 8, "op": "Write", "value": 1048576},
            {"major": 8, "op": "Discard"},
        ],
        "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 1}],
    },
}


def shape(raw: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "container_id": CID,
        "name": "web",
        "read": "2026-11-24T13:35:08.123456789Z",
        "system_cpu_ns": 20_000_000_000_000,
        "online_cpus": 2,
        "cgroup_version": 1,
        "previous": None,
        "host_memory": HOST_MEMORY,
    }
    args.update(kw)
    return shape_stats(raw, **args)


# --- what the docker CLI 28 computes (cli/command/container/stats_helpers.go) ---------------


def cli_cpu_percent(v: Mapping[str, Any]) -> float:
    pre, cur = v["precpu_stats"], v["cpu_stats"]
    cpu_delta = float(cur["cpu_usage"]["total_usage"]) - float(pre["cpu_usage"]["total_usage"])
    system_delta = float(cur.get("system_cpu_usage", 0)) - float(pre.get("system_cpu_usage", 0))
    online = float(cur.get("online_cpus", 0)) or float(
        len(cur["cpu_usage"].get("percpu_usage") or [])
    )
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def cli_mem_usage(mem: Mapping[str, Any]) -> float:
    stats, usage = mem.get("stats") or {}, mem.get("usage", 0)
    if "total_inactive_file" in stats and stats["total_inactive_file"] < usage:
        return float(usage - stats["total_inactive_file"])
    if stats.get("inactive_file", 0) < usage:
        return float(usage - stats.get("inactive_file", 0))
    return float(usage)


def cli_bytes(size: float) -> str:
    """go-units BytesSize: "%.4g" with binary units."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"


def cli_row(v: Mapping[str, Any]) -> tuple[str, str, str, int]:
    """CPU %, MEM USAGE / LIMIT, MEM %, PIDS as `docker stats --no-stream` prints them."""
    mem = cli_mem_usage(v["memory_stats"])
    limit = float(v["memory_stats"].get("limit", 0))
    mem_pct = mem / limit * 100 if limit else 0.0
    return (
        f"{cli_cpu_percent(v):.2f}%",
        f"{cli_bytes(mem)} / {cli_bytes(limit)}",
        f"{mem_pct:.2f}%",
        v["pids_stats"].get("current", 0),
    )


# --- shape --------------------------------------------------------------------------------


def test_v1_top_level_shape_and_order() -> None:
    v = shape(RUNC_V1)
    assert list(v) == [
        "read",
        "preread",
        "pids_stats",
        "blkio_stats",
        "num_procs",
        "storage_stats",
        "cpu_stats",
        "precpu_stats",
        "memory_stats",
        "name",
        "id",
    ]
    assert v["read"] == "2026-11-24T13:35:08.123456789Z"
    assert v["preread"] == ZERO_TIME
    assert v["name"] == "/web" and v["id"] == CID
    assert v["num_procs"] == 0 and v["storage_stats"] == {}
    assert v["pids_stats"] == {"current": 1, "limit": 50}
    json.dumps(v)  # serialisable as is


def test_v1_cpu_stats() -> None:
    v = shape(RUNC_V1)
    assert v["cpu_stats"] == {
        "cpu_usage": {
            "total_usage": 18921947,
            "percpu_usage": [1944882, 16977065],
            "usage_in_kernelmode": 10000000,
            "usage_in_usermode": 0,
        },
        "system_cpu_usage": 20_000_000_000_000,
        "online_cpus": 2,
        "throttling_data": {"periods": 2, "throttled_periods": 0, "throttled_time": 0},
    }
    assert list(v["cpu_stats"]["cpu_usage"]) == [
        "total_usage",
        "percpu_usage",
        "usage_in_kernelmode",
        "usage_in_usermode",
    ]
    assert v["precpu_stats"] == zero_cpu_stats()


def test_v1_memory_stats() -> None:
    mem = shape(RUNC_V1)["memory_stats"]
    assert list(mem) == ["usage", "max_usage", "stats", "limit"]  # failcnt 0 omitted
    assert mem["usage"] == 22110208
    assert mem["max_usage"] == 23539712
    assert mem["limit"] == 64 * 1024 * 1024
    assert set(mem["stats"]) == set(V1_MEMORY_STAT_KEYS)
    assert list(mem["stats"]) == sorted(V1_MEMORY_STAT_KEYS)
    assert mem["stats"]["total_inactive_file"] == 20971520
    assert mem["stats"]["hierarchical_memsw_limit"] == 9223372036854771712
    assert "swap" not in mem["stats"] and "total_workingset_refault_file" not in mem["stats"]


def test_v1_failcnt_when_nonzero() -> None:
    raw = json.loads(json.dumps(RUNC_V1))
    raw["memory"]["usage"]["failcnt"] = 7
    assert shape(raw)["memory_stats"]["failcnt"] == 7


def test_unlimited_memory_reports_host_memory() -> None:
    mem = shape(RUNC_V1_UNLIMITED)["memory_stats"]
    assert mem["limit"] == HOST_MEMORY
    assert mem["stats"]["total_inactive_file"] == 0
    assert mem["stats"]["pgfault"] == 0  # missing keys are zero, still present


def test_limit_kept_when_host_memory_unknown() -> None:
    mem = shape(RUNC_V1_UNLIMITED, host_memory=0)["memory_stats"]
    assert mem["limit"] == 9223372036854771712


def test_v1_blkio_empty_lists() -> None:
    blkio = shape(RUNC_V1)["blkio_stats"]
    assert blkio == {
        "io_service_bytes_recursive": [],
        "io_serviced_recursive": [],
        "io_queue_recursive": [],
        "io_service_time_recursive": [],
        "io_wait_time_recursive": [],
        "io_merged_recursive": [],
        "io_time_recursive": [],
        "sectors_recursive": [],
    }


def test_v1_blkio_entries_copied() -> None:
    raw = dict(RUNC_V1)
    raw["blkio"] = {
        "ioServiceBytesRecursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 8192},
            {"major": 8, "op": "Write", "value": 20971520},
            {"major": 8, "op": "Total", "value": 20979712},
        ],
        "sectorsRecursive": [{"major": 8, "value": 40976}],
    }
    blkio = shape(raw)["blkio_stats"]
    assert blkio["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 8192},
        {"major": 8, "minor": 0, "op": "Write", "value": 20971520},
        {"major": 8, "minor": 0, "op": "Total", "value": 20979712},
    ]
    assert blkio["sectors_recursive"] == [{"major": 8, "minor": 0, "op": "", "value": 40976}]
    assert blkio["io_serviced_recursive"] == []


def test_v2_shape() -> None:
    v = shape(RUNC_V2, cgroup_version=2)
    assert v["cpu_stats"]["cpu_usage"] == {
        "total_usage": 5_000_000_000,
        "usage_in_kernelmode": 1_000_000_000,
        "usage_in_usermode": 4_000_000_000,
    }
    assert v["cpu_stats"]["throttling_data"] == {
        "periods": 10,
        "throttled_periods": 3,
        "throttled_time": 7_000_000,
    }
    mem = v["memory_stats"]
    assert list(mem) == ["usage", "stats", "limit"]  # no max_usage on v2
    assert set(mem["stats"]) == set(V2_MEMORY_STAT_KEYS)
    assert "total_inactive_file" not in mem["stats"]
    assert mem["stats"]["inactive_file"] == 30 * 1024 * 1024
    assert mem["limit"] == HOST_MEMORY
    assert v["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 4096},
        {"major": 8, "minor": 0, "op": "write", "value": 1048576},
    ]
    others = {k: x for k, x in v["blkio_stats"].items() if k != "io_service_bytes_recursive"}
    assert len(others) == 7 and set(others.values()) == {None}
    assert v["pids_stats"] == {"current": 4, "limit": 100}


def test_v2_percpu_left_out_even_if_reported() -> None:
    raw = json.loads(json.dumps(RUNC_V2))
    raw["cpu"]["usage"]["percpu"] = [1, 2]
    assert "percpu_usage" not in shape(raw, cgroup_version=2)["cpu_stats"]["cpu_usage"]


def test_v2_no_io_is_null() -> None:
    v = shape({"cpu": {}, "memory": {"usage": {"usage": 1}}}, cgroup_version=2)
    assert set(v["blkio_stats"].values()) == {None}


def test_missing_sections_and_zero_omission() -> None:
    v = shape({}, system_cpu_ns=0, online_cpus=0)
    assert v["pids_stats"] == {}
    assert v["memory_stats"] == {}
    assert v["cpu_stats"] == zero_cpu_stats()


def test_name_already_slashed_and_networks() -> None:
    nets = {"eth0": {"rx_bytes": 10, "tx_bytes": 20}}
    v = shape(RUNC_V1, name="/web", networks=nets)
    assert v["name"] == "/web"
    assert v["networks"] == nets
    assert "networks" not in shape(RUNC_V1, networks={})


def test_bad_cgroup_version() -> None:
    with pytest.raises(ValueError):
        shape(RUNC_V1, cgroup_version=3)


def test_previous_sample_becomes_pre() -> None:
    first = shape(RUNC_V1_UNLIMITED, read="2026-11-24T13:35:07.5Z", system_cpu_ns=1000)
    second = shape(RUNC_V1, previous=first)
    assert second["preread"] == "2026-11-24T13:35:07.5Z"
    assert second["precpu_stats"] == first["cpu_stats"]
    assert second["precpu_stats"] is not first["cpu_stats"]


def test_go_time() -> None:
    assert go_time(datetime(2026, 11, 24, 13, 35, 8, 123400, tzinfo=UTC)) == (
        "2026-11-24T13:35:08.1234Z"
    )
    assert go_time(datetime(2026, 11, 24, 13, 35, 8)) == "2026-11-24T13:35:08Z"
    plus2 = timezone(timedelta(hours=2))
    assert go_time(datetime(2026, 11, 24, 15, 0, 0, 500000, tzinfo=plus2)) == (
        "2026-11-24T13:00:00.5Z"
    )
    assert go_time("2026-11-24T13:35:08.123456789Z") == "2026-11-24T13:35:08.123456789Z"


# --- the numbers `docker stats --no-stream` shows -------------------------------------------


def test_cli_numbers_v1_with_limit() -> None:
    # Two samples one second apart on a 2-CPU host: the container used 0.5 s of CPU while the
    # host's counters advanced 2 s (2 CPUs x 1 s) → 25% of one CPU x 2 CPUs = 50.00%.
    earlier = json.loads(json.dumps(RUNC_V1))
    earlier["cpu"]["usage"]["total"] = 18921947 - 500_000_000 + 10**9
    later = json.loads(json.dumps(RUNC_V1))
    later["cpu"]["usage"]["total"] = 18921947 + 10**9
    first = shape(earlier, system_cpu_ns=100_000_000_000_000)
    second = shape(later, previous=first, system_cpu_ns=100_000_000_000_000 + 2 * 10**9)
    cpu, mem, mem_pct, pids = cli_row(second)
    assert cpu == "50.00%"
    # usage 22110208 - total_inactive_file 20971520 = 1138688 B = 1.086 MiB, of 64 MiB
    assert mem == "1.086MiB / 64MiB"
    assert mem_pct == "1.70%"
    assert pids == 1


def test_cli_numbers_v1_unlimited_shows_host_memory() -> None:
    cpu, mem, mem_pct, _ = cli_row(shape(RUNC_V1_UNLIMITED))
    assert cpu == "0.00%"  # no previous sample: the CLI shows 0
    assert mem == "480KiB / 24GiB"
    assert mem_pct == "0.00%"


def test_cli_numbers_v2_subtracts_inactive_file() -> None:
    first = shape(RUNC_V2, cgroup_version=2, system_cpu_ns=10**12, online_cpus=4)
    later = json.loads(json.dumps(RUNC_V2))
    later["cpu"]["usage"]["total"] += 10**9  # 1 s of CPU during 4 s of host time (4 CPUs x 1 s)
    second = shape(
        later,
        cgroup_version=2,
        previous=first,
        system_cpu_ns=10**12 + 4 * 10**9,
        online_cpus=4,
    )
    cpu, mem, mem_pct, pids = cli_row(second)
    assert cpu == "100.00%"
    assert mem == "70MiB / 24GiB"  # 100 MiB usage - 30 MiB inactive_file
    assert mem_pct == "0.28%"
    assert pids == 4


def test_cli_falls_back_to_percpu_count_without_online_cpus() -> None:
    first = shape(RUNC_V1, system_cpu_ns=10**12, online_cpus=0)
    later = json.loads(json.dumps(RUNC_V1))
    later["cpu"]["usage"]["total"] += 10**9
    second = shape(later, previous=first, system_cpu_ns=10**12 + 2 * 10**9, online_cpus=0)
    assert "online_cpus" not in second["cpu_stats"]
    assert cli_row(second)[0] == "100.00%"  # 2 percpu entries stand in for online CPUs
