"""A synchronous registry client (OCI distribution API) over ``http.client`` + ``ssl``.

Synchronous and blocking like the image stores; a daemon use case runs it in worker
threads. One :class:`RegistryClient` per registry and pull/push; it is thread-safe (a small
keep-alive connection pool, the auth state guarded by a lock) so several blobs can stream at
once.

- Endpoints come from :mod:`whaled.distribution.endpoints` (verified HTTPS; for an insecure
  registry unverified HTTPS then plain HTTP); the first that answers ``GET /v2/`` is kept.
- Auth: the :class:`~whaled.distribution.auth.Authenticator` flow is driven here; the ping's
  challenge is remembered, so the first real request already carries credentials.
- Redirects are followed (at most 10); ``Authorization`` is dropped when one leaves the
  registry's origin (blob storage).
- Errors become domain errors with dockerd's wording (:mod:`whaled.distribution.errors`).

The interface a pull drives (``daemon/distribution.py``, later)::

    client = RegistryClient.for_domain(ref.domain, insecure_registries=..., certs_dirs=...,
                                       credentials=decode_registry_auth(header))
    image = client.resolve(ref, platform)          # ResolvedImage: manifest, config, layers
    config = client.read_blob(ref, image.config)   # small, verified
    with client.open_blob(ref, image.layers[0]) as blob:   # streaming, verified at the end
        tar = open_layer(blob)                      # compression.open_layer
"""

from __future__ import annotations

import contextlib
import http
import http.client
import io
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from whaled.distribution import manifest as mf
from whaled.distribution.auth import Authenticator, Credentials, bearer_error, repository_scope
from whaled.distribution.digest import Digest, Hasher, InvalidDigest, digest_of, parse_digest
from whaled.distribution.endpoints import (
    Endpoint,
    insecure_policy,
    is_insecure,
    plan_endpoints,
    registry_host,
    split_host_port,
)
from whaled.distribution.errors import (
    DigestMismatchError,
    RegistryError,
    RegistryUnreachable,
    layer_verification_failed,
    manifest_verification_failed,
    translate_pull_error,
)
from whaled.distribution.manifest import Descriptor, ImageIndex, ImageManifest
from whaled.distribution.platforms import Platform, host_platform
from whaled.distribution.tls import HostCerts, read_certs_dirs, ssl_context
from whaled.distribution.wire import (
    HTTPRequest,
    HTTPResponse,
    UploadBody,
    make_headers,
    registry_error,
)
from whaled.errors import (
    InvalidParameter,
    SystemFailure,
    Unauthorized,
    Unavailable,
    WhaledError,
)
from whaled.image.reference import Reference

USER_AGENT = "whaled"
DEFAULT_TIMEOUT = 30.0
MAX_REDIRECTS = 10
MAX_ERROR_BODY = 64 << 10
READ_CHUNK = 1 << 20
_REDIRECTS = (301, 302, 303, 307, 308)


class TransferInterrupted(Unavailable):
    """A blob stream broke off; ``position`` bytes arrived and ``hasher`` holds their hash,
    so a retry can resume with ``open_blob(..., offset=position, hasher=hasher)``."""

    def __init__(self, message: str, *, position: int, hasher: Hasher) -> None:
        super().__init__(message)
        self.position = position
        self.hasher = hasher


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedManifest:
    media_type: str  # the Content-Type the registry sent
    digest: str  # verified against the body
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestHead:
    media_type: str
    digest: str  # "" when the registry sent no Docker-Content-Digest
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedImage:
    """What a pull of ``reference`` fetches, for one platform."""

    reference: Reference
    #: digest of what the tag points to (the index for a multi-platform image): RepoDigests
    digest: str
    media_type: str
    index: ImageIndex | None
    manifest_digest: str
    manifest: ImageManifest
    platform: Platform | None  # the index entry's platform, None for a single manifest

    @property
    def config(self) -> Descriptor:
        return self.manifest.config

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        return self.manifest.layers


# ------------------------------------------------------------------------------ transport


class _Live:
    """An HTTP response being read, and the connection it came on."""

    def __init__(
        self,
        pool: _Pool,
        key: tuple[str, str],
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        url: str,
    ) -> None:
        self._pool = pool
        self._key = key
        self._conn: http.client.HTTPConnection | None = conn
        self.resp = resp
        self.url = url
        self.status = resp.status
        self.headers = make_headers(resp.getheaders())

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def read(self, n: int = -1) -> bytes:
        return self.resp.read() if n < 0 else self.resp.read(n)

    def read_bounded(self, limit: int) -> bytes:
        """At most ``limit + 1`` bytes (one more tells the caller the limit was passed)."""
        return self.resp.read(limit + 1)

    def release(self) -> None:
        """Return the connection to the pool if the response was read to its end, else
        close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self.resp.isclosed() and not self.resp.will_close:
            self._pool.put(self._key, conn)
        else:
            self.resp.close()
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self.resp.close()
        if conn is not None:
            conn.close()


class _Pool:
    def __init__(self, contexts: Callable[[str], ssl.SSLContext], timeout: float) -> None:
        self._contexts = contexts
        self._timeout = timeout
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        scheme, host = key
        if scheme == "https":
            return (
                http.client.HTTPSConnection(
                    host, timeout=self._timeout, context=self._contexts(host)
                ),
                False,
            )
        return http.client.HTTPConnection(host, timeout=self._timeout), False

    def put(self, key: tuple[str, str], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


@contextlib.contextmanager
def _transport_errors(method: str, url: str, live: _Live | None = None) -> Iterator[None]:
    """Where socket, TLS and HTTP-parsing exceptions become :class:`RegistryUnreachable`
    (closing ``live``, whose connection is then unusable). Blob bodies are the exception:
    :class:`BlobReader` turns them into a resumable :class:`TransferInterrupted`."""
    try:
        yield
    except (OSError, http.client.HTTPException) as e:
        if live is not None:
            live.close()
        raise RegistryUnreachable(_connection_error_text(method, url, e)) from None


def _connection_error_text(method: str, url: str, e: BaseException) -> str:
    """Go's ``url.Error`` shape: ``Get "https://h/v2/": <reason>``."""
    if isinstance(e, ssl.SSLCertVerificationError):
        reason = f"tls: failed to verify certificate: {e.verify_message}"
    elif isinstance(e, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(e):
        reason = "http: server gave HTTP response to HTTPS client"
    elif isinstance(e, ConnectionRefusedError):
        reason = f"dial tcp {urlsplit(url).netloc}: connect: connection refused"
    elif isinstance(e, socket.timeout | TimeoutError):
        reason = "i/o timeout"
    elif isinstance(e, socket.gaierror):
        reason = f"dial tcp: lookup {urlsplit(url).hostname}: {e.strerror}"
    else:
        reason = str(e) or type(e).__name__
    return f'{method.capitalize()} "{url}": {reason}'


# ------------------------------------------------------------------------------ client


class RegistryClient:
    """Talks to one registry (a reference domain)."""

    def __init__(
        self,
        domain: str,
        *,
        endpoints: Sequence[Endpoint],
        certs: HostCerts | None = None,
        authenticator: Authenticator | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        user_agent: str = USER_AGENT,
    ) -> None:
        if not endpoints:
            raise InvalidParameter(f"no endpoint for registry {domain}")
        self.domain = domain
        self._endpoints = list(endpoints)
        self._endpoint: Endpoint | None = None
        self._certs = certs or HostCerts()
        self.auth = authenticator or Authenticator()
        self._auth_lock = threading.Lock()
        self._ping_lock = threading.Lock()
        self._user_agent = user_agent
        self._ctx_lock = threading.Lock()
        self._ctx_cache: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._pool = _Pool(self._context_for, timeout)

    @classmethod
    def for_domain(
        cls,
        domain: str,
        *,
        insecure_registries: Sequence[str] = (),
        certs_dirs: Sequence[str] = (),
        credentials: Credentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        resolve: Callable[[str], Sequence[str]] | None = None,
    ) -> RegistryClient:
        """A client for reference domain ``domain`` under a daemon's settings (pass the
        values from the config snapshot the operation took)."""
        policy = insecure_policy(insecure_registries)
        host = registry_host(domain)
        name, _ = split_host_port(host)
        addresses: Sequence[str] = ()
        if host == domain and domain not in policy.names and not _is_ip(name):
            # only a host name needs resolving for the CIDR check (Docker Hub never does)
            addresses = (resolve or _resolve_host)(name)
        insecure = is_insecure(domain, policy, addresses)
        return cls(
            domain,
            endpoints=plan_endpoints(domain, insecure),
            certs=read_certs_dirs(certs_dirs, domain),
            authenticator=Authenticator(credentials),
            timeout=timeout,
        )

    # -- plumbing ---------------------------------------------------------------------

    def _context_for(self, host: str) -> ssl.SSLContext:
        """The registry's own HTTPS endpoint gets its certs.d files and its verify flag;
        any other host (a redirect to storage) the system's CAs, verified."""
        verify = True
        certs = HostCerts()
        for e in self._endpoints:
            if e.scheme == "https" and e.host == host:
                verify, certs = e.verify, self._certs
                break
        with self._ctx_lock:
            key = (host, verify)
            ctx = self._ctx_cache.get(key)
            if ctx is None:
                ctx = ssl_context(certs, verify=verify)
                self._ctx_cache[key] = ctx
            return ctx

    def close(self) -> None:
        self._pool.close()

    def describe(self) -> str:
        """The endpoints this client uses, for log lines."""
        return ", ".join(e.base_url for e in self._endpoints)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _perform_once(self, req: HTTPRequest, url: str) -> _Live:
        key = _origin(url)
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = {k: v for k, v in req.headers}
        headers.setdefault("user-agent", self._user_agent)
        for attempt in range(2):
            conn, reused = self._pool.get(key)
            if req.body is not None and not isinstance(req.body, bytes):
                req.body.seek(0)
            try:
                conn.request(req.method, target, body=req.body, headers=headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if reused and attempt == 0:
                    continue  # a kept-alive connection the server had closed: retry fresh
                raise
            except BaseException:
                conn.close()
                raise
            return _Live(self._pool, key, conn, resp, url)
        raise AssertionError("unreachable")

    def _send(self, req: HTTPRequest) -> _Live:
        """Perform ``req``, following redirects; connection problems → RegistryUnreachable.

        ``Authorization`` is dropped once a redirect leaves the request's origin.
        """
        method, url, headers, body = req.method, req.url, req.headers, req.body
        for _ in range(MAX_REDIRECTS + 1):
            current = HTTPRequest(method=method, url=url, headers=headers, body=body)
            with _transport_errors(method, url):
                live = self._perform_once(current, url)
            location = live.header("location")
            if live.status not in _REDIRECTS or not location:
                return live
            _drain(live)
            new_url = urljoin(url, location)
            if _origin(new_url) != _origin(url):
                headers = current.with_header("authorization", None).headers
            if live.status == 303 and method != "HEAD":
                method, body = "GET", None
            url = new_url
        raise RegistryUnreachable(f'{method.capitalize()} "{req.url}": stopped after 10 redirects')

    def _request(self, req: HTTPRequest, scopes: Sequence[str]) -> _Live:
        """Drive the auth flow for ``req``; the final response is returned unread."""
        flow = self.auth.flow(req, scopes)
        with self._auth_lock:
            out = next(flow)
        while True:
            live = self._send(out)
            body = b""
            if out.read_body:
                with _transport_errors(out.method, out.url, live):
                    body = live.read_bounded(mf.MAX_MANIFEST_BYTES)
            response = HTTPResponse(status=live.status, headers=live.headers, body=body)
            try:
                with self._auth_lock:
                    out = flow.send(response)
            except StopIteration:
                return live
            except BaseException:
                live.close()
                raise
            _drain(live)

    def _error(self, live: _Live) -> WhaledError:
        """The domain error for a failed response (reads the body, closes the response)."""
        try:
            body = live.read_bounded(MAX_ERROR_BODY)
        except (OSError, http.client.HTTPException):
            body = b""
        live.close()
        response = HTTPResponse(status=live.status, headers=live.headers, body=body)
        err = registry_error(live.status, body)
        if live.status == 401:
            oauth = bearer_error(response)
            if oauth is not None:
                code, message = oauth
                return RegistryError(code, message, None, live.status)
        return err

    def _url(self, path: str) -> str:
        endpoint = self._endpoint or self.ping()
        return endpoint.base_url + path

    # -- API --------------------------------------------------------------------------

    def ping(self) -> Endpoint:
        """``GET /v2/`` on each endpoint in turn; the first that answers is used from now
        on (its auth challenge is remembered). Raises RegistryUnreachable if none does."""
        with self._ping_lock:
            return self._ping()

    def _ping(self) -> Endpoint:
        if self._endpoint is not None:
            return self._endpoint
        last: Exception | None = None
        for endpoint in self._endpoints:
            url = endpoint.base_url + "/v2/"
            try:
                live = self._send(HTTPRequest(method="GET", url=url))
            except RegistryUnreachable as e:
                last = e
                continue
            body = _drain(live)
            response = HTTPResponse(status=live.status, headers=live.headers, body=body)
            with self._auth_lock:
                self.auth.learn(url, response)
            self._endpoint = endpoint
            return endpoint
        assert last is not None
        raise last

    def get_manifest(self, name: str, ref: str) -> FetchedManifest:
        """The manifest (or index) of repository path ``name`` by tag or digest, its digest
        verified: against ``ref`` when it is one, else against ``Docker-Content-Digest``."""
        expected: Digest | None = None
        if ":" in ref:
            try:
                expected = parse_digest(ref)
            except InvalidDigest as e:
                raise InvalidParameter(str(e)) from None
        live = self._request(
            HTTPRequest(
                method="GET",
                url=self._url(f"/v2/{name}/manifests/{ref}"),
                headers=(("accept", ", ".join(mf.ACCEPT)),),
            ),
            [repository_scope(name)],
        )
        if live.status != 200:
            raise self._error(live)
        with _transport_errors("GET", live.url, live):
            body = live.read_bounded(mf.MAX_MANIFEST_BYTES)
        live.release()
        if len(body) > mf.MAX_MANIFEST_BYTES:
            raise mf.InvalidManifest(f"manifest too large (more than {mf.MAX_MANIFEST_BYTES})")
        header = live.header("docker-content-digest")
        if expected is None and header:
            try:
                expected = parse_digest(header)
            except InvalidDigest:
                expected = None
        algorithm = expected.algorithm if expected is not None else "sha256"
        actual = digest_of(body, algorithm)
        if expected is None:
            expected = actual
        if actual != expected:
            raise manifest_verification_failed(str(expected), str(actual))
        media_type = (live.header("content-type") or "").split(";", 1)[0].strip()
        return FetchedManifest(media_type=media_type, digest=str(expected), body=body)

    def head_manifest(self, name: str, ref: str) -> ManifestHead:
        live = self._request(
            HTTPRequest(
                method="HEAD",
                url=self._url(f"/v2/{name}/manifests/{ref}"),
                headers=(("accept", ", ".join(mf.ACCEPT)),),
            ),
            [repository_scope(name)],
        )
        if live.status != 200:
            err = self._error(live)
            if isinstance(err, RegistryError) or live.status != 404:
                raise err
            raise RegistryError("MANIFEST_UNKNOWN", "", None, 404)  # HEAD has no body
        _drain(live)
        length = live.header("content-length") or "0"
        return ManifestHead(
            media_type=(live.header("content-type") or "").split(";", 1)[0].strip(),
            digest=live.header("docker-content-digest") or "",
            size=int(length) if length.isdigit() else 0,
        )

    def resolve(self, reference: Reference, platform: Platform | None = None) -> ResolvedImage:
        """Fetch what ``reference`` (tag or digest) names and pick ``platform`` (default:
        this host's) from an index. Errors carry dockerd's pull wording."""
        wanted = platform or host_platform()
        ref = reference.digest or reference.tag or "latest"
        named = reference if (reference.digest or reference.tag) else reference.with_tag(ref)
        try:
            top = self.get_manifest(reference.path, ref)
            parsed = mf.parse_manifest(top.body, top.media_type, reference=str(named))
            if isinstance(parsed, ImageManifest):
                return ResolvedImage(
                    reference=named,
                    digest=top.digest,
                    media_type=parsed.media_type,
                    index=None,
                    manifest_digest=top.digest,
                    manifest=parsed,
                    platform=None,
                )
            entry = parsed.select(wanted)
            child = self.get_manifest(reference.path, entry.digest)
        except WhaledError as e:
            raise translate_pull_error(
                e, familiar_name=named.familiar_name, familiar_ref=named.familiar
            ) from None
        if len(child.body) != entry.size:
            raise DigestMismatchError(
                f"manifest {entry.digest}: size {len(child.body)} does not match the index's "
                f"{entry.size}",
                expected=entry.digest,
            )
        media_type = child.media_type or entry.media_type
        sub = mf.parse_manifest(child.body, media_type, reference=str(named))
        if not isinstance(sub, ImageManifest):
            raise mf.InvalidManifest(f"manifest {entry.digest} in the index is itself an index")
        return ResolvedImage(
            reference=named,
            digest=top.digest,
            media_type=parsed.media_type,
            index=parsed,
            manifest_digest=child.digest,
            manifest=sub,
            platform=entry.platform,
        )

    def list_tags(
        self, reference: Reference, *, page_size: int = 0, max_pages: int = 1000
    ) -> list[str]:
        """Every tag of ``reference``'s repository (``GET /v2/<name>/tags/list``, following
        ``Link: <...>; rel="next"`` pages). Errors carry dockerd's pull wording."""
        path = reference.path
        url = self._url(f"/v2/{path}/tags/list" + (f"?n={page_size}" if page_size else ""))
        tags: list[str] = []
        for _ in range(max_pages):
            live = self._request(HTTPRequest(method="GET", url=url), [repository_scope(path)])
            if live.status != 200:
                err = self._error(live)
                raise translate_pull_error(
                    err, familiar_name=reference.familiar_name, familiar_ref=reference.familiar
                )
            doc = _json_body(live, url, "tag list")
            page = doc.get("tags") if isinstance(doc, dict) else None
            tags.extend(t for t in page or [] if isinstance(t, str))
            following = _next_link(live.header("link"))
            if not following:
                return tags
            url = urljoin(url, following)
        return tags

    def open_blob(
        self,
        name: str | Reference,
        desc: Descriptor,
        *,
        offset: int = 0,
        hasher: Hasher | None = None,
        url: str = "",
    ) -> BlobReader:
        """Stream blob ``desc`` of repository ``name``; the digest (and size) is checked when
        the last byte is read. To resume after :class:`TransferInterrupted`, pass its
        ``position`` and ``hasher`` (a Range request; a registry that ignores Range sends it
        all and the first ``offset`` bytes are skipped). ``url``: one of a foreign layer's
        ``urls``, fetched instead of the registry's blob (plain GET, no credentials: they
        are the registry's, not that server's)."""
        path = name.path if isinstance(name, Reference) else name
        digest = parse_digest(desc.digest)
        if offset < 0 or offset > desc.size:
            raise InvalidParameter(f"invalid offset {offset} for a blob of {desc.size} bytes")
        if offset and hasher is None:
            raise InvalidParameter("resuming a blob needs the hash of the bytes already read")
        if offset == desc.size and hasher is not None:
            # everything already arrived (the break came after the last byte): verify it
            reader = BlobReader(None, desc, digest, hasher, offset)
            reader.read(0)
            return reader
        headers: tuple[tuple[str, str], ...] = ()
        if offset:
            headers = (("range", f"bytes={offset}-"),)
        if url:
            if urlsplit(url).scheme not in ("http", "https"):
                raise InvalidParameter(f"unsupported URL scheme of foreign layer: {url}")
            live = self._send(HTTPRequest(method="GET", url=url, headers=headers))
        else:
            live = self._request(
                HTTPRequest(
                    method="GET",
                    url=self._url(f"/v2/{path}/blobs/{desc.digest}"),
                    headers=headers,
                ),
                [repository_scope(path)],
            )
        if live.status == 206 and offset:
            start = _content_range_start(live.header("content-range"))
            if start != offset:
                live.close()
                raise SystemFailure(
                    f"registry answered range from {start} for a request from {offset}"
                )
        elif live.status == 200:
            skip = offset
            while skip:
                with _transport_errors("GET", live.url, live):
                    data = live.read(min(skip, READ_CHUNK))
                if not data:
                    break
                skip -= len(data)
        else:
            raise self._error(live)
        return BlobReader(
            live, desc, digest, hasher if hasher is not None else digest.hasher(), offset
        )

    def read_blob(self, name: str | Reference, desc: Descriptor, limit: int = 32 << 20) -> bytes:
        """A small blob (an image config) read whole, verified."""
        if desc.size > limit:
            raise SystemFailure(f"blob {desc.digest} too large: {desc.size} bytes")
        with self.open_blob(name, desc) as blob:
            return blob.read_all()

    def login(self) -> str:
        """dockerd's credential check for ``docker login``: ``GET /v2/`` with the
        credentials (basic, or a bearer token asked for no scope). Returns the identity
        token (refresh token) a token server handed out, else ``""``; a refusal raises
        Unauthorized with dockerd's wording."""
        url = self._url("/v2/")
        live = self._request(HTTPRequest(method="GET", url=url), [])
        status = live.status
        _drain(live)
        if status == 200:
            return self.auth.last_refresh_token
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        raise Unauthorized(f"login attempt to {url} failed with status: {status} {phrase}")

    def search(self, term: str, limit: int) -> list[dict[str, Any]]:
        """The index's ``GET /v1/search?q=&n=`` results (``docker search``)."""
        url = self._url("/v1/search?" + urlencode({"q": term, "n": str(limit)}))
        live = self._request(HTTPRequest(method="GET", url=url), [])
        if live.status != 200:
            _drain(live)
            raise SystemFailure(f"Unexpected status code {live.status}")
        doc = _json_body(live, url, "search results")
        results = doc.get("results") if isinstance(doc, dict) else None
        return [r for r in results or [] if isinstance(r, dict)]

    # -- push -------------------------------------------------------------------------

    def blob_size(self, name: str, digest: str) -> int | None:
        """``HEAD /v2/<name>/blobs/<digest>`` (asked with push scope, for a push): the blob's
        size, or None when the registry does not have it there."""
        live = self._request(
            HTTPRequest(method="HEAD", url=self._url(f"/v2/{name}/blobs/{digest}")),
            [repository_scope(name, ("pull", "push"))],
        )
        if live.status == 404:
            _drain(live)
            return None
        if live.status != 200:
            raise self._error(live)
        _drain(live)
        length = live.header("content-length") or ""
        return int(length) if length.isdigit() else 0

    def start_upload(self, name: str, *, mount: str = "", source: str = "") -> str | None:
        """Start a blob upload; with ``mount``/``source`` first ask the registry to mount
        blob ``mount`` from repository ``source`` (cross-repository mount). None when the
        blob was mounted (201), else the upload's location."""
        query = ""
        scopes = [repository_scope(name, ("pull", "push"))]
        if mount and source:
            query = "?" + urlencode({"mount": mount, "from": source})
            scopes.append(repository_scope(source))
        live = self._request(
            HTTPRequest(
                method="POST",
                url=self._url(f"/v2/{name}/blobs/uploads/{query}"),
                headers=(("content-length", "0"),),
                body=b"",
            ),
            scopes,
        )
        if live.status == 201 and query:
            _drain(live)
            return None
        if live.status != 202:
            raise self._error(live)
        _drain(live)
        location = live.header("location")
        if not location:
            raise SystemFailure(f"registry {self.domain} started an upload without a location")
        return urljoin(live.url, location)

    def upload_chunk(self, name: str, location: str, data: bytes, offset: int) -> str:
        """Send one chunk of a blob (``PATCH`` with its ``Content-Range``); the location
        of the upload's next request."""
        live = self._request(
            HTTPRequest(
                method="PATCH",
                url=location,
                headers=(
                    ("content-type", "application/octet-stream"),
                    ("content-length", str(len(data))),
                    ("content-range", f"{offset}-{offset + len(data) - 1}"),
                ),
                body=data,
            ),
            [repository_scope(name, ("pull", "push"))],
        )
        if live.status != 202:
            raise self._error(live)
        _drain(live)
        next_location = live.header("location")
        return urljoin(live.url, next_location) if next_location else location

    def finish_upload(
        self, name: str, location: str, digest: str, body: bytes | UploadBody, size: int
    ) -> None:
        """Send the whole blob to an upload ``location`` and close it with its digest
        (a monolithic upload, ``PUT <location>?digest=``)."""
        parts = urlsplit(location)
        query = (parts.query + "&" if parts.query else "") + urlencode({"digest": digest})
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        live = self._request(
            HTTPRequest(
                method="PUT",
                url=url,
                headers=(
                    ("content-type", "application/octet-stream"),
                    ("content-length", str(size)),
                ),
                body=body,
            ),
            [repository_scope(name, ("pull", "push"))],
        )
        if live.status not in (201, 204):
            raise self._error(live)
        _drain(live)

    def put_manifest(self, name: str, ref: str, body: bytes, media_type: str) -> str:
        """``PUT /v2/<name>/manifests/<ref>``; the manifest's digest."""
        live = self._request(
            HTTPRequest(
                method="PUT",
                url=self._url(f"/v2/{name}/manifests/{ref}"),
                headers=(("content-type", media_type), ("content-length", str(len(body)))),
                body=body,
            ),
            [repository_scope(name, ("pull", "push"))],
        )
        if live.status not in (200, 201, 202):
            raise self._error(live)
        _drain(live)
        return live.header("docker-content-digest") or str(digest_of(body, "sha256"))


def _json_body(live: _Live, url: str, what: str) -> Any:
    """A small JSON answer (tag list, search results) read whole, bounded, decoded."""
    with _transport_errors("GET", url, live):
        body = live.read_bounded(mf.MAX_MANIFEST_BYTES)
    live.release()
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise SystemFailure(f"invalid {what} from {url}") from None


def _drain(live: _Live) -> bytes:
    try:
        body = live.read_bounded(MAX_ERROR_BODY)
    except (OSError, http.client.HTTPException):
        live.close()
        return b""
    if len(body) > MAX_ERROR_BODY:
        live.close()
    else:
        live.release()
    return body


def _next_link(value: str | None) -> str | None:
    """The target of ``Link: </v2/x/tags/list?last=a&n=1>; rel="next"``."""
    for part in (value or "").split(","):
        target, _, params = part.partition(";")
        target = target.strip()
        if 'rel="next"' in params.replace(" ", "") and target.startswith("<"):
            return target[1:].split(">", 1)[0]
    return None


def _content_range_start(value: str | None) -> int | None:
    if not value or not value.startswith("bytes "):
        return None
    start = value[6:].split("-", 1)[0].strip()
    return int(start) if start.isdigit() else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _resolve_host(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


class BlobReader(io.RawIOBase):
    """A blob's bytes as they arrive, hashed on the way; reading the last byte verifies the
    digest (:func:`~whaled.distribution.errors.layer_verification_failed` on a mismatch).
    A broken transfer raises :class:`TransferInterrupted` (resumable)."""

    def __init__(
        self, live: _Live | None, desc: Descriptor, digest: Digest, hasher: Hasher, offset: int
    ) -> None:
        super().__init__()
        self._live = live
        #: the HTTP status of the blob request (206 when resumed with Range); 0 if none made
        self.status = live.status if live is not None else 0
        self.descriptor = desc
        self._digest = digest
        self._hasher = hasher
        self.position = offset
        self.verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        remaining = self.descriptor.size - self.position
        if remaining <= 0 or len(b) == 0:
            self._finish()
            return 0
        live = self._live
        if live is None:
            raise ValueError("read from a closed blob")
        try:
            data = live.read(min(len(b), remaining, READ_CHUNK))
        except (OSError, http.client.HTTPException) as e:
            self._abort()
            raise TransferInterrupted(
                f"error reading blob {self.descriptor.digest} at byte {self.position}: {e}",
                position=self.position,
                hasher=self._hasher.copy(),
            ) from None
        if not data:
            self._abort()
            raise TransferInterrupted(
                f"unexpected EOF reading blob {self.descriptor.digest} at byte "
                f"{self.position} of {self.descriptor.size}",
                position=self.position,
                hasher=self._hasher.copy(),
            )
        self._hasher.update(data)
        self.position += len(data)
        n = len(data)
        b[:n] = data
        if self.position >= self.descriptor.size:
            self._finish()
        return n

    def read_all(self) -> bytes:
        chunks = []
        while True:
            data = self.read(READ_CHUNK)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    def drain(self) -> None:
        """Read (and hash) whatever the consumer left, so the digest gets checked."""
        while self.read(READ_CHUNK):
            pass

    def hasher_state(self) -> Hasher:
        return self._hasher.copy()

    def _finish(self) -> None:
        if self.verified:
            return
        if self._hasher.hexdigest() != self._digest.encoded:
            self._abort()
            raise layer_verification_failed(self.descriptor.digest)
        self.verified = True
        live, self._live = self._live, None
        if live is not None:
            # the registry may not have sent its last bytes yet: take what is already there
            if live.resp.isclosed():
                live.release()
            else:
                live.close()

    def _abort(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.close()

    def close(self) -> None:
        self._abort()
        super().close()
