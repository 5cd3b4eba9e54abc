from __future__ import annotations

import os
from pathlib import Path

import pytest

from whaled.errors import SystemFailure
from whaled.host import procstat
from whaled.host.procstat import (
    cpu_sample,
    online_cpus,
    parse_proc_stat,
    system_cpu_ns,
    ticks_to_ns,
)

PROC_STAT = """\
cpu  101161 7 48720 1979558 3657 11 1235 575 100 200
cpu0 50000 3 24000 990000 1800 5 600 300 0 0
cpu1 51161 4 24720 989558 1857 6 635 275 0 0
intr 123456 0 0
ctxt 987654
btime 1700000000
"""

# user+nice+system+idle+iowait+irq+softirq; steal (575), guest, guest_nice are not counted.
TICKS = 101161 + 7 + 48720 + 1979558 + 3657 + 11 + 1235


def test_parse_sums_first_seven_fields_and_counts_cpus() -> None:
    stat = parse_proc_stat(PROC_STAT)
    assert stat.cpu_ticks == TICKS
    assert stat.online_cpus == 2


def test_parse_offline_cpu_lines_are_absent() -> None:
    text = PROC_STAT.replace("cpu1 51161", "cpu3 51161")  # numbering gaps still count once
    assert parse_proc_stat(text).online_cpus == 2


def test_parse_errors() -> None:
    with pytest.raises(SystemFailure, match="invalid number of cpu fields"):
        parse_proc_stat("cpu  1 2 3 4 5 6\n")
    with pytest.raises(SystemFailure):
        parse_proc_stat("cpu  1 2 x 4 5 6 7\n")
    with pytest.raises(SystemFailure):
        parse_proc_stat("intr 1\n")


def test_ticks_to_ns_integer_arithmetic() -> None:
    assert ticks_to_ns(TICKS, 100) == TICKS * 10_000_000
    assert ticks_to_ns(1, 3) == 333_333_333


def test_readers_on_a_fake_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "stat"
    path.write_text(PROC_STAT)
    monkeypatch.setattr(procstat, "clock_ticks_per_second", lambda: 100)
    assert system_cpu_ns(str(path)) == TICKS * 10_000_000
    assert online_cpus(str(path)) == 2
    assert cpu_sample(str(path)) == (TICKS * 10_000_000, 2)


def test_unreadable_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(SystemFailure, match="cannot read"):
        system_cpu_ns(missing)
    assert online_cpus(missing) == len(os.sched_getaffinity(0))


def test_real_host() -> None:
    first = system_cpu_ns()
    assert first > 0
    assert system_cpu_ns() >= first
    assert 1 <= online_cpus() <= (os.cpu_count() or 1)
