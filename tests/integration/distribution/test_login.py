"""``docker login`` (``POST /auth``) and authenticated push/pull on a real whaled: a TLS
registry with htpasswd basic auth and a CA made by the test (``certs.d`` beside whaled's
config file), and a token-auth registry with the test's own token issuer."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.distribution.conftest import RegistryFactory
from tests.support.dockercli import DockerCLI
from tests.support.registry import (
    Certs,
    RegistryProcess,
    TokenIssuer,
    htpasswd_line,
    make_certs,
    push_image,
)
from tests.support.whaled_proc import WhaledProcess
from whaled.distribution.auth import repository_scope

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
]
USER, PASSWORD = "alice", "s3cret-pw"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("pki"))


def _trust(whaled: WhaledProcess, reg: RegistryProcess, certs: Certs) -> None:
    folder = Path(whaled.config_path).parent / "certs.d" / reg.host
    folder.mkdir(parents=True)
    shutil.copy(certs.ca_crt, folder / "ca.crt")


def test_tls_basic_auth_registry_refuses_until_login(
    registry_factory: RegistryFactory,
    certs: Certs,
    whaled: WhaledProcess,
    docker_cli: DockerCLI,
    busybox_image: str,
) -> None:
    reg = registry_factory("tls", tls=certs, htpasswd=htpasswd_line(USER, PASSWORD))
    _trust(whaled, reg, certs)
    name = f"{reg.host}/t/private"
    docker_cli.run("tag", busybox_image, f"{name}:1")

    refused = docker_cli.run("push", f"{name}:1", check=False)
    assert refused.returncode != 0
    assert "no basic auth credentials" in refused.stderr, refused.stderr

    wrong = docker_cli.run(
        "login", "-u", USER, "--password-stdin", reg.host, input="nope\n", check=False
    )
    assert wrong.returncode != 0
    assert (
        f"login attempt to https://{reg.host}/v2/ failed with status: 401 Unauthorized"
        in wrong.stderr
    ), wrong.stderr
    status, _, body = whaled.request(
        "POST",
        "/v1.45/auth",
        json.dumps({"username": USER, "password": "nope", "serveraddress": reg.host}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 401, body

    ok = docker_cli.run("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD + "\n")
    assert "Login Succeeded" in ok.stdout
    pushed = docker_cli.run("push", f"{name}:1")
    assert "Pushed" in pushed.stdout, pushed.stdout
    image_id = json.loads(docker_cli.run("image", "inspect", f"{name}:1").stdout)[0]["Id"]
    docker_cli.run("rmi", "-f", image_id)
    docker_cli.run("pull", f"{name}:1")
    assert json.loads(docker_cli.run("image", "inspect", f"{name}:1").stdout)[0]["Id"] == image_id

    docker_cli.run("logout", reg.host)
    docker_cli.run("rmi", "-f", image_id)
    after = docker_cli.run("pull", f"{name}:1", check=False)
    assert after.returncode != 0 and "no basic auth credentials" in after.stderr, after.stderr
    # the daemon logged no secret
    assert PASSWORD not in Path(whaled.log_path).read_text()


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[TokenIssuer]:
    tokens = TokenIssuer(tmp_path / "issuer", users={USER: PASSWORD})
    try:
        yield tokens
    finally:
        tokens.close()


def test_token_auth_registry_login_and_pull(
    registry_factory: RegistryFactory,
    issuer: TokenIssuer,
    docker_cli: DockerCLI,
) -> None:
    reg = registry_factory("token", token=issuer.registry_config())
    token = issuer.token_for(USER, [repository_scope("t/x", ("pull", "push"))])
    img = push_image(reg.uploader(token=token), "t/x", "1")

    denied = docker_cli.run("pull", f"{reg.host}/t/x:1", check=False)
    assert denied.returncode != 0
    assert f"pull access denied for {reg.host}/t/x" in denied.stderr, denied.stderr

    wrong = docker_cli.run(
        "login", "-u", USER, "--password-stdin", reg.host, input="bad\n", check=False
    )
    assert wrong.returncode != 0

    docker_cli.run("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD + "\n")
    out = docker_cli.run("pull", f"{reg.host}/t/x:1")
    assert f"Digest: {img.manifest_digest}" in out.stdout
