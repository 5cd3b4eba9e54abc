"""Distribution use cases: pull (``POST /images/create?fromImage=``) and push
(``POST /images/{name}/push``).

One config snapshot is taken per pull or push (registry settings, transfer limits): a reload
while one runs changes nothing for it. The registry client, :class:`Puller` and
:class:`Pusher` are blocking; they run in a worker thread and their progress reaches the API
through :func:`whaled.daemon.images.run_with_progress`. Credentials (``X-Registry-Auth``) are
used for the one operation only: never logged, never stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from whaled.config.model import Config
from whaled.daemon.images import IMAGE_EVENT, ProgressSink, run_with_progress
from whaled.distribution.auth import Authenticator, Credentials
from whaled.distribution.client import RegistryClient, ResolvedImage
from whaled.distribution.endpoints import (
    Endpoint,
    endpoint_from_url,
    nondistributable_allowed,
    registry_host,
)
from whaled.distribution.errors import RegistryUnreachable
from whaled.distribution.inspect import DistributionInspect, inspect_manifest
from whaled.distribution.manifest import Descriptor
from whaled.distribution.platforms import Platform, parse_platform
from whaled.distribution.puller import (
    DEFAULT_BACKOFF_STEP,
    LayerClaims,
    PulledImage,
    Puller,
    PullLimits,
)
from whaled.distribution.pusher import PushedTag, Pusher
from whaled.distribution.tls import read_certs_dirs
from whaled.errors import InvalidParameter, NotFound, Unauthorized
from whaled.events import EventBus
from whaled.image.archive import ProgressEvent, ProgressFn
from whaled.image.distmeta import BlobSource, ForeignLayer
from whaled.image.reference import Reference, parse_normalized_named
from whaled.image.stores import ImageStores

#: dockerd's folder of per-registry certificates, honoured after whaled's own.
DOCKER_CERTS_DIR = "/etc/docker/certs.d"
DEFAULT_CERTS_DIRS = ("/etc/whaled/certs.d", DOCKER_CERTS_DIR)
#: Test hook: seconds per back-off step between blob retries (dockerd: 5).
BACKOFF_ENV = "_WHALED_PULL_BACKOFF"
#: Test hook: the URL that stands for Docker Hub (tests point it at a closed loopback port,
#: so that nothing they do can reach the internet).
HUB_ENDPOINT_ENV = "_WHALED_HUB_ENDPOINT"
HUB_DOMAINS = ("docker.io", "index.docker.io")
#: Docker Hub's search index
HUB_INDEX = "index.docker.io"

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PullRequest:
    reference: Reference  # tag, digest, or neither (every tag of the repository)
    platform: Platform | None
    credentials: Credentials


def pull_request(from_image: str, tag: str, platform: str, credentials: Credentials) -> PullRequest:
    """Parse ``fromImage``/``tag``/``platform`` as dockerd does: ``tag`` may be a tag or a
    digest; neither in ``fromImage`` nor ``tag`` means every tag (``docker pull -a``)."""
    ref = parse_normalized_named(from_image)
    if tag:
        ref = ref.with_digest(tag) if ":" in tag else ref.with_tag(tag)
    return PullRequest(
        reference=ref,
        platform=parse_platform(platform) if platform else None,
        credentials=credentials,
    )


def certs_dirs(config_file: str) -> tuple[str, ...]:
    """Where a registry's ``ca.crt`` and client certs live, per ``host[:port]``: the
    ``certs.d`` beside whaled's config file (``/etc/whaled/certs.d`` by default), then
    dockerd's."""
    return (
        os.path.join(os.path.dirname(os.path.abspath(config_file)), "certs.d"),
        DOCKER_CERTS_DIR,
    )


def _resolve(ref: Reference, platform: Platform | None, client: RegistryClient) -> ResolvedImage:
    return client.resolve(ref, platform)


def _first_source(
    clients: Sequence[RegistryClient], probe: Callable[[RegistryClient], T]
) -> tuple[RegistryClient, T]:
    """The first client for which ``probe`` works (a mirror that is down or lacks the
    image is skipped, as dockerd does); the last client's error is the one reported."""
    for client in clients[:-1]:
        try:
            return client, probe(client)
        except (RegistryUnreachable, NotFound, Unauthorized) as e:
            log.info("mirror %s: %s; trying the next source", client.describe(), e)
    last = clients[-1]
    return last, probe(last)


def _backoff_step() -> float:
    try:
        return float(os.environ.get(BACKOFF_ENV, DEFAULT_BACKOFF_STEP))
    except ValueError:
        return DEFAULT_BACKOFF_STEP


class DistributionService:
    def __init__(
        self,
        *,
        stores: ImageStores,
        events: EventBus,
        config: Callable[[], Config],
        certs_dirs: Sequence[str] = DEFAULT_CERTS_DIRS,
    ) -> None:
        self._stores = stores
        self._events = events
        self._config = config
        self._certs_dirs = tuple(certs_dirs)
        #: layers being fetched by any pull (two pulls of one layer share its download)
        self._claims = LayerClaims()

    def _client(self, cfg: Config, domain: str, credentials: Credentials) -> RegistryClient:
        hub = os.environ.get(HUB_ENDPOINT_ENV)
        if hub and domain in HUB_DOMAINS:
            return RegistryClient(
                domain,
                endpoints=[endpoint_from_url(hub)],
                authenticator=Authenticator(credentials),
            )
        return RegistryClient.for_domain(
            domain,
            insecure_registries=cfg.insecure_registries,
            certs_dirs=self._certs_dirs,
            credentials=credentials,
        )

    def _pull_clients(
        self, cfg: Config, domain: str, credentials: Credentials
    ) -> list[RegistryClient]:
        """Where a pull fetches from, in order: for Docker Hub names the
        ``registry-mirrors`` first, then the registry itself."""
        clients: list[RegistryClient] = []
        if domain in HUB_DOMAINS:
            for url in cfg.registry_mirrors:
                endpoint = endpoint_from_url(url)
                clients.append(
                    RegistryClient(
                        domain,
                        endpoints=[endpoint],
                        certs=read_certs_dirs(self._certs_dirs, endpoint.host),
                        authenticator=Authenticator(credentials),
                    )
                )
        clients.append(self._client(cfg, domain, credentials))
        return clients

    def _remember_blob(self, diff_id: str, desc: Descriptor, repository: str) -> None:
        meta = self._stores.distribution
        meta.add(
            diff_id,
            BlobSource(digest=desc.digest, repository=repository, media_type=desc.media_type),
        )
        if desc.foreign and desc.urls:
            meta.set_foreign(
                diff_id,
                ForeignLayer(
                    media_type=desc.media_type, digest=desc.digest, size=desc.size, urls=desc.urls
                ),
            )

    async def pull(self, req: PullRequest, sink: ProgressSink) -> list[PulledImage]:
        cfg = self._config()  # one snapshot for the whole pull
        limits = PullLimits(
            max_concurrent=max(1, cfg.max_concurrent_downloads),
            max_attempts=max(1, cfg.max_download_attempts),
            backoff_step=_backoff_step(),
        )

        def work(progress: ProgressFn) -> list[PulledImage]:
            clients = self._pull_clients(cfg, req.reference.domain, req.credentials)
            try:
                ref = req.reference
                if ref.tag is None and ref.digest is None:
                    client, tags = _first_source(clients, lambda c: c.list_tags(ref))
                    refs = [ref.with_tag(t) for t in tags]
                else:
                    client, _ = _first_source(clients, lambda c: c.ping())
                    refs = [ref]
                puller = Puller(
                    client,
                    self._stores.layers,
                    self._stores.images,
                    limits,
                    progress,
                    on_blob=self._remember_blob,
                    claims=self._claims,
                )
                out = []
                for one in refs:
                    client, resolved = _first_source(
                        clients[clients.index(client) :], partial(_resolve, one, req.platform)
                    )
                    puller.use(client)
                    out.append(puller.pull(resolved, req.platform))
                    progress(ProgressEvent(message=f"Digest: {resolved.digest}"))
                return out
            finally:
                for c in clients:
                    c.close()

        pulled = await run_with_progress(work, sink)
        for p in pulled:
            self._events.emit(
                IMAGE_EVENT, "pull", p.reference.familiar, {"name": p.reference.familiar_name}
            )
        ref = req.reference
        shown = ref.familiar if (ref.tag or ref.digest) else ref.familiar_name
        new = any(p.new for p in pulled)
        status = "Downloaded newer image for" if new else "Image is up to date for"
        await sink(ProgressEvent(message=f"Status: {status} {shown}"))
        return pulled

    async def push(self, ref: Reference, credentials: Credentials, sink: ProgressSink) -> None:
        """Push ``ref``'s tag, or every local tag of its repository when it has none
        (``docker push -a``). The caller checked that the tags exist."""
        cfg = self._config()
        images = self._stores.images
        if ref.tag is not None:
            refs = [ref]
        else:
            refs = sorted(
                {
                    r
                    for rs in images.all_references().values()
                    for r in rs
                    if r.name == ref.name and r.tag is not None
                },
                key=lambda r: r.tag or "",
            )

        def work(progress: ProgressFn) -> list[tuple[PushedTag, str]]:
            out: list[tuple[PushedTag, str]] = []
            with self._client(cfg, ref.domain, credentials) as client:
                pusher = Pusher(
                    client,
                    self._stores.layers,
                    self._stores.distribution,
                    cfg.max_concurrent_uploads,
                    progress,
                    nondistributable=nondistributable_allowed(
                        registry_host(ref.domain), cfg.allow_nondistributable_artifacts
                    ),
                )
                for tagged in refs:
                    image = images.resolve(str(tagged))
                    pushed = pusher.push(tagged, image)
                    digest_ref = tagged.name_only().with_digest(pushed.digest)
                    if images.lookup_ref(digest_ref) is None:
                        images.add_reference(digest_ref, image.id)
                    progress(
                        ProgressEvent(
                            message="",
                            aux={"Tag": tagged.tag, "Digest": pushed.digest, "Size": pushed.size},
                        )
                    )
                    out.append((pushed, image.id))
            return out

        for pushed, _ in await run_with_progress(work, sink):
            self._events.emit(
                IMAGE_EVENT,
                "push",
                pushed.reference.familiar,
                {"name": pushed.reference.familiar_name},
            )

    async def login(self, credentials: Credentials) -> str:
        """``POST /auth``: check ``credentials`` against the registry of their server
        address; the identity token it handed out, or ``""``. Nothing is stored."""
        cfg = self._config()
        domain = login_domain(credentials.server_address)

        def work() -> str:
            with self._client(cfg, domain, credentials) as client:
                return client.login()

        return await asyncio.to_thread(work)

    async def inspect(self, ref: Reference, credentials: Credentials) -> DistributionInspect:
        """``GET /distribution/{name}/json``: what the registry has for ``ref`` (its
        descriptor, and the platforms it offers), without pulling it."""
        cfg = self._config()
        named = ref if (ref.tag or ref.digest) else ref.with_tag("latest")

        def work() -> DistributionInspect:
            clients = self._pull_clients(cfg, ref.domain, credentials)
            try:
                return _first_source(clients, partial(inspect_manifest, ref=named))[1]
            finally:
                for c in clients:
                    c.close()

        return await asyncio.to_thread(work)

    async def search(
        self, term: str, limit: int, filters: Mapping[str, Sequence[str]], credentials: Credentials
    ) -> list[dict[str, Any]]:
        """``GET /images/search``: the index of ``term``'s registry (Docker Hub's for a
        name without one), filtered as dockerd filters (``is-official``, ``is-automated``,
        ``stars``)."""
        cfg = self._config()
        check = search_filters(filters)
        domain, query = search_index(term)

        def work() -> list[dict[str, Any]]:
            with self._search_client(cfg, domain, credentials) as client:
                return client.search(query, limit)

        return [r for r in await asyncio.to_thread(work) if check(r)]

    def _search_client(self, cfg: Config, domain: str, credentials: Credentials) -> RegistryClient:
        if domain in HUB_DOMAINS and not os.environ.get(HUB_ENDPOINT_ENV):
            return RegistryClient(
                domain,
                endpoints=[Endpoint(scheme="https", host=HUB_INDEX, verify=True)],
                authenticator=Authenticator(credentials),
            )
        return self._client(cfg, domain, credentials)


def search_index(term: str) -> tuple[str, str]:
    """(registry domain, query) of a ``docker search`` term: a first part that looks like a
    host (``.``, ``:`` or ``localhost``) names the registry, as dockerd reads it."""
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "docker.io", term


def search_filters(filters: Mapping[str, Sequence[str]]) -> Callable[[Mapping[str, Any]], bool]:
    """dockerd's search filters, checked up front (400 for unknown ones and bad values)."""
    for key in filters:
        if key not in ("is-official", "is-automated", "stars"):
            raise InvalidParameter(f"invalid filter '{key}'")
    wanted: dict[str, bool] = {}
    for key in ("is-official", "is-automated"):
        for value in filters.get(key, ()):
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidParameter(f"invalid filter '{key}={value}'")
            wanted[key] = value.lower() in ("true", "1")
    stars = 0
    for value in filters.get("stars", ()):
        if not value.isdigit():
            raise InvalidParameter(f"invalid filter 'stars={value}'")
        stars = max(stars, int(value))

    def check(r: Mapping[str, Any]) -> bool:
        if "is-official" in wanted and bool(r.get("is_official")) != wanted["is-official"]:
            return False
        if "is-automated" in wanted and bool(r.get("is_automated")) != wanted["is-automated"]:
            return False
        return int(r.get("star_count") or 0) >= stars

    return check


def login_domain(server_address: str) -> str:
    """The registry a ``docker login`` server address names (scheme and path dropped;
    empty or Docker Hub's index address → ``docker.io``)."""
    text = server_address.strip()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    host = text.split("/", 1)[0].lower()
    if host in ("", "index.docker.io", "registry-1.docker.io", "docker.io"):
        return "docker.io"
    _check_login_host(server_address, host)
    return host


_HOST_RE = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9._-]*[a-z0-9])?)(:[0-9]{1,5})?")


def _check_login_host(server_address: str, host: str) -> None:
    """A server address Go's ``url.Parse`` (dockerd) refuses, or no host name at all, is a
    400 in dockerd's wording, before any connection is tried."""
    shown = server_address if "://" in server_address else "https://" + server_address
    prefix = f'unable to parse server address: parse "{shown}": '
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in server_address):
        raise InvalidParameter(prefix + "net/url: invalid control character in URL")
    if not _HOST_RE.fullmatch(host):
        raise InvalidParameter(prefix + f"invalid host name {host!r}")
