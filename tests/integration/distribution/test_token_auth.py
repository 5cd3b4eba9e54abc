"""A registry with ``auth.token`` and a small token issuer run by the test (RS256 JWTs)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.distribution.conftest import RegistryFactory
from tests.support.registry import RegistryProcess, TokenIssuer, push_image
from whaled.distribution.auth import Credentials, repository_scope
from whaled.distribution.client import RegistryClient
from whaled.distribution.errors import RegistryNotFound
from whaled.image.reference import parse_normalized_named

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
]
USER, PASSWORD = "bob", "tok-pw"
IDENTITY_TOKEN = "identity-token-of-bob"


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[TokenIssuer]:
    tokens = TokenIssuer(
        tmp_path / "issuer", users={USER: PASSWORD}, refresh_tokens={IDENTITY_TOKEN: USER}
    )
    try:
        yield tokens
    finally:
        tokens.close()


@pytest.fixture
def token_registry(registry_factory: RegistryFactory, issuer: TokenIssuer) -> RegistryProcess:
    reg = registry_factory("token", token=issuer.registry_config())
    token = issuer.token_for(USER, [repository_scope("t/x", ("pull", "push"))])
    push_image(reg.uploader(token=token), "t/x", "1")
    issuer.requests.clear()
    return reg


def test_pull_with_basic_credentials_through_the_token_server(
    token_registry: RegistryProcess, issuer: TokenIssuer
) -> None:
    r = parse_normalized_named(f"{token_registry.host}/t/x:1")
    creds = Credentials(username=USER, password=PASSWORD)
    with RegistryClient.for_domain(token_registry.host, credentials=creds) as client:
        resolved = client.resolve(r)
        for layer in resolved.layers:
            with client.open_blob(r, layer) as blob:
                blob.read_all()
                assert blob.verified
        assert client.read_blob(r, resolved.config)
    # one token for the repository scope, reused for the manifest and every blob
    assert [(m, p, q.get("scope"), q.get("service")) for m, p, q, _ in issuer.requests] == [
        ("GET", "/token", ["repository:t/x:pull"], ["whaled-test-registry"])
    ]
    assert issuer.requests[0][3] is not None  # basic credentials went to the token server
    assert PASSWORD not in token_registry.log_text()


def test_identity_token_is_exchanged_by_oauth_post(
    token_registry: RegistryProcess, issuer: TokenIssuer
) -> None:
    r = parse_normalized_named(f"{token_registry.host}/t/x:1")
    creds = Credentials(identity_token=IDENTITY_TOKEN)
    with RegistryClient.for_domain(token_registry.host, credentials=creds) as client:
        client.resolve(r)
    [(method, _, form, _)] = issuer.requests
    assert method == "POST"
    assert form["grant_type"] == ["refresh_token"]
    assert form["scope"] == ["repository:t/x:pull"]


def test_anonymous_pull_is_denied_with_dockerds_wording(
    token_registry: RegistryProcess, issuer: TokenIssuer
) -> None:
    r = parse_normalized_named(f"{token_registry.host}/t/x:1")
    with RegistryClient.for_domain(token_registry.host) as client:
        with pytest.raises(RegistryNotFound) as e:
            client.resolve(r)
    assert str(e.value) == (
        f"pull access denied for {token_registry.host}/t/x, repository does not exist or may "
        "require 'docker login': denied: requested access to the resource is denied"
    )
