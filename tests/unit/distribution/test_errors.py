from __future__ import annotations

import pytest

from whaled.distribution.errors import (
    RegistryError,
    RegistryNotFound,
    UnexpectedResponse,
    translate_pull_error,
)
from whaled.distribution.wire import registry_error
from whaled.errors import NotFound


def _translate(err: Exception) -> Exception:
    return translate_pull_error(
        err, familiar_name="127.0.0.1:5000/t/x", familiar_ref="127.0.0.1:5000/t/x:nope"
    )


def test_registry_error_body() -> None:
    err = registry_error(
        404,
        b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown",'
        b'"detail":{"Tag":"nope"}},{"code":"OTHER","message":"ignored"}]}',
    )
    assert isinstance(err, RegistryError)
    assert (err.code, err.registry_message, err.detail) == (
        "MANIFEST_UNKNOWN",
        "manifest unknown",
        {"Tag": "nope"},
    )
    assert str(err) == "manifest unknown: manifest unknown"


def test_default_message_when_registry_sends_none() -> None:
    err = registry_error(403, b'{"errors":[{"code":"DENIED"}]}')
    assert str(err) == "denied: requested access to the resource is denied"


def test_non_json_bodies() -> None:
    err = registry_error(401, b"<html>nope</html>")
    assert isinstance(err, RegistryError)
    assert str(err) == "unauthorized: authentication required"
    other = registry_error(502, b"<html>bad gateway</html>")
    assert isinstance(other, UnexpectedResponse)
    assert str(other).startswith("error parsing HTTP 502 response body: ")
    assert "bad gateway" in str(other)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            "manifest for 127.0.0.1:5000/t/x:nope not found: manifest unknown: manifest unknown",
        ),
        (
            "NAME_UNKNOWN",
            "repository name not known to registry",
            "repository 127.0.0.1:5000/t/x not found: name unknown: repository name not known "
            "to registry",
        ),
        (
            "DENIED",
            "",
            "pull access denied for 127.0.0.1:5000/t/x, repository does not exist or may require "
            "'docker login': denied: requested access to the resource is denied",
        ),
    ],
)
def test_pull_translation(code: str, message: str, expected: str) -> None:
    err = _translate(RegistryError(code, message))
    assert isinstance(err, RegistryNotFound)
    assert isinstance(err, NotFound)
    assert str(err) == expected


def test_other_errors_pass_through() -> None:
    err = RegistryError("UNAUTHORIZED", "")
    assert _translate(err) is err
    plain = ValueError("x")
    assert _translate(plain) is plain
