"""Pull one resolved image into the image stores: blocking, run in a worker thread.

dockerd downloads layers in parallel and unpacks them one after another once they have
arrived (moby#21814). Each overlay layer here is its own directory, so every missing layer is
decompressed and unpacked into its own temp dir *while it downloads*, up to
``max_concurrent`` at once; the chain is then published in order (:meth:`LayerStore.commit`
moves a dir into place, no copy). A broken transfer is resumed with a Range request
(:class:`ResumableBlob`), up to ``max_attempts`` tries per blob. Memory stays bounded: no
blob is ever held whole. Whatever fails leaves no layer, no image and no temp dir.

Progress goes out in dockerd's message shapes (``Pulling fs layer``, ``Waiting``,
``Downloading``, ``Verifying Checksum``, ``Download complete``, ``Extracting``, ``Pull
complete``, ``Already exists``), ids being the short hex of each layer's blob digest.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from whaled.distribution.client import RegistryClient, ResolvedImage, TransferInterrupted
from whaled.distribution.digest import Hasher
from whaled.distribution.errors import RegistryUnreachable
from whaled.distribution.manifest import Descriptor
from whaled.distribution.platforms import Platform, matches_config
from whaled.errors import InvalidParameter, Unavailable, WhaledError
from whaled.image.archive import ProgressEvent, ProgressFn
from whaled.image.digests import chain_ids, sha256_digest, short_id
from whaled.image.layers import LayerIngest, LayerStore
from whaled.image.reference import Reference
from whaled.image.store import ImageStore

log = logging.getLogger(__name__)

#: Seconds before retry ``n`` (1-based) of a blob: dockerd waits 5 s, then 10 s, ...
DEFAULT_BACKOFF_STEP = 5.0
MAX_BACKOFF = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PullLimits:
    """The settings of one pull, taken from the config snapshot once."""

    max_concurrent: int = 3
    max_attempts: int = 5
    backoff_step: float = DEFAULT_BACKOFF_STEP

    def backoff(self, retry: int) -> float:
        return min(self.backoff_step * retry, MAX_BACKOFF)


@dataclass(frozen=True, slots=True, kw_only=True)
class PulledImage:
    image_id: str
    reference: Reference  # what the tag/digest now points at (as pulled)
    digest: str  # the RepoDigest's digest (what the tag pointed to in the registry)
    new: bool  # anything changed locally (new image, or the tag moved)


class LayerClaims:
    """Which layers (by chain ID) a pull is fetching right now, across pulls: a second
    pull of the same layer waits for the first and then finds it stored, so one download
    serves both. Claims are taken in chain order (shared chains are shared prefixes, so
    two pulls never wait on each other in a circle)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._users: dict[str, int] = {}

    def acquire(self, chain: str) -> None:
        with self._guard:
            lock = self._locks.setdefault(chain, threading.Lock())
            self._users[chain] = self._users.get(chain, 0) + 1
        lock.acquire()

    def release(self, chain: str) -> None:
        with self._guard:
            lock = self._locks[chain]
            self._users[chain] -= 1
            if not self._users[chain]:
                del self._users[chain]
                del self._locks[chain]
        lock.release()


class ResumableBlob:
    """A blob stream (``read(n)``) that survives broken transfers: on
    :class:`TransferInterrupted` it reopens the blob where it broke off (Range), on an
    unreachable registry it reopens it from the last known position; at most
    ``limits.max_attempts`` tries in all, with back-off between them. The digest is checked
    by the underlying reader when the last byte arrives."""

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        desc: Descriptor,
        limits: PullLimits,
        *,
        on_retry: Callable[[int, float], None] = lambda n, wait: None,
        sleep: Callable[[float], None] = time.sleep,
        cancelled: threading.Event | None = None,
    ) -> None:
        self._client = client
        self._repository = repository
        self._desc = desc
        self._limits = limits
        self._on_retry = on_retry
        self._sleep = sleep
        self._cancelled = cancelled or threading.Event()
        self._reader: Any = None
        self._resume: tuple[int, Hasher | None] = (0, None)
        #: a foreign layer's URLs not yet found failing
        self._urls = list(desc.urls) if desc.foreign else []
        self.attempts = 0
        self.position = 0

    def _open(self) -> Any:
        """The blob from where it broke off: a foreign layer from its ``urls`` in turn (the
        next one when one fails), then from the registry, as dockerd does."""
        offset, hasher = self._resume
        self.attempts += 1
        while self._urls:
            try:
                return self._client.open_blob(
                    self._repository, self._desc, offset=offset, hasher=hasher, url=self._urls[0]
                )
            except WhaledError as e:
                if isinstance(e, TransferInterrupted):
                    raise
                log.info("foreign layer %s: %s: %s", self._desc.digest, self._urls[0], e)
                self._urls.pop(0)
        return self._client.open_blob(self._repository, self._desc, offset=offset, hasher=hasher)

    def read(self, n: int = -1, /) -> bytes:
        while True:
            if self._cancelled.is_set():
                raise Unavailable("pull cancelled")
            try:
                if self._reader is None:
                    self._reader = self._open()
                data: bytes = self._reader.read(n)
                self.position = self._reader.position
                return data
            except (Unavailable, RegistryUnreachable) as e:
                if isinstance(e, TransferInterrupted):
                    self._resume = (e.position, e.hasher)
                self._close_reader()
                if self.attempts >= self._limits.max_attempts:
                    raise
                wait = self._limits.backoff(self.attempts)
                log.info(
                    "blob %s: %s; retrying in %.1f s (attempt %d of %d)",
                    self._desc.digest,
                    e,
                    wait,
                    self.attempts + 1,
                    self._limits.max_attempts,
                )
                self._on_retry(self.attempts, wait)
                self._sleep(wait)

    def drain(self) -> None:
        """Read what the unpacker left (padding after the tar's end) so the digest is
        checked."""
        while self.read(1 << 20):
            pass

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def close(self) -> None:
        self._close_reader()


class _Counting:
    """Reports ``Downloading`` progress as the unpacker reads the blob."""

    def __init__(self, blob: ResumableBlob, report: Callable[[int], None]) -> None:
        self._blob = blob
        self._report = report

    def read(self, n: int = -1, /) -> bytes:
        data = self._blob.read(n)
        if data:
            self._report(self._blob.position)
        return data


def check_config(config: Any, diff_ids_count: int, wanted: Platform | None, ref: str) -> list[str]:
    """The config's ``rootfs.diff_ids``, after checking the config against the manifest
    (same number of layers) and the host (a Linux image; the platform asked for)."""
    if not isinstance(config, dict):
        raise InvalidParameter(f"invalid image config for {ref}")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidParameter(f"invalid image config for {ref}: no rootfs.diff_ids")
    if len(diff_ids) != diff_ids_count:
        raise InvalidParameter(
            f"invalid manifest for {ref}: {diff_ids_count} layers in the manifest, "
            f"{len(diff_ids)} diff IDs in the image config"
        )
    image_os = str(config.get("os") or "linux")
    if image_os != "linux":
        raise InvalidParameter(
            f'image operating system "{image_os}" cannot be used on this platform'
        )
    if wanted is not None:
        actual = Platform(
            os=image_os,
            architecture=str(config.get("architecture") or ""),
            variant=str(config.get("variant") or ""),
        )
        if not matches_config(actual, wanted):
            raise InvalidParameter(
                f"image with reference {ref} was found but does not match the specified "
                f"platform: wanted {wanted}, actual: {actual}"
            )
    return list(diff_ids)


class Puller:
    """One pull of one resolved image (see the module docstring)."""

    def __init__(
        self,
        client: RegistryClient,
        layers: LayerStore,
        images: ImageStore,
        limits: PullLimits,
        progress: ProgressFn,
        *,
        on_blob: Callable[[str, Descriptor, str], None] = lambda diff_id, desc, repository: None,
        claims: LayerClaims | None = None,
    ) -> None:
        self._claims = claims or LayerClaims()
        self._client = client
        self._layers = layers
        self._images = images
        self._limits = limits
        self._progress = progress
        self._on_blob = on_blob
        self._cancelled = threading.Event()

    def _say(self, message: str, id: str | None = None, **kw: Any) -> None:
        self._progress(ProgressEvent(message=message, id=id, **kw))

    def use(self, client: RegistryClient) -> None:
        """Fetch from ``client`` from now on (the source that resolved the next image)."""
        self._client = client

    def pull(self, resolved: ResolvedImage, wanted: Platform | None) -> PulledImage:
        ref = resolved.reference
        repo = ref.path
        self._say(f"Pulling from {repo}", id=ref.digest or ref.tag or "latest")
        config_raw = self._client.read_blob(ref, resolved.config)
        try:
            config = json.loads(config_raw)
        except ValueError:
            raise InvalidParameter(f"invalid image config for {ref.familiar}") from None
        diff_ids = check_config(
            config,
            len(resolved.layers),
            wanted if resolved.platform is None else None,
            ref.familiar,
        )
        image_id = sha256_digest(config_raw)
        existed = self._has_image(image_id)
        if existed:
            # as dockerd: the config is here, so are its layers; nothing to fetch
            stored_id = image_id
        else:
            stored_id = self._fetch_image(resolved, config_raw, diff_ids)
        moved = False
        if ref.tag is not None:
            moved = self._images.lookup_ref(ref) != stored_id
            self._images.add_reference(ref, stored_id, force=True)
        digest_ref = ref.name_only().with_digest(resolved.digest)
        if self._images.lookup_ref(digest_ref) is None:
            self._images.add_reference(digest_ref, stored_id)
        return PulledImage(
            image_id=stored_id, reference=ref, digest=resolved.digest, new=moved or not existed
        )

    def _fetch_image(
        self, resolved: ResolvedImage, config_raw: bytes, diff_ids: Sequence[str]
    ) -> str:
        """Fetch the missing layers, publish the chain, store the config: the image ID."""
        repo = resolved.reference.path
        chains = chain_ids(diff_ids)
        held: list[str] = []
        claimed: list[str] = []
        try:
            missing = self._pin_present(resolved.layers, chains, held)
            for i in missing:  # in chain order (see LayerClaims)
                self._claims.acquire(chains[i])
                claimed.append(chains[i])
            missing = self._made_meanwhile(resolved.layers, chains, missing, held)
            ingests = self._download(repo, resolved.layers, missing)
            try:
                self._publish(resolved.layers, diff_ids, chains, ingests, held)
            finally:
                for fut in ingests.values():
                    self._discard(fut)
            for desc, diff_id in zip(resolved.layers, diff_ids, strict=True):
                self._on_blob(diff_id, desc, resolved.reference.name)
            return self._images.create(config_raw).id
        finally:
            for chain in claimed:
                self._claims.release(chain)
            for chain in held:
                self._layers.release(chain)

    def _made_meanwhile(
        self,
        descs: Sequence[Descriptor],
        chains: Sequence[str],
        missing: Sequence[int],
        held: list[str],
    ) -> list[int]:
        """Of the missing layers, those another pull stored while this one waited for its
        claims are pinned (``Already exists``); the others are still to fetch."""
        still: list[int] = []
        for i in missing:
            try:
                self._layers.acquire(chains[i])
            except Exception:
                still.append(i)
                continue
            held.append(chains[i])
            self._say("Already exists", id=short_id(descs[i].digest))
        return still

    def _has_image(self, image_id: str) -> bool:
        try:
            self._images.get(image_id)
        except Exception:
            return False
        return True

    def _pin_present(
        self, descs: Sequence[Descriptor], chains: Sequence[str], held: list[str]
    ) -> list[int]:
        """Pin the layers already here (``Already exists``); the indexes of the others."""
        missing: list[int] = []
        for i, (desc, chain) in enumerate(zip(descs, chains, strict=True)):
            lid = short_id(desc.digest)
            if self._layers.exists(chain):
                try:
                    self._layers.acquire(chain)
                except Exception:  # removed meanwhile: fetch it
                    missing.append(i)
                    continue
                held.append(chain)
                self._say("Already exists", id=lid)
            else:
                missing.append(i)
        for i in missing:
            self._say("Pulling fs layer", id=short_id(descs[i].digest))
        for i in missing[self._limits.max_concurrent :]:
            self._say("Waiting", id=short_id(descs[i].digest))
        return missing

    def _download(
        self, repo: str, descs: Sequence[Descriptor], missing: Sequence[int]
    ) -> dict[int, Future[LayerIngest]]:
        if not missing:
            return {}
        pool = ThreadPoolExecutor(
            max_workers=max(1, self._limits.max_concurrent), thread_name_prefix="pull"
        )
        try:
            return {i: pool.submit(self._fetch_layer, repo, descs[i]) for i in missing}
        finally:
            pool.shutdown(wait=False)

    def _fetch_layer(self, repo: str, desc: Descriptor) -> LayerIngest:
        lid = short_id(desc.digest)
        total = desc.size

        def retry(n: int, wait: float) -> None:
            self._say(
                f"Retrying in {max(1, round(wait))} second{'s' if round(wait) != 1 else ''}", id=lid
            )

        blob = ResumableBlob(
            self._client, repo, desc, self._limits, on_retry=retry, cancelled=self._cancelled
        )
        try:
            counting = _Counting(
                blob, lambda n: self._say("Downloading", id=lid, current=n, total=total)
            )
            ingest = self._layers.ingest(counting)
            try:
                blob.drain()
            except BaseException:
                self._layers.discard(ingest)
                raise
        finally:
            blob.close()
        self._say("Verifying Checksum", id=lid)
        self._say("Download complete", id=lid)
        self._say("Extracting", id=lid, current=ingest.tar_size, total=ingest.tar_size)
        return ingest

    def _publish(
        self,
        descs: Sequence[Descriptor],
        diff_ids: Sequence[str],
        chains: Sequence[str],
        ingests: dict[int, Future[LayerIngest]],
        held: list[str],
    ) -> None:
        """Commit the fetched layers in chain order as each one is ready."""
        parent: str | None = None
        for i, chain in enumerate(chains):
            fut = ingests.get(i)
            if fut is not None:
                try:
                    ingest = fut.result()
                except BaseException:
                    self._cancelled.set()
                    raise
                layer = self._layers.commit(ingest, parent, expected_diff_id=diff_ids[i])
                held.append(layer.chain_id)
                self._say("Pull complete", id=short_id(descs[i].digest))
            parent = chain

    def _discard(self, fut: Future[LayerIngest]) -> None:
        """Drop a fetched layer's temp dir (waiting for a download still running)."""
        self._cancelled.set()
        try:
            ingest = fut.result()
        except BaseException:
            return
        self._layers.discard(ingest)
