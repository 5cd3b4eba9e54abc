from __future__ import annotations

import json
from typing import Any

import pytest

from whaled.distribution import manifest as mf
from whaled.distribution.manifest import (
    Compression,
    ImageIndex,
    ImageManifest,
    InvalidManifest,
    Schema1Refused,
    check_diff_ids,
    config_platform,
    parse_manifest,
)
from whaled.distribution.platforms import NoMatchingManifest, Platform
from whaled.errors import InvalidParameter

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
REF = "127.0.0.1:5000/t/x:1"


def desc(media_type: str, digest: str = D1, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def manifest_doc(
    media_type: str | None = mf.OCI_MANIFEST,
    config_type: str = mf.OCI_CONFIG,
    layers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "config": desc(config_type, D1, 100),
        "layers": layers if layers is not None else [desc(mf.OCI_LAYER_GZIP, D2, 200)],
    }
    if media_type is not None:
        doc["mediaType"] = media_type
    return doc


def parse(doc: dict[str, Any], content_type: str = "") -> mf.Parsed:
    return parse_manifest(json.dumps(doc).encode(), content_type, reference=REF)


def test_docker_schema2_manifest() -> None:
    doc = manifest_doc(mf.DOCKER_MANIFEST, mf.DOCKER_CONFIG, [desc(mf.DOCKER_LAYER_GZIP, D2, 5)])
    m = parse(doc, mf.DOCKER_MANIFEST)
    assert isinstance(m, ImageManifest)
    assert m.media_type == mf.DOCKER_MANIFEST
    assert m.config.digest == D1 and m.config.size == 100
    [layer] = m.layers
    assert (layer.digest, layer.size, layer.compression, layer.foreign) == (
        D2,
        5,
        Compression.GZIP,
        False,
    )


@pytest.mark.parametrize(
    ("media_type", "compression", "foreign"),
    [
        (mf.DOCKER_LAYER_GZIP, Compression.GZIP, False),
        (mf.DOCKER_LAYER_FOREIGN_GZIP, Compression.GZIP, True),
        (mf.OCI_LAYER, Compression.NONE, False),
        (mf.OCI_LAYER_GZIP, Compression.GZIP, False),
        (mf.OCI_LAYER_ZSTD, Compression.ZSTD, False),
        (mf.OCI_LAYER_NONDIST, Compression.NONE, True),
        (mf.OCI_LAYER_NONDIST_GZIP, Compression.GZIP, True),
        (mf.OCI_LAYER_NONDIST_ZSTD, Compression.ZSTD, True),
    ],
)
def test_every_layer_media_type(media_type: str, compression: Compression, foreign: bool) -> None:
    urls = ["https://example.com/layer"] if foreign else []
    m = parse(manifest_doc(layers=[desc(media_type, D2, 7, urls=urls)]))
    assert isinstance(m, ImageManifest)
    [layer] = m.layers
    assert layer.compression is compression
    assert layer.foreign is foreign
    assert layer.urls == tuple(urls)


def test_unknown_layer_media_type_is_refused() -> None:
    with pytest.raises(InvalidManifest, match="unsupported layer media type: application/x-foo"):
        parse(manifest_doc(layers=[desc("application/x-foo")]))


def test_unknown_config_media_type_is_refused() -> None:
    with pytest.raises(InvalidManifest, match="unsupported image config media type"):
        parse(manifest_doc(config_type="application/vnd.cncf.helm.config.v1+json"))


def test_oci_manifest_without_media_type_field_uses_content_type_or_shape() -> None:
    m = parse(manifest_doc(media_type=None), mf.OCI_MANIFEST)
    assert isinstance(m, ImageManifest) and m.media_type == mf.OCI_MANIFEST
    m = parse(manifest_doc(media_type=None), "application/json")
    assert isinstance(m, ImageManifest) and m.media_type == mf.OCI_MANIFEST


def test_declared_media_type_must_match_content_type() -> None:
    with pytest.raises(InvalidManifest, match="mediaType in manifest should be"):
        parse(manifest_doc(mf.OCI_MANIFEST), mf.DOCKER_MANIFEST)


def index_doc(media_type: str = mf.OCI_INDEX) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            desc(
                mf.OCI_MANIFEST,
                D1,
                500,
                platform={"os": "linux", "architecture": "arm64", "variant": "v8"},
            ),
            desc(mf.OCI_MANIFEST, D2, 501, platform={"os": "linux", "architecture": "amd64"}),
            desc(mf.OCI_MANIFEST, D3, 502, annotations={"vnd.docker.reference.type": "x"}),
        ],
    }


@pytest.mark.parametrize("media_type", [mf.OCI_INDEX, mf.DOCKER_MANIFEST_LIST])
def test_index_and_platform_selection(media_type: str) -> None:
    idx = parse(index_doc(media_type), media_type)
    assert isinstance(idx, ImageIndex)
    assert idx.media_type == media_type
    assert len(idx.manifests) == 3
    assert idx.manifests[2].platform is None
    assert idx.manifests[2].annotations == {"vnd.docker.reference.type": "x"}
    assert idx.select(Platform(os="linux", architecture="amd64")).digest == D2
    assert idx.select(Platform(os="linux", architecture="arm64", variant="v8")).digest == D1
    with pytest.raises(NoMatchingManifest) as e:
        idx.select(Platform(os="linux", architecture="s390x"))
    assert str(e.value) == "no matching manifest for linux/s390x in the manifest list entries"


def test_oci_index_without_media_type_field() -> None:
    doc = index_doc()
    del doc["mediaType"]
    assert isinstance(parse(doc), ImageIndex)


SCHEMA1_NOTICE = (
    "[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, schema 1 "
    "support is disabled by default and will be removed in an upcoming release. Suggest the "
    "author of 127.0.0.1:5000/t/x:1 to upgrade the image to the OCI Format or Docker Image "
    "manifest v2, schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/"
)


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        (
            {"schemaVersion": 1, "name": "t/x", "tag": "1", "fsLayers": []},
            mf.SCHEMA1_SIGNED_MANIFEST,
        ),
        ({"schemaVersion": 1, "name": "t/x", "tag": "1", "fsLayers": []}, mf.SCHEMA1_MANIFEST),
        ({"schemaVersion": 1, "name": "t/x", "tag": "1", "fsLayers": []}, "application/json"),
        ({"schemaVersion": 1, "name": "t/x", "tag": "1", "fsLayers": []}, ""),
    ],
)
def test_schema1_refused_with_dockerds_notice(doc: dict[str, Any], content_type: str) -> None:
    with pytest.raises(Schema1Refused) as e:
        parse(doc, content_type)
    assert str(e.value) == SCHEMA1_NOTICE


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"schemaVersion": 3, "config": {}, "layers": []}', "unsupported schemaVersion"),
        (b'{"schemaVersion": 2, "mediaType": "application/x-other"}', "unsupported manifest"),
    ],
)
def test_malformed_documents(body: bytes, match: str) -> None:
    with pytest.raises(InvalidManifest, match=match):
        parse_manifest(body, "", reference=REF)


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        ({"digest": D2, "size": 1}, "missing mediaType"),
        ({"mediaType": mf.OCI_LAYER, "size": 1}, "missing digest"),
        ({"mediaType": mf.OCI_LAYER, "digest": "sha256:abc", "size": 1}, "invalid checksum"),
        ({"mediaType": mf.OCI_LAYER, "digest": "md5:" + "a" * 32, "size": 1}, "unsupported"),
        ({"mediaType": mf.OCI_LAYER, "digest": D2, "size": -1}, "bad size"),
        ({"mediaType": mf.OCI_LAYER, "digest": D2, "size": "1"}, "bad size"),
        ({"mediaType": mf.OCI_LAYER, "digest": D2, "size": True}, "bad size"),
        ({"mediaType": mf.OCI_LAYER, "digest": D2, "size": 1, "urls": [1]}, "urls"),
        ("nope", "not an object"),
    ],
)
def test_bad_descriptors(layer: Any, match: str) -> None:
    with pytest.raises(InvalidManifest, match=match):
        parse(manifest_doc(layers=[layer]))
    assert issubclass(InvalidManifest, InvalidParameter)


def test_sha512_descriptor_accepted() -> None:
    m = parse(manifest_doc(layers=[desc(mf.OCI_LAYER, "sha512:" + "a" * 128, 3)]))
    assert isinstance(m, ImageManifest)


def test_too_large_manifest() -> None:
    with pytest.raises(InvalidManifest, match="too large"):
        parse_manifest(b" " * (mf.MAX_MANIFEST_BYTES + 1), "", reference=REF)


def test_accept_header_lists_every_type() -> None:
    for t in (mf.OCI_MANIFEST, mf.OCI_INDEX, mf.DOCKER_MANIFEST, mf.DOCKER_MANIFEST_LIST):
        assert t in mf.ACCEPT


def test_config_helpers() -> None:
    cfg = {
        "os": "linux",
        "architecture": "arm",
        "variant": "v7",
        "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
    }
    assert config_platform(cfg) == Platform(os="linux", architecture="arm", variant="v7")
    layers = (mf.Descriptor(media_type=mf.OCI_LAYER, digest=D1, size=1),) * 2
    assert check_diff_ids(cfg, layers) == [D1, D2]
    with pytest.raises(InvalidManifest, match="2 diff_ids for 1 layers"):
        check_diff_ids(cfg, layers[:1])
    with pytest.raises(InvalidManifest, match="diff_ids missing"):
        check_diff_ids({}, layers)
