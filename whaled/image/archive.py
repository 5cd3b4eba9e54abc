"""docker-archive / OCI layout load and save, and rootfs import.

Load accepts (optionally gzip/bzip2/xz-compressed):

- the classic docker-archive: ``manifest.json`` naming ``<config>.json`` and ``<id>/layer.tar``
  files (symlinks between layer dirs are followed, but only inside the archive);
- the docker 25+ layout (``manifest.json`` + ``blobs/sha256/...`` + ``index.json``);
- a plain OCI image layout (``index.json`` + ``blobs``), nested indexes resolved for the
  host platform; blob digests are verified.

The archive is read once, as a stream (see :class:`Loader`): layer tars are unpacked as
they stream past, into temp layer dirs of the layer store, because the manifest comes last
in ``docker save`` output; once it has arrived the layers are matched to it and moved into
place. Member names follow the layer rules (no absolute or escaping names, no member under
a symlink); links between members are followed lexically, only inside the archive. Members
that are not layers stay in memory when small, else in a scratch dir under
``<data-root>/image/tmp`` (emptied at start).

Save writes the docker 25+ layout (OCI layout + ``manifest.json`` + ``repositories``), which
old and new ``docker load`` accept, as a stream of bytes (no temp files).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from whaled.archive.tarsafe import (
    BLOCK,
    Compression,
    Readable,
    TarInput,
    TarParser,
    UnsafeLayer,
    clean_link_target,
    clean_path,
    detect_compression,
    looks_like_tar,
    open_stream,
    space_budget,
)
from whaled.archive.tarstream import TarEntry, bytes_entry, dir_info, file_info, stream_tar
from whaled.errors import InvalidParameter
from whaled.image import reference as refs
from whaled.image.changes import apply_changes
from whaled.image.content import CHUNK
from whaled.image.digests import chain_id, digest_hex, is_digest, sha256_digest, short_id
from whaled.image.filters import format_rfc3339_nano
from whaled.image.layers import Layer, LayerIngest, LayerStore
from whaled.image.reference import ImageIDRef, Reference
from whaled.image.store import Image, ImageStore, parse_config
from whaled.osutil.tree import remove_tree

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
    #: dockerd's ``aux`` message (push's ``{"Tag", "Digest", "Size"}``): sent alone
    aux: Mapping[str, Any] | None = None


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

#: Archive members that are not layers are kept in memory up to this size each ...
SMALL_FILE_BYTES = 1 << 20
#: ... and this much in total; beyond that they go to a scratch file.
SMALL_FILES_TOTAL = 16 << 20
_MAX_LINK_HOPS = 40
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BLOB_KEY = re.compile(r"blobs/sha256/([0-9a-f]{64})")


def archive_key(rel: Any) -> str:
    """A manifest's path of an archive member as a lookup key (lexically cleaned)."""
    if not isinstance(rel, str) or not rel:
        raise InvalidParameter("invalid path in image archive manifest")
    try:
        return "/".join(clean_path(rel.lstrip("/")))
    except InvalidParameter:
        raise InvalidParameter(
            f"invalid path in image archive: {rel!r} is outside the archive"
        ) from None


def progress_id(key: str) -> str:
    """The 12-character ID a layer's progress is shown under while it streams past (its
    chain ID is not known before the manifest, which comes last): the digest or v1 ID in
    its archive path, else a digest of the path."""
    m = _HEX64.search(key)
    return (m.group(0) if m else hashlib.sha256(key.encode()).hexdigest())[:12]


class _MemberReader:
    """``Source`` over the data of the current member of ``parser`` (slices, no copies)."""

    __slots__ = ("_parser",)

    def __init__(self, parser: TarParser) -> None:
        self._parser = parser

    def read(self, n: int = -1, /) -> memoryview:
        return self._parser.read_data(CHUNK if n < 0 else n)


#: Paths with more components than this have their parents checked the deep way.
_SHORT_PATH = 32


class _Staged:
    """What an archive held, by member path: unpacked layer ingests, other (small) files in
    memory or in the scratch dir, symbolic and hard links, directories."""

    def __init__(self, scratch: str) -> None:
        self.scratch = scratch
        self.ingests: dict[str, LayerIngest] = {}
        self.files: dict[str, bytes | str] = {}  # bytes, or the path of a scratch file
        self.links: dict[str, tuple[bool, str]] = {}  # (hard, target)
        self.dirs: set[str] = set()
        self._memory = 0
        self._count = 0

    def has(self, key: str) -> bool:
        return key in self.files or key in self.ingests or key in self.links or key in self.dirs

    def check_parents(self, parts: tuple[str, ...], name: str) -> None:
        if len(parts) > _SHORT_PATH:
            self._check_deep_parents("/".join(parts), name)
            return
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in self.links and not self.links[prefix][0]:
                raise UnsafeLayer(
                    f"refusing to unpack {name!r}: parent {prefix!r} is a symbolic link"
                )
            if prefix in self.files or prefix in self.ingests:
                raise UnsafeLayer(
                    f"refusing to unpack {name!r}: parent {prefix!r} is not a directory"
                )

    def _check_deep_parents(self, key: str, name: str) -> None:
        """:meth:`check_parents` for a long path: each non-directory held is tested as a
        prefix (there are few), instead of each of the path's many prefixes as a key, which
        costs the square of the depth per member."""
        found: list[tuple[int, str]] = []
        for other in (*self.files, *self.ingests):
            if key.startswith(other + "/"):
                found.append((len(other), "is not a directory"))
        for other, (hard, _) in self.links.items():
            if not hard and key.startswith(other + "/"):
                found.append((len(other), "is a symbolic link"))
        if found:
            length, what = min(found)
            raise UnsafeLayer(f"refusing to unpack {name!r}: parent {key[:length]!r} {what}")

    def take(self, key: str) -> LayerIngest | None:
        """Forget what ``key`` held (a later member replaces it); returns a dropped ingest."""
        self.files.pop(key, None)
        self.links.pop(key, None)
        self.dirs.discard(key)
        return self.ingests.pop(key, None)

    def put_file(self, key: str, parser: TarParser) -> None:
        size = parser.data_left
        if size <= SMALL_FILE_BYTES and self._memory + size <= SMALL_FILES_TOTAL:
            parts = []
            while data := parser.read_data():
                parts.append(data)
            self.files[key] = b"".join(parts)
            self._memory += size
            return
        self._count += 1
        path = os.path.join(self.scratch, str(self._count))
        with open(path, "wb") as f:
            while data := parser.read_data():
                f.write(data)
        self.files[key] = path

    def resolve(self, key: str) -> str:
        """``key`` with symbolic and hard links followed (lexically, inside the archive)."""
        parts = key.split("/") if key else []
        hops = 0
        i = 0
        while i < len(parts):
            prefix = "/".join(parts[: i + 1])
            link = self.links.get(prefix)
            if link is None:
                i += 1
                continue
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise InvalidParameter(f"invalid image archive: too many links for {key!r}")
            hard, target = link
            if hard:
                base = target.split("/")
            else:
                if target.startswith("/"):
                    raise InvalidParameter(
                        f"invalid path in image archive: {key!r} is outside the archive"
                    )
                joined = "/".join([*parts[:i], target])
                try:
                    base = list(clean_path(joined))
                except InvalidParameter:
                    raise InvalidParameter(
                        f"invalid path in image archive: {key!r} is outside the archive"
                    ) from None
            parts = base + parts[i + 1 :]
            i = 0
        return "/".join(parts)

    def read(self, key: str) -> bytes | None:
        """Content of a (small) file member, None if there is none under ``key``."""
        target = self.resolve(key)
        held = self.files.get(target)
        if held is None:
            return None
        if isinstance(held, bytes):
            return held
        with open(held, "rb") as f:
            return f.read()

    def open(self, key: str) -> BinaryIO | None:
        held = self.files.get(key)
        if held is None:
            return None
        if isinstance(held, bytes):
            return io.BytesIO(held)
        return open(held, "rb")  # the caller closes it


def _descriptors(index: Any) -> list[dict[str, Any]]:
    """The ``manifests`` of an OCI index: a list of objects (InvalidParameter otherwise)."""
    if not isinstance(index, dict):
        raise InvalidParameter("invalid OCI layout: an index is not an object")
    manifests = index.get("manifests") or []
    if not isinstance(manifests, list) or not all(isinstance(d, dict) for d in manifests):
        raise InvalidParameter("invalid OCI layout: bad manifests in an index")
    return manifests


def _read_json(staged: _Staged, key: str, what: str) -> Any:
    data = staged.read(key)
    if data is None:
        raise InvalidParameter(f"invalid image archive: {what} not found")
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidParameter(f"invalid image archive: bad {what}: {e}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Candidate:
    config_key: str
    layer_keys: tuple[str, ...]
    tags: tuple[Reference, ...]
    verify: tuple[tuple[str, str], ...] = ()  # (key, digest) pairs of (compressed) blobs


class Loader:
    """``docker load``: the archive is read once, as a stream. Each member that looks like a
    layer tar is unpacked while it streams past into a temp layer dir (its diff ID computed
    on the way); other members are kept (small ones in memory). When the manifest — which
    ``docker save`` writes last — has arrived, layers are matched to it and registered in
    chain order by moving their dirs into place; unreferenced ones are dropped."""

    def __init__(self, data_root: str, images: ImageStore, layers: LayerStore) -> None:
        self.tmp_root = os.path.join(data_root, "image", "tmp")
        os.makedirs(self.tmp_root, exist_ok=True)
        for name in os.listdir(self.tmp_root):  # leftovers of a crash
            remove_tree(os.path.join(self.tmp_root, name), ignore_errors=True)
        self._images = images
        self._layers = layers

    def load(
        self, stream: BinaryIO | Readable, *, progress: ProgressFn = _noop, quiet: bool = False
    ) -> list[LoadedImage]:
        scratch = os.path.join(self.tmp_root, "load-" + secrets.token_hex(8))
        os.mkdir(scratch, 0o700)
        staged = _Staged(scratch)
        try:
            self._receive(stream, staged, progress, quiet)
            if staged.has("manifest.json"):
                candidates = self._docker_manifest(staged)
            elif staged.has("index.json"):
                candidates = self._oci_layout(staged)
            elif staged.has("repositories"):
                raise InvalidParameter(
                    "legacy (pre-1.10) docker image archives without manifest.json are not "
                    "supported"
                )
            else:
                raise InvalidParameter(
                    "invalid image archive: neither manifest.json nor index.json found"
                )
            return [self._load_one(c, staged, progress, quiet) for c in candidates]
        finally:
            for ingest in staged.ingests.values():
                self._layers.discard(ingest)
            remove_tree(scratch, ignore_errors=True)

    def _receive(
        self, stream: BinaryIO | Readable, staged: _Staged, progress: ProgressFn, quiet: bool
    ) -> None:
        # bounded by the space where members are kept (scratch files, layer ingests: each
        # layer is bounded again by its own unpack)
        src, _ = open_stream(stream, limit=space_budget(self.tmp_root))
        parser = TarParser(TarInput(src))
        for member in parser:
            parts = clean_path(member.name)
            if not parts:
                continue
            key = "/".join(parts)
            staged.check_parents(parts, member.name)
            dropped = staged.take(key)
            if dropped is not None:
                self._layers.discard(dropped)
            if member.isdir():
                staged.dirs.add(key)
            elif member.issym():
                staged.links[key] = (False, member.linkname)
            elif member.islnk():
                target = "/".join(clean_link_target(member.linkname))
                if not staged.has(target):
                    raise UnsafeLayer(
                        f"refusing hard link {member.name!r} -> {member.linkname!r}: "
                        "target is not in the archive"
                    )
                staged.links[key] = (True, target)
            elif member.ischr() or member.isblk() or member.isfifo():
                # dockerd makes them in its temp dir and ignores them: nothing here reads
                # one, so nothing is made
                continue
            elif not member.isreg():
                raise UnsafeLayer(
                    f"refusing to unpack {member.name!r}: unsupported tar entry type "
                    f"{member.type!r}"
                )
            else:
                head = parser.peek_data(BLOCK)
                if looks_like_tar(head):
                    staged.ingests[key] = self._ingest(parser, key, head, progress, quiet)
                else:
                    staged.put_file(key, parser)
        parser.drain()

    def _ingest(
        self, parser: TarParser, key: str, head: bytes, progress: ProgressFn, quiet: bool
    ) -> LayerIngest:
        total = parser.data_left
        pid = progress_id(key)

        def report(n: int) -> None:
            if not quiet:
                progress(ProgressEvent(message="Loading layer", id=pid, current=n, total=total))

        known: str | None = None
        m = _BLOB_KEY.fullmatch(key)
        if m is not None and detect_compression(head) is Compression.NONE:
            known = "sha256:" + m.group(1)  # if the store has it, only check the digest
        return self._layers.ingest(_MemberReader(parser), on_progress=report, known_diff_id=known)

    def _docker_manifest(self, staged: _Staged) -> list[_Candidate]:
        manifest = _read_json(staged, "manifest.json", "manifest.json")
        if not isinstance(manifest, list):
            raise InvalidParameter("invalid image archive: manifest.json is not a list")
        out: list[_Candidate] = []
        for entry in manifest:
            if not isinstance(entry, dict):
                raise InvalidParameter("invalid image archive: bad manifest.json entry")
            tags: list[Reference] = []
            repo_tags = entry.get("RepoTags") or []
            if not isinstance(repo_tags, list) or not all(isinstance(t, str) for t in repo_tags):
                raise InvalidParameter("invalid image archive: bad RepoTags in manifest.json")
            for tag in repo_tags:
                ref = refs.parse_normalized_named(tag)
                if ref.tag is None:
                    raise InvalidParameter(f'invalid tag "{tag}"')
                tags.append(ref)
            layers = entry.get("Layers") or []
            if not isinstance(layers, list):
                raise InvalidParameter("invalid image archive: bad Layers in manifest.json")
            out.append(
                _Candidate(
                    config_key=archive_key(entry.get("Config", "")),
                    layer_keys=tuple(archive_key(p) for p in layers),
                    tags=tuple(tags),
                )
            )
        return out

    def _oci_blob(self, desc: Any) -> str:
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
            raise InvalidParameter("invalid OCI layout: bad descriptor")
        digest = desc["digest"]
        if not is_digest(digest):
            raise InvalidParameter(f"invalid OCI layout: unsupported digest {digest!r}")
        return f"blobs/sha256/{digest_hex(digest)}"

    def _oci_json(self, staged: _Staged, desc: Any) -> Any:
        data = staged.read(self._oci_blob(desc))
        if data is None:
            raise InvalidParameter(f"invalid OCI layout: missing blob {desc['digest']}")
        if sha256_digest(data) != desc["digest"]:
            raise InvalidParameter(f"invalid OCI layout: blob {desc['digest']} is corrupted")
        try:
            return json.loads(data)
        except ValueError as e:
            raise InvalidParameter(
                f"invalid OCI layout: bad JSON in {desc['digest']}: {e}"
            ) from None

    def _pick_platform(self, index: Any) -> Any:
        os_name, arch, variant = host_platform()
        manifests = _descriptors(index)
        best = None
        for desc in manifests:
            plat = desc.get("platform") or {}
            if not isinstance(plat, dict):
                raise InvalidParameter("invalid OCI layout: bad platform in an index")
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

    def _oci_layout(self, staged: _Staged) -> list[_Candidate]:
        index = _read_json(staged, "index.json", "index.json")
        if not isinstance(index, dict):
            raise InvalidParameter("invalid OCI layout: index.json is not an object")
        by_manifest: dict[str, tuple[Any, list[Reference]]] = {}
        for desc in _descriptors(index):
            annotations = desc.get("annotations") or {}
            if not isinstance(annotations, dict):
                raise InvalidParameter("invalid OCI layout: bad annotations in index.json")
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
                resolved = self._pick_platform(self._oci_json(staged, resolved))
            key = resolved["digest"]
            if key not in by_manifest:
                by_manifest[key] = (resolved, [])
            by_manifest[key][1].extend(n for n in names if n not in by_manifest[key][1])
        out: list[_Candidate] = []
        for resolved, names in by_manifest.values():
            manifest = self._oci_json(staged, resolved)
            if not isinstance(manifest, dict) or "config" not in manifest:
                raise InvalidParameter("invalid OCI layout: manifest without config")
            layer_keys: list[str] = []
            verify: list[tuple[str, str]] = []
            layer_descs = manifest.get("layers") or []
            if not isinstance(layer_descs, list):
                raise InvalidParameter("invalid OCI layout: bad layers in a manifest")
            for ldesc in layer_descs:
                blob = self._oci_blob(ldesc)
                layer_keys.append(blob)
                verify.append((blob, ldesc["digest"]))
            out.append(
                _Candidate(
                    config_key=self._oci_blob(manifest["config"]),
                    layer_keys=tuple(layer_keys),
                    tags=tuple(names),
                    verify=tuple(verify),
                )
            )
        return out

    def _load_one(
        self, c: _Candidate, staged: _Staged, progress: ProgressFn, quiet: bool
    ) -> LoadedImage:
        raw = staged.read(c.config_key)
        if raw is None:
            raise InvalidParameter("invalid image archive: config file not found")
        image = Image(id=sha256_digest(raw), raw=raw, config=parse_config(raw))
        diff_ids = image.diff_ids
        if len(diff_ids) != len(c.layer_keys):
            raise InvalidParameter(
                f"invalid manifest, layers length mismatch: expected {len(diff_ids)}, "
                f"got {len(c.layer_keys)}"
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
            for key, diff_id in zip(c.layer_keys, diff_ids, strict=True):
                expected_raw = verified.get(key)
                target = staged.resolve(key)
                ingest = staged.ingests.get(target)
                if ingest is not None:
                    if (
                        expected_raw is not None
                        and expected_raw != diff_id
                        and ingest.raw_digest != expected_raw
                    ):
                        raise InvalidParameter(
                            f"invalid OCI layout: blob {expected_raw} is corrupted"
                        )
                    layer = self._layers.commit(ingest, parent, expected_diff_id=diff_id)
                else:
                    layer = self._register_file(
                        staged, target, parent, diff_id, expected_raw, progress, quiet
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

    def _register_file(
        self,
        staged: _Staged,
        key: str,
        parent: str | None,
        diff_id: str,
        expected_raw: str | None,
        progress: ProgressFn,
        quiet: bool,
    ) -> Layer:
        """A layer that did not look like a tar while streaming past (kept as a file):
        unpack it now, which gives the precise error if it is not a layer."""
        f = staged.open(key)
        if f is None:
            raise InvalidParameter(f"invalid image archive: layer {key!r} not found")
        with f:
            if expected_raw is not None and expected_raw != diff_id:
                h = hashlib.sha256()
                while data := f.read(CHUNK):
                    h.update(data)
                if "sha256:" + h.hexdigest() != expected_raw:
                    raise InvalidParameter(f"invalid OCI layout: blob {expected_raw} is corrupted")
                f.seek(0)
            total = f.seek(0, os.SEEK_END)
            f.seek(0)
            pid = short_id(chain_id(parent, diff_id))

            def report(n: int) -> None:
                if not quiet:
                    progress(ProgressEvent(message="Loading layer", id=pid, current=n, total=total))

            return self._layers.register(f, parent, expected_diff_id=diff_id, on_progress=report)


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


def _layer_tar_source(layers: LayerStore, chain: str) -> Callable[[], Iterator[bytes]]:
    return lambda: layers.layer_tar(chain)


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
            size = layers.layer_tar_size(layer.chain_id)
            name = f"blobs/sha256/{digest_hex(layer.diff_id)}"
            if layer.diff_id not in written:
                written.add(layer.diff_id)
                yield TarEntry(
                    info=file_info(name, size, mode=0o444, mtime=mtime),
                    data=_layer_tar_source(layers, layer.chain_id),
                )
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
