"""dockerd's defaults for a container's security envelope, and capability arithmetic.

Pure data plus the pure functions that combine it with a container's cap-add / cap-drop.
Capability names are kept in their ``CAP_`` form, as the OCI runtime spec wants them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from whaled.errors import InvalidParameter

#: Every capability the Linux kernel defines (up to CAP_CHECKPOINT_RESTORE, Linux 5.9), in
#: kernel numbering order. Privileged containers and ``--cap-add ALL`` get all of them; a
#: runtime (runc 1.1) warns about and skips any the running kernel does not know.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

_KNOWN = frozenset(ALL_CAPABILITIES)


def capabilities_from_mask(mask: int) -> frozenset[str]:
    """Capability names of a ``/proc/<pid>/status`` mask (``CapBnd`` …); ALL_CAPABILITIES
    is in kernel bit order."""
    return frozenset(name for bit, name in enumerate(ALL_CAPABILITIES) if mask >> bit & 1)

#: dockerd's default capability set for an unprivileged container.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

#: The word that means "every capability" in cap-add / cap-drop.
ALL = "ALL"

#: Paths dockerd hides from unprivileged containers (bind-mounted over with /dev/null or an
#: empty read-only tmpfs by the runtime).
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

#: Paths dockerd remounts read-only in unprivileged containers.
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

#: Where ``--init`` puts the init binary inside the container (dockerd's path, so tools that
#: look for it keep working).
INIT_PATH_IN_CONTAINER = "/sbin/docker-init"

#: PATH given to a container whose environment has none.
DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: dockerd's default size of /dev/shm (64 MiB).
DEFAULT_SHM_SIZE = 64 * 1024 * 1024


def normalize_capability(name: str) -> str:
    """``chown`` → ``CAP_CHOWN``, ``all`` → ``ALL``; an unknown name is a 400 (dockerd wording)."""
    upper = name.strip().upper()
    if upper in (ALL, "CAP_ALL"):
        return ALL
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in _KNOWN:
        raise InvalidParameter(f'unknown capability: "{upper}"')
    return upper


def normalize_capabilities(names: Iterable[str]) -> tuple[str, ...]:
    """Normalise every name (see :func:`normalize_capability`), dropping repeats, keeping order."""
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(normalize_capability(name), None)
    return tuple(seen)


def effective_capabilities(
    *,
    cap_add: Sequence[str] = (),
    cap_drop: Sequence[str] = (),
    privileged: bool = False,
    base: Sequence[str] = DEFAULT_CAPABILITIES,
) -> tuple[str, ...]:
    """The capability set of a container, following dockerd's rules.

    - privileged: every capability; cap-add / cap-drop are not consulted.
    - ``ALL`` in cap-add: every capability except those dropped.
    - ``ALL`` in cap-drop (and not in cap-add): only the added ones.
    - otherwise: the base set minus the dropped ones, plus the added ones.
    Names are validated either way (an unknown one is a 400 even when privileged).
    """
    adds = normalize_capabilities(cap_add)
    drops = normalize_capabilities(cap_drop)
    if privileged:
        return ALL_CAPABILITIES
    if ALL in adds:
        result = [c for c in ALL_CAPABILITIES if c not in drops]
    elif ALL in drops:
        result = list(adds)
    else:
        result = [c for c in base if c not in drops]
        result.extend(c for c in adds if c not in result)
    return tuple(result)
