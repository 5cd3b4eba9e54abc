"""Image use cases: what the API calls for images, and the order in which they touch the
image stores.

``ImageService`` receives its collaborators in its constructor (built in ``whaled.wiring``):
the image stores (``whaled.image.stores.ImageStores``), the event bus and ``usage``, the
containers using an image (for delete conflicts, prune and ``system df``). It decides and
orchestrates; the stores, the archive streaming and the read-side queries
(``whaled.image.views``) are blocking and run in worker threads (``asyncio.to_thread``), so
the event loop never blocks. Image events are emitted on the loop once the work is done.

- progress reported in the worker thread reaches the event loop through
  :func:`run_with_progress` (an ``asyncio.Queue`` fed by ``call_soon_threadsafe``), thinned
  out by :class:`ProgressThrottle` so a 200 MB load does not send one message per tar block;
- ``save`` validates first (status code still free) and then hands out an async iterator
  that reads the archive in batches in a worker thread.

No aiohttp here: request bodies arrive as any blocking ``read(n)`` object (the API layer
provides one over the HTTP body).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, BinaryIO, TypeVar

from whaled.archive.tarsafe import Readable
from whaled.errors import Conflict, InvalidParameter, NotFound
from whaled.events import EventBus
from whaled.image import archive, views
from whaled.image import filters as flt
from whaled.image.archive import LoadedImage, ProgressEvent, ProgressFn, SaveItem
from whaled.image.changes import apply_changes
from whaled.image.configs import commit_config, parse_platform, target_reference
from whaled.image.digests import short_id
from whaled.image.filters import Filters
from whaled.image.reference import Reference, parse_normalized_named
from whaled.image.store import DeleteRecord, Image, UsageHook, plan_delete
from whaled.image.stores import ImageStores
from whaled.image.views import DiskUsage, HistoryItem, ImageDetails, ImageSummary, PruneReport

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Minimum time between two byte-progress messages for the same item.
PROGRESS_INTERVAL_SECONDS = 0.1
#: A saved archive is handed to the API in batches of at least this many bytes.
SAVE_BATCH_BYTES = 1 << 20
PRUNE_FILTERS = ("dangling", "label", "label!", "until")
IMAGE_EVENT = "image"

ProgressSink = Callable[[ProgressEvent], Awaitable[None]]
FilterArgs = Mapping[str, Sequence[str]]


class ProgressThrottle:
    """Decides which progress events are worth sending (pure apart from the clock).

    Text messages (``stream``) and status lines without byte counts always pass; byte
    progress for one ``(id, message)`` passes at most once per ``interval``, except the
    first and the last one (``current >= total``), which always pass.
    """

    def __init__(
        self,
        interval: float = PROGRESS_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str | None, str], float] = {}

    def admit(self, event: ProgressEvent) -> bool:
        if event.stream or event.current is None:
            return True
        key = (event.id, event.message)
        now = self._clock()
        done = event.total is not None and event.current >= event.total
        last = self._last.get(key)
        if done or last is None or now - last >= self._interval:
            self._last[key] = now
            return True
        return False


async def run_with_progress(fn: Callable[[ProgressFn], T], sink: ProgressSink) -> T:
    """Run ``fn(progress)`` in a worker thread; every admitted progress event it reports is
    awaited through ``sink`` on the event loop, in order, before the result is returned.

    If ``sink`` fails (the client went away) the error propagates at once; the worker keeps
    running until its own I/O fails (the caller closes the body it reads from).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[ProgressEvent] = asyncio.Queue()
    throttle = ProgressThrottle()

    def report(event: ProgressEvent) -> None:  # worker thread
        if throttle.admit(event):
            loop.call_soon_threadsafe(queue.put_nowait, event)

    work = asyncio.ensure_future(asyncio.to_thread(fn, report))
    try:
        while not work.done():
            getter = asyncio.ensure_future(queue.get())
            try:
                await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                await sink(getter.result())
        # Events reported before the worker returned were queued before its result.
        while not queue.empty():
            await sink(queue.get_nowait())
    except BaseException:
        if not work.done():
            work.add_done_callback(_consume_result)
        raise
    return work.result()


def _consume_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("abandoned image operation failed: %s", task.exception())


class SaveStream:
    """The bytes of a saved archive, read in batches in a worker thread."""

    def __init__(self, chunks: Iterator[bytes], batch_bytes: int = SAVE_BATCH_BYTES) -> None:
        self._chunks = chunks
        self._batch = batch_bytes
        self._done = False

    def _next_batch(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        for chunk in self._chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= self._batch:
                break
        else:
            self._done = True
        return b"".join(parts)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while not self._done:
            data = await asyncio.to_thread(self._next_batch)
            if data:
                yield data

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if callable(close):
            close()


class ImageService:
    """The image use cases. Queries run in a worker thread; changes emit dockerd's image
    events (``Type`` image, ``Actor.ID`` the image ID, attributes the image's labels when it
    still exists plus ``name``, the reference involved or the ID) once they are done."""

    def __init__(self, *, stores: ImageStores, events: EventBus, usage: UsageHook) -> None:
        self.stores = stores
        self._events = events
        self._usage = usage

    def _emit(self, action: str, image_id: str, name: str | None = None) -> None:
        attributes: dict[str, str] = {}
        try:
            attributes.update(self.stores.images.get(image_id).labels)
        except NotFound:
            pass
        attributes["name"] = name or image_id
        self._events.emit(IMAGE_EVENT, action, image_id, attributes)

    # ------------------------------------------------------------------ queries

    def count(self) -> int:
        """Number of images (``/info`` ``Images``); the image store keeps them in memory."""
        return len(self.stores.images.images())

    async def list_images(
        self, *, all: bool = False, filters: FilterArgs | None = None, shared_size: bool = False
    ) -> list[ImageSummary]:
        return await asyncio.to_thread(
            views.list_images, self.stores, all=all, filters=filters, shared_size=shared_size
        )

    async def inspect(self, name: str) -> ImageDetails:
        return await asyncio.to_thread(views.inspect_image, self.stores, name)

    async def history(self, name: str) -> list[HistoryItem]:
        return await asyncio.to_thread(views.image_history, self.stores, name)

    async def disk_usage(self) -> DiskUsage:
        return await asyncio.to_thread(views.disk_usage, self.stores, self._usage)

    async def check_pushable(self, ref: Reference) -> None:
        """dockerd's checks before a push: the repository has local tags and, for a tagged
        reference, that tag is one of them (its wording, ``NotFound`` otherwise)."""
        rows = await self.list_images(all=True)
        problem = push_refusal(ref, [tag for row in rows for tag in row.repo_tags])
        if problem is not None:
            raise NotFound(problem)

    # ------------------------------------------------------------------ tag / delete / prune

    async def tag(self, name: str, repo: str, tag: str | None = None) -> str:
        """``POST /images/{name}/tag``; returns the familiar new reference."""
        image_id, familiar = await asyncio.to_thread(self._tag, name, repo, tag)
        self._emit("tag", image_id, familiar)
        return familiar

    def _tag(self, name: str, repo: str, tag: str | None) -> tuple[str, str]:
        image = self.stores.resolve(name)
        new = parse_normalized_named(repo)
        if tag:
            if new.digest is not None:
                raise InvalidParameter("refusing to create a tag with a digest reference")
            new = new.with_tag(tag)
        if new.digest is not None:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        new = new.tag_name_only()
        self.stores.images.add_reference(new, image.id, force=True)
        return image.id, new.familiar

    async def remove(
        self, name: str, *, force: bool = False, prune: bool = True
    ) -> list[DeleteRecord]:
        """``DELETE /images/{name}``: dockerd's untag-vs-delete rules (``prune`` = not
        ``noprune``). Conflicts raise ``Conflict`` with dockerd's wording."""
        image_id, records, deleted_images = await asyncio.to_thread(
            self._remove, name, force, prune
        )
        for rec in records:
            if rec.untagged is not None:
                self._emit("untag", image_id)
            elif rec.deleted is not None and rec.deleted in deleted_images:
                self._emit("delete", rec.deleted)
        return records

    def _remove(
        self, name: str, force: bool, prune: bool
    ) -> tuple[str, list[DeleteRecord], set[str]]:
        image = self.stores.resolve(name)
        state = self.stores.images.delete_state(self._usage)
        actions = plan_delete(state, name, image.id, force=force, prune=prune)
        records = self.stores.images.apply(actions)
        deleted_images = {getattr(a, "image_id", None) for a in actions}
        return image.id, records, {i for i in deleted_images if isinstance(i, str)}

    async def prune(self, filters: FilterArgs | None = None) -> PruneReport:
        """``POST /images/prune``: dangling only unless ``dangling=false``. An image that
        cannot be deleted is skipped (logged), like dockerd."""
        candidates, layer_sizes = await asyncio.to_thread(self._prune_candidates, filters or {})
        deleted: list[DeleteRecord] = []
        for image_id, names in candidates:
            try:
                for name in names:
                    deleted += await self.remove(name, force=False, prune=True)
            except (Conflict, InvalidParameter) as e:
                log.debug("prune: skipping %s: %s", short_id(image_id), e)
            except Exception as e:  # keep pruning the others, like dockerd
                log.warning("prune: failed to delete %s: %s", short_id(image_id), e)
        reclaimed = sum(layer_sizes.get(r.deleted, 0) for r in deleted if r.deleted)
        return PruneReport(deleted=tuple(deleted), space_reclaimed=reclaimed)

    def _prune_candidates(self, f: Filters) -> tuple[list[tuple[str, list[str]]], dict[str, int]]:
        """The images prune tries to delete, each with the names to remove it by (its
        references, or its ID when it has none), and the size of every layer now."""
        flt.validate(f, PRUNE_FILTERS)
        dangling_only = flt.get_bool(f, "dangling") is not False
        until = None
        if f.get("until"):
            until = flt.parse_timestamp(next(iter(f["until"])), time.time())
        all_images = self.stores.images.images()
        children = {i.parent for i in all_images if i.parent is not None}
        layer_sizes = {layer.chain_id: layer.size for layer in self.stores.layers.all()}
        candidates: list[tuple[str, list[str]]] = []
        for image in all_images:
            if dangling_only and image.id in children:
                continue
            references = self.stores.images.references(image.id)
            if not references and image.id in children:
                continue
            if until is not None and image.created_ts > until:
                continue
            if not flt.match_labels(f, image.labels):
                continue
            if references:
                if dangling_only and any(r.tag is not None for r in references):
                    continue
                candidates.append((image.id, [str(r) for r in references]))
            else:
                candidates.append((image.id, [image.id.split(":", 1)[1]]))
        return candidates, layer_sizes

    # ------------------------------------------------------------------ load / save / import

    async def load(
        self, body: Readable | BinaryIO, *, quiet: bool, sink: ProgressSink | None = None
    ) -> list[LoadedImage]:
        """``POST /images/load``: docker-archive (classic or docker 25+) or OCI layout."""

        def work(progress: ProgressFn) -> list[LoadedImage]:
            return self.stores.loader.load(body, progress=progress, quiet=quiet)

        if sink is None:
            loaded = await asyncio.to_thread(work, _no_progress)
        else:
            loaded = await run_with_progress(work, sink)
        for item in loaded:
            self._emit("load", item.image_id, item.tags[0] if item.tags else item.image_id)
        return loaded

    async def save(self, names: Sequence[str]) -> SaveStream:
        """``GET /images/get`` / ``/images/{name}/get``: resolves every name first (errors
        keep their status), then streams."""
        items = await asyncio.to_thread(self._plan_save, list(names))
        for item in items:
            self._emit("save", item.image.id, item.tags[0].familiar if item.tags else item.image.id)
        return SaveStream(archive.save_stream(self.stores.layers, items))

    def _plan_save(self, names: Sequence[str]) -> list[SaveItem]:
        items = archive.plan_save(self.stores.images, names)
        for item in items:  # fail before the first byte if a layer tar is missing
            for layer in self.stores.layers.chain(item.image.top_chain):
                self.stores.layers.layer_tar_size(layer.chain_id)
        return items

    async def import_rootfs(
        self,
        body: Readable | BinaryIO,
        *,
        repo: str | None = None,
        tag: str | None = None,
        changes: Sequence[str] = (),
        message: str = "",
        platform: str | None = None,
    ) -> str:
        """``POST /images/create?fromSrc=-``: one layer from a rootfs tar; returns the ID.

        dockerd sends no progress when the rootfs is the request body, so the whole import
        happens before the first byte and every error keeps its status code."""
        image_id = await asyncio.to_thread(
            self._import, body, repo, tag, changes, message, platform
        )
        self._emit("import", image_id)
        return image_id

    def _import(
        self,
        body: Readable | BinaryIO,
        repo: str | None,
        tag: str | None,
        changes: Sequence[str],
        message: str,
        platform: str | None,
    ) -> str:
        target = target_reference(repo, tag)
        apply_changes(None, changes)  # validate before reading the body
        os_name, arch, variant = parse_platform(platform)
        layer = self.stores.layers.register(body, None)
        try:
            raw = archive.import_config(
                layer.diff_id,
                changes=changes,
                message=message,
                source="-",
                os_name=os_name,
                architecture=arch,
                variant=variant,
            )
            image = self.stores.images.create(raw)
        finally:
            self.stores.layers.release(layer.chain_id)
        if target is not None:
            self.stores.images.add_reference(target, image.id, force=True)
        return image.id

    async def add_layer(
        self,
        parent_image: str | None,
        body: Readable,
        *,
        config: Mapping[str, Any],
        container_config: Mapping[str, Any],
        created_by: str,
    ) -> str:
        """A new image: ``parent_image`` (None: nothing) with the tar ``body`` as one layer
        more (a build's COPY onto ``scratch``)."""

        def work() -> str:
            images, layers = self.stores.images, self.stores.layers
            parent = images.get(parent_image) if parent_image else None
            layer = layers.register(body, parent.top_chain if parent else None)
            try:
                return self._build_step_image(
                    parent, layer.diff_id, config, container_config, created_by
                )
            finally:
                layers.release(layer.chain_id)

        return await asyncio.to_thread(work)

    async def derive(
        self,
        parent_image: str | None,
        *,
        config: Mapping[str, Any],
        container_config: Mapping[str, Any],
        created_by: str,
    ) -> str:
        """A new image with ``parent_image``'s layers and ``config``, and one history entry
        more (``empty_layer``): a build step that changes only the config."""

        def work() -> str:
            parent = self.stores.images.get(parent_image) if parent_image else None
            return self._build_step_image(parent, "", config, container_config, created_by)

        return await asyncio.to_thread(work)

    def _build_step_image(
        self,
        parent: Image | None,
        layer_diff_id: str,
        config: Mapping[str, Any],
        container_config: Mapping[str, Any],
        created_by: str,
    ) -> str:
        """Blocking: the image of a build step (``layer_diff_id`` "" for none)."""
        host_os, host_arch, _ = archive.host_platform()
        raw = commit_config(
            container_id="",
            parent_config=parent.config if parent else None,
            parent_diff_ids=parent.diff_ids if parent else (),
            container_config=container_config,
            new_config=config,
            layer_diff_id=layer_diff_id,
            created=flt.format_rfc3339_nano(time.time()),
            author="",
            comment="",
            host_os=host_os,
            host_arch=host_arch,
            created_by=created_by,
        )
        return self.stores.images.create(raw, parent=parent.id if parent else None).id

    async def commit(
        self,
        container_id: str,
        *,
        parent_image: str | None,
        container_config: Mapping[str, Any] | None,
        changes: Sequence[str] = (),
        author: str = "",
        comment: str = "",
        repo: str | None = None,
        tag: str | None = None,
        exclude: Collection[str] = (),
        image_config: Mapping[str, Any] | None = None,
        created_by: str | None = None,
    ) -> str:
        """``POST /commit``: the container's read-write layer diff becomes a new image.

        ``container_config`` is the container's Config (becomes ``container_config`` and,
        with ``changes`` applied, ``config``). Pausing is the caller's job. The builder
        gives the new image's config (``image_config``) and history text (``created_by``)
        itself.
        """

        def work() -> str:
            target = target_reference(repo, tag)
            new_config = (
                dict(image_config)
                if image_config is not None
                else apply_changes(container_config, changes)
            )
            images, layers = self.stores.images, self.stores.layers
            parent = images.get(parent_image) if parent_image else None
            rw = layers.rw.get(container_id)
            if rw.parent != (parent.top_chain if parent else None):
                raise Conflict("the container's read-write layer does not sit on its image")
            layer = layers.register(IterReader(layers.rw.diff(container_id, exclude)), rw.parent)
            try:
                host_os, host_arch, _ = archive.host_platform()
                raw = commit_config(
                    container_id=container_id,
                    parent_config=parent.config if parent else None,
                    parent_diff_ids=parent.diff_ids if parent else (),
                    container_config=container_config,
                    new_config=new_config,
                    layer_diff_id=layer.diff_id,
                    created=flt.format_rfc3339_nano(time.time()),
                    author=author,
                    comment=comment,
                    host_os=host_os,
                    host_arch=host_arch,
                    created_by=created_by,
                )
                image = images.create(raw, parent=parent.id if parent else None)
            finally:
                layers.release(layer.chain_id)
            if target is not None:
                images.add_reference(target, image.id, force=True)
            return image.id

        image_id = await asyncio.to_thread(work)
        self._emit("commit", image_id)
        return image_id


def _no_progress(_: ProgressEvent) -> None:
    pass


class IterReader:
    """A ``read(n)`` file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def push_refusal(ref: Reference, local_tags: Iterable[str]) -> str | None:
    """Why ``ref`` cannot be pushed given the daemon's tags (familiar strings), or None."""
    tags = {
        tagged
        for tagged in (parse_normalized_named(t) for t in local_tags)
        if tagged.name == ref.name
    }
    if not tags:
        return f"An image does not exist locally with the tag: {ref.familiar_name}"
    if ref.tag is not None and ref not in tags:
        return f"tag does not exist: {ref.familiar}"
    return None
