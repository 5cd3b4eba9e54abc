from __future__ import annotations

import hashlib

import pytest

from whaled.errors import InvalidParameter
from whaled.image import digests as d

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


def test_chain_ids() -> None:
    ids = d.chain_ids([A, B, C])
    assert ids[0] == A
    second = "sha256:" + hashlib.sha256(f"{A} {B}".encode()).hexdigest()
    assert ids[1] == second
    assert ids[2] == "sha256:" + hashlib.sha256(f"{second} {C}".encode()).hexdigest()
    assert d.top_chain_id([A, B, C]) == ids[2]
    assert d.top_chain_id([]) is None


def test_short_id_and_validation() -> None:
    assert d.short_id(A) == "a" * 12
    assert d.short_id("abcdef0123456789") == "abcdef012345"
    assert d.is_digest(A) and not d.is_digest("sha256:ABC")
    with pytest.raises(InvalidParameter):
        d.check_digest("md5:00")


def test_a_trailing_newline_is_not_part_of_a_digest() -> None:
    hex64 = "a" * 64
    assert not d.is_hex64(hex64 + "\n")
    assert not d.is_digest("sha256:" + hex64 + "\n")
    assert d.is_digest("sha256:" + hex64)
