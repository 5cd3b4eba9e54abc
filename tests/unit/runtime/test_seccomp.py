from __future__ import annotations

import json
from typing import Any

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.defaults import DEFAULT_CAPABILITIES
from whaled.runtime.seccomp import DEFAULT_PROFILE, seccomp_for

ALLOW = "SCMP_ACT_ALLOW"


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile.get("syscalls", []) if name in r["names"]]


def allowed(profile: dict[str, Any], name: str) -> bool:
    """Allowed whatever the arguments."""
    return any(r["action"] == ALLOW and "args" not in r for r in rules_for(profile, name))


def default(*extra_caps: str, machine: str = "x86_64") -> dict[str, Any]:
    profile = seccomp_for([*DEFAULT_CAPABILITIES, *extra_caps], None, machine=machine)
    assert profile is not None
    return profile


def test_default_action_is_eperm() -> None:
    p = default()
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    # EPERM is the runtime's default errno; leaving defaultErrnoRet unset keeps runc's
    # ENOSYS answer for syscalls newer than the filter.
    assert "defaultErrnoRet" not in p


def test_architectures() -> None:
    assert default()["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert default(machine="aarch64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "architectures" not in default(machine="riscv64")


def test_absent_compat_abis_are_left_out_of_the_arch_map() -> None:
    # A kernel without x32: the filter covers x86_64 and i386 only.
    p = seccomp_for([], machine="x86_64", absent_arches={"SCMP_ARCH_X32"})
    assert p is not None
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    # The native architecture always stays; an explicit list is taken as written.
    p = seccomp_for([], machine="x86_64", absent_arches={"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"})
    assert p is not None and p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]
    explicit = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X32"]}
    p = seccomp_for([], explicit, absent_arches={"SCMP_ARCH_X32"})
    assert p is not None and p["architectures"] == ["SCMP_ARCH_X32"]


# What busybox sh, ls, cat, chown, sleep, ps… and runc's own init (between loading the filter
# and exec) call.
ORDINARY = """
read write readv writev open openat close fstat newfstatat stat lstat statx lseek
getdents64 getcwd chdir fchdir mkdir mkdirat rmdir unlink unlinkat rename renameat renameat2
link linkat symlink symlinkat readlink readlinkat chmod fchmod fchmodat chown fchown fchownat
lchown utimensat access faccessat faccessat2 umask dup dup2 dup3 pipe pipe2 fcntl ioctl
brk mmap munmap mprotect mremap madvise execve exit exit_group fork vfork wait4 waitid kill
tgkill getpid getppid gettid getuid geteuid getgid getegid getgroups setuid setgid setgroups
setresuid setresgid capget capset prctl arch_prctl set_tid_address set_robust_list rseq
rt_sigaction rt_sigprocmask rt_sigreturn rt_sigsuspend sigaltstack nanosleep clock_nanosleep
clock_gettime gettimeofday uname sysinfo getrlimit prlimit64 setpgid getpgrp setsid poll
ppoll select pselect6 epoll_create1 epoll_ctl epoll_pwait futex sched_yield
sched_getaffinity getrandom socket connect bind listen accept4 sendto recvfrom sendmsg recvmsg
setsockopt getsockopt getsockname shutdown close_range memfd_create eventfd2 timerfd_create
mknodat sync fsync ftruncate statfs fstatfs chroot
""".split()


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_syscalls_allowed(name: str) -> None:
    assert allowed(default(), name)


DANGEROUS = """
mount umount2 unshare setns pivot_root ptrace process_vm_readv reboot init_module
finit_module delete_module kexec_load bpf perf_event_open keyctl add_key swapon
open_by_handle_at acct settimeofday clock_settime iopl ioperm syslog userfaultfd
sethostname vhangup io_uring_setup
""".split()


@pytest.mark.parametrize("name", DANGEROUS)
def test_dangerous_syscalls_denied_by_default(name: str) -> None:
    assert rules_for(default(), name) == []


def test_clone_is_allowed_only_without_namespace_flags() -> None:
    (rule,) = rules_for(default(), "clone")
    assert rule["action"] == ALLOW
    (arg,) = rule["args"]
    assert arg["op"] == "SCMP_CMP_MASKED_EQ" and arg["index"] == 0
    assert arg["value"] & 0x10000000  # CLONE_NEWUSER
    assert arg["value"] & 0x00020000  # CLONE_NEWNS
    assert arg["valueTwo"] == 0


def test_clone3_answers_enosys_so_libc_falls_back() -> None:
    (rule,) = rules_for(default(), "clone3")
    assert rule == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}


def test_personality_filtered_by_argument() -> None:
    rules = rules_for(default(), "personality")
    values = {r["args"][0]["value"] for r in rules}
    assert values == {0, 8, 0x20000, 0x20008, 0xFFFFFFFF}


def test_sys_admin_opens_mount_and_namespaces() -> None:
    p = default("CAP_SYS_ADMIN")
    for name in ("mount", "umount2", "unshare", "setns", "pivot_root", "clone", "clone3", "bpf"):
        assert allowed(p, name), name
    assert all(r["action"] == ALLOW for r in rules_for(p, "clone3"))


def test_sys_ptrace_opens_ptrace() -> None:
    p = default("CAP_SYS_PTRACE")
    for name in ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp"):
        assert allowed(p, name), name
    assert not allowed(p, "mount")


@pytest.mark.parametrize(
    ("cap", "name"),
    [
        ("CAP_SYS_MODULE", "init_module"),
        ("CAP_SYS_BOOT", "reboot"),
        ("CAP_SYS_TIME", "settimeofday"),
        ("CAP_SYS_RAWIO", "iopl"),
        ("CAP_SYSLOG", "syslog"),
        ("CAP_BPF", "bpf"),
        ("CAP_PERFMON", "perf_event_open"),
        ("CAP_SYS_NICE", "mbind"),
        ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    ],
)
def test_capability_gated(cap: str, name: str) -> None:
    assert allowed(default(cap), name)


def test_dropping_sys_chroot_removes_chroot() -> None:
    caps = [c for c in DEFAULT_CAPABILITIES if c != "CAP_SYS_CHROOT"]
    p = seccomp_for(caps, None)
    assert p is not None and not allowed(p, "chroot")


def test_a_syscall_granted_by_two_caps_appears_once() -> None:
    p = default("CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON")
    assert len(rules_for(p, "bpf")) == 1
    assert len(rules_for(p, "perf_event_open")) == 1


def test_no_name_twice_in_unconditional_rules() -> None:
    p = default("CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_BPF", "CAP_SYSLOG")
    names = [n for r in p["syscalls"] if "args" not in r for n in r["names"]]
    assert len(names) == len(set(names))


def test_unconfined() -> None:
    assert seccomp_for(DEFAULT_CAPABILITIES, "unconfined") is None


def test_default_profile_is_json_and_usable_as_override() -> None:
    text = json.dumps(DEFAULT_PROFILE)
    assert seccomp_for(DEFAULT_CAPABILITIES, text) == default()


CUSTOM = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []},
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["chown"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_CHOWN"]}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 97,
            "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}],
        },
    ],
}


def test_custom_profile_conditions() -> None:
    p = seccomp_for(["CAP_CHOWN"], json.dumps(CUSTOM))
    assert p is not None
    assert p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert allowed(p, "read") and allowed(p, "getpid") and allowed(p, "arch_prctl")
    assert not rules_for(p, "mount") and not rules_for(p, "chown")
    assert not rules_for(p, "set_tls")
    (sock,) = rules_for(p, "socket")
    assert sock["errnoRet"] == 97
    assert sock["args"] == [{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]

    arm = seccomp_for(["CAP_SYS_ADMIN"], CUSTOM, machine="aarch64")
    assert arm is not None
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64"]
    assert allowed(arm, "mount") and allowed(arm, "chown") and allowed(arm, "set_tls")
    assert not rules_for(arm, "arch_prctl")


def test_custom_profile_with_architectures_list() -> None:
    p = seccomp_for([], {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"]})
    assert p == {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"]}


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ("{not json", "Decoding seccomp profile failed"),
        ("[1, 2]", "Decoding seccomp profile failed"),
        ("{}", "no defaultAction"),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["a"], "archMap": [{}]},
            "use either 'architectures' or 'archMap'",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}],
            },
            "use either 'name' or 'names'",
        ),
    ],
)
def test_bad_profiles(profile: Any, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        seccomp_for([], profile)
