from __future__ import annotations

import pytest

from whaled.distribution.platforms import (
    NoMatchingManifest,
    Platform,
    compatible,
    matches_config,
    normalize,
    parse_platform,
    platform_from_machine,
    select_index,
)
from whaled.errors import InvalidParameter, NotFound


def P(spec: str) -> Platform:
    parts = spec.split("/")
    return Platform(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) > 2 else "")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("Linux/S390X", "linux/s390x"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert str(normalize(P(raw))) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("arm64", "linux/arm64"),
        ("linux/s390x", "linux/s390x"),
    ],
)
def test_parse_platform(spec: str, expected: str) -> None:
    assert str(parse_platform(spec)) == expected


@pytest.mark.parametrize("spec", ["", "linux//amd64", "a/b/c/d", "linux/am d64", "/"])
def test_parse_platform_refuses_malformed(spec: str) -> None:
    with pytest.raises(InvalidParameter):
        parse_platform(spec)


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64/v8"),
        ("armv7l", "linux/arm/v7"),
        ("armv6l", "linux/arm/v6"),
        ("s390x", "linux/s390x"),
        ("ppc64le", "linux/ppc64le"),
        ("i686", "linux/386"),
    ],
)
def test_host_platform_from_machine(machine: str, expected: str) -> None:
    assert str(platform_from_machine(machine)) == expected


def test_compatibility_vectors() -> None:
    assert [str(p) for p in compatible(P("linux/amd64"))] == ["linux/amd64", "linux/386"]
    assert [str(p) for p in compatible(P("linux/amd64/v3"))] == [
        "linux/amd64/v3",
        "linux/amd64/v2",
        "linux/amd64",
        "linux/386",
    ]
    assert [str(p) for p in compatible(P("linux/arm64/v8"))] == [
        "linux/arm64",
        "linux/arm/v8",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
    ]
    assert [str(p) for p in compatible(P("linux/arm/v6"))] == ["linux/arm/v6", "linux/arm/v5"]


INDEX = [
    (0, P("linux/arm/v7")),
    (1, None),  # e.g. an attestation manifest without platform
    (2, P("unknown/unknown")),
    (3, P("linux/arm64/v8")),
    (4, P("linux/386")),
    (5, P("linux/amd64")),
    (6, P("windows/amd64")),
]


def test_select_prefers_exact_then_compatible() -> None:
    assert select_index(INDEX, P("linux/amd64")) == 5
    assert select_index(INDEX, P("linux/arm64/v8")) == 3
    assert select_index(INDEX, P("linux/arm/v7")) == 0
    assert select_index(INDEX, P("windows/amd64")) == 6
    # an amd64 host takes the 386 entry when there is no amd64 one
    assert select_index([e for e in INDEX if e[0] != 5], P("linux/amd64")) == 4
    # arm64 host without an arm64 entry: arm/v7
    assert select_index([e for e in INDEX if e[0] != 3], P("linux/arm64/v8")) == 0


def test_select_keeps_index_order_on_ties() -> None:
    entries = [(7, P("linux/amd64")), (8, P("linux/x86_64"))]
    assert select_index(entries, P("linux/amd64")) == 7


def test_no_match_is_dockerds_error() -> None:
    with pytest.raises(NoMatchingManifest) as e:
        select_index(INDEX, P("linux/s390x"))
    assert str(e.value) == "no matching manifest for linux/s390x in the manifest list entries"
    assert isinstance(e.value, NotFound)
    with pytest.raises(NoMatchingManifest) as e:
        select_index(INDEX[1:3], P("linux/arm64/v8"))
    assert str(e.value) == "no matching manifest for linux/arm64/v8 in the manifest list entries"


def test_matches_config() -> None:
    assert matches_config(P("linux/amd64"), P("linux/amd64"))
    assert matches_config(P("linux/arm/v7"), P("linux/arm64/v8"))
    assert not matches_config(P("linux/arm64"), P("linux/amd64"))


def test_one_unknown_component_is_no_platform() -> None:
    """Issue 17 (input audit): ``platform=bogus`` went to the registry as linux/bogus;
    containerd refuses a single component that is neither an OS nor an architecture."""
    with pytest.raises(InvalidParameter) as err:
        parse_platform("bogus")
    assert err.value.message == (
        '"bogus": unknown operating system or architecture: invalid argument'
    )
    assert str(parse_platform("x86_64")) == "linux/amd64"
    assert str(parse_platform("armhf")) == "linux/arm/v7"
