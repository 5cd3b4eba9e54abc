from __future__ import annotations

import hashlib

import pytest

from whaled.distribution.digest import (
    Digest,
    InvalidDigest,
    digest_of,
    is_valid_digest,
    parse_digest,
)

SHA256 = "sha256:" + "a" * 64
SHA512 = "sha512:" + "b" * 128


def test_sha256_and_sha512_accepted() -> None:
    assert parse_digest(SHA256) == Digest("sha256", "a" * 64)
    assert parse_digest(SHA512) == Digest("sha512", "b" * 128)
    assert str(parse_digest(SHA512)) == SHA512


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "format"),
        ("sha256", "format"),
        ("sha256:", "format"),
        (":" + "a" * 64, "format"),
        ("SHA256:" + "a" * 64, "format"),
        ("sha256:" + "a" * 63, "length"),
        ("sha256:" + "a" * 65, "length"),
        ("sha256:" + "A" * 64, "length"),  # hex must be lower case
        ("sha256:" + "g" * 64, "length"),
        ("sha512:" + "a" * 64, "length"),
        ("md5:" + "a" * 32, "unsupported"),
        ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "unsupported"),
        ("sha256:" + "a" * 64 + "\n", "format"),
    ],
)
def test_malformed_or_unsupported(value: str, reason: str) -> None:
    with pytest.raises(InvalidDigest) as e:
        parse_digest(value)
    assert reason in str(e.value)
    assert not is_valid_digest(value)


def test_digest_of_and_matches() -> None:
    d = digest_of(b"hello")
    assert str(d) == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert d.matches(b"hello")
    assert not d.matches(b"hellO")
    d512 = digest_of(b"hello", "sha512")
    assert d512.matches(b"hello")
    h = d512.hasher()
    h.update(b"hel")
    h.update(b"lo")
    assert h.hexdigest() == d512.encoded
    with pytest.raises(InvalidDigest):
        digest_of(b"x", "md5")
