"""The registry client against a real registry (plain HTTP on 127.0.0.1: insecure by
default, so HTTPS is tried first and plain HTTP used)."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.registry import (
    PushedImage,
    RegistryProcess,
    flipped_byte,
    free_port,
    push_image,
    push_index,
)
from whaled.distribution.client import RegistryClient, TransferInterrupted
from whaled.distribution.compression import open_layer
from whaled.distribution.errors import (
    DigestMismatchError,
    RegistryError,
    RegistryNotFound,
    RegistryUnreachable,
)
from whaled.distribution.manifest import OCI_INDEX, OCI_MANIFEST, Compression, Descriptor
from whaled.distribution.platforms import NoMatchingManifest, Platform, host_platform
from whaled.image.reference import parse_normalized_named

pytestmark = pytest.mark.timeout(120)


def client_for(reg: RegistryProcess) -> RegistryClient:
    return RegistryClient.for_domain(reg.host)


@pytest.fixture
def image(registry: RegistryProcess) -> PushedImage:
    return push_image(
        registry.uploader(),
        "t/x",
        "1",
        files=[{"a.bin": os.urandom(300_000)}, {"b/c.txt": b"hello\n"}],
        docker_types=True,
    )


def test_ping_falls_back_to_plain_http_for_a_loopback_registry(registry: RegistryProcess) -> None:
    with client_for(registry) as client:
        endpoint = client.ping()
    assert (endpoint.scheme, endpoint.host, endpoint.verify) == ("http", registry.host, False)


def test_unreachable_registry() -> None:
    port = free_port()  # nothing listens there
    with RegistryClient.for_domain(f"127.0.0.1:{port}") as client:
        with pytest.raises(RegistryUnreachable) as e:
            client.ping()
    # HTTPS was tried first, then plain HTTP: the last error is reported, in Go's shape
    assert str(e.value) == (
        f'Get "http://127.0.0.1:{port}/v2/": dial tcp 127.0.0.1:{port}: connect: connection refused'
    )


def test_manifest_by_tag_and_by_digest(registry: RegistryProcess, image: PushedImage) -> None:
    with client_for(registry) as client:
        by_tag = client.get_manifest("t/x", "1")
        assert by_tag.digest == image.manifest_digest
        assert by_tag.body == image.manifest
        by_digest = client.get_manifest("t/x", image.manifest_digest)
        assert by_digest.body == image.manifest
        head = client.head_manifest("t/x", "1")
        assert (head.digest, head.size) == (image.manifest_digest, len(image.manifest))


def test_resolve_single_manifest(registry: RegistryProcess, image: PushedImage) -> None:
    r = parse_normalized_named(f"{registry.host}/t/x:1")
    with client_for(registry) as client:
        resolved = client.resolve(r)
        assert resolved.digest == resolved.manifest_digest == image.manifest_digest
        assert resolved.index is None
        assert [d.digest for d in resolved.layers] == list(image.layer_digests)
        assert resolved.config.digest == image.config_digest
        assert client.read_blob(r, resolved.config) == image.config


def test_resolve_by_digest(registry: RegistryProcess, image: PushedImage) -> None:
    r = parse_normalized_named(f"{registry.host}/t/x@{image.manifest_digest}")
    with client_for(registry) as client:
        assert client.resolve(r).manifest_digest == image.manifest_digest


def _other_platform() -> dict[str, str]:
    host = host_platform()
    if host.architecture == "s390x":
        return {"os": "linux", "architecture": "ppc64le"}
    return {"os": "linux", "architecture": "s390x"}


def test_index_resolves_to_the_host_platform(registry: RegistryProcess) -> None:
    up = registry.uploader()
    host = host_platform()
    other = _other_platform()
    mine = push_image(
        up, "t/multi", None, files=[{"host": b"1"}], architecture=host.architecture,
        variant=host.variant,
    )  # fmt: skip
    theirs = push_image(
        up, "t/multi", None, files=[{"other": b"2"}], architecture=other["architecture"]
    )
    host_entry = {"os": "linux", "architecture": host.architecture}
    if host.variant:
        host_entry["variant"] = host.variant
    index_digest, _ = push_index(up, "t/multi", "1", [(theirs, other), (mine, host_entry)])
    r = parse_normalized_named(f"{registry.host}/t/multi:1")
    with client_for(registry) as client:
        resolved = client.resolve(r)
        assert resolved.digest == index_digest  # what RepoDigests records
        assert resolved.media_type == OCI_INDEX
        assert resolved.manifest_digest == mine.manifest_digest
        assert resolved.manifest.media_type == OCI_MANIFEST
        assert resolved.platform is not None
        assert resolved.platform.architecture == host.architecture
        wanted = Platform(os="linux", architecture=other["architecture"])
        assert client.resolve(r, wanted).manifest_digest == theirs.manifest_digest
        with pytest.raises(NoMatchingManifest) as e:
            client.resolve(r, Platform(os="linux", architecture="riscv64"))
    assert str(e.value) == "no matching manifest for linux/riscv64 in the manifest list entries"


def test_blob_streams_verified(registry: RegistryProcess, image: PushedImage) -> None:
    r = parse_normalized_named(f"{registry.host}/t/x:1")
    with client_for(registry) as client:
        resolved = client.resolve(r)
        layer = resolved.layers[0]
        with client.open_blob(r, layer) as blob:
            tar = open_layer(blob).read()
            assert blob.verified
        assert "sha256:" + hashlib.sha256(tar).hexdigest() == image.diff_ids[0]
        # several in a row over the kept-alive connection
        for _ in range(3):
            with client.open_blob("t/x", resolved.layers[1]) as blob:
                assert blob.read_all() == image.layers[1]


@pytest.mark.parametrize("layer_format", ["zstd", "tar", "gzip"])
def test_layer_formats_unpack_to_their_diff_ids(
    registry: RegistryProcess, layer_format: str
) -> None:
    files = [{"x/y.bin": os.urandom(70_000) + b"0" * 70_000}, {"z": b"z"}]
    pushed = push_image(registry.uploader(), "t/fmt", layer_format, files=files,
                        layer_format=layer_format)  # fmt: skip
    r = parse_normalized_named(f"{registry.host}/t/fmt:{layer_format}")
    with client_for(registry) as client:
        resolved = client.resolve(r)
        expected = {"zstd": Compression.ZSTD, "tar": Compression.NONE, "gzip": Compression.GZIP}
        assert {d.compression for d in resolved.layers} == {expected[layer_format]}
        for layer, diff_id in zip(resolved.layers, pushed.diff_ids, strict=True):
            with client.open_blob(r, layer) as blob:
                tar = open_layer(blob).read()
                blob.drain()
                assert blob.verified
            assert "sha256:" + hashlib.sha256(tar).hexdigest() == diff_id


def test_parallel_blob_streams_share_one_client(registry: RegistryProcess) -> None:
    files = [{f"f{i}": os.urandom(200_000)} for i in range(6)]
    pushed = push_image(registry.uploader(), "t/par", "1", files=files)
    r = parse_normalized_named(f"{registry.host}/t/par:1")
    with client_for(registry) as client:
        resolved = client.resolve(r)

        def fetch(layer: Descriptor) -> bytes:
            with client.open_blob(r, layer) as blob:
                data = b""
                while chunk := blob.read(8192):
                    data += chunk
                assert blob.verified
                return data

        with ThreadPoolExecutor(max_workers=4) as pool:
            got = list(pool.map(fetch, resolved.layers * 2))
    assert got == list(pushed.layers) * 2


def test_head_manifest_unknown(registry: RegistryProcess, image: PushedImage) -> None:
    with client_for(registry) as client, pytest.raises(RegistryError) as e:
        client.head_manifest("t/x", "nope")
    assert e.value.code == "MANIFEST_UNKNOWN"


def test_corrupted_blob_is_a_digest_error(registry: RegistryProcess, image: PushedImage) -> None:
    layer = Descriptor(
        media_type="application/vnd.docker.image.rootfs.diff.tar.gzip",
        digest=image.layer_digests[0],
        size=len(image.layers[0]),
    )
    with flipped_byte(registry.blob_data_path(layer.digest), offset=len(image.layers[0]) // 2):
        with client_for(registry) as client:
            blob = client.open_blob("t/x", layer)
            with pytest.raises(DigestMismatchError) as e:
                blob.read_all()
    assert str(e.value) == f"filesystem layer verification failed for digest {layer.digest}"


def test_truncated_descriptor_size_is_caught(registry: RegistryProcess, image: PushedImage) -> None:
    # a descriptor claiming fewer bytes: the first `size` bytes do not hash to the digest
    layer = Descriptor(
        media_type="application/vnd.docker.image.rootfs.diff.tar.gzip",
        digest=image.layer_digests[0],
        size=len(image.layers[0]) - 1,
    )
    with client_for(registry) as client, pytest.raises(DigestMismatchError):
        client.open_blob("t/x", layer).read_all()


def test_range_resume(registry: RegistryProcess, image: PushedImage) -> None:
    data = image.layers[0]
    layer = Descriptor(
        media_type="application/vnd.docker.image.rootfs.diff.tar.gzip",
        digest=image.layer_digests[0],
        size=len(data),
    )
    with client_for(registry) as client:
        first = client.open_blob("t/x", layer)
        head = first.read(1000)
        position, hasher = first.position, first.hasher_state()
        first.close()  # the transfer "breaks" here
        assert position == len(head) > 0
        rest = client.open_blob("t/x", layer, offset=position, hasher=hasher)
        assert rest.status == 206  # the registry honoured the Range request
        tail = rest.read_all()
        assert rest.verified
        # resuming at the very end asks nothing more and verifies what was read
        done = client.open_blob("t/x", layer, offset=len(data), hasher=rest.hasher_state())
        assert done.read_all() == b""
        assert done.verified
    assert head + tail == data


def test_interrupted_transfer_reports_its_position(
    registry: RegistryProcess, image: PushedImage
) -> None:
    layer = Descriptor(
        media_type="application/vnd.docker.image.rootfs.diff.tar.gzip",
        digest=image.layer_digests[0],
        size=len(image.layers[0]) + 10,  # the registry sends fewer bytes than announced
    )
    with client_for(registry) as client:
        blob = client.open_blob("t/x", layer)
        with pytest.raises(TransferInterrupted) as e:
            blob.read_all()
    assert e.value.position == len(image.layers[0])


def test_manifest_unknown(registry: RegistryProcess, image: PushedImage) -> None:
    r = parse_normalized_named(f"{registry.host}/t/x:nope")
    with client_for(registry) as client, pytest.raises(RegistryNotFound) as e:
        client.resolve(r)
    assert str(e.value) == (
        f"manifest for {registry.host}/t/x:nope not found: manifest unknown: manifest unknown"
    )


def test_unknown_repository(registry: RegistryProcess) -> None:
    # distribution 2.8 answers MANIFEST_UNKNOWN for a manifest of an unknown repository ...
    r = parse_normalized_named(f"{registry.host}/t/absent:1")
    with client_for(registry) as client, pytest.raises(RegistryNotFound) as e:
        client.resolve(r)
    assert str(e.value) == (
        f"manifest for {registry.host}/t/absent:1 not found: manifest unknown: manifest unknown"
    )


def test_name_unknown(registry: RegistryProcess) -> None:
    # ... and NAME_UNKNOWN for its tag list
    r = parse_normalized_named(f"{registry.host}/t/absent")
    with client_for(registry) as client, pytest.raises(RegistryNotFound) as e:
        client.list_tags(r)
    assert str(e.value) == (
        f"repository {registry.host}/t/absent not found: name unknown: repository name not "
        "known to registry"
    )


def test_list_tags(registry: RegistryProcess, image: PushedImage) -> None:
    up = registry.uploader()
    up.put_manifest(
        "t/x", "2", image.manifest, "application/vnd.docker.distribution.manifest.v2+json"
    )
    r = parse_normalized_named(f"{registry.host}/t/x")
    with client_for(registry) as client:
        assert sorted(client.list_tags(r)) == ["1", "2"]


def test_blob_unknown(registry: RegistryProcess, image: PushedImage) -> None:
    missing = Descriptor(
        media_type="application/vnd.oci.image.layer.v1.tar", digest="sha256:" + "0" * 64, size=3
    )
    with client_for(registry) as client, pytest.raises(RegistryError) as e:
        client.open_blob("t/x", missing)
    assert e.value.code == "BLOB_UNKNOWN"
    assert str(e.value) == "blob unknown: blob unknown to registry"
