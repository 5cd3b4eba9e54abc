"""Image manifests and indexes: media types, parsing, validation (pure).

Accepted: Docker v2 schema 2 manifests and manifest lists, OCI image manifests and indexes.
Schema 1 (signed or not) is refused with dockerd's deprecation notice. Layers may be gzip,
zstd or uncompressed tars, Docker "foreign" or OCI non-distributable ones (those carry
``urls``); anything else in ``layers`` is refused, so a later unpack never meets a blob it
cannot read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from whaled.distribution.digest import InvalidDigest, parse_digest
from whaled.distribution.platforms import Platform, select_index
from whaled.errors import InvalidParameter, Unsupported

# manifests / indexes
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"
# configs
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
# layers
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
SCHEMA1_TYPES = (SCHEMA1_MANIFEST, SCHEMA1_SIGNED_MANIFEST)
#: The Accept header of a manifest request: everything we can use, schema 1 last so a
#: registry that only has schema 1 says so (and we refuse it with dockerd's message).
ACCEPT = (*MANIFEST_TYPES, *INDEX_TYPES, SCHEMA1_SIGNED_MANIFEST, SCHEMA1_MANIFEST)
CONFIG_TYPES = (DOCKER_CONFIG, OCI_CONFIG)
#: Upper bound of a manifest or config read into memory (containerd uses 4 MiB for manifests)
MAX_MANIFEST_BYTES = 4 << 20


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


#: layer media type → (compression, foreign/non-distributable)
LAYER_TYPES: dict[str, tuple[Compression, bool]] = {
    DOCKER_LAYER_GZIP: (Compression.GZIP, False),
    DOCKER_LAYER_FOREIGN_GZIP: (Compression.GZIP, True),
    OCI_LAYER: (Compression.NONE, False),
    OCI_LAYER_GZIP: (Compression.GZIP, False),
    OCI_LAYER_ZSTD: (Compression.ZSTD, False),
    OCI_LAYER_NONDIST: (Compression.NONE, True),
    OCI_LAYER_NONDIST_GZIP: (Compression.GZIP, True),
    OCI_LAYER_NONDIST_ZSTD: (Compression.ZSTD, True),
}


class InvalidManifest(InvalidParameter):
    pass


class Schema1Refused(Unsupported):
    """dockerd (since v26/v27) refuses schema 1 images with this notice."""

    def __init__(self, reference: str) -> None:
        super().__init__(
            "[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, "
            "schema 1 support is disabled by default and will be removed in an upcoming "
            f"release. Suggest the author of {reference} to upgrade the image to the OCI "
            "Format or Docker Image manifest v2, schema 2. More information at "
            "https://docs.docker.com/go/deprecated-image-specs/"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def compression(self) -> Compression:
        return LAYER_TYPES.get(self.media_type, (Compression.NONE, False))[0]

    @property
    def foreign(self) -> bool:
        """A foreign (Docker) or non-distributable (OCI) layer."""
        return LAYER_TYPES.get(self.media_type, (Compression.NONE, False))[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]

    def select(self, wanted: Platform) -> Descriptor:
        """The entry for ``wanted`` (see :func:`platforms.select_index`)."""
        position = select_index([(i, d.platform) for i, d in enumerate(self.manifests)], wanted)
        return self.manifests[position]


Parsed = ImageManifest | ImageIndex


def _media_type_of(doc: Mapping[str, Any], content_type: str) -> str:
    """The document's media type: its ``mediaType`` field, else the Content-Type, else its
    shape (OCI allows the field to be absent)."""
    declared = doc.get("mediaType")
    ct = content_type.split(";", 1)[0].strip().lower()
    if isinstance(declared, str) and declared:
        return declared
    if ct in (*MANIFEST_TYPES, *INDEX_TYPES, *SCHEMA1_TYPES):
        return ct
    if doc.get("schemaVersion") == 1:
        return SCHEMA1_MANIFEST
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    return ct


def parse_manifest(body: bytes, content_type: str, *, reference: str) -> Parsed:
    """Parse and validate a manifest or index fetched for ``reference`` (used in messages).

    Raises :class:`Schema1Refused` for schema 1, :class:`InvalidManifest` for anything
    malformed or of a media type this engine does not pull.
    """
    if len(body) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"manifest too large: {len(body)} bytes")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidManifest(f"invalid manifest for {reference}: not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidManifest(f"invalid manifest for {reference}: not a JSON object")
    media_type = _media_type_of(doc, content_type)
    if media_type in SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise Schema1Refused(reference)
    if doc.get("schemaVersion") != 2:
        raise InvalidManifest(
            f"invalid manifest for {reference}: unsupported schemaVersion "
            f"{doc.get('schemaVersion')!r}"
        )
    if media_type in MANIFEST_TYPES:
        return _parse_image_manifest(doc, media_type, content_type)
    if media_type in INDEX_TYPES:
        return _parse_index(doc, media_type, content_type)
    raise InvalidManifest(
        f"unsupported manifest media type and no default available: {media_type or '(none)'}"
    )


def _check_declared(media_type: str, content_type: str) -> None:
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct in (*MANIFEST_TYPES, *INDEX_TYPES) and ct != media_type:
        raise InvalidManifest(
            f"if present, mediaType in manifest should be '{ct}' not '{media_type}'"
        )


def _parse_image_manifest(doc: Mapping[str, Any], media_type: str, ct: str) -> ImageManifest:
    _check_declared(media_type, ct)
    config = parse_descriptor(doc.get("config"), "config")
    if config.media_type not in CONFIG_TYPES:
        raise InvalidManifest(f"unsupported image config media type: {config.media_type}")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise InvalidManifest("invalid manifest: layers must be a list")
    layers = tuple(parse_descriptor(item, "layer") for item in raw_layers)
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise InvalidManifest(f"unsupported layer media type: {layer.media_type}")
    return ImageManifest(media_type=media_type, config=config, layers=layers)


def _parse_index(doc: Mapping[str, Any], media_type: str, ct: str) -> ImageIndex:
    _check_declared(media_type, ct)
    raw = doc.get("manifests")
    if not isinstance(raw, list):
        raise InvalidManifest("invalid manifest list: manifests must be a list")
    return ImageIndex(
        media_type=media_type,
        manifests=tuple(parse_descriptor(item, "manifest") for item in raw),
    )


def parse_descriptor(raw: Any, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise InvalidManifest(f"invalid {what} descriptor: not an object")
    media_type = raw.get("mediaType")
    digest = raw.get("digest")
    size = raw.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidManifest(f"invalid {what} descriptor: missing mediaType")
    if not isinstance(digest, str):
        raise InvalidManifest(f"invalid {what} descriptor: missing digest")
    try:
        parse_digest(digest)
    except InvalidDigest as e:
        raise InvalidManifest(f"invalid {what} descriptor: {e}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"invalid {what} descriptor {digest}: bad size {size!r}")
    urls = raw.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise InvalidManifest(f"invalid {what} descriptor {digest}: urls must be strings")
    annotations = raw.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise InvalidManifest(f"invalid {what} descriptor {digest}: bad annotations")
    platform = _parse_platform(raw.get("platform"), digest)
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        urls=tuple(urls),
        platform=platform,
        annotations={str(k): str(v) for k, v in annotations.items()},
    )


def _parse_platform(raw: Any, digest: str) -> Platform | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidManifest(f"invalid descriptor {digest}: platform must be an object")
    os_name = raw.get("os")
    arch = raw.get("architecture")
    variant = raw.get("variant") or ""
    if not isinstance(os_name, str) or not isinstance(arch, str) or not isinstance(variant, str):
        raise InvalidManifest(f"invalid descriptor {digest}: bad platform")
    return Platform(os=os_name, architecture=arch, variant=variant)


def config_platform(config: Mapping[str, Any]) -> Platform:
    """The platform an image config declares (``os``/``architecture``/``variant``)."""
    return Platform(
        os=str(config.get("os") or ""),
        architecture=str(config.get("architecture") or ""),
        variant=str(config.get("variant") or ""),
    )


def check_diff_ids(config: Mapping[str, Any], layers: Sequence[Descriptor]) -> list[str]:
    """The config's ``rootfs.diff_ids``, checked against the manifest's layer count."""
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidManifest("invalid image config: rootfs.diff_ids missing")
    if len(diff_ids) != len(layers):
        raise InvalidManifest(
            f"invalid image config: {len(diff_ids)} diff_ids for {len(layers)} layers"
        )
    for d in diff_ids:
        try:
            parse_digest(d)
        except InvalidDigest as e:
            raise InvalidManifest(f"invalid image config: {e}") from None
    return list(diff_ids)
