"""Pure parts of pull and push: request parsing, login addresses, mirror URLs, config
checks, the manifest a push writes, and the resumable blob stream (over a fake client)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from whaled.daemon.distribution import login_domain, pull_request
from whaled.distribution.auth import Credentials
from whaled.distribution.client import TransferInterrupted
from whaled.distribution.endpoints import Endpoint, endpoint_from_url
from whaled.distribution.errors import RegistryUnreachable
from whaled.distribution.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_NONDIST_ZSTD,
    OCI_LAYER_ZSTD,
    Descriptor,
)
from whaled.distribution.platforms import Platform
from whaled.distribution.puller import PullLimits, ResumableBlob, check_config
from whaled.distribution.pusher import PushedBlob, build_manifest, reused_layer_type
from whaled.errors import InvalidParameter

D1 = "sha256:" + "1" * 64


def test_pull_request_tag_digest_and_all_tags() -> None:
    creds = Credentials()
    assert pull_request("busybox", "1.36", "", creds).reference.tag == "1.36"
    by_digest = pull_request("busybox", D1, "", creds).reference
    assert (by_digest.tag, by_digest.digest) == (None, D1)
    everything = pull_request("busybox", "", "", creds).reference
    assert (everything.tag, everything.digest) == (None, None)
    assert pull_request("x/y:2", "", "linux/arm64", creds).platform == Platform(
        os="linux", architecture="arm64"
    )
    with pytest.raises(InvalidParameter):
        pull_request("UPPER", "", "", creds)
    with pytest.raises(InvalidParameter):
        pull_request("busybox", "bad tag", "", creds)


@pytest.mark.parametrize(
    ("address", "domain"),
    [
        ("", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("docker.io", "docker.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("https://Registry.Example:443/v2/", "registry.example:443"),
        ("http://localhost:5000", "localhost:5000"),
    ],
)
def test_login_domain(address: str, domain: str) -> None:
    assert login_domain(address) == domain


def test_mirror_urls() -> None:
    assert endpoint_from_url("http://127.0.0.1:5000") == Endpoint(
        scheme="http", host="127.0.0.1:5000", verify=False
    )
    assert endpoint_from_url("https://mirror.example/path") == Endpoint(
        scheme="https", host="mirror.example", verify=True
    )
    for bad in ("mirror.example", "ftp://x", "https://"):
        with pytest.raises(InvalidParameter):
            endpoint_from_url(bad)


def _config(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "os": "linux",
        "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [D1]},
    }
    doc.update(kw)
    return doc


def test_check_config() -> None:
    amd64 = Platform(os="linux", architecture="amd64")
    assert check_config(_config(), 1, amd64, "x:1") == [D1]
    with pytest.raises(InvalidParameter, match="1 layers in the manifest, 2 diff IDs"):
        check_config(_config(rootfs={"diff_ids": [D1, D1]}), 1, None, "x:1")
    with pytest.raises(InvalidParameter, match='image operating system "windows"'):
        check_config(_config(os="windows"), 1, None, "x:1")
    with pytest.raises(InvalidParameter, match="does not match the specified platform"):
        check_config(_config(), 1, Platform(os="linux", architecture="s390x"), "x:1")
    with pytest.raises(InvalidParameter, match=r"no rootfs\.diff_ids"):
        check_config(_config(rootfs={}), 1, None, "x:1")


def test_build_manifest_is_docker_schema2_indented_like_dockerd() -> None:
    body = build_manifest(
        PushedBlob(media_type=DOCKER_CONFIG, digest=D1, size=10),
        [PushedBlob(media_type=DOCKER_LAYER_GZIP, digest=D1, size=20)],
    )
    doc = json.loads(body)
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert doc["config"] == {"mediaType": DOCKER_CONFIG, "size": 10, "digest": D1}
    assert doc["layers"] == [{"mediaType": DOCKER_LAYER_GZIP, "size": 20, "digest": D1}]
    assert body.startswith(b'{\n   "schemaVersion"')


class _FakeReader:
    def __init__(self, data: bytes, offset: int, cut_at: int | None) -> None:
        self._data = data
        self.position = offset
        self._cut_at = cut_at

    def read(self, n: int = -1) -> bytes:
        if self._cut_at is not None and self.position >= self._cut_at:
            h = hashlib.sha256(self._data[: self.position])
            raise TransferInterrupted("cut", position=self.position, hasher=h)
        end = len(self._data) if n < 0 else min(len(self._data), self.position + n)
        if self._cut_at is not None:
            end = min(end, self._cut_at)
        out = self._data[self.position : end]
        self.position = end
        return out

    def close(self) -> None:
        pass


class _FakeClient:
    """Serves one blob; the first ``cuts`` opens break off, ``refusals`` opens fail."""

    def __init__(self, data: bytes, cuts: int = 0, refusals: int = 0) -> None:
        self.data = data
        self.cuts = cuts
        self.refusals = refusals
        self.opens: list[int] = []

    def open_blob(self, name: str, desc: Descriptor, *, offset: int = 0, hasher: Any = None) -> Any:
        self.opens.append(offset)
        if self.refusals:
            self.refusals -= 1
            raise RegistryUnreachable("connection refused")
        cut = None
        if self.cuts:
            self.cuts -= 1
            cut = offset + 100
        return _FakeReader(self.data, offset, cut)


def _read_all(blob: ResumableBlob) -> bytes:
    out = b""
    while data := blob.read(64):
        out += data
    return out


def test_resumable_blob_resumes_where_it_broke_off() -> None:
    data = bytes(range(256)) * 4
    client = _FakeClient(data, cuts=2, refusals=1)
    waits: list[float] = []
    retries: list[int] = []
    blob = ResumableBlob(
        client,  # type: ignore[arg-type]
        "t/x",
        Descriptor(media_type="", digest=D1, size=len(data)),
        PullLimits(max_attempts=5, backoff_step=2.0),
        on_retry=lambda n, wait: retries.append(n),
        sleep=waits.append,
    )
    assert _read_all(blob) == data
    assert client.opens == [0, 0, 100, 200]  # refused, cut at 100, cut at 200, the rest
    assert waits == [2.0, 4.0, 6.0] and retries == [1, 2, 3]


def test_resumable_blob_gives_up_after_max_attempts() -> None:
    client = _FakeClient(b"x" * 1000, cuts=10)
    blob = ResumableBlob(
        client,  # type: ignore[arg-type]
        "t/x",
        Descriptor(media_type="", digest=D1, size=1000),
        PullLimits(max_attempts=3, backoff_step=0.0),
        sleep=lambda s: None,
    )
    with pytest.raises(TransferInterrupted):
        _read_all(blob)
    assert len(client.opens) == 3


def test_backoff_is_capped() -> None:
    limits = PullLimits(backoff_step=5.0)
    assert [limits.backoff(n) for n in (1, 2, 3, 10)] == [5.0, 10.0, 15.0, 30.0]


@pytest.mark.parametrize(
    ("address", "message"),
    [
        (
            "\u00b3\x10lk",
            'unable to parse server address: parse "https://\u00b3\x10lk": '
            "net/url: invalid control character in URL",
        ),
        (
            "a b:5000",
            'unable to parse server address: parse "https://a b:5000": '
            "invalid host name 'a b:5000'",
        ),
        ("https://-x-/v2/", "invalid host name '-x-'"),
    ],
)
def test_login_domain_refuses_what_is_no_host(address: str, message: str) -> None:
    """Issue 17 (fuzzing: a control character in ``serveraddress`` answered 500): a 400
    before any connection."""
    with pytest.raises(InvalidParameter) as err:
        login_domain(address)
    assert message in err.value.message


@pytest.mark.parametrize(
    ("recorded", "named"),
    [
        ("", DOCKER_LAYER_GZIP),  # recorded before whaled kept the type: gzip, as always
        (DOCKER_LAYER_GZIP, DOCKER_LAYER_GZIP),
        (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP),
        (OCI_LAYER_ZSTD, OCI_LAYER_ZSTD),
        (OCI_LAYER_NONDIST_ZSTD, OCI_LAYER_ZSTD),
        (OCI_LAYER, OCI_LAYER),
    ],
)
def test_a_reused_blob_is_named_with_its_own_compression(recorded: str, named: str) -> None:
    assert reused_layer_type(recorded) == named
