from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.defaults import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    effective_capabilities,
    normalize_capabilities,
    normalize_capability,
)


def test_default_set_is_dockerds() -> None:
    assert set(DEFAULT_CAPABILITIES) == {
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
    }
    assert set(DEFAULT_CAPABILITIES) <= set(ALL_CAPABILITIES)


def test_all_capabilities_are_the_41_kernel_ones() -> None:
    assert len(ALL_CAPABILITIES) == len(set(ALL_CAPABILITIES)) == 41
    assert ALL_CAPABILITIES[0] == "CAP_CHOWN"
    assert ALL_CAPABILITIES[21] == "CAP_SYS_ADMIN"
    assert ALL_CAPABILITIES[-1] == "CAP_CHECKPOINT_RESTORE"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("chown", "CAP_CHOWN"),
        ("CHOWN", "CAP_CHOWN"),
        ("cap_chown", "CAP_CHOWN"),
        ("CAP_NET_ADMIN", "CAP_NET_ADMIN"),
        ("all", "ALL"),
        ("ALL", "ALL"),
    ],
)
def test_normalize(given: str, expected: str) -> None:
    assert normalize_capability(given) == expected


def test_unknown_capability() -> None:
    with pytest.raises(InvalidParameter, match=r'^unknown capability: "CAP_FOO"$'):
        normalize_capability("foo")


def test_normalize_many_dedups() -> None:
    assert normalize_capabilities(["chown", "CAP_CHOWN", "kill"]) == ("CAP_CHOWN", "CAP_KILL")


def test_no_changes_gives_default_set() -> None:
    assert effective_capabilities() == DEFAULT_CAPABILITIES


def test_add_and_drop() -> None:
    caps = effective_capabilities(cap_add=["net_admin"], cap_drop=["chown", "CAP_KILL"])
    assert "CAP_NET_ADMIN" in caps
    assert "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    assert len(caps) == len(DEFAULT_CAPABILITIES) - 1


def test_add_wins_over_drop_of_same_cap() -> None:
    assert "CAP_CHOWN" in effective_capabilities(cap_add=["chown"], cap_drop=["chown"])


def test_add_existing_is_not_duplicated() -> None:
    caps = effective_capabilities(cap_add=["chown"])
    assert caps.count("CAP_CHOWN") == 1


def test_drop_all() -> None:
    assert effective_capabilities(cap_drop=["ALL"]) == ()


def test_drop_all_then_add() -> None:
    assert effective_capabilities(cap_add=["chown"], cap_drop=["all"]) == ("CAP_CHOWN",)


def test_add_all_minus_drops() -> None:
    caps = effective_capabilities(cap_add=["ALL"], cap_drop=["sys_admin"])
    assert "CAP_SYS_ADMIN" not in caps
    assert len(caps) == len(ALL_CAPABILITIES) - 1


def test_privileged_gets_everything_ignoring_drops() -> None:
    assert effective_capabilities(privileged=True, cap_drop=["ALL"]) == ALL_CAPABILITIES


def test_unknown_names_refused_even_when_privileged() -> None:
    with pytest.raises(InvalidParameter, match="CAP_NOPE"):
        effective_capabilities(privileged=True, cap_add=["nope"])
    with pytest.raises(InvalidParameter, match="CAP_NOPE"):
        effective_capabilities(cap_drop=["nope"])


def test_default_paths() -> None:
    assert "/proc/kcore" in DEFAULT_MASKED_PATHS
    assert "/sys/firmware" in DEFAULT_MASKED_PATHS
    assert set(DEFAULT_READONLY_PATHS) == {
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    }
