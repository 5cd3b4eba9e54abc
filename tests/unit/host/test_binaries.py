from __future__ import annotations

import os
from pathlib import Path

from whaled.host.binaries import (
    find_executable,
    parse_catatonit_version,
    parse_conmon_version,
    parse_crun_version,
    parse_runc_version,
    parse_tini_version,
    parse_version_output,
    parser_for,
    version_result,
)

RUNC = """\
runc version 1.1.5+ds1
commit: 1.1.5+ds1-1+deb12u1
spec: 1.0.2-dev
go: go1.19.8
libseccomp: 2.5.4
"""

RUNC_UPSTREAM = """\
runc version 1.1.12
commit: v1.1.12-0-g51d5e946
spec: 1.0.2-dev
go: go1.20.13
libseccomp: 2.5.4
"""

CRUN = """\
crun version 1.8.1
commit: f8a096be060b22ccd3d5f3ebe44108517fbf6c30
rundir: /run/crun
spec: 1.0.0
+SYSTEMD +SELINUX +APPARMOR +CAP +SECCOMP +EBPF +YAJL
"""

CONMON = "conmon version 2.1.6\ncommit: unknown\n"
CONMON_FEDORA = "conmon version 2.1.10\ncommit: 2dcd736e46ded79a53339462bc251694b150f870\n"
TINI_DEBIAN = "tini version 0.19.0\n"
TINI_UPSTREAM = "tini version 0.19.0 - git.de40ad0\n"
CATATONIT = "tini version 0.1.7_catatonit\n"


def test_runc_debian() -> None:
    parsed = parse_runc_version(RUNC)
    assert parsed.name == "runc"
    assert parsed.version == "1.1.5+ds1"
    assert parsed.commit == "1.1.5+ds1-1+deb12u1"
    assert parsed.detail("spec") == "1.0.2-dev"
    assert parsed.detail("go") == "go1.19.8"
    assert parsed.detail("libseccomp") == "2.5.4"


def test_runc_upstream() -> None:
    parsed = parse_runc_version(RUNC_UPSTREAM)
    assert parsed.version == "1.1.12"
    assert parsed.commit == "v1.1.12-0-g51d5e946"


def test_crun() -> None:
    parsed = parse_crun_version(CRUN)
    assert parsed.name == "crun"
    assert parsed.version == "1.8.1"
    assert parsed.commit == "f8a096be060b22ccd3d5f3ebe44108517fbf6c30"
    assert parsed.detail("rundir") == "/run/crun"
    assert parsed.detail("spec") == "1.0.0"
    assert parsed.detail("features") == "+SYSTEMD +SELINUX +APPARMOR +CAP +SECCOMP +EBPF +YAJL"


def test_conmon_unknown_commit_is_none() -> None:
    parsed = parse_conmon_version(CONMON)
    assert parsed.version == "2.1.6"
    assert parsed.commit is None
    assert parse_conmon_version(CONMON_FEDORA).commit == "2dcd736e46ded79a53339462bc251694b150f870"


def test_tini() -> None:
    debian = parse_tini_version(TINI_DEBIAN)
    assert (debian.name, debian.version, debian.commit) == ("tini", "0.19.0", None)
    upstream = parse_tini_version(TINI_UPSTREAM)
    assert (upstream.version, upstream.commit) == ("0.19.0", "de40ad0")


def test_catatonit_poses_as_tini() -> None:
    parsed = parse_catatonit_version(CATATONIT)
    assert (parsed.name, parsed.version) == ("catatonit", "0.1.7")
    assert parse_catatonit_version("catatonit version 0.1.5\n").version == "0.1.5"


def test_generic_parser_on_garbage() -> None:
    parsed = parse_version_output("Usage: foo [options]\n")
    assert parsed.version is None and parsed.commit is None
    assert parse_version_output("").version is None


def test_parser_for() -> None:
    assert parser_for("catatonit") is parse_catatonit_version
    assert parser_for("my-runtime") is parse_version_output


def test_version_result() -> None:
    ok = version_result("runc", "/usr/sbin/runc", RUNC)
    assert ok.ok and ok.path == "/usr/sbin/runc" and ok.version == "1.1.5+ds1"
    assert ok.detail("spec") == "1.0.2-dev"
    bad = version_result("weird", "/opt/weird", "hello\n")
    assert not bad.ok
    assert bad.error == "unknown output format: hello"
    renamed = version_result("catatonit", "/usr/bin/catatonit", CATATONIT)
    assert renamed.name == "catatonit" and renamed.version == "0.1.7"


def _make_exe(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    os.chmod(path, mode)
    return path


def test_find_executable_path_then_extra_dirs(tmp_path: Path) -> None:
    first = _make_exe(tmp_path / "a" / "tool")
    second = _make_exe(tmp_path / "b" / "tool")
    _make_exe(tmp_path / "c" / "other")
    search = os.pathsep.join([str(tmp_path / "missing"), str(tmp_path / "a")])
    assert find_executable("tool", [str(tmp_path / "b")], search_path=search) == str(first)
    assert find_executable("tool", [str(tmp_path / "b")], search_path="") == str(second)
    assert find_executable("other", [], search_path=str(tmp_path / "c")) == str(
        tmp_path / "c" / "other"
    )
    assert find_executable("nope", [str(tmp_path / "a")], search_path="") is None


def test_find_executable_skips_non_executable_and_dirs(tmp_path: Path) -> None:
    _make_exe(tmp_path / "a" / "tool", mode=0o644)
    (tmp_path / "b" / "tool").mkdir(parents=True)
    good = _make_exe(tmp_path / "c" / "tool")
    dirs = [str(tmp_path / d) for d in ("a", "b", "c")]
    assert find_executable("tool", dirs, search_path="") == str(good)


def test_find_executable_with_slash(tmp_path: Path) -> None:
    exe = _make_exe(tmp_path / "bin" / "runtime")
    assert find_executable(str(exe), []) == str(exe)
    assert find_executable(str(tmp_path / "bin" / "missing"), []) is None
