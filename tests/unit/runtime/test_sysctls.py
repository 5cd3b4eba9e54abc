from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.sysctls import validate_sysctls


def ok(sysctls: dict[str, str], **host: bool) -> dict[str, str]:
    flags = {"host_ipc": False, "host_network": False, "host_uts": False, **host}
    return validate_sysctls(sysctls, **flags)


def test_namespaced_sysctls_allowed() -> None:
    given = {
        "net.ipv4.ip_forward": "1",
        "net.core.somaxconn": "1024",
        "kernel.shmmax": "1000",
        "kernel.msgmax": "10",
        "kernel.sem": "250 32000 100 128",
        "fs.mqueue.msg_max": "20",
        "kernel.domainname": "example.org",
    }
    assert ok(given) == given


def test_slashes_normalised() -> None:
    assert ok({"net/ipv4/ip_forward": "1"}) == {"net.ipv4.ip_forward": "1"}


@pytest.mark.parametrize(
    "name",
    [
        "kernel.pid_max",
        "vm.swappiness",
        "fs.file-max",
        "kernel.hostname",
        "user.max_user_namespaces",
    ],
)
def test_not_namespaced(name: str) -> None:
    with pytest.raises(InvalidParameter, match=f'sysctl "{name}" is not in a separate kernel'):
        ok({name: "1"})


def test_net_refused_in_host_network() -> None:
    with pytest.raises(InvalidParameter, match="host's network namespace"):
        ok({"net.ipv4.ip_forward": "1"}, host_network=True)
    assert ok({"kernel.shmmax": "1"}, host_network=True)


def test_ipc_refused_in_host_ipc() -> None:
    with pytest.raises(InvalidParameter, match="host's IPC namespace"):
        ok({"kernel.shmmax": "1"}, host_ipc=True)
    with pytest.raises(InvalidParameter, match="host's IPC namespace"):
        ok({"fs.mqueue.queues_max": "1"}, host_ipc=True)


def test_domainname_refused_in_host_uts() -> None:
    with pytest.raises(InvalidParameter, match="host's UTS namespace"):
        ok({"kernel.domainname": "x"}, host_uts=True)
