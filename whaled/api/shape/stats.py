"""Wire shape of ``GET /containers/{id}/stats`` (pure), from the OCI runtime's stats.

Input is the ``data`` object of ``<runtime> events --stats <id>`` (runc's
``types/events.go``: ``cpu.usage.{total,percpu,kernel,user}``,
``cpu.throttling.{periods,throttledPeriods,throttledTime}``,
``memory.{usage,swap,kernel,kernelTCP}.{usage,max,limit,failcnt}``, ``memory.raw`` (the
cgroup's ``memory.stat``), ``pids.{current,limit}``, ``blkio.<list>[{major,minor,op,value}]``;
runc omits zero values, so every key is optional here).

Output is dockerd's ``StatsResponse`` as ``daemon/stats_unix.go`` (``statsV1`` / ``statsV2``)
builds it from containerd's cgroup metrics, with Go's ``omitempty`` rules applied:

- ``memory_stats``: ``usage``, ``max_usage`` (v1 only), ``stats``, ``failcnt``, ``limit``, each
  left out when zero. ``stats`` holds exactly dockerd's key set for the cgroup version (v1: the
  32 ``memory.stat`` keys of containerd's v1 metrics — ``cache``, ``rss``, …,
  ``total_inactive_file``; v2: its 31 keys — ``anon``, ``file``, …, ``inactive_file``), missing
  keys as 0, sorted as Go sorts map keys. A limit above the host's memory (no limit set) is
  reported as the host's memory.
- ``cpu_stats``: ``percpu_usage`` only on v1 and only when non-empty; ``system_cpu_usage`` and
  ``online_cpus`` (sampled by the daemon next to the container's counters) left out when zero.
- ``precpu_stats`` / ``preread``: the previous sample's ``cpu_stats`` / ``read`` (dockerd keeps
  them per stream); without one, zero counters and Go's zero time.
- ``blkio_stats``: on v1 all eight lists, empty lists when the runtime reported nothing (dockerd
  copies containerd's v1 lists, never nil); on v2 only ``io_service_bytes_recursive`` with ops
  ``read`` / ``write`` and every list ``null`` when empty.
- ``pids_stats``: ``current`` / ``limit`` left out when zero; ``num_procs`` 0 and
  ``storage_stats`` ``{}`` on Linux; ``networks`` only when given and non-empty.

The docker CLI computes ``CPU %`` as ``(Δ total_usage / Δ system_cpu_usage) * online_cpus *
100`` between ``precpu_stats`` and ``cpu_stats``, and ``MEM USAGE`` as ``usage`` minus
``stats.total_inactive_file`` (v1) or ``stats.inactive_file`` (v2) — hence those keys must be
there.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"

# containerd's cgroup v1 Metrics.Memory fields, as dockerd names them in memory_stats.stats.
V1_MEMORY_STAT_KEYS = (
    "cache",
    "rss",
    "rss_huge",
    "mapped_file",
    "dirty",
    "writeback",
    "pgpgin",
    "pgpgout",
    "pgfault",
    "pgmajfault",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "hierarchical_memory_limit",
    "hierarchical_memsw_limit",
    "total_cache",
    "total_rss",
    "total_rss_huge",
    "total_mapped_file",
    "total_dirty",
    "total_writeback",
    "total_pgpgin",
    "total_pgpgout",
    "total_pgfault",
    "total_pgmajfault",
    "total_inactive_anon",
    "total_active_anon",
    "total_inactive_file",
    "total_active_file",
    "total_unevictable",
)

# containerd's cgroup v2 Metrics.Memory fields, as dockerd names them in memory_stats.stats.
V2_MEMORY_STAT_KEYS = (
    "anon",
    "file",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "anon_thp",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "slab_reclaimable",
    "slab_unreclaimable",
    "pgfault",
    "pgmajfault",
    "workingset_refault",
    "workingset_activate",
    "workingset_nodereclaim",
    "pgrefill",
    "pgscan",
    "pgsteal",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "thp_fault_alloc",
    "thp_collapse_alloc",
)

# dockerd's blkio_stats lists ← runc's event keys.
_BLKIO_LISTS = (
    ("io_service_bytes_recursive", "ioServiceBytesRecursive"),
    ("io_serviced_recursive", "ioServicedRecursive"),
    ("io_queue_recursive", "ioQueueRecursive"),
    ("io_service_time_recursive", "ioServiceTimeRecursive"),
    ("io_wait_time_recursive", "ioWaitTimeRecursive"),
    ("io_merged_recursive", "ioMergedRecursive"),
    ("io_time_recursive", "ioTimeRecursive"),
    ("sectors_recursive", "sectorsRecursive"),
)


def go_time(value: datetime | str) -> str:
    """Go's ``time.RFC3339Nano`` in UTC for a datetime (naive means UTC); text passes as is."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    fraction = f"{value.microsecond:06d}".rstrip("0")
    return value.strftime("%Y-%m-%dT%H:%M:%S") + ("." + fraction if fraction else "") + "Z"


def zero_cpu_stats() -> dict[str, Any]:
    """``precpu_stats`` of a first sample: Go's zero CPUStats after omitempty."""
    return {
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def _uint(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


def _obj(parent: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    value = parent.get(key) if parent is not None else None
    return value if isinstance(value, Mapping) else {}


def _list(parent: Mapping[str, Any], key: str) -> list[Any]:
    value = parent.get(key)
    return value if isinstance(value, list) else []


def _cpu_stats(
    raw: Mapping[str, Any], *, system_cpu_ns: int, online_cpus: int, cgroup_version: int
) -> dict[str, Any]:
    cpu = _obj(raw, "cpu")
    usage = _obj(cpu, "usage")
    throttling = _obj(cpu, "throttling")
    cpu_usage: dict[str, Any] = {"total_usage": _uint(usage.get("total"))}
    percpu = [_uint(v) for v in _list(usage, "percpu")]
    if cgroup_version == 1 and percpu:
        cpu_usage["percpu_usage"] = percpu
    cpu_usage["usage_in_kernelmode"] = _uint(usage.get("kernel"))
    cpu_usage["usage_in_usermode"] = _uint(usage.get("user"))
    out: dict[str, Any] = {"cpu_usage": cpu_usage}
    if system_cpu_ns > 0:
        out["system_cpu_usage"] = system_cpu_ns
    if online_cpus > 0:
        out["online_cpus"] = online_cpus
    out["throttling_data"] = {
        "periods": _uint(throttling.get("periods")),
        "throttled_periods": _uint(throttling.get("throttledPeriods")),
        "throttled_time": _uint(throttling.get("throttledTime")),
    }
    return out


def _memory_stats(
    raw: Mapping[str, Any], *, cgroup_version: int, host_memory: int
) -> dict[str, Any]:
    memory = raw.get("memory")
    if not isinstance(memory, Mapping):
        return {}
    stat = _obj(memory, "raw")
    keys = V1_MEMORY_STAT_KEYS if cgroup_version == 1 else V2_MEMORY_STAT_KEYS
    stats = {key: _uint(stat.get(key)) for key in sorted(keys)}
    usage = _obj(memory, "usage")
    used = _uint(usage.get("usage"))
    limit = _uint(usage.get("limit"))
    if host_memory > 0 and limit > host_memory:
        limit = host_memory
    out: dict[str, Any] = {}
    if used:
        out["usage"] = used
    if cgroup_version == 1 and _uint(usage.get("max")):
        out["max_usage"] = _uint(usage.get("max"))
    out["stats"] = stats
    if _uint(usage.get("failcnt")):
        out["failcnt"] = _uint(usage.get("failcnt"))
    if limit:
        out["limit"] = limit
    return out


def _blkio_entry(entry: Any, *, lower_op: bool) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        return None
    op = entry.get("op")
    op = op if isinstance(op, str) else ""
    return {
        "major": _uint(entry.get("major")),
        "minor": _uint(entry.get("minor")),
        "op": op.lower() if lower_op else op,
        "value": _uint(entry.get("value")),
    }


def _blkio_stats(raw: Mapping[str, Any], *, cgroup_version: int) -> dict[str, Any]:
    blkio = _obj(raw, "blkio")
    out: dict[str, Any] = {}
    if cgroup_version == 1:
        for api_key, runc_key in _BLKIO_LISTS:
            entries = (_blkio_entry(e, lower_op=False) for e in _list(blkio, runc_key))
            out[api_key] = [e for e in entries if e is not None]
        return out
    service_bytes = [
        e
        for e in (_blkio_entry(x, lower_op=True) for x in _list(blkio, "ioServiceBytesRecursive"))
        if e is not None and e["op"] in ("read", "write")
    ]
    for api_key, _ in _BLKIO_LISTS:
        out[api_key] = None
    out["io_service_bytes_recursive"] = service_bytes or None
    return out


def _pids_stats(raw: Mapping[str, Any]) -> dict[str, Any]:
    pids = _obj(raw, "pids")
    out: dict[str, Any] = {}
    for key in ("current", "limit"):
        value = _uint(pids.get(key))
        if value:
            out[key] = value
    return out


def shape_stats(
    raw: Mapping[str, Any],
    *,
    container_id: str,
    name: str,
    read: datetime | str,
    system_cpu_ns: int,
    online_cpus: int,
    cgroup_version: int,
    previous: Mapping[str, Any] | None,
    host_memory: int,
    networks: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """One stats sample as dockerd sends it.

    ``previous`` is the dict this function returned for the same container's previous
    sample (or ``None`` for the first); ``read`` is when ``raw`` was taken and
    ``system_cpu_ns`` / ``online_cpus`` should be sampled right next to it
    (:mod:`whaled.host.procstat`). ``host_memory`` is the host's total memory in bytes.
    """
    if cgroup_version not in (1, 2):
        raise ValueError(f"cgroup_version must be 1 or 2, not {cgroup_version!r}")
    if previous is not None:
        pre_cpu = previous.get("cpu_stats")
        precpu_stats = dict(pre_cpu) if isinstance(pre_cpu, Mapping) else zero_cpu_stats()
        preread = previous.get("read")
        preread = preread if isinstance(preread, str) else ZERO_TIME
    else:
        precpu_stats, preread = zero_cpu_stats(), ZERO_TIME
    body: dict[str, Any] = {
        "read": go_time(read),
        "preread": preread,
        "pids_stats": _pids_stats(raw),
        "blkio_stats": _blkio_stats(raw, cgroup_version=cgroup_version),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu_stats(
            raw,
            system_cpu_ns=system_cpu_ns,
            online_cpus=online_cpus,
            cgroup_version=cgroup_version,
        ),
        "precpu_stats": precpu_stats,
        "memory_stats": _memory_stats(raw, cgroup_version=cgroup_version, host_memory=host_memory),
        "name": name if name.startswith("/") else "/" + name,
        "id": container_id,
    }
    if networks:
        body["networks"] = {k: dict(v) for k, v in networks.items()}
    return body
