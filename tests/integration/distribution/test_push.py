"""``docker push`` to Debian's ``docker-registry`` on a random 127.0.0.1 port, checked
through the registry's own API, and pulled back."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.dockercli import DockerCLI
from tests.support.registry import RegistryProcess, push_image, registry_available
from tests.support.whaled_proc import WhaledProcess

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    reg = RegistryProcess(root=tmp_path_factory.mktemp("push-registry")).start()
    try:
        yield reg
    finally:
        reg.stop()


def _get(reg: RegistryProcess, path: str, accept: str = DOCKER_MANIFEST) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(reg.host, timeout=30)
    try:
        conn.request("GET", path, headers={"Accept": accept})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _manifest(reg: RegistryProcess, repo: str, ref: str) -> dict[str, Any]:
    status, body = _get(reg, f"/v2/{repo}/manifests/{ref}")
    assert status == 200, body
    doc: dict[str, Any] = json.loads(body)
    return doc


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_push_rmi_pull_round_trip(
    registry: RegistryProcess, whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    name = f"{registry.host}/t/busybox"
    docker_cli.run("tag", busybox_image, f"{name}:1")
    image_id = json.loads(docker_cli.run("image", "inspect", busybox_image).stdout)[0]["Id"]
    out = docker_cli.run("push", f"{name}:1")
    assert f"The push refers to repository [{name}]" in out.stdout
    assert "Pushed" in out.stdout, out.stdout
    digest_line = [ln for ln in out.stdout.splitlines() if ln.startswith("1: digest: ")]
    assert len(digest_line) == 1, out.stdout
    manifest_digest = digest_line[0].split()[2]

    # what the registry holds: a schema 2 manifest whose blobs are the gzip of our layers
    doc = _manifest(registry, "t/busybox", "1")
    assert doc["mediaType"] == DOCKER_MANIFEST
    status, body = _get(registry, "/v2/t/busybox/manifests/1")
    assert _sha(body) == manifest_digest
    info = json.loads(docker_cli.run("image", "inspect", f"{name}:1").stdout)[0]
    assert info["RepoDigests"] == [f"{name}@{manifest_digest}"]
    diff_ids = info["RootFS"]["Layers"]
    assert len(doc["layers"]) == len(diff_ids)
    for layer, diff_id in zip(doc["layers"], diff_ids, strict=True):
        status, blob = _get(registry, f"/v2/t/busybox/blobs/{layer['digest']}", "*/*")
        assert status == 200
        assert _sha(blob) == layer["digest"] and len(blob) == layer["size"]
        assert _sha(gzip.decompress(blob)) == diff_id
    status, config = _get(registry, f"/v2/t/busybox/blobs/{doc['config']['digest']}", "*/*")
    assert _sha(config) == image_id

    # pushed again: every layer is already there
    again = docker_cli.run("push", f"{name}:1")
    assert "Layer already exists" in again.stdout and "Pushed" not in again.stdout

    # gone locally, pulled back: the same image, with its RepoDigest
    docker_cli.run("rmi", "-f", image_id)
    assert docker_cli.run("images", "-q").stdout.strip() == ""
    docker_cli.run("pull", f"{name}:1")
    info = json.loads(docker_cli.run("image", "inspect", f"{name}:1").stdout)[0]
    assert info["Id"] == image_id
    assert info["RepoDigests"] == [f"{name}@{manifest_digest}"]
    run = docker_cli.run("run", "--rm", "--network", "none", f"{name}:1", "echo", "hi")
    assert run.stdout.strip() == "hi"

    # another repository of the same registry: the layers are mounted, not sent
    docker_cli.run("tag", f"{name}:1", f"{registry.host}/t/other:1")
    mounted = docker_cli.run("push", f"{registry.host}/t/other:1")
    assert "Mounted from t/busybox" in mounted.stdout, mounted.stdout
    assert "Pushed" not in mounted.stdout
    other = _manifest(registry, "t/other", "1")
    assert [x["digest"] for x in other["layers"]] == [x["digest"] for x in doc["layers"]]


def test_push_all_tags_and_the_aux_message(
    registry: RegistryProcess, whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    name = f"{registry.host}/t/all"
    for tag in ("a", "b"):
        docker_cli.run("tag", busybox_image, f"{name}:{tag}")
    out = docker_cli.run("push", "-a", name)
    assert "a: digest: sha256:" in out.stdout and "b: digest: sha256:" in out.stdout, out.stdout
    _, body = _get(registry, "/v2/t/all/tags/list", "*/*")
    assert sorted(json.loads(body)["tags"]) == ["a", "b"]

    api = whaled.api()
    messages = list(api.push(name, tag="a", stream=True, decode=True))
    aux = [m["aux"] for m in messages if "aux" in m]
    assert len(aux) == 1 and aux[0]["Tag"] == "a"
    assert aux[0]["Digest"] == _sha(_get(registry, "/v2/t/all/manifests/a")[1])
    assert aux[0]["Size"] == len(_get(registry, "/v2/t/all/manifests/a")[1])
    events = api.events(since=0, until=int(__import__("time").time()) + 1, decode=True)
    pushes = [e["Actor"]["ID"] for e in events if e.get("Action") == "push"]
    assert pushes == [f"{name}:a", f"{name}:b", f"{name}:a"]


def test_push_of_a_pulled_image_reuses_its_blobs(
    registry: RegistryProcess, whaled: WhaledProcess, docker_cli: DockerCLI
) -> None:
    src = push_image(
        registry.uploader(), "t/src", "1", files=({"a": b"a\n"}, {"b": b"b\n"}), docker_types=True
    )
    docker_cli.run("pull", f"{registry.host}/t/src:1")
    docker_cli.run("tag", f"{registry.host}/t/src:1", f"{registry.host}/t/copy:1")
    out = docker_cli.run("push", f"{registry.host}/t/copy:1")
    assert out.stdout.count("Mounted from t/src") == 2, out.stdout
    copy = _manifest(registry, "t/copy", "1")
    assert [x["digest"] for x in copy["layers"]] == list(src.layer_digests)


def test_a_pulled_zstd_layer_is_pushed_again_as_the_zstd_blob_it_is(
    registry: RegistryProcess, whaled: WhaledProcess, docker_cli: DockerCLI
) -> None:
    src = push_image(
        registry.uploader(), "t/zsrc", "1", files=({"z": b"zstd\n"},), layer_format="zstd"
    )
    host = registry.host
    docker_cli.run("pull", f"{host}/t/zsrc:1")
    for repo, said in (("t/zsrc", "Layer already exists"), ("t/zcopy", "Mounted from t/zsrc")):
        docker_cli.run("tag", f"{host}/t/zsrc:1", f"{host}/{repo}:2")
        out = docker_cli.run("push", f"{host}/{repo}:2")
        assert said in out.stdout, out.stdout
        layers = _manifest(registry, repo, "2")["layers"]
        assert [(x["mediaType"], x["digest"]) for x in layers] == [
            (OCI_LAYER_ZSTD, src.layer_digests[0])
        ]
    # the copy pulls back into a daemon that has none of it: the blob is what it is named
    docker_cli.run("rmi", f"{host}/t/zsrc:1", f"{host}/t/zsrc:2", f"{host}/t/zcopy:2")
    docker_cli.run("pull", f"{host}/t/zcopy:2")
    layers = docker_cli.run(
        "image", "inspect", "-f", "{{json .RootFS.Layers}}", f"{host}/t/zcopy:2"
    )
    assert json.loads(layers.stdout) == list(src.diff_ids)


def test_a_large_local_layer_is_compressed_while_it_is_uploaded_in_chunks(
    registry: RegistryProcess, whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    """A committed 20 MB layer of random bytes goes up as a chunked upload (several PATCH
    requests, 8 MiB each); the blob the registry keeps is the gzip of the layer's tar."""
    docker_cli.run(
        "run", "--name", "big", "--network", "none", busybox_image, "sh", "-c",
        "head -c 20971520 /dev/urandom > /big",
    )  # fmt: skip
    name = f"{registry.host}/t/big"
    docker_cli.run("commit", "big", f"{name}:1")
    before = registry.log_path.read_text(errors="replace").count('"PATCH /v2/t/big/blobs/uploads/')
    out = docker_cli.run("push", f"{name}:1")
    assert "Pushed" in out.stdout, out.stdout
    patches = (
        registry.log_path.read_text(errors="replace").count('"PATCH /v2/t/big/blobs/uploads/')
        - before
    )
    assert patches >= 3, patches  # 20 MB of random data does not compress: 3 chunks at least
    info = json.loads(docker_cli.run("image", "inspect", f"{name}:1").stdout)[0]
    doc = _manifest(registry, "t/big", "1")
    top = doc["layers"][-1]
    status, blob = _get(registry, f"/v2/t/big/blobs/{top['digest']}", "*/*")
    assert status == 200 and _sha(blob) == top["digest"] and len(blob) == top["size"]
    assert _sha(gzip.decompress(blob)) == info["RootFS"]["Layers"][-1]
