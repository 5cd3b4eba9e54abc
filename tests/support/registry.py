"""A real registry (Debian's ``docker-registry``, distribution 2.8) for tests, and a minimal
uploader that populates it — written on plain ``http.client``, independent of the
``whaled.distribution`` client under test.

- :class:`RegistryProcess`: writes a config YAML (filesystem storage under the test's temp dir,
  ``http.addr: 127.0.0.1:<free port>``, optional TLS / htpasswd / token auth), starts the
  registry, waits for ``/v2/`` to answer and stops it by its own PID.
- :class:`Uploader`: monolithic blob upload (``POST /v2/<name>/blobs/uploads/`` then ``PUT
  <location>?digest=``) and ``PUT`` of manifests, with optional basic auth and TLS context.
- :func:`make_certs`: a CA and a server certificate for 127.0.0.1 made with ``openssl``.
- :func:`htpasswd_line`: a bcrypt htpasswd entry (``htpasswd -nbB`` when apache2-utils is
  installed, else the C library's bcrypt through ``crypt``).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGISTRY_BIN = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def registry_available() -> bool:
    return os.access(REGISTRY_BIN, os.X_OK)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- certificates and passwords ------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca_crt: Path
    ca_key: Path
    server_crt: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(directory: Path, *, ip: str = "127.0.0.1", cn: str = "whaled-test-ca") -> Certs:
    """A self-signed CA and a server certificate (SAN ``IP:<ip>``) signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", f"/CN={cn}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", f"/CN={ip}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-sha256",
        "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    return Certs(
        ca_crt=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_crt=directory / "server.crt",
        server_key=directory / "server.key",
    )


def htpasswd_line(user: str, password: str) -> str:
    """``user:<bcrypt hash>`` (the registry accepts bcrypt only), at a low cost."""
    tool = shutil.which("htpasswd")
    if tool:
        out = subprocess.run(
            [tool, "-nbB", "-C", "5", user, password], check=True, capture_output=True, text=True
        ).stdout
        return out.strip()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # Python < 3.13; glibc's libcrypt does bcrypt

    # cost 5 (2**5 rounds): the registry checks the hash on every request; tests stay quick
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("no bcrypt available: install apache2-utils (htpasswd)")
    return f"{user}:{hashed}"


# --- the registry process ------------------------------------------------------------------


@dataclass
class RegistryProcess:
    root: Path
    tls: Certs | None = None
    htpasswd: str | None = None  # contents of the htpasswd file
    token: Mapping[str, str] | None = None  # realm, service, issuer, rootcertbundle
    client_cas: Sequence[Path] = ()
    #: regular expressions of the foreign-layer URLs a manifest may name
    url_allow: Sequence[str] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"

    def blob_data_path(self, digest: str) -> Path:
        hex_ = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: whaled-test-secret",
        ]
        if self.tls:
            lines += [
                "  tls:",
                f"    certificate: {self.tls.server_crt}",
                f"    key: {self.tls.server_key}",
            ]
            if self.client_cas:
                lines.append("    clientcas:")
                lines += [f"      - {ca}" for ca in self.client_cas]
        if self.url_allow:
            lines += ["validation:", "  manifests:", "    urls:", "      allow:"]
            lines += [f"        - '{pattern}'" for pattern in self.url_allow]
        if self.htpasswd is not None:
            path = self.root / "htpasswd"
            path.write_text(self.htpasswd + "\n")
            lines += ["auth:", "  htpasswd:", "    realm: basic-realm", f"    path: {path}"]
        elif self.token is not None:
            lines += ["auth:", "  token:"] + [f"    {k}: {v}" for k, v in self.token.items()]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> RegistryProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.port = free_port()
            config = self.root / "config.yml"
            config.write_text(self._config())
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [REGISTRY_BIN, "serve", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.root,
                )
            if self._wait_ready(timeout):
                return self
            self.stop()
        raise RuntimeError(f"docker-registry did not start:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                if self.client_cas:
                    # needs a client certificate to answer: a listening port is enough
                    socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
                    return True
                conn = self._connection()
                conn.request("GET", "/v2/")
                conn.getresponse().read()
                conn.close()
                return True
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        return False

    def _connection(self) -> http.client.HTTPConnection:
        if self.tls:
            ctx = ssl.create_default_context(cafile=str(self.tls.ca_crt))
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # our own child, by its Popen (never a recycled PID)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def uploader(self, auth: tuple[str, str] | None = None, token: str | None = None) -> Uploader:
        ctx = ssl.create_default_context(cafile=str(self.tls.ca_crt)) if self.tls else None
        header = None
        if auth:
            header = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        elif token:
            header = "Bearer " + token
        return Uploader(self.base_url, context=ctx, authorization=header)


# --- uploading -----------------------------------------------------------------------------


class UploadError(RuntimeError):
    pass


@dataclass
class Uploader:
    base_url: str
    context: ssl.SSLContext | None = None
    authorization: str | None = None

    def _request(
        self, method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] = {}
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urllib.parse.urlsplit(urllib.parse.urljoin(self.base_url, url))
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.netloc, context=self.context, timeout=30)
        else:
            conn = http.client.HTTPConnection(parts.netloc, timeout=30)
        hdrs = dict(headers)
        if self.authorization:
            hdrs["Authorization"] = self.authorization
        target = parts.path + ("?" + parts.query if parts.query else "")
        try:
            conn.request(method, target, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def push_blob(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        status, headers, body = self._request("POST", f"/v2/{name}/blobs/uploads/", b"")
        if status != 202:
            raise UploadError(f"start upload: {status} {body!r}")
        location = headers["location"]
        sep = "&" if "?" in location else "?"
        status, _, body = self._request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(digest)}",
            data,
            {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
        )
        if status != 201:
            raise UploadError(f"finish upload: {status} {body!r}")
        return digest

    def put_manifest(self, name: str, ref: str, body: bytes, media_type: str) -> str:
        status, headers, resp = self._request(
            "PUT", f"/v2/{name}/manifests/{ref}", body, {"Content-Type": media_type}
        )
        if status != 201:
            raise UploadError(f"put manifest: {status} {resp!r}")
        return headers.get("docker-content-digest", sha256(body))


# --- test images ---------------------------------------------------------------------------


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass(frozen=True)
class PushedImage:
    manifest_digest: str
    manifest: bytes
    config_digest: str
    config: bytes
    layer_digests: tuple[str, ...]
    layers: tuple[bytes, ...]  # the blobs as stored (compressed)
    diff_ids: tuple[str, ...]


def push_image(
    up: Uploader,
    name: str,
    ref: str | None,
    *,
    files: Sequence[Mapping[str, bytes]] = ({"hello.txt": b"hello\n"},),
    os_name: str = "linux",
    architecture: str = "amd64",
    variant: str = "",
    docker_types: bool = False,
    layer_format: str = "gzip",
    tars: Sequence[bytes] = (),
    cmd: Sequence[str] = ("/bin/sh",),
) -> PushedImage:
    """Upload a small image and its manifest; tag it ``ref`` when given. Layers are
    ``gzip`` (default), ``zstd`` or ``tar`` (the last two with OCI media types only);
    ``tars`` (layer tars as they are) replaces ``files``."""
    tars = list(tars) or [layer_tar(f) for f in files]
    if layer_format == "gzip":
        blobs = [gzip.compress(t, mtime=0) for t in tars]
    elif layer_format == "zstd":
        import zstandard

        blobs = [zstandard.ZstdCompressor().compress(t) for t in tars]
    else:
        blobs = list(tars)
    diff_ids = [sha256(t) for t in tars]
    config_doc: dict[str, Any] = {
        "architecture": architecture,
        "os": os_name,
        "config": {"Cmd": list(cmd)},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if variant:
        config_doc["variant"] = variant
    config = json.dumps(config_doc).encode()
    layer_digests = [up.push_blob(name, b) for b in blobs]
    config_digest = up.push_blob(name, config)
    layer_type = DOCKER_LAYER_GZIP if docker_types else OCI_LAYER_GZIP
    if layer_format != "gzip":
        assert not docker_types, "Docker manifests have gzip layers only"
        layer_type = OCI_LAYER_ZSTD if layer_format == "zstd" else OCI_LAYER
    manifest_type = DOCKER_MANIFEST if docker_types else OCI_MANIFEST
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": DOCKER_CONFIG if docker_types else OCI_CONFIG,
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {"mediaType": layer_type, "digest": d, "size": len(b)}
            for d, b in zip(layer_digests, blobs, strict=True)
        ],
    }
    manifest = json.dumps(manifest_doc).encode()
    digest = up.put_manifest(name, ref or sha256(manifest), manifest, manifest_type)
    return PushedImage(
        manifest_digest=digest,
        manifest=manifest,
        config_digest=config_digest,
        config=config,
        layer_digests=tuple(layer_digests),
        layers=tuple(blobs),
        diff_ids=tuple(diff_ids),
    )


def push_index(
    up: Uploader, name: str, ref: str, entries: Sequence[tuple[PushedImage, Mapping[str, str]]]
) -> tuple[str, bytes]:
    """Upload an OCI index of already pushed images with their platforms."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": img.manifest_digest,
                "size": len(img.manifest),
                "platform": dict(platform),
            }
            for img, platform in entries
        ],
    }
    body = json.dumps(doc).encode()
    return up.put_manifest(name, ref, body, OCI_INDEX), body


@contextlib.contextmanager
def flipped_byte(path: Path, offset: int = -1) -> Any:
    """Flip one byte of a stored blob for the duration of the block."""
    data = bytearray(path.read_bytes())
    original = bytes(data)
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        yield
    finally:
        path.write_bytes(original)


# --- a token issuer for ``auth.token`` -----------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenIssuer:
    """A tiny token server on 127.0.0.1 (a thread): signs RS256 JWTs with ``openssl`` for the
    registry's ``auth.token`` (the signing certificate travels in the ``x5c`` header and is
    the registry's ``rootcertbundle``).

    GET with basic auth ``users`` → the scope's actions; anonymous GET → no access (the
    registry then answers ``insufficient_scope``); POST ``grant_type=refresh_token`` with a
    known refresh token → access as its user. Every request is recorded in ``requests``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        users: Mapping[str, str],
        refresh_tokens: Mapping[str, str] = {},
        service: str = "whaled-test-registry",
        issuer: str = "whaled-test-issuer",
        expires_in: int = 300,
    ) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.directory = directory
        self.users = dict(users)
        self.refresh_tokens = dict(refresh_tokens)
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.requests: list[tuple[str, str, dict[str, list[str]], str | None]] = []
        directory.mkdir(parents=True, exist_ok=True)
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
            "-keyout", "signer.key", "-out", "signer.crt", "-subj", f"/CN={issuer}",
            cwd=directory,
        )  # fmt: skip
        self.cert = directory / "signer.crt"
        self.key = directory / "signer.key"
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        self._x5c = base64.b64encode(der).decode("ascii")
        issuer_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, doc: Mapping[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                auth = self.headers.get("Authorization")
                issuer_self.requests.append(("GET", parts.path, query, auth))
                user = ""
                if auth:
                    if not auth.startswith("Basic "):
                        return self._reply(401, {"details": "bad authorization"})
                    name, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    if issuer_self.users.get(name) != pw:
                        return self._reply(401, {"details": "incorrect username or password"})
                    user = name
                self._reply(200, issuer_self._token(user, query.get("scope", [])))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                issuer_self.requests.append(("POST", self.path, form, None))
                refresh = form.get("refresh_token", [""])[0]
                user = issuer_self.refresh_tokens.get(refresh)
                if form.get("grant_type") != ["refresh_token"] or user is None:
                    return self._reply(400, {"error": "invalid_grant"})
                scopes = " ".join(form.get("scope", [])).split()
                self._reply(200, issuer_self._token(user, scopes))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_config(self) -> dict[str, str]:
        return {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.cert),
        }

    def token_for(self, user: str, scopes: Sequence[str]) -> str:
        return str(self._token(user, scopes)["token"])

    def _token(self, user: str, scopes: Sequence[str]) -> dict[str, Any]:
        now = int(time.time())
        access = []
        if user:
            for scope in scopes:
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 60,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        return {
            "token": signing_input + "." + _b64url(signature),
            "expires_in": self.expires_in,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
