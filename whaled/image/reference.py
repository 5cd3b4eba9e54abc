"""Docker image references (pure).

Grammar and normalisation follow the distribution ``reference`` package that dockerd uses:

- ``busybox`` → ``docker.io/library/busybox`` (``:latest`` is added by :func:`normalize`)
- ``user/repo`` → ``docker.io/user/repo``
- ``host:5000/a/b:tag`` keeps its domain; the first component is a domain when it contains
  ``.`` or ``:``, is ``localhost``, or has upper-case letters
- ``name@sha256:<64 hex>`` and ``name:tag@sha256:<64 hex>`` carry a digest

The familiar (short) form is what docker shows: ``busybox:latest``, ``user/repo:tag``,
``localhost:5000/x:y``. Invalid input raises :class:`~whaled.errors.InvalidParameter` with
dockerd's wording.

Image IDs: a bare 64-hex string, ``sha256:<64 hex>``, or a (short) hex prefix of an ID are
recognised by :func:`parse_any` / :func:`id_prefix`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from whaled.errors import InvalidParameter
from whaled.image.digests import SHA256_PREFIX, is_hex64

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_ID_PREFIX_RE = re.compile(r"^(?:sha256:)?([a-f0-9]{1,64})$")

MSG_INVALID_FORMAT = "invalid reference format"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A parsed, normalised named reference. ``domain``/``path`` are never empty."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        return self.name + _suffix(self.tag, self.digest)

    @property
    def familiar_name(self) -> str:
        """``busybox``, ``user/repo``, ``localhost:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_REPO_PREFIX):
            rest = path[len(OFFICIAL_REPO_PREFIX) :]
            if "/" not in rest:
                return rest
        return path

    @property
    def familiar(self) -> str:
        """Familiar string: ``busybox:latest``, ``localhost:5000/x:y@sha256:...``."""
        return self.familiar_name + _suffix(self.tag, self.digest)

    @property
    def is_canonical(self) -> bool:
        """True when the reference carries a digest (dockerd's ``reference.Canonical``)."""
        return self.digest is not None

    @property
    def is_tagged(self) -> bool:
        return self.tag is not None

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise InvalidParameter("invalid tag format")
        return Reference(domain=self.domain, path=self.path, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        _check_digest(digest)
        return Reference(domain=self.domain, path=self.path, tag=None, digest=digest)

    def name_only(self) -> Reference:
        return Reference(domain=self.domain, path=self.path)

    def tag_name_only(self) -> Reference:
        """dockerd's ``TagNameOnly``: add ``:latest`` when there is neither tag nor digest."""
        if self.tag is None and self.digest is None:
            return Reference(domain=self.domain, path=self.path, tag=DEFAULT_TAG)
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageIDRef:
    """A full image ID given by digest (``sha256:<64 hex>`` or bare 64 hex)."""

    id: str

    def __str__(self) -> str:
        return self.id


def _suffix(tag: str | None, digest: str | None) -> str:
    out = ""
    if tag is not None:
        out += ":" + tag
    if digest is not None:
        out += "@" + digest
    return out


def _check_digest(digest: str) -> None:
    algo, sep, hexpart = digest.partition(":")
    if not sep or not algo or not hexpart:
        raise InvalidParameter("invalid checksum digest format")
    if algo != "sha256":
        if algo in ("sha384", "sha512"):
            want = 96 if algo == "sha384" else 128
            if len(hexpart) != want or not re.fullmatch(r"[a-f0-9]+", hexpart):
                raise InvalidParameter("invalid checksum digest length")
            return
        raise InvalidParameter("unsupported digest algorithm")
    if not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise InvalidParameter("invalid checksum digest format")
    if len(hexpart) != 64:
        raise InvalidParameter("invalid checksum digest length")


def _split_docker_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i == -1 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse(s: str) -> Reference:
    """Parse an already fully qualified reference (no normalisation), like ``reference.Parse``.

    The first component is a domain only if the grammar says so; a reference without a
    domain is returned with ``domain == ""`` replaced by the split done by the caller.
    """
    m = _REFERENCE_RE.match(s)
    if m is None:
        if s == "":
            raise InvalidParameter("repository name must have at least one component")
        if _REFERENCE_RE.match(s.lower()) is not None:
            raise InvalidParameter("repository name must be lowercase")
        raise InvalidParameter(MSG_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidParameter(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest is not None:
        _check_digest(digest)
    first, sep, rest = name.partition("/")
    if sep and _DOMAIN_RE.match(first) and rest:
        domain, path = first, rest
    else:
        domain, path = "", name
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def parse_normalized_named(s: str) -> Reference:
    """dockerd's ``ParseNormalizedNamed``: normalise a user-typed name (no default tag)."""
    if is_hex64(s):
        raise InvalidParameter(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(s)
    tag_sep = remainder.find(":")
    remote_name = remainder[:tag_sep] if tag_sep >= 0 else remainder
    if remote_name.lower() != remote_name:
        raise InvalidParameter(
            f"{MSG_INVALID_FORMAT}: repository name ({remote_name}) must be lowercase"
        )
    ref = parse(f"{domain}/{remainder}")
    if not ref.domain:
        # parse() could not see a domain in "<domain>/<path>": the whole thing is a path.
        raise InvalidParameter(MSG_INVALID_FORMAT)
    return ref


def normalize(s: str) -> Reference:
    """``parse_normalized_named`` + ``:latest`` when there is neither tag nor digest."""
    return parse_normalized_named(s).tag_name_only()


def parse_any(s: str) -> Reference | ImageIDRef:
    """dockerd's ``ParseAnyReference``: a full image ID (bare 64 hex or ``sha256:``) or a name."""
    if is_hex64(s):
        return ImageIDRef(id=SHA256_PREFIX + s)
    if s.startswith(SHA256_PREFIX):
        _check_digest(s)
        return ImageIDRef(id=s)
    return parse_normalized_named(s)


def id_prefix(s: str) -> str | None:
    """The hex part if ``s`` could be an image ID or a prefix of one (``abc``, ``sha256:abc``)."""
    m = _ID_PREFIX_RE.match(s)
    return m.group(1) if m else None


def is_id_prefix(image_id: str, candidate: str) -> bool:
    """dockerd's ``isImageIDPrefix``: does ``candidate`` name ``image_id`` by ID (prefix)?"""
    if image_id.startswith(candidate):
        return True
    _, sep, hexpart = image_id.partition(":")
    return bool(sep) and hexpart.startswith(candidate)


def validate_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise InvalidParameter("invalid tag format")
    return tag
