"""A TLS registry with htpasswd basic auth and a CA made by the test (openssl)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.distribution.conftest import RegistryFactory
from tests.support.registry import Certs, RegistryProcess, htpasswd_line, make_certs, push_image
from whaled.distribution.auth import Authenticator, Credentials
from whaled.distribution.client import RegistryClient
from whaled.distribution.endpoints import Endpoint
from whaled.distribution.errors import (
    NoBasicAuthCredentials,
    RegistryError,
    RegistryNotFound,
    RegistryUnreachable,
)
from whaled.distribution.tls import read_certs_dirs
from whaled.image.reference import parse_normalized_named

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
]
USER, PASSWORD = "alice", "s3cret-pw"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_registry(registry_factory: RegistryFactory, certs: Certs) -> RegistryProcess:
    reg = registry_factory("tls", tls=certs, htpasswd=htpasswd_line(USER, PASSWORD))
    push_image(reg.uploader(auth=(USER, PASSWORD)), "t/x", "1")
    return reg


def certs_d(tmp_path: Path, reg: RegistryProcess, certs: Certs) -> Path:
    base = tmp_path / "certs.d"
    (base / reg.host).mkdir(parents=True)
    shutil.copy(certs.ca_crt, base / reg.host / "ca.crt")
    return base


def verified_client(
    reg: RegistryProcess, certs_dirs: list[str], creds: Credentials | None = None
) -> RegistryClient:
    """A client that verifies TLS (what a registry outside insecure-registries gets)."""
    return RegistryClient(
        reg.host,
        endpoints=[Endpoint(scheme="https", host=reg.host, verify=True)],
        certs=read_certs_dirs(certs_dirs, reg.host),
        authenticator=Authenticator(creds),
    )


def test_unknown_ca_is_refused(tls_registry: RegistryProcess) -> None:
    with verified_client(tls_registry, []) as client, pytest.raises(RegistryUnreachable) as e:
        client.ping()
    assert str(e.value).startswith(f'Get "https://{tls_registry.host}/v2/": tls: failed to verify')


def test_no_credentials_says_so(
    tmp_path: Path, tls_registry: RegistryProcess, certs: Certs
) -> None:
    dirs = [str(certs_d(tmp_path, tls_registry, certs))]
    r = parse_normalized_named(f"{tls_registry.host}/t/x:1")
    with verified_client(tls_registry, dirs) as client, pytest.raises(NoBasicAuthCredentials) as e:
        client.resolve(r)
    assert str(e.value) == (
        f'Get "https://{tls_registry.host}/v2/t/x/manifests/1": no basic auth credentials'
    )


def test_with_credentials_pull_works(
    tmp_path: Path, tls_registry: RegistryProcess, certs: Certs
) -> None:
    dirs = [str(tmp_path / "empty-certs.d"), str(certs_d(tmp_path, tls_registry, certs))]
    r = parse_normalized_named(f"{tls_registry.host}/t/x:1")
    creds = Credentials(username=USER, password=PASSWORD)
    with verified_client(tls_registry, dirs, creds) as client:
        resolved = client.resolve(r)
        with client.open_blob(r, resolved.layers[0]) as blob:
            blob.read_all()
            assert blob.verified
    # the password never reaches the registry's log
    assert PASSWORD not in tls_registry.log_text()


def test_wrong_password(tmp_path: Path, tls_registry: RegistryProcess, certs: Certs) -> None:
    dirs = [str(certs_d(tmp_path, tls_registry, certs))]
    r = parse_normalized_named(f"{tls_registry.host}/t/x:1")
    creds = Credentials(username=USER, password="wrong")
    with verified_client(tls_registry, dirs, creds) as client, pytest.raises(RegistryError) as e:
        client.resolve(r)
    assert e.value.code == "UNAUTHORIZED"
    assert str(e.value) == "unauthorized: authentication required"


def test_insecure_loopback_skips_verification(tls_registry: RegistryProcess) -> None:
    # 127.0.0.0/8 is insecure by default: HTTPS without verification is tried first and works
    creds = Credentials(username=USER, password=PASSWORD)
    with RegistryClient.for_domain(tls_registry.host, credentials=creds) as client:
        endpoint = client.ping()
        assert (endpoint.scheme, endpoint.verify) == ("https", False)
        client.resolve(parse_normalized_named(f"{tls_registry.host}/t/x:1"))


def _client_pair(pki: Path, name: str) -> tuple[Path, Path]:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True, timeout=60)

    (pki / f"{name}.ext").write_text("extendedKeyUsage=clientAuth\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
        f"{name}.csr", "-subj", f"/CN={name}")  # fmt: skip
    run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.cert", "-days", "2",
        "-extfile", f"{name}.ext")  # fmt: skip
    return pki / f"{name}.cert", pki / f"{name}.key"


def test_client_certificate_from_certs_d(
    tmp_path: Path, registry_factory: RegistryFactory, certs: Certs
) -> None:
    reg = registry_factory("mtls", tls=certs, client_cas=[certs.ca_crt])
    cert, key = _client_pair(certs.ca_crt.parent, "client")
    base = certs_d(tmp_path, reg, certs)
    r = parse_normalized_named(f"{reg.host}/t/x:1")
    with verified_client(reg, [str(base)]) as client, pytest.raises(RegistryUnreachable):
        client.ping()  # no client certificate: the handshake fails
    shutil.copy(cert, base / reg.host / "client.cert")
    shutil.copy(key, base / reg.host / "client.key")
    with verified_client(reg, [str(base)]) as client, pytest.raises(RegistryNotFound) as e:
        client.resolve(r)  # connected (mutual TLS works); nothing pushed yet
    assert "manifest unknown" in str(e.value)
