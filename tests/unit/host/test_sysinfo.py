from __future__ import annotations

import os
from pathlib import Path

from whaled.host.sysinfo import (
    HostInfo,
    go_arch,
    network_warnings,
    operating_system_name,
    parse_meminfo,
    parse_os_release,
    parse_proc_status,
    parse_sysctl_bool,
    probe_absent_syscall_abis,
    read_host_info,
    read_open_fd_count,
    seccomp_supported,
)

DEBIAN_OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"""

# Alpine: unquoted VERSION_ID, a comment, single quotes and an escaped quote.
ODD_OS_RELEASE = """\
# comment line
NAME='Alpine Linux'
ID=alpine
VERSION_ID=3.19.1
PRETTY_NAME="Alpine \\"edge\\" Linux v3.19"

"""

MEMINFO = """\
MemTotal:       24683656 kB
MemFree:        23974316 kB
MemAvailable:   24329280 kB
Buffers:           17840 kB
Cached:           512788 kB
SwapTotal:             0 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
"""

PROC_STATUS = """\
Name:\tpython3
Umask:\t0022
State:\tR (running)
Pid:\t4242
NoNewPrivs:\t0
Seccomp:\t0
Seccomp_filters:\t0
Cpus_allowed_list:\t0-1
"""


def test_parse_os_release_debian() -> None:
    fields = parse_os_release(DEBIAN_OS_RELEASE)
    assert operating_system_name(fields) == "Debian GNU/Linux 12 (bookworm)"
    assert fields["VERSION_ID"] == "12"
    assert fields["VERSION_CODENAME"] == "bookworm"


def test_parse_os_release_quoting() -> None:
    fields = parse_os_release(ODD_OS_RELEASE)
    assert fields["NAME"] == "Alpine Linux"
    assert fields["VERSION_ID"] == "3.19.1"
    assert fields["PRETTY_NAME"] == 'Alpine "edge" Linux v3.19'


def test_operating_system_defaults_to_linux() -> None:
    assert operating_system_name(parse_os_release("ID=custom\n")) == "Linux"


def test_parse_meminfo_converts_kb_to_bytes() -> None:
    mem = parse_meminfo(MEMINFO)
    assert mem["MemTotal"] == 24683656 * 1024
    assert mem["SwapTotal"] == 0
    assert mem["HugePages_Total"] == 0
    assert mem["Hugepagesize"] == 2048 * 1024


def test_seccomp_from_status() -> None:
    status = parse_proc_status(PROC_STATUS)
    assert status["Pid"] == "4242"
    assert seccomp_supported(status)
    assert not seccomp_supported(parse_proc_status("Name:\tx\nPid:\t1\n"))


def test_go_arch() -> None:
    assert go_arch("x86_64") == "amd64"
    assert go_arch("aarch64") == "arm64"
    assert go_arch("armv7l") == "arm"
    assert go_arch("i686") == "386"
    assert go_arch("ppc64le") == "ppc64le"
    assert go_arch("s390x") == "s390x"
    assert go_arch("weird9000") == "weird9000"


def test_parse_sysctl_bool() -> None:
    assert parse_sysctl_bool("1\n")
    assert not parse_sysctl_bool("0\n")
    assert not parse_sysctl_bool(None)
    assert not parse_sysctl_bool("garbage")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_read_host_info_from_fake_tree(tmp_path: Path) -> None:
    proc, sys_, etc = tmp_path / "proc", tmp_path / "sys", tmp_path / "etc"
    _write(proc / "sys/kernel/osrelease", "6.1.0-13-amd64\n")
    _write(proc / "sys/kernel/hostname", "builder\n")
    _write(proc / "meminfo", MEMINFO)
    _write(proc / "self/status", PROC_STATUS)
    _write(proc / "sys/net/ipv4/ip_forward", "1\n")
    _write(proc / "sys/net/bridge/bridge-nf-call-iptables", "1\n")
    _write(etc / "os-release", DEBIAN_OS_RELEASE)
    (sys_ / "kernel/security/apparmor").mkdir(parents=True)
    _write(sys_ / "module/apparmor/parameters/enabled", "Y\n")

    info = read_host_info(str(proc), str(sys_), str(etc))
    assert info.kernel_version == "6.1.0-13-amd64"
    assert info.hostname == "builder"
    assert info.operating_system == "Debian GNU/Linux 12 (bookworm)"
    assert info.os_version == "12"
    assert info.os_type == "linux"
    assert info.mem_total == 24683656 * 1024
    assert info.ipv4_forwarding
    assert info.bridge_nf_iptables and not info.bridge_nf_ip6tables
    assert info.seccomp_available
    assert info.apparmor_enabled and not info.selinux_enabled
    assert not info.cgroup_namespaces
    assert info.architecture == os.uname().machine
    assert info.go_arch == go_arch(os.uname().machine)
    assert info.ncpu >= 1


def test_read_host_info_with_nothing_falls_back(tmp_path: Path) -> None:
    info = read_host_info(str(tmp_path / "p"), str(tmp_path / "s"), str(tmp_path / "e"))
    assert info.kernel_version == os.uname().release
    assert info.hostname == os.uname().nodename
    assert info.operating_system == "<unknown>" and info.os_version == ""
    assert info.mem_total == 0
    assert not (info.ipv4_forwarding or info.bridge_nf_iptables or info.seccomp_available)
    assert not (info.apparmor_enabled or info.selinux_enabled)


def test_read_host_info_usr_lib_os_release_fallback(tmp_path: Path) -> None:
    _write(tmp_path / "usr/lib/os-release", 'PRETTY_NAME="Fedora Linux 39"\nVERSION_ID=39\n')
    info = read_host_info(str(tmp_path / "proc"), str(tmp_path / "sys"), str(tmp_path / "etc"))
    assert info.operating_system == "Fedora Linux 39" and info.os_version == "39"


def test_read_open_fd_count(tmp_path: Path) -> None:
    fd_dir = tmp_path / "self" / "fd"
    fd_dir.mkdir(parents=True)
    for n in ("0", "1", "2"):
        (fd_dir / n).write_text("")
    assert read_open_fd_count(str(tmp_path)) == 3
    assert read_open_fd_count(str(tmp_path / "missing")) == -1


def _host(**overrides: bool) -> HostInfo:
    base: dict[str, bool] = {
        "ipv4_forwarding": True,
        "bridge_nf_iptables": True,
        "bridge_nf_ip6tables": True,
    }
    base.update(overrides)
    return HostInfo(
        kernel_version="6.1.0",
        os_type="linux",
        operating_system="Debian GNU/Linux 12 (bookworm)",
        os_version="12",
        architecture="x86_64",
        go_arch="amd64",
        ncpu=2,
        mem_total=1 << 30,
        hostname="h",
        seccomp_available=True,
        apparmor_enabled=False,
        selinux_enabled=False,
        cgroup_namespaces=True,
        **base,
    )


def test_network_warnings() -> None:
    assert network_warnings(_host()) == ()
    assert network_warnings(_host(ipv4_forwarding=False, bridge_nf_ip6tables=False)) == (
        "WARNING: IPv4 forwarding is disabled",
        "WARNING: bridge-nf-call-ip6tables is disabled",
    )


def test_probe_absent_syscall_abis() -> None:
    # Only x32 is ever reported, and only on x86_64 (the probe is one harmless getpid).
    assert probe_absent_syscall_abis("aarch64") == frozenset()
    assert probe_absent_syscall_abis(os.uname().machine) <= {"SCMP_ARCH_X32"}
