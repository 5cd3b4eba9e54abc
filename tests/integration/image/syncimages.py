"""``SyncImages``: the image use cases driven from synchronous integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from whaled.daemon.images import ImageService
from whaled.events import Event, EventBus
from whaled.image.archive import LoadedImage, ProgressEvent
from whaled.image.store import ImageUser, UsageHook
from whaled.image.stores import open_image_stores


class SyncImages:
    """Drives the async ``whaled.daemon.images.ImageService`` from these synchronous tests:
    each use case runs on an event loop of its own (``asyncio.run``); the image stores are
    at hand as ``layers``, ``images`` and ``resolve``; image events are read back from the
    bus (``events()``)."""

    def __init__(self, data_root: str) -> None:
        self.bus = EventBus()
        self.stores = open_image_stores(data_root)
        self.service = ImageService(stores=self.stores, events=self.bus, usage=self._users)
        self.layers = self.stores.layers
        self.images = self.stores.images
        self.resolve = self.stores.resolve
        self.count = self.service.count
        self._usage: UsageHook | None = None

    def _users(self, image_id: str) -> Sequence[ImageUser]:
        return self._usage(image_id) if self._usage is not None else ()

    def set_usage_hook(self, usage: UsageHook | None) -> None:
        self._usage = usage

    def events(self) -> list[Event]:
        return self.bus.history()

    def load(
        self,
        body: Any,
        *,
        quiet: bool = False,
        progress: Callable[[ProgressEvent], None] | None = None,
    ) -> list[LoadedImage]:
        async def sink(event: ProgressEvent) -> None:
            assert progress is not None
            progress(event)

        return asyncio.run(
            self.service.load(body, quiet=quiet, sink=sink if progress is not None else None)
        )

    def save(self, names: list[str]) -> Iterator[bytes]:
        async def collect() -> list[bytes]:
            return [chunk async for chunk in await self.service.save(names)]

        return iter(asyncio.run(collect()))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.service, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(method(*args, **kwargs))

        return call
