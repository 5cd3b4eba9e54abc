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


def check_api_version(text: str | None) -> ApiVersion:
    """The version a request asked for (via its /vX.Y prefix), or the current one."""
    if not text:
        return CURRENT
    version = parse_api_version(text)
    if version > CURRENT:
        raise InvalidParameter(
            f"client version {text} is too new. Maximum supported API version is "
            f"{CURRENT_API_VERSION}"
        )
    if version < MINIMUM:
        raise InvalidParameter(
            f"client version {text} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    return version
