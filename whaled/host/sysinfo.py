"""Facts about the host for ``/info`` and ``/version``: kernel, OS, architecture, CPUs,
memory, networking sysctls and the security modules available.

Pure part: parsers over the text of ``/etc/os-release``, ``/proc/meminfo`` and
``/proc/<pid>/status``, and the machine → Go architecture mapping. I/O part:
:func:`read_host_info` and :func:`read_open_fd_count`, which never raise for a missing file
(each fact has a documented fallback). The roots are parameters so the readers can be
pointed at a fake tree.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from whaled.osutil.files import read_text

# uname machine → Go's GOARCH, which dockerd reports as "Arch" in /version.
_GO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "aarch64_be": "arm64be",
    "armv5l": "arm",
    "armv6l": "arm",
    "armv7l": "arm",
    "armv8l": "arm",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips": "mips",
    "mipsel": "mipsle",
    "mips64": "mips64",
    "mips64el": "mips64le",
    "loongarch64": "loong64",
}

_UNKNOWN = "<unknown>"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostInfo:
    """Host facts that do not change while the daemon runs (read once, or per /info)."""

    kernel_version: str  # "6.1.0-13-amd64"
    os_type: str  # "linux"
    operating_system: str  # PRETTY_NAME, "Debian GNU/Linux 12 (bookworm)"
    os_version: str  # VERSION_ID, "12" ("" when the OS does not say)
    architecture: str  # uname machine as /info reports it: "x86_64"
    go_arch: str  # GOARCH-style as /version reports it: "amd64"
    ncpu: int
    mem_total: int  # bytes
    hostname: str
    ipv4_forwarding: bool
    bridge_nf_iptables: bool
    bridge_nf_ip6tables: bool
    seccomp_available: bool
    apparmor_enabled: bool
    selinux_enabled: bool
    cgroup_namespaces: bool
    #: libseccomp names of compat ABIs this kernel does not run (e.g. x32 on most kernels):
    #: a seccomp filter for them is dead weight (each costs the runtime milliseconds).
    absent_syscall_abis: frozenset[str] = frozenset()


# --------------------------------------------------------------------------- pure parsers


def _unquote_os_release(value: str) -> str:
    """Undo os-release's shell-style quoting (os-release(5))."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        quote = value[0]
        inner = value[1:-1]
        if quote == "'":
            return inner
        out: list[str] = []
        i = 0
        while i < len(inner):
            if inner[i] == "\\" and i + 1 < len(inner) and inner[i + 1] in '\\"$`':
                out.append(inner[i + 1])
                i += 2
            else:
                out.append(inner[i])
                i += 1
        return "".join(out)
    return value


def parse_os_release(text: str) -> dict[str, str]:
    """Parse ``/etc/os-release`` into a key → value dict (quotes removed)."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        result[key.strip()] = _unquote_os_release(value.strip())
    return result


def operating_system_name(os_release: dict[str, str]) -> str:
    """PRETTY_NAME, defaulting to "Linux" as os-release(5) specifies."""
    return os_release.get("PRETTY_NAME") or "Linux"


def parse_meminfo(text: str) -> dict[str, int]:
    """Parse ``/proc/meminfo``; values with a ``kB`` unit are converted to bytes, unitless
    ones (``HugePages_Total``) are kept as counts."""
    result: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        try:
            value = int(parts[0])
        except ValueError:
            continue
        if len(parts) > 1 and parts[1].lower() == "kb":
            value *= 1024
        result[key.strip()] = value
    return result


def parse_proc_status(text: str) -> dict[str, str]:
    """Parse ``/proc/<pid>/status`` into field → raw value (whitespace-stripped)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            result[key.strip()] = value.strip()
    return result


def seccomp_supported(status: dict[str, str]) -> bool:
    """The kernel was built with CONFIG_SECCOMP iff ``/proc/<pid>/status`` has ``Seccomp:``."""
    return "Seccomp" in status


def go_arch(machine: str) -> str:
    """Go's GOARCH name for a uname machine ("x86_64" → "amd64"); unknown names pass
    through unchanged."""
    return _GO_ARCH.get(machine, machine)


def parse_sysctl_bool(text: str | None) -> bool:
    """A 0/1 sysctl file's value; missing or unparsable counts as off."""
    if text is None:
        return False
    try:
        return int(text.strip()) != 0
    except ValueError:
        return False


def network_warnings(info: HostInfo) -> tuple[str, ...]:
    """The networking warnings dockerd lists in ``/info``, in its order and wording."""
    warnings: list[str] = []
    if not info.ipv4_forwarding:
        warnings.append("WARNING: IPv4 forwarding is disabled")
    if not info.bridge_nf_iptables:
        warnings.append("WARNING: bridge-nf-call-iptables is disabled")
    if not info.bridge_nf_ip6tables:
        warnings.append("WARNING: bridge-nf-call-ip6tables is disabled")
    return tuple(warnings)


# --------------------------------------------------------------------------- readers (I/O)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _apparmor_enabled(sys_root: str) -> bool:
    # As dockerd: securityfs shows apparmor and the module parameter says "Y".
    if not os.path.isdir(os.path.join(sys_root, "kernel", "security", "apparmor")):
        return False
    text = read_text(os.path.join(sys_root, "module", "apparmor", "parameters", "enabled"))
    return text is not None and text.startswith("Y")


def _selinux_enabled(sys_root: str) -> bool:
    # selinuxfs is mounted (and so SELinux is active) when its enforce file exists.
    return os.path.exists(os.path.join(sys_root, "fs", "selinux", "enforce"))


def read_host_info(
    proc_root: str = "/proc", sys_root: str = "/sys", etc_root: str = "/etc"
) -> HostInfo:
    """Read the host facts. Fallbacks: kernel and hostname from ``os.uname()``; OS name
    "<unknown>" without an os-release file; ``mem_total`` 0 without ``/proc/meminfo``;
    missing sysctls and security files count as off."""
    uname = os.uname()

    kernel = (read_text(os.path.join(proc_root, "sys", "kernel", "osrelease")) or "").strip()
    hostname = (read_text(os.path.join(proc_root, "sys", "kernel", "hostname")) or "").strip()

    os_release_text = read_text(os.path.join(etc_root, "os-release"))
    if os_release_text is None:
        # os-release(5): /usr/lib/os-release is the fallback; it lives beside /etc.
        usr_lib = os.path.join(os.path.dirname(os.path.normpath(etc_root)), "usr", "lib")
        os_release_text = read_text(os.path.join(usr_lib, "os-release"))
    if os_release_text is None:
        operating_system, os_version = _UNKNOWN, ""
    else:
        os_release = parse_os_release(os_release_text)
        operating_system = operating_system_name(os_release)
        os_version = os_release.get("VERSION_ID", "")

    meminfo = parse_meminfo(read_text(os.path.join(proc_root, "meminfo")) or "")
    status = parse_proc_status(read_text(os.path.join(proc_root, "self", "status")) or "")

    net = os.path.join(proc_root, "sys", "net")
    return HostInfo(
        kernel_version=kernel or uname.release,
        os_type=uname.sysname.lower(),
        operating_system=operating_system,
        os_version=os_version,
        architecture=uname.machine,
        go_arch=go_arch(uname.machine),
        ncpu=_cpu_count(),
        mem_total=meminfo.get("MemTotal", 0),
        hostname=hostname or uname.nodename,
        ipv4_forwarding=parse_sysctl_bool(read_text(os.path.join(net, "ipv4", "ip_forward"))),
        bridge_nf_iptables=parse_sysctl_bool(
            read_text(os.path.join(net, "bridge", "bridge-nf-call-iptables"))
        ),
        bridge_nf_ip6tables=parse_sysctl_bool(
            read_text(os.path.join(net, "bridge", "bridge-nf-call-ip6tables"))
        ),
        seccomp_available=seccomp_supported(status),
        apparmor_enabled=_apparmor_enabled(sys_root),
        selinux_enabled=_selinux_enabled(sys_root),
        cgroup_namespaces=os.path.exists(os.path.join(proc_root, "self", "ns", "cgroup")),
        absent_syscall_abis=probe_absent_syscall_abis(uname.machine),
    )


#: x32 syscall numbers are the x86_64 ones with this bit set.
_X32_SYSCALL_BIT = 0x40000000
_X86_64_GETPID = 39


def probe_absent_syscall_abis(machine: str) -> frozenset[str]:
    """Compat syscall ABIs the running kernel rejects, by libseccomp name.

    Only x32 is probed (x86_64 kernels built without ``CONFIG_X86_X32_ABI`` or booted with
    ``syscall.x32=n``): an x32 ``getpid`` answers ENOSYS there. The 32-bit x86 ABI is
    assumed present (it cannot be probed without issuing ``int 0x80``)."""
    if machine != "x86_64":
        return frozenset()
    import ctypes  # only here: the probe runs once at start-up

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        answer = libc.syscall(ctypes.c_long(_X32_SYSCALL_BIT | _X86_64_GETPID))
    except (OSError, AttributeError):
        return frozenset()
    if answer == -1 and ctypes.get_errno() == errno.ENOSYS:
        return frozenset({"SCMP_ARCH_X32"})
    return frozenset()


def read_open_fd_count(proc_root: str = "/proc") -> int:
    """Open file descriptors of this process (dockerd's ``NFd``); -1 when unreadable, as
    dockerd reports it. Changes all the time, hence separate from :class:`HostInfo`."""
    try:
        return len(os.listdir(os.path.join(proc_root, "self", "fd")))
    except OSError:
        return -1


def read_capability_bounding_mask(path: str = "/proc/self/status") -> int | None:
    """The ``CapBnd`` mask of this process, or None when it cannot be read."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None
