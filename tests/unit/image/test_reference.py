from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.image import reference as r


@pytest.mark.parametrize(
    ("given", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("user/repo", "docker.io/user/repo:latest", "user/repo:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("host:5000/a/b:tag", "host:5000/a/b:tag", "host:5000/a/b:tag"),
        ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
        ("localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x:y"),
        ("example.com/a", "example.com/a:latest", "example.com/a:latest"),
        ("a/b/c", "docker.io/a/b/c:latest", "a/b/c:latest"),
        ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ],
)
def test_normalize(given: str, full: str, familiar: str) -> None:
    ref = r.normalize(given)
    assert str(ref) == full
    assert ref.familiar == familiar


def test_digest_references() -> None:
    d = "sha256:" + "a" * 64
    ref = r.normalize(f"busybox@{d}")
    assert ref.tag is None and ref.digest == d
    assert str(ref) == f"docker.io/library/busybox@{d}"
    assert ref.familiar == f"busybox@{d}"
    both = r.parse_normalized_named(f"busybox:1@{d}")
    assert both.tag == "1" and both.digest == d and both.is_canonical


def test_name_only_has_no_tag_until_normalized() -> None:
    ref = r.parse_normalized_named("busybox")
    assert ref.tag is None
    assert ref.name == "docker.io/library/busybox"
    assert ref.familiar_name == "busybox"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            "Busybox",
            "invalid reference format: repository name (library/Busybox) must be lowercase",
        ),
        ("user/Repo", "invalid reference format: repository name (user/Repo) must be lowercase"),
        ("busybox:", "invalid reference format"),
        ("busybox::x", "invalid reference format"),
        ("-busybox", "invalid reference format"),
        (
            "a" * 64,
            "invalid repository name (" + "a" * 64 + "), cannot specify 64-byte "
            "hexadecimal strings",
        ),
        ("busybox@sha256:" + "a" * 40, "invalid checksum digest length"),
        ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("busybox:" + "t" * 129, "invalid reference format"),
        ("", "invalid reference format"),
    ],
)
def test_invalid(given: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        r.normalize(given)
    assert str(e.value) == message


def test_uppercase_domain_is_a_domain() -> None:
    ref = r.normalize("Foo/bar")
    assert ref.domain == "Foo" and ref.path == "bar"


def test_tag_validation() -> None:
    assert r.validate_tag("v1.2_3-x") == "v1.2_3-x"
    with pytest.raises(InvalidParameter):
        r.validate_tag(".bad")
    with pytest.raises(InvalidParameter):
        r.parse_normalized_named("busybox").with_tag("a" * 129)


def test_parse_any_ids() -> None:
    hexid = "0123456789abcdef" * 4
    assert r.parse_any(hexid) == r.ImageIDRef(id="sha256:" + hexid)
    assert r.parse_any("sha256:" + hexid) == r.ImageIDRef(id="sha256:" + hexid)
    assert isinstance(r.parse_any("busybox"), r.Reference)
    # A short ID prefix parses as a name; id_prefix tells the caller to try it as an ID too.
    assert r.id_prefix("0123ab") == "0123ab"
    assert r.id_prefix("sha256:0123") == "0123"
    assert r.id_prefix("busybox") is None
    assert r.id_prefix("ABC") is None


def test_is_id_prefix() -> None:
    image_id = "sha256:0123456789ab" + "0" * 52
    assert r.is_id_prefix(image_id, "0123")
    assert r.is_id_prefix(image_id, "sha256:0123")
    assert not r.is_id_prefix(image_id, "busybox")
