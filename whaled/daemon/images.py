"""Image use cases for the API: the blocking :class:`ImageService` run in worker threads.

What this layer adds to the service (which is synchronous and thread-safe):

- every call runs in a worker thread (``asyncio.to_thread``) so the event loop never blocks;
- progress reported in the worker thread reaches the event loop through
  :func:`run_with_progress` (an ``asyncio.Queue`` fed by ``call_soon_threadsafe``), thinned
  out by :class:`ProgressThrottle` so a 200 MB load does not send one message per tar block;
- image events raised in the worker thread are published on the (loop-only) event bus via
  :func:`image_event_hook`;
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
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

from whaled.archive.tarsafe import Readable
from whaled.errors import NotFound
from whaled.events import EventBus
from whaled.image.archive import LoadedImage, ProgressEvent, ProgressFn
from whaled.image.reference import Reference, parse_normalized_named
from whaled.image.service import (
    DiskUsage,
    EventHook,
    HistoryItem,
    ImageDetails,
    ImageEvent,
    ImageService,
    ImageSummary,
    PruneReport,
)
from whaled.image.store import DeleteRecord

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Minimum time between two byte-progress messages for the same item.
PROGRESS_INTERVAL_SECONDS = 0.1
#: A saved archive is handed to the API in batches of at least this many bytes.
SAVE_BATCH_BYTES = 1 << 20

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


def image_event_hook(
    loop: asyncio.AbstractEventLoop, bus: EventBus, service: ImageService | None = None
) -> EventHook:
    """An ``ImageService`` event hook that publishes on ``bus`` from any thread.

    dockerd's image events: ``Type`` image, ``Actor.ID`` the image ID, attributes the
    image's labels (when it still exists, so not for ``delete``) plus ``name``, the
    reference involved (or the ID).
    """

    def hook(event: ImageEvent) -> None:
        attributes: dict[str, str] = {}
        if service is not None:
            try:
                attributes.update(service.images.get(event.image_id).labels)
            except NotFound:
                pass
        attributes["name"] = event.name
        loop.call_soon_threadsafe(bus.emit, "image", event.action, event.image_id, attributes)

    return hook


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


class ImageCases:
    """The image use cases the API calls; ``service`` is shared with other subsystems."""

    def __init__(self, service: ImageService) -> None:
        self.service = service

    def count(self) -> int:
        return self.service.count()

    async def list_images(
        self, *, all: bool, filters: FilterArgs, shared_size: bool
    ) -> list[ImageSummary]:
        return await asyncio.to_thread(
            self.service.list_images, all=all, filters=filters, shared_size=shared_size
        )

    async def inspect(self, name: str) -> ImageDetails:
        return await asyncio.to_thread(self.service.inspect, name)

    async def history(self, name: str) -> list[HistoryItem]:
        return await asyncio.to_thread(self.service.history, name)

    async def tag(self, name: str, repo: str, tag: str | None) -> str:
        return await asyncio.to_thread(self.service.tag, name, repo, tag)

    async def remove(self, name: str, *, force: bool, prune: bool) -> list[DeleteRecord]:
        return await asyncio.to_thread(self.service.remove, name, force=force, prune=prune)

    async def prune(self, filters: FilterArgs) -> PruneReport:
        return await asyncio.to_thread(self.service.prune, filters)

    async def disk_usage(self) -> DiskUsage:
        return await asyncio.to_thread(self.service.disk_usage)

    async def load(self, body: Readable, *, quiet: bool, sink: ProgressSink) -> list[LoadedImage]:
        def work(progress: ProgressFn) -> list[LoadedImage]:
            return self.service.load(body, quiet=quiet, progress=progress)

        return await run_with_progress(work, sink)

    async def import_rootfs(
        self,
        body: Readable,
        *,
        repo: str | None,
        tag: str | None,
        changes: Sequence[str],
        message: str,
        platform: str | None,
    ) -> str:
        # dockerd sends no progress when the rootfs is the request body (fromSrc=-), so the
        # whole import happens before the first byte and every error keeps its status code.
        return await asyncio.to_thread(
            lambda: self.service.import_rootfs(
                body,
                repo=repo,
                tag=tag,
                changes=changes,
                message=message,
                source="-",
                platform=platform,
            )
        )

    async def save(self, names: Sequence[str]) -> SaveStream:
        """Resolves every name first (errors keep their status), then streams."""
        chunks = await asyncio.to_thread(self.service.save, list(names))
        return SaveStream(chunks)

    async def check_pushable(self, ref: Reference) -> None:
        """dockerd's checks before a push: the repository has local tags and, for a tagged
        reference, that tag is one of them (its wording, ``NotFound`` otherwise)."""
        rows = await self.list_images(all=True, filters={}, shared_size=False)
        problem = push_refusal(ref, [tag for row in rows for tag in row.repo_tags])
        if problem is not None:
            raise NotFound(problem)


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
