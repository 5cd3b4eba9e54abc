from __future__ import annotations

import base64
import json

import pytest

from whaled.distribution.auth import Credentials, decode_registry_auth
from whaled.errors import InvalidParameter


def _enc(doc: object, *, urlsafe: bool = True, pad: bool = True) -> str:
    raw = json.dumps(doc).encode()
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return text if pad else text.rstrip("=")


def test_absent_or_empty_header_gives_empty_credentials() -> None:
    assert decode_registry_auth(None) == Credentials()
    assert decode_registry_auth("") == Credentials()
    assert decode_registry_auth(None).empty


def test_docker_py_shape() -> None:
    doc = {"username": "u", "password": "p", "email": None, "serveraddress": "127.0.0.1:5000"}
    creds = decode_registry_auth(_enc(doc))
    assert creds == Credentials(username="u", password="p", server_address="127.0.0.1:5000")


def test_keys_are_case_insensitive_like_go_json() -> None:
    creds = decode_registry_auth(_enc({"Username": "u", "Password": "p", "ServerAddress": "h"}))
    assert (creds.username, creds.password, creds.server_address) == ("u", "p", "h")


def test_identity_and_registry_tokens() -> None:
    creds = decode_registry_auth(_enc({"identitytoken": "it", "registrytoken": "rt"}))
    assert creds.identity_token == "it"
    assert creds.registry_token == "rt"
    assert not creds.empty


@pytest.mark.parametrize("urlsafe", [True, False])
@pytest.mark.parametrize("pad", [True, False])
def test_both_alphabets_with_and_without_padding(urlsafe: bool, pad: bool) -> None:
    # a password whose JSON encodes to bytes that differ between the two alphabets
    doc = {"username": "u", "password": "??>>~~\u00ff"}
    enc = _enc(doc, urlsafe=urlsafe, pad=pad)
    assert decode_registry_auth(enc).password == doc["password"]


def test_auth_field_is_split_into_username_and_password() -> None:
    auth = base64.b64encode(b"alice:s3:cret").decode()
    creds = decode_registry_auth(_enc({"auth": auth}))
    assert (creds.username, creds.password) == ("alice", "s3:cret")


@pytest.mark.parametrize(
    "header",
    [
        "!!!not base64!!!",
        "a",  # impossible length
        base64.urlsafe_b64encode(b"{not json").decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"username": 5}').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_malformed_header_is_invalid_parameter(header: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        decode_registry_auth(header)
    assert str(e.value).startswith("invalid X-Registry-Auth header: ")


def test_secrets_never_in_repr_or_error() -> None:
    creds = decode_registry_auth(
        _enc({"username": "u", "password": "hunter2", "identitytoken": "tok-secret"})
    )
    assert "hunter2" not in repr(creds)
    assert "tok-secret" not in repr(creds)
    bad = base64.urlsafe_b64encode(b'{"password": "hunter2"').decode()
    with pytest.raises(InvalidParameter) as e:
        decode_registry_auth(bad)
    assert "hunter2" not in str(e.value)
