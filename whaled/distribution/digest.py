"""Content digests as the OCI image spec defines them (pure).

``algorithm ":" encoded`` with ``algorithm = [a-z0-9]+([+._-][a-z0-9]+)*`` and
``encoded = [a-zA-Z0-9=_-]+``. Two algorithms are registered and accepted here: ``sha256``
(64 lower-case hex) and ``sha512`` (128 lower-case hex); a well-formed digest with another
algorithm is refused as unsupported, anything else as malformed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from whaled.errors import InvalidParameter

_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
#: algorithm → length of its lower-case hex encoding
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+$")


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...

    def copy(self) -> Hasher: ...


class InvalidDigest(InvalidParameter):
    pass


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    def hasher(self) -> Hasher:
        """A fresh hash object of this digest's algorithm."""
        h: Hasher = hashlib.new(self.algorithm)
        return h

    def matches(self, data: bytes) -> bool:
        h = self.hasher()
        h.update(data)
        return h.hexdigest() == self.encoded


def parse_digest(value: str) -> Digest:
    """Parse and validate ``value``; raise :class:`InvalidDigest` with a clear reason."""
    m = _DIGEST_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise InvalidDigest(f"invalid digest format: {value!r}")
    algorithm, encoded = m.group(1), m.group(2)
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise InvalidDigest(f"unsupported digest algorithm: {value!r}")
    if len(encoded) != length or not _HEX.fullmatch(encoded):
        raise InvalidDigest(f"invalid checksum digest length or format: {value!r}")
    return Digest(algorithm, encoded)


def is_valid_digest(value: str) -> bool:
    try:
        parse_digest(value)
    except InvalidDigest:
        return False
    return True


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    if algorithm not in ALGORITHMS:
        raise InvalidDigest(f"unsupported digest algorithm: {algorithm!r}")
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
