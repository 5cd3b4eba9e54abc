"""Which sysctls a container may set (pure).

Only sysctls that live in a namespace the container owns are allowed — the same set the
runtime (runc) accepts and dockerd documents: the IPC ones (``kernel.msg*``, ``kernel.sem``,
``kernel.shm*``, ``fs.mqueue.*``) unless the IPC namespace is the host's, ``net.*`` unless the
network namespace is the host's, and ``kernel.domainname`` unless the UTS namespace is the
host's. Checking here turns a failure at start into a 400 at create.
"""

from __future__ import annotations

from collections.abc import Mapping

from whaled.errors import InvalidParameter

_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
_IPC_PREFIX = "fs.mqueue."
_NET_PREFIX = "net."
_UTS_SYSCTLS = frozenset({"kernel.domainname"})


def validate_sysctls(
    sysctls: Mapping[str, str], *, host_ipc: bool, host_network: bool, host_uts: bool
) -> dict[str, str]:
    """Return the sysctls (names with ``/`` separators normalised to dots) or raise 400."""
    result: dict[str, str] = {}
    for raw_name, value in sysctls.items():
        name = raw_name.replace("/", ".")
        if name in _IPC_SYSCTLS or name.startswith(_IPC_PREFIX):
            if host_ipc:
                raise InvalidParameter(
                    f'sysctl "{name}" is not allowed in the host\'s IPC namespace'
                )
        elif name.startswith(_NET_PREFIX):
            if host_network:
                raise InvalidParameter(
                    f'sysctl "{name}" is not allowed in the host\'s network namespace'
                )
        elif name in _UTS_SYSCTLS:
            if host_uts:
                raise InvalidParameter(
                    f'sysctl "{name}" is not allowed in the host\'s UTS namespace'
                )
        else:
            raise InvalidParameter(
                f'sysctl "{name}" is not in a separate kernel namespace, so a container '
                "may not set it"
            )
        result[name] = value
    return result
