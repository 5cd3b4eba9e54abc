"""Engine API versions: what we serve and how a request's version is checked (pure)."""

from __future__ import annotations

from whaled.errors import InvalidParameter

CURRENT_API_VERSION = "1.45"
MIN_API_VERSION = "1.24"

ApiVersion = tuple[int, int]


def parse_api_version(text: str) -> ApiVersion:
    major, sep, minor = text.partition(".")
    if not sep or not major.isdigit() or not minor.isdigit():
        raise InvalidParameter(f"invalid API version: {text}")
    return int(major), int(minor)


CURRENT: ApiVersion = parse_api_version(CURRENT_API_VERSION)
MINIMUM: ApiVersion = parse_api_version(MIN_API_VERSION)


def compare_versions(a: str, b: str) -> int:
    """dockerd's ``versions.compare``: dot-separated numbers, a missing or non-numeric part
    counts as 0 (``1.45.0`` == ``1.45``; ``1`` < ``1.24``). -1, 0 or 1."""

    def parts(text: str) -> list[int]:
        return [int(p) if p.isdigit() else 0 for p in text.split(".")]

    pa, pb = parts(a), parts(b)
    width = max(len(pa), len(pb))
    pa += [0] * (width - len(pa))
    pb += [0] * (width - len(pb))
    return (pa > pb) - (pa < pb)


def check_api_version(text: str | None) -> ApiVersion:
    """The version a request asked for (via its /v prefix, digits and dots as dockerd's
    router takes them), or the current one. Out of [MIN, CURRENT] is a 400 in dockerd's
    wording; within it, the major and minor numbers."""
    if not text:
        return CURRENT
    if any(ch not in "0123456789." for ch in text):
        raise InvalidParameter(f"invalid API version: {text}")
    if compare_versions(text, CURRENT_API_VERSION) > 0:
        raise InvalidParameter(
            f"client version {text} is too new. Maximum supported API version is "
            f"{CURRENT_API_VERSION}"
        )
    if compare_versions(text, MIN_API_VERSION) < 0:
        raise InvalidParameter(
            f"client version {text} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    major, _, rest = text.partition(".")
    minor = rest.split(".", 1)[0]
    return int(major or 0), int(minor or 0)
