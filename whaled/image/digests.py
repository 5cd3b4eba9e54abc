"""Pure helpers around sha256 digests: validation, chain IDs, short IDs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from whaled.errors import InvalidParameter

SHA256_PREFIX = "sha256:"
_HEX64 = re.compile(r"[a-f0-9]{64}")


def is_hex64(value: str) -> bool:
    return _HEX64.fullmatch(value) is not None


def is_digest(value: str) -> bool:
    """True for ``sha256:<64 lowercase hex>``."""
    return value.startswith(SHA256_PREFIX) and is_hex64(value[len(SHA256_PREFIX) :])


def check_digest(value: str) -> str:
    """Return ``value`` if it is a sha256 digest, else raise InvalidParameter."""
    if not is_digest(value):
        raise InvalidParameter(f"invalid digest {value!r}: expected sha256:<64 hex digits>")
    return value


def digest_hex(digest: str) -> str:
    return check_digest(digest)[len(SHA256_PREFIX) :]


def sha256_digest(data: bytes) -> str:
    return SHA256_PREFIX + hashlib.sha256(data).hexdigest()


def chain_id(parent_chain: str | None, diff_id: str) -> str:
    """``chain(1) = diff(1)``; ``chain(n) = sha256(chain(n-1) + " " + diff(n))``."""
    if parent_chain is None:
        return diff_id
    return sha256_digest(f"{parent_chain} {diff_id}".encode())


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Chain IDs of every prefix of ``diff_ids`` (same length as the input)."""
    out: list[str] = []
    parent: str | None = None
    for diff in diff_ids:
        parent = chain_id(parent, diff)
        out.append(parent)
    return out


def top_chain_id(diff_ids: Sequence[str]) -> str | None:
    ids = chain_ids(diff_ids)
    return ids[-1] if ids else None


def short_id(value: str) -> str:
    """dockerd's ``stringid.TruncateID``: drop the algorithm, keep 12 characters."""
    if ":" in value:
        value = value.split(":", 1)[1]
    return value[:12]
