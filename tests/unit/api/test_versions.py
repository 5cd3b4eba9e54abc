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
