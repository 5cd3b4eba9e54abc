from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.ulimits import (
    RLIM_INFINITY,
    Ulimit,
    check_host_limits,
    merge_ulimits,
    parse_ulimit,
    to_oci_rlimits,
    validate_ulimit,
)


def test_parse() -> None:
    assert parse_ulimit("nofile=1024:2048") == Ulimit(name="nofile", soft=1024, hard=2048)
    assert parse_ulimit("nproc=512") == Ulimit(name="nproc", soft=512, hard=512)
    assert parse_ulimit("core=-1") == Ulimit(name="core", soft=-1, hard=-1)


@pytest.mark.parametrize("text", ["nofile", "nofile=a", "nofile=1:b"])
def test_parse_bad(text: str) -> None:
    with pytest.raises(InvalidParameter, match="invalid ulimit argument"):
        parse_ulimit(text)


def test_unknown_type() -> None:
    with pytest.raises(InvalidParameter, match=r"^invalid ulimit type: bogus$"):
        parse_ulimit("bogus=1")


def test_soft_above_hard() -> None:
    with pytest.raises(InvalidParameter, match="soft limit must be less than or equal"):
        validate_ulimit(Ulimit(name="nofile", soft=10, hard=5))
    with pytest.raises(InvalidParameter, match="soft limit must be less than or equal"):
        validate_ulimit(Ulimit(name="nofile", soft=-1, hard=5))
    validate_ulimit(Ulimit(name="nofile", soft=5, hard=-1))


def test_merge_container_wins_per_name() -> None:
    container = [Ulimit(name="nofile", soft=100, hard=200)]
    defaults = [Ulimit(name="nofile", soft=1, hard=1), Ulimit(name="nproc", soft=50, hard=60)]
    assert merge_ulimits(container, defaults) == (
        Ulimit(name="nofile", soft=100, hard=200),
        Ulimit(name="nproc", soft=50, hard=60),
    )


def test_merge_without_container_ulimits() -> None:
    defaults = [Ulimit(name="nproc", soft=50, hard=60)]
    assert merge_ulimits([], defaults) == tuple(defaults)


def test_host_hard_limit_check() -> None:
    host = {"nofile": 20000}
    check_host_limits([Ulimit(name="nofile", soft=1024, hard=20000)], host)
    with pytest.raises(InvalidParameter, match=r"nofile.*hard limit 1048576.*20000"):
        check_host_limits([Ulimit(name="nofile", soft=1024, hard=1048576)], host)
    with pytest.raises(InvalidParameter, match="unlimited"):
        check_host_limits([Ulimit(name="nofile", soft=1024, hard=-1)], host)


def test_host_hard_limit_unlimited_or_unknown_is_not_checked() -> None:
    check_host_limits([Ulimit(name="nofile", soft=-1, hard=-1)], {"nofile": -1})
    check_host_limits([Ulimit(name="nproc", soft=10**9, hard=10**9)], {"nofile": 20000})


def test_to_oci() -> None:
    got = to_oci_rlimits(
        [Ulimit(name="nofile", soft=1024, hard=2048), Ulimit(name="core", soft=-1, hard=-1)]
    )
    assert got == [
        {"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024},
        {"type": "RLIMIT_CORE", "hard": RLIM_INFINITY, "soft": RLIM_INFINITY},
    ]
