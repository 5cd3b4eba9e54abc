"""docker-archive / OCI layout load and save, and rootfs import.

Load accepts (optionally gzip/bzip2/xz-compressed):

- the classic docker-archive: ``manifest.json`` naming ``<config>.json`` and ``<id>/layer.tar``
  files (symlinks between layer dirs are followed, but only inside the archive);
- the docker 25+ layout (``manifest.json`` + ``blobs/sha256/...`` + ``index.json``);
- a plain OCI image layout (``index.json`` + ``blobs``), nested indexes resolved for the
  host platform; blob digests are verified.

The archive is first unpacked into a scratch dir under ``<data-root>/image/tmp`` (the
manifest comes last in ``docker save`` output) with the same safety rules as layers; layer
tars are then unpacked from there and kept in the content store by hard link.

Save writes the docker 25+ layout (OCI layout + ``manifest.json`` + ``repositories``), which
old and new ``docker load`` accept, as a stream of bytes (no temp files).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from whaled.errors import InvalidParameter
from whaled.image import reference as refs
from whaled.image.changes import apply_changes
from whaled.image.content import CHUNK
from whaled.image.digests import chain_id, digest_hex, is_digest, sha256_digest, short_id
from whaled.image.filters import format_rfc3339_nano
from whaled.image.layers import Layer, LayerStore
from whaled.image.reference import ImageIDRef, Reference
from whaled.image.store import Image, ImageStore, parse_config
from whaled.image.tarsafe import ARCHIVE_POLICY, LayerReader, Readable, unpack
from whaled.image.tarstream import TarEntry, bytes_entry, dir_info, file_entry, stream_tar

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ANNOTATION_NAME = "io.containerd.image.name"
ANNOTATION_REF = "org.opencontainers.image.ref.name"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressEvent:
    """Progress for a JSON message stream. ``stream`` lines go in dockerd's ``stream`` field;
    others are ``status`` messages with optional ``id`` and byte progress."""

    message: str
    id: str | None = None
    current: int | None = None
    total: int | None = None
    stream: bool = False


ProgressFn = Callable[[ProgressEvent], None]


def _noop(_: ProgressEvent) -> None:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedImage:
    image_id: str
    tags: tuple[str, ...]  # familiar references that now point at the image


def host_platform() -> tuple[str, str, str | None]:
    """(os, architecture, variant) in OCI/GOARCH terms."""
    machine = platform.machine().lower()
    table: dict[str, tuple[str, str | None]] = {
        "x86_64": ("amd64", None),
        "amd64": ("amd64", None),
        "aarch64": ("arm64", None),
        "arm64": ("arm64", None),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i386": ("386", None),
        "i686": ("386", None),
        "ppc64le": ("ppc64le", None),
        "s390x": ("s390x", None),
        "riscv64": ("riscv64", None),
    }
    arch, variant = table.get(machine, (machine, None))
    return "linux", arch, variant


# ------------------------------------------------------------------------------ load


def _safe_path(root: str, rel: str) -> str:
    """``rel`` inside ``root`` with symlinks resolved; refuses anything that leaves ``root``."""
    if not isinstance(rel, str) or not rel:
        raise InvalidParameter("invalid path in image archive manifest")
    real_root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(real_root, rel.lstrip("/")))
    if path != real_root and not path.startswith(real_root + os.sep):
        raise InvalidParameter(f"invalid path in image archive: {rel!r} is outside the archive")
    return path


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise InvalidParameter(f"invalid image archive: {what} not found") from None
    except ValueError as e:
        raise InvalidParameter(f"invalid image archive: bad {what}: {e}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Candidate:
    config_path: str
    layer_paths: tuple[str, ...]
    tags: tuple[Reference, ...]
    untagged_names: tuple[str, ...] = ()
    verify: tuple[tuple[str, str], ...] = ()  # (path, digest) pairs of compressed blobs


class Loader:
    def __init__(self, data_root: str, images: ImageStore, layers: LayerStore) -> None:
        self.tmp_root = os.path.join(data_root, "image", "tmp")
        os.makedirs(self.tmp_root, exist_ok=True)
        for name in os.listdir(self.tmp_root):  # leftovers of a crash
            shutil.rmtree(os.path.join(self.tmp_root, name), ignore_errors=True)
        self._images = images
        self._layers = layers

    def load(
        self, stream: BinaryIO | Readable, *, progress: ProgressFn = _noop, quiet: bool = False
    ) -> list[LoadedImage]:
        tmp = os.path.join(self.tmp_root, "load-" + secrets.token_hex(8))
        os.mkdir(tmp, 0o700)
        try:
            reader = LayerReader(stream)
            unpack(reader, tmp, ARCHIVE_POLICY)
            reader.drain()
            if os.path.lexists(os.path.join(tmp, "manifest.json")):
                candidates = self._docker_manifest(tmp)
            elif os.path.lexists(os.path.join(tmp, "index.json")):
                candidates = self._oci_layout(tmp)
            elif os.path.lexists(os.path.join(tmp, "repositories")):
                raise InvalidParameter(
                    "legacy (pre-1.10) docker image archives without manifest.json are not "
                    "supported"
                )
            else:
                raise InvalidParameter(
                    "invalid image archive: neither manifest.json nor index.json found"
                )
            return [self._load_one(c, progress, quiet) for c in candidates]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _docker_manifest(self, tmp: str) -> list[_Candidate]:
        manifest = _read_json(os.path.join(tmp, "manifest.json"), "manifest.json")
        if not isinstance(manifest, list):
            raise InvalidParameter("invalid image archive: manifest.json is not a list")
        out: list[_Candidate] = []
        for entry in manifest:
            if not isinstance(entry, dict):
                raise InvalidParameter("invalid image archive: bad manifest.json entry")
            tags: list[Reference] = []
            for tag in entry.get("RepoTags") or []:
                ref = refs.parse_normalized_named(tag)
                if ref.tag is None:
                    raise InvalidParameter(f'invalid tag "{tag}"')
                tags.append(ref)
            layers = entry.get("Layers") or []
            if not isinstance(layers, list):
                raise InvalidParameter("invalid image archive: bad Layers in manifest.json")
            out.append(
                _Candidate(
                    config_path=_safe_path(tmp, entry.get("Config", "")),
                    layer_paths=tuple(_safe_path(tmp, p) for p in layers),
                    tags=tuple(tags),
                )
            )
        return out

    def _oci_blob(self, tmp: str, desc: Any) -> str:
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
            raise InvalidParameter("invalid OCI layout: bad descriptor")
        digest = desc["digest"]
        if not is_digest(digest):
            raise InvalidParameter(f"invalid OCI layout: unsupported digest {digest!r}")
        return _safe_path(tmp, f"blobs/sha256/{digest_hex(digest)}")

    def _oci_json(self, tmp: str, desc: Any) -> Any:
        path = self._oci_blob(tmp, desc)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise InvalidParameter(f"invalid OCI layout: missing blob {desc['digest']}") from None
        if sha256_digest(data) != desc["digest"]:
            raise InvalidParameter(f"invalid OCI layout: blob {desc['digest']} is corrupted")
        try:
            return json.loads(data)
        except ValueError as e:
            raise InvalidParameter(
                f"invalid OCI layout: bad JSON in {desc['digest']}: {e}"
            ) from None

    def _pick_platform(self, tmp: str, index: Any) -> Any:
        os_name, arch, variant = host_platform()
        manifests = index.get("manifests") or []
        best = None
        for desc in manifests:
            plat = desc.get("platform") or {}
            if plat.get("os") == os_name and plat.get("architecture") == arch:
                if variant is None or plat.get("variant") in (None, variant):
                    best = desc
                    break
        if best is None and len(manifests) == 1:
            best = manifests[0]
        if best is None:
            raise InvalidParameter(
                f"invalid OCI layout: no image for platform {os_name}/{arch} in the index"
            )
        return best

    def _oci_layout(self, tmp: str) -> list[_Candidate]:
        index = _read_json(os.path.join(tmp, "index.json"), "index.json")
        if not isinstance(index, dict):
            raise InvalidParameter("invalid OCI layout: index.json is not an object")
        by_manifest: dict[str, tuple[Any, list[Reference], list[str]]] = {}
        for desc in index.get("manifests") or []:
            if not isinstance(desc, dict):
                continue
            annotations = desc.get("annotations") or {}
            names: list[Reference] = []
            name = annotations.get(ANNOTATION_NAME)
            ref_name = annotations.get(ANNOTATION_REF)
            for candidate in (name, ref_name):
                if not isinstance(candidate, str) or not candidate:
                    continue
                try:
                    ref = refs.parse_normalized_named(candidate)
                except InvalidParameter:
                    continue
                if ref.tag is not None and ("/" in candidate or ":" in candidate):
                    names.append(ref)
                    break
            resolved = desc
            depth = 0
            while resolved.get("mediaType") in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST):
                depth += 1
                if depth > 4:
                    raise InvalidParameter("invalid OCI layout: index nesting too deep")
                resolved = self._pick_platform(tmp, self._oci_json(tmp, resolved))
            key = resolved["digest"]
            if key not in by_manifest:
                by_manifest[key] = (resolved, [], [])
            by_manifest[key][1].extend(n for n in names if n not in by_manifest[key][1])
        out: list[_Candidate] = []
        for resolved, names, _ in by_manifest.values():
            manifest = self._oci_json(tmp, resolved)
            if not isinstance(manifest, dict) or "config" not in manifest:
                raise InvalidParameter("invalid OCI layout: manifest without config")
            config_path = self._oci_blob(tmp, manifest["config"])
            layer_paths: list[str] = []
            verify: list[tuple[str, str]] = []
            for ldesc in manifest.get("layers") or []:
                path = self._oci_blob(tmp, ldesc)
                layer_paths.append(path)
                verify.append((path, ldesc["digest"]))
            out.append(
                _Candidate(
                    config_path=config_path,
                    layer_paths=tuple(layer_paths),
                    tags=tuple(names),
                    verify=tuple(verify),
                )
            )
        return out

    def _load_one(self, c: _Candidate, progress: ProgressFn, quiet: bool) -> LoadedImage:
        try:
            with open(c.config_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise InvalidParameter("invalid image archive: config file not found") from None
        image = Image(id=sha256_digest(raw), raw=raw, config=parse_config(raw))
        diff_ids = image.diff_ids
        if len(diff_ids) != len(c.layer_paths):
            raise InvalidParameter(
                f"invalid manifest, layers length mismatch: expected {len(diff_ids)}, "
                f"got {len(c.layer_paths)}"
            )
        host_os = host_platform()[0]
        image_os = image.config.get("os") or host_os
        if image_os != host_os:
            raise InvalidParameter(
                f'image operating system "{image_os}" cannot be used on this platform'
            )
        verified = dict(c.verify)
        held: list[str] = []
        try:
            parent: str | None = None
            for path, diff_id in zip(c.layer_paths, diff_ids, strict=True):
                expected_raw = verified.get(path)
                if expected_raw is not None and expected_raw != diff_id:
                    if _file_digest(path) != expected_raw:
                        raise InvalidParameter(
                            f"invalid OCI layout: blob {expected_raw} is corrupted"
                        )
                total = os.path.getsize(path)
                pid = short_id(chain_id(parent, diff_id))

                def report(n: int, pid: str = pid, total: int = total) -> None:
                    if not quiet:
                        progress(
                            ProgressEvent(message="Loading layer", id=pid, current=n, total=total)
                        )

                with open(path, "rb") as f:
                    layer: Layer = self._layers.register(
                        f,
                        parent,
                        expected_diff_id=diff_id,
                        source_path=path,
                        on_progress=report,
                    )
                held.append(layer.chain_id)
                parent = layer.chain_id
            stored = self._images.create(raw)
        finally:
            for chain in held:
                self._layers.release(chain)
        tags: list[str] = []
        for ref in c.tags:
            old = self._images.lookup_ref(ref)
            if old is not None and old != stored.id:
                progress(
                    ProgressEvent(
                        message=f"The image {ref.familiar} already exists, renaming the old one "
                        f"with ID {old} to empty string",
                        stream=True,
                    )
                )
            self._images.add_reference(ref, stored.id, force=True)
            tags.append(ref.familiar)
            progress(ProgressEvent(message=f"Loaded image: {ref.familiar}", stream=True))
        if not c.tags:
            progress(ProgressEvent(message=f"Loaded image ID: {stored.id}", stream=True))
        return LoadedImage(image_id=stored.id, tags=tuple(tags))


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(CHUNK):
            h.update(data)
    return "sha256:" + h.hexdigest()


# ------------------------------------------------------------------------------ save


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveItem:
    image: Image
    tags: tuple[Reference, ...]


def plan_save(images: ImageStore, names: Sequence[str]) -> list[SaveItem]:
    """Resolve ``names`` like dockerd's save (a bare repository name means all its tags).

    Raises before anything is streamed, so the API can still answer 404/400.
    """
    if not names:
        raise InvalidParameter("no image names given")
    order: list[str] = []
    tags: dict[str, list[Reference]] = {}
    by_id: dict[str, Image] = {}

    def add(image: Image, ref: Reference | None) -> None:
        if image.id not in by_id:
            by_id[image.id] = image
            order.append(image.id)
            tags[image.id] = []
        if ref is not None and ref not in tags[image.id]:
            tags[image.id].append(ref)

    all_refs = images.all_references()
    for name in names:
        parsed = refs.parse_any(name)
        if isinstance(parsed, ImageIDRef):
            add(images.resolve(name), None)
            continue
        if parsed.tag is None and parsed.digest is None:
            repo_tags = [
                (image_id, r)
                for image_id, lst in all_refs.items()
                for r in lst
                if r.name == parsed.name
            ]
            if repo_tags:
                for image_id, r in sorted(repo_tags, key=lambda x: x[1].familiar):
                    add(images.get(image_id), r if r.tag is not None else None)
                continue
            image = images.resolve(name)
            add(image, None)
            continue
        image = images.resolve(name)
        if images.lookup_ref(parsed) == image.id and parsed.tag is not None:
            add(image, parsed)
        else:
            add(image, None)
    return [SaveItem(image=by_id[i], tags=tuple(tags[i])) for i in order]


def save_stream(layers: LayerStore, items: Sequence[SaveItem]) -> Iterator[bytes]:
    """The docker 25+ archive (OCI layout + manifest.json + repositories) as a byte stream."""
    return stream_tar(_save_entries(layers, items))


def _save_entries(layers: LayerStore, items: Sequence[SaveItem]) -> Iterator[TarEntry]:
    yield TarEntry(info=dir_info("blobs"))
    yield TarEntry(info=dir_info("blobs/sha256"))
    written: set[str] = set()
    manifest_json: list[dict[str, Any]] = []
    index_manifests: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for item in items:
        image = item.image
        mtime = image.created_ts if image.created_ts > 0 else 0
        layer_descs: list[dict[str, Any]] = []
        layer_paths: list[str] = []
        for layer in layers.chain(image.top_chain):
            path = layers.layer_tar_path(layer.chain_id)
            size = os.path.getsize(path)
            name = f"blobs/sha256/{digest_hex(layer.diff_id)}"
            if layer.diff_id not in written:
                written.add(layer.diff_id)
                yield file_entry(name, path, size, mode=0o444, mtime=mtime)
            layer_descs.append(
                {"mediaType": MEDIA_OCI_LAYER, "digest": layer.diff_id, "size": size}
            )
            layer_paths.append(name)
        config_name = f"blobs/sha256/{digest_hex(image.id)}"
        if image.id not in written:
            written.add(image.id)
            yield bytes_entry(config_name, image.raw, mode=0o444, mtime=mtime)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_MANIFEST,
                "config": {
                    "mediaType": MEDIA_OCI_CONFIG,
                    "digest": image.id,
                    "size": len(image.raw),
                },
                "layers": layer_descs,
            },
            separators=(",", ":"),
        ).encode()
        manifest_digest = sha256_digest(manifest)
        if manifest_digest not in written:
            written.add(manifest_digest)
            yield bytes_entry(
                f"blobs/sha256/{digest_hex(manifest_digest)}", manifest, mode=0o444, mtime=mtime
            )
        desc = {"mediaType": MEDIA_OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest)}
        if item.tags:
            for ref in item.tags:
                index_manifests.append(
                    {
                        **desc,
                        "annotations": {
                            ANNOTATION_NAME: str(ref),
                            ANNOTATION_REF: ref.tag or "",
                        },
                    }
                )
        else:
            index_manifests.append(desc)
        manifest_json.append(
            {
                "Config": config_name,
                "RepoTags": [r.familiar for r in item.tags] or None,
                "Layers": layer_paths,
            }
        )
        if layer_descs:
            for ref in item.tags:
                if ref.tag is not None:
                    repositories.setdefault(ref.familiar_name, {})[ref.tag] = digest_hex(
                        layer_descs[-1]["digest"]
                    )
    index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index_manifests}
    yield bytes_entry("index.json", json.dumps(index, separators=(",", ":")).encode())
    yield bytes_entry("manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode())
    yield bytes_entry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    if repositories:
        yield bytes_entry("repositories", json.dumps(repositories).encode())


# ------------------------------------------------------------------------------ import


def import_config(
    diff_id: str,
    *,
    changes: Sequence[str] = (),
    message: str = "",
    source: str = "-",
    created: float | None = None,
    os_name: str | None = None,
    architecture: str | None = None,
    variant: str | None = None,
) -> bytes:
    """The config JSON dockerd writes for ``docker import`` (pure given ``created``)."""
    host_os, host_arch, host_variant = host_platform()
    config = apply_changes(None, changes)
    created_s = format_rfc3339_nano(time.time() if created is None else created)
    comment = message or f"Imported from {source}"
    doc: dict[str, Any] = {
        "architecture": architecture or host_arch,
        "comment": comment,
        "config": config,
        "created": created_s,
        "history": [{"created": created_s, "comment": comment}],
        "os": os_name or host_os,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    v = variant if architecture else host_variant
    if v:
        doc["variant"] = v
    return json.dumps(doc, separators=(",", ":")).encode()
