"""whaled's default seccomp profile, and the conversion of a profile to ``linux.seccomp``.

Profiles — ours and the ones users pass with ``--security-opt seccomp=<file>`` (the docker CLI
sends the file's contents) — are in the Docker profile format: the OCI fields plus
``archMap`` and, per syscall rule, ``includes`` / ``excludes`` conditions on the container's
capabilities and the host architecture. :func:`seccomp_for` evaluates those conditions for
one container and returns the plain OCI object.

The default profile is an allowlist written for whaled: everything an ordinary program
needs (files, memory, processes, signals, time, sockets, IPC), with the syscalls that reach
beyond the container's namespaces allowed only when the capability that governs them was
added. Anything else fails with EPERM (``SCMP_ACT_ERRNO``; EPERM is the spec's default
errno). ``defaultErrnoRet`` is deliberately left unset: runc then keeps answering ENOSYS for
syscalls newer than the filter, which is what lets glibc fall back to older calls.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from whaled.errors import InvalidParameter

#: Profile value meaning "no seccomp filter".
UNCONFINED = "unconfined"

_ALLOW = "SCMP_ACT_ALLOW"
_ENOSYS = 38

#: Native libseccomp architecture and the compat ones allowed beside it, per ``uname -m``.
_ARCHES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}

#: Names a profile's ``includes.arches`` / ``excludes.arches`` may use for each host.
_ARCH_ALIASES: dict[str, frozenset[str]] = {
    "x86_64": frozenset({"x86_64", "amd64", "SCMP_ARCH_X86_64"}),
    "aarch64": frozenset({"aarch64", "arm64", "SCMP_ARCH_AARCH64"}),
}

# --- the allowlist, by purpose. Names unknown on an architecture are skipped by the runtime.
# fmt: off

_FILES = (
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range",
    "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
    "arm_fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown",
    "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr",
    "flock", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents",
    "getdents64", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
    "inotify_rm_watch", "ioctl", "lchown", "lchown32", "lgetxattr", "link", "linkat",
    "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat",
    "lstat64", "mkdir", "mkdirat", "mknod", "mknodat", "newfstatat", "oldfstat", "oldlstat",
    "oldstat", "open", "openat", "openat2", "pipe", "pipe2", "pread64", "preadv", "preadv2",
    "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readdir", "readlink",
    "readlinkat", "readv", "removexattr", "rename", "renameat", "renameat2", "rmdir",
    "sendfile", "sendfile64", "setxattr", "splice", "stat", "stat64", "statfs", "statfs64",
    "statx", "symlink", "symlinkat", "sync", "sync_file_range", "sync_file_range2",
    "arm_sync_file_range", "syncfs", "tee", "truncate", "truncate64", "umask", "unlink",
    "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vmsplice", "write",
    "writev",
)

_MEMORY = (
    "brk", "get_mempolicy", "madvise", "membarrier", "memfd_create", "mincore", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock",
    "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
    "map_shadow_stack",
)

_PROCESSES = (
    "arch_prctl", "capget", "capset", "clone", "execve", "execveat", "exit", "exit_group",
    "fork", "get_robust_list", "get_thread_area", "getcpu", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getresgid", "getresgid32", "getresuid",
    "getresuid32", "getrlimit", "getrusage", "getsid", "gettid", "getuid", "getuid32",
    "ioprio_get", "ioprio_set", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "nice", "pidfd_open", "pidfd_send_signal", "prctl",
    "prlimit64", "rseq", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp",
    "set_robust_list", "set_thread_area", "set_tid_address", "set_tls", "setfsgid",
    "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setpgid", "setpriority", "setregid", "setregid32", "setresgid",
    "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit",
    "setsid", "setuid", "setuid32", "ugetrlimit", "uname", "olduname", "vfork", "wait4",
    "waitid", "waitpid", "cacheflush", "breakpoint", "sysinfo", "times",
)

_SIGNALS_TIME_EVENTS = (
    "alarm", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
    "adjtimex", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "futex",
    "futex_time64", "futex_waitv", "getitimer", "gettimeofday", "io_cancel", "io_destroy",
    "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "kill",
    "nanosleep", "_newselect", "pause", "poll", "ppoll", "ppoll_time64", "pselect6",
    "pselect6_time64", "restart_syscall", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "select", "setitimer", "sigaction",
    "sigaltstack", "signal", "signalfd", "signalfd4", "sigpending", "sigprocmask",
    "sigreturn", "sigsuspend", "tgkill", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "tkill",
)

_NETWORK_IPC = (
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
    "ipc", "listen", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl",
    "msgget", "msgrcv", "msgsnd", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64",
    "recvmsg", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendmmsg", "sendmsg", "sendto", "setsockopt", "shmat", "shmctl", "shmdt", "shmget",
    "shutdown", "socket", "socketcall", "socketpair", "getrandom",
)

#: Syscalls allowed only with a capability (any one of the listed ones).
_BY_CAPABILITY: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("CAP_SYS_ADMIN",),
        (
            "add_key", "clone3", "fanotify_init", "fanotify_mark", "fsconfig", "fsmount",
            "fsopen", "fspick", "keyctl", "lookup_dcookie", "mount", "mount_setattr",
            "move_mount", "open_tree", "pivot_root", "quotactl", "quotactl_fd",
            "request_key", "setdomainname", "sethostname", "setns", "swapoff", "swapon",
            "umount", "umount2", "unshare",
        ),
    ),
    (("CAP_SYS_ADMIN", "CAP_BPF"), ("bpf",)),
    (("CAP_SYS_ADMIN", "CAP_PERFMON"), ("perf_event_open",)),
    (("CAP_SYS_ADMIN", "CAP_SYSLOG"), ("syslog",)),
    (("CAP_SYS_PTRACE",), ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                           "process_vm_writev", "ptrace", "userfaultfd")),
    (("CAP_SYS_MODULE",), ("delete_module", "finit_module", "init_module")),
    (("CAP_SYS_RAWIO",), ("ioperm", "iopl")),
    (("CAP_SYS_BOOT",), ("reboot",)),
    (("CAP_SYS_TIME",), ("clock_settime", "clock_settime64", "settimeofday", "stime")),
    (("CAP_SYS_PACCT",), ("acct",)),
    (("CAP_SYS_NICE",), ("mbind", "migrate_pages", "move_pages", "set_mempolicy")),
    (("CAP_SYS_CHROOT",), ("chroot",)),
    (("CAP_SYS_TTY_CONFIG",), ("vhangup",)),
    (("CAP_DAC_READ_SEARCH",), ("name_to_handle_at", "open_by_handle_at")),
)

# fmt: on

#: clone(2) flags that create namespaces (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER
#: | NEWPID | NEWNET). Without CAP_SYS_ADMIN, clone is allowed only with none of them set,
#: which keeps containers from creating user namespaces.
_CLONE_NAMESPACE_FLAGS = 0x7E020000

#: personality(2) values ordinary programs use: PER_LINUX, UNAME26, PER_LINUX32,
#: PER_LINUX32|UNAME26 and the 0xffffffff query.
_PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)


def _default_profile() -> dict[str, Any]:
    base = sorted(
        {*_FILES, *_MEMORY, *_PROCESSES, *_SIGNALS_TIME_EVENTS, *_NETWORK_IPC} - {"clone"}
    )
    syscalls: list[dict[str, Any]] = [{"names": base, "action": _ALLOW}]
    syscalls.extend(
        {
            "names": ["personality"],
            "action": _ALLOW,
            "args": [{"index": 0, "value": value, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        }
        for value in _PERSONALITIES
    )
    syscalls.append(
        {
            "names": ["clone"],
            "action": _ALLOW,
            "args": [
                {
                    "index": 0,
                    "value": _CLONE_NAMESPACE_FLAGS,
                    "valueTwo": 0,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        }
    )
    # clone3 passes its flags in memory, where seccomp cannot look: answer ENOSYS so libc
    # falls back to clone, whose flags are filtered above.
    syscalls.append(
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": _ENOSYS,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        }
    )
    syscalls.append({"names": ["clone"], "action": _ALLOW, "includes": {"caps": ["CAP_SYS_ADMIN"]}})
    for caps, names in _BY_CAPABILITY:
        for cap in caps:
            syscalls.append({"names": sorted(names), "action": _ALLOW, "includes": {"caps": [cap]}})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [
            {"architecture": arches[0], "subArchitectures": list(arches[1:])}
            for arches in _ARCHES.values()
        ],
        "syscalls": syscalls,
    }


#: The default profile in Docker's format (``docker run --security-opt seccomp=...`` takes the
#: same format, so this can be written to a file and edited by users).
DEFAULT_PROFILE: Mapping[str, Any] = _default_profile()


def seccomp_for(
    capabilities: Iterable[str],
    profile_override: str | Mapping[str, Any] | None = None,
    *,
    machine: str = "x86_64",
    absent_arches: Collection[str] = (),
) -> dict[str, Any] | None:
    """The ``linux.seccomp`` object for a container, or None for no filter.

    ``capabilities``: the container's final capability set (``CAP_`` names).
    ``profile_override``: None for the default profile, ``"unconfined"`` for none, or a
    profile (a JSON string as the API carries it, or an already-decoded mapping).
    ``machine``: the host's ``uname -m`` (selects the architectures and arch conditions).
    ``absent_arches``: compat architectures the kernel does not run; an ``archMap`` entry's
    sub-architectures leave them out (a filter for an ABI the kernel rejects anyway only
    slows the runtime down). An explicit ``architectures`` list is used as written.
    """
    if profile_override is None:
        profile: Mapping[str, Any] = DEFAULT_PROFILE
    elif isinstance(profile_override, str):
        if profile_override == UNCONFINED:
            return None
        profile = _decode(profile_override)
    else:
        profile = profile_override
    return _to_oci(profile, frozenset(capabilities), machine, frozenset(absent_arches))


def _decode(text: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidParameter(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(value, dict):
        raise InvalidParameter("Decoding seccomp profile failed: not a JSON object")
    return value


def _arch_matches(arches: Sequence[str], machine: str) -> bool:
    aliases = _ARCH_ALIASES.get(machine, frozenset({machine}))
    return any(a in aliases for a in arches)


def _rule_applies(rule: Mapping[str, Any], caps: frozenset[str], machine: str) -> bool:
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if any(c not in caps for c in includes.get("caps") or ()):
        return False
    if includes.get("arches") and not _arch_matches(includes["arches"], machine):
        return False
    if any(c in caps for c in excludes.get("caps") or ()):
        return False
    return not (excludes.get("arches") and _arch_matches(excludes["arches"], machine))


def _architectures(
    profile: Mapping[str, Any], machine: str, absent: frozenset[str] = frozenset()
) -> list[str]:
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidParameter(
            "'architectures' and 'archMap' were specified in the seccomp profile, "
            "use either 'architectures' or 'archMap'"
        )
    if profile.get("architectures"):
        return list(profile["architectures"])
    native = _ARCHES.get(machine, ())
    for entry in profile.get("archMap") or ():
        if native and entry.get("architecture") == native[0]:
            subs = [a for a in entry.get("subArchitectures") or () if a not in absent]
            return [entry["architecture"], *subs]
    return []


def _to_oci(
    profile: Mapping[str, Any], caps: frozenset[str], machine: str, absent: frozenset[str]
) -> dict[str, Any]:
    default_action = profile.get("defaultAction")
    if not isinstance(default_action, str) or not default_action:
        raise InvalidParameter("the seccomp profile has no defaultAction")
    out: dict[str, Any] = {"defaultAction": default_action}
    for key in ("defaultErrnoRet", "listenerPath", "listenerMetadata", "flags"):
        if profile.get(key) is not None:
            out[key] = profile[key]
    arches = _architectures(profile, machine, absent)
    if arches:
        out["architectures"] = arches
    syscalls = []
    # Unconditional rules already emitted, by (name, action, errnoRet): a syscall allowed by
    # two capability rules must reach the runtime once.
    emitted: set[tuple[str, str, object]] = set()
    for rule in profile.get("syscalls") or ():
        if rule.get("name") and rule.get("names"):
            raise InvalidParameter(
                "'name' and 'names' were specified in the seccomp profile, "
                "use either 'name' or 'names'"
            )
        if not _rule_applies(rule, caps, machine):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        if not names:
            continue
        action = rule.get("action", _ALLOW)
        if not rule.get("args"):
            keys = [(n, action, rule.get("errnoRet")) for n in names]
            names = [n for n, k in zip(names, keys, strict=True) if k not in emitted]
            emitted.update(keys)
            if not names:
                continue
        entry: dict[str, Any] = {"names": names, "action": action}
        if rule.get("errnoRet") is not None:
            entry["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            entry["args"] = [
                {
                    "index": a["index"],
                    "value": a.get("value", 0),
                    "valueTwo": a.get("valueTwo", 0),
                    "op": a["op"],
                }
                for a in rule["args"]
            ]
        syscalls.append(entry)
    if syscalls:
        out["syscalls"] = syscalls
    return out
