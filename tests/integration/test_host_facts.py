"""The host readers on the real machine: sane values, and probes that never hang."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from whaled.host.binaries import find_executable, probe_binary, probe_version
from whaled.host.cgroups import CgroupMode, cgroup_v1_mount, cgroup_v2_root, read_cgroup_info
from whaled.host.sysinfo import read_host_info, read_open_fd_count


def test_host_info_is_sane() -> None:
    info = read_host_info()
    assert info.ncpu >= 1
    assert info.mem_total > 0
    assert info.kernel_version
    assert info.operating_system
    assert info.architecture == os.uname().machine
    assert info.go_arch
    assert info.hostname
    assert read_open_fd_count() > 0


def test_cgroup_info_is_consistent() -> None:
    info = read_cgroup_info()
    assert info.version in (1, 2)
    assert info.driver == "cgroupfs"
    if info.version == 1:
        assert info.mode in (CgroupMode.LEGACY, CgroupMode.HYBRID)
        if info.capabilities.memory_limit:
            memory = cgroup_v1_mount("memory")
            assert memory is not None and os.path.isdir(memory)
    else:
        assert info.mode is CgroupMode.UNIFIED
        root = cgroup_v2_root()
        assert root is not None and os.path.isfile(os.path.join(root, "cgroup.controllers"))
    if info.mode is CgroupMode.HYBRID:
        assert cgroup_v2_root() is not None


@pytest.mark.skipif(find_executable("runc") is None, reason="runc is not installed")
def test_runc_probe_finds_a_version() -> None:
    result = asyncio.run(probe_binary("runc"))
    assert result.ok, result.error
    assert result.path is not None and os.path.isabs(result.path)
    assert result.version


def test_missing_binary_is_reported_not_raised() -> None:
    result = asyncio.run(probe_binary("whaled-no-such-binary"))
    assert not result.ok and result.path is None
    assert result.error == 'exec: "whaled-no-such-binary": executable file not found in $PATH'


def test_hanging_binary_times_out(tmp_path: Path) -> None:
    script = tmp_path / "hangs"
    script.write_text("#!/bin/sh\nsleep 30 &\nsleep 30\n")
    script.chmod(0o755)
    start = time.monotonic()
    result = asyncio.run(probe_version(str(script), timeout=0.5))
    assert time.monotonic() - start < 3
    assert result.error is not None and "timed out" in result.error


def test_failing_binary_reports_exit_status(tmp_path: Path) -> None:
    script = tmp_path / "fails"
    script.write_text("#!/bin/sh\necho 'flag provided but not defined' >&2\nexit 2\n")
    script.chmod(0o755)
    result = asyncio.run(probe_version(str(script)))
    assert result.error == f"{script} --version: exit status 2: flag provided but not defined"
