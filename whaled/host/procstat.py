"""Host CPU counters for container stats: total CPU time and online CPUs, as dockerd reads them.

dockerd (``daemon/stats_unix.go``, ``getSystemCPUUsage``) reads ``/proc/stat``: the ``cpu``
line's first seven fields (user, nice, system, idle, iowait, irq, softirq — not steal/guest)
summed and converted from clock ticks to nanoseconds, and the number of ``cpuN`` lines as the
online CPU count. The docker CLI divides the container's CPU time delta by the delta of this
figure to compute ``CPU %``.

Pure part: :func:`parse_proc_stat` over the file's text. I/O part: :func:`system_cpu_ns`,
:func:`online_cpus` and :func:`cpu_sample` (both from one read), which take the path as a
parameter so tests can point them at a fake file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from whaled.errors import SystemFailure

PROC_STAT = "/proc/stat"
_NS_PER_SECOND = 1_000_000_000
_CPU_FIELDS = 7  # user nice system idle iowait irq softirq


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcStat:
    cpu_ticks: int  # sum of the first seven fields of the "cpu" line
    online_cpus: int  # number of "cpuN" lines


def clock_ticks_per_second() -> int:
    """``sysconf(_SC_CLK_TCK)`` (100 on every Linux architecture in practice)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100
    return ticks if ticks > 0 else 100


def parse_proc_stat(text: str) -> ProcStat:
    """The CPU figures of ``/proc/stat``. Raises :class:`SystemFailure` when the ``cpu`` line
    is missing or malformed (dockerd: "invalid number of cpu fields")."""
    cpu_ticks: int | None = None
    cpus = 0
    for line in text.splitlines():
        if len(line) < 4 or not line.startswith("cpu"):
            break  # every cpu* line comes first
        if line[3] == " ":
            parts = line.split()
            if len(parts) < 1 + _CPU_FIELDS:
                raise SystemFailure("invalid number of cpu fields")
            try:
                cpu_ticks = sum(int(v) for v in parts[1 : 1 + _CPU_FIELDS])
            except ValueError:
                raise SystemFailure(f"/proc/stat: bad cpu line {line!r}") from None
        elif line[3].isdigit():
            cpus += 1
    if cpu_ticks is None:
        raise SystemFailure("/proc/stat: no cpu line")
    return ProcStat(cpu_ticks=cpu_ticks, online_cpus=cpus)


def ticks_to_ns(ticks: int, clk_tck: int) -> int:
    """Clock ticks → nanoseconds with dockerd's integer arithmetic."""
    return ticks * _NS_PER_SECOND // clk_tck


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError as e:
        raise SystemFailure(f"cannot read {path}: {e.strerror or e}") from e


def system_cpu_ns(path: str = PROC_STAT) -> int:
    """Total host CPU time in nanoseconds (``cpu_stats.system_cpu_usage``)."""
    return ticks_to_ns(parse_proc_stat(_read(path)).cpu_ticks, clock_ticks_per_second())


def cpu_sample(path: str = PROC_STAT) -> tuple[int, int]:
    """``(system_cpu_ns, online_cpus)`` from one read of ``/proc/stat``, as dockerd samples
    both together for each stats round."""
    stat = parse_proc_stat(_read(path))
    return ticks_to_ns(stat.cpu_ticks, clock_ticks_per_second()), stat.online_cpus or _usable_cpus()


def online_cpus(path: str = PROC_STAT) -> int:
    """Online CPUs (``cpu_stats.online_cpus``): the ``cpuN`` lines of ``/proc/stat``, falling
    back to the CPUs this process may run on when the file cannot be read or lists none."""
    try:
        count = parse_proc_stat(_read(path)).online_cpus
    except SystemFailure:
        count = 0
    return count if count > 0 else _usable_cpus()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except OSError:
        return os.cpu_count() or 1
