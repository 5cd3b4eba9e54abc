from __future__ import annotations

import pytest

from whaled import errors
from whaled.api.errors import status_for
from whaled.api.versions import check_api_version


def test_versions_in_range() -> None:
    assert check_api_version(None) == (1, 45)
    assert check_api_version("1.45") == (1, 45)
    assert check_api_version("1.24") == (1, 24)
    assert check_api_version("1.30") == (1, 30)


def test_too_new_and_too_old_use_dockerd_wording() -> None:
    with pytest.raises(errors.InvalidParameter) as e:
        check_api_version("1.99")
    assert str(e.value) == "client version 1.99 is too new. Maximum supported API version is 1.45"
    with pytest.raises(errors.InvalidParameter) as e:
        check_api_version("1.12")
    assert str(e.value) == (
        "client version 1.12 is too old. Minimum supported API version is 1.24, "
        "please upgrade your client to a newer version"
    )
    with pytest.raises(errors.InvalidParameter):
        check_api_version("2.0")


@pytest.mark.parametrize(
    ("text", "problem"),
    [("1", "too old"), ("1.2.3", "too old"), (".", "too old"), ("9", "too new"),
     ("1.46", "too new"), ("1.45.1", "too new"), ("99999999999999999999.1", "too new")],
)
def test_prefixes_dockerd_routes_are_checked_like_dockerd(text: str, problem: str) -> None:
    """Issue 17: ``/v1/…`` and ``/v1.2.3/…`` were a 404 (the route wanted X.Y exactly);
    dockerd's router takes digits and dots and its version check answers 400."""
    with pytest.raises(errors.InvalidParameter, match=f"client version {text} is {problem}"):
        check_api_version(text)


def test_versions_with_more_parts_compare_like_dockerd() -> None:
    assert check_api_version("1.45.0") == (1, 45)
    assert check_api_version("1.30.9") == (1, 30)
    assert check_api_version("01.024") == (1, 24)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidParameter("x"), 400),
        (errors.ConfigError("x"), 400),
        (errors.Unauthorized("x"), 401),
        (errors.Forbidden("x"), 403),
        (errors.NoSuchContainer("c"), 404),
        (errors.Conflict("x"), 409),
        (errors.NotModified("x"), 304),
        (errors.Unsupported("x"), 501),
        (errors.Unavailable("x"), 503),
        (errors.SystemFailure("x"), 500),
        (errors.WhaledError("x"), 500),
    ],
)
def test_status_mapping(error: errors.WhaledError, status: int) -> None:
    assert status_for(error) == status
    assert errors.NoSuchContainer("abc").message == "No such container: abc"
