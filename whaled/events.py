"""In-process event bus: what ``GET /events`` streams and ``/info`` counts.

Producers call :meth:`EventBus.publish` (or :meth:`EventBus.emit`) synchronously from the
event loop thread. Publishing never blocks and never raises because of a subscriber: every
subscriber has a bounded queue and an event that does not fit is dropped *for that subscriber
only* (its ``dropped`` counter says how many), exactly as dockerd drops events for slow
listeners. The bus also keeps the last :data:`HISTORY_SIZE` events (dockerd keeps 256) so a
client asking for ``since`` gets the recent past replayed.

Threading: the bus is not thread-safe. Every method must be called on the thread that runs
the event loop; that is also what makes :meth:`EventBus.subscribe_with_history` atomic (no
``await`` separates the snapshot from the registration, so no event can fall in between).

:func:`event_matches` implements dockerd's ``/events`` filter semantics over any object
shaped like :class:`EventFilter` (``whaled.api.filters.Filters`` is one; this module sits
below ``whaled.api`` and must not import it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Final, Protocol, final

__all__ = [
    "EVENT_FILTER_KEYS",
    "HISTORY_SIZE",
    "Event",
    "EventBus",
    "EventFilter",
    "Subscription",
    "event_matches",
    "familiar_image_name",
]

_log = logging.getLogger(__name__)

#: How many past events the bus keeps for ``since`` queries (dockerd: 256).
HISTORY_SIZE: Final = 256

#: Filter keys ``GET /events`` accepts.
EVENT_FILTER_KEYS: Final = frozenset(
    {
        "config",
        "container",
        "daemon",
        "event",
        "image",
        "label",
        "network",
        "node",
        "plugin",
        "scope",
        "secret",
        "service",
        "type",
        "volume",
    }
)

_NS_PER_SECOND: Final = 1_000_000_000

Clock = Callable[[], int]
"""Returns the current unix time in nanoseconds."""

Predicate = Callable[["Event"], bool]


def _frozen_attributes(attributes: Mapping[str, str]) -> Mapping[str, str]:
    # A private sorted copy behind a read-only proxy: the caller's dict may change later
    # without affecting the event, and nobody can mutate it through the event. Sorted
    # because Go encodes map keys sorted, so the wire output matches dockerd byte for byte.
    return MappingProxyType(dict(sorted(attributes.items())))


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One engine event, immutable.

    ``attributes`` is stored as a read-only mapping (a sorted private copy of what was
    passed); it takes part in equality but not in hashing.
    """

    type: str
    action: str
    actor_id: str
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    scope: str = "local"
    time_nano: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", _frozen_attributes(self.attributes))

    @property
    def time_seconds(self) -> int:
        """Unix time in whole seconds (floor), dockerd's ``time`` field."""
        return self.time_nano // _NS_PER_SECOND

    def to_json(self, *, legacy_fields: bool = True) -> dict[str, object]:
        """The event as dockerd writes it on ``GET /events``.

        With ``legacy_fields`` (what dockerd sends to clients of API < 1.52) container and
        image events also carry the deprecated ``status``/``id``/``from`` fields; like Go's
        ``omitempty``, an empty one is left out. Key order follows dockerd's struct.
        """
        out: dict[str, object] = {}
        if legacy_fields and self.type in ("container", "image"):
            if self.action:
                out["status"] = self.action
            if self.actor_id:
                out["id"] = self.actor_id
            if self.type == "container":
                image = self.attributes.get("image", "")
                if image:
                    out["from"] = image
        out["Type"] = self.type
        out["Action"] = self.action
        out["Actor"] = {"ID": self.actor_id, "Attributes": dict(self.attributes)}
        out["scope"] = self.scope
        out["time"] = self.time_seconds
        out["timeNano"] = self.time_nano
        return out


class _Closed:
    """Queue marker that wakes a waiting reader after its subscription was closed."""


_CLOSED: Final = _Closed()


@final
class Subscription:
    """One listener's view of the bus: a bounded queue of events.

    Use it as an async iterator (``async for event in sub``) or call :meth:`get`. Iteration
    ends once the subscription is closed (by :meth:`close` or :meth:`EventBus.close`) and the
    events already queued have been handed out. It is also a context manager that closes it.

    Mutable state: ``dropped`` (events that did not fit in the queue) and the closed flag.
    """

    __slots__ = (
        "_bus",
        "_closed",
        "_marker_queued",
        "_predicate",
        "_queue",
        "dropped",
        "max_queue",
    )

    def __init__(self, bus: EventBus, max_queue: int, predicate: Predicate | None) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        self._bus = bus
        self._predicate = predicate
        self._queue: asyncio.Queue[Event | _Closed] = asyncio.Queue(maxsize=max_queue)
        self._closed = False
        self._marker_queued = False
        self.max_queue = max_queue
        self.dropped = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def pending(self) -> int:
        """Number of events queued and not yet read."""
        # Once queued, the close marker stays (a reader that takes it puts it back).
        return self._queue.qsize() - (1 if self._marker_queued else 0)

    def _wants(self, event: Event) -> bool:
        if self._predicate is None:
            return True
        try:
            return self._predicate(event)
        except Exception:
            _log.exception("event subscription predicate failed; event not delivered")
            return False

    def _offer(self, event: Event) -> None:
        """Queue ``event`` if wanted and there is room; never blocks, never raises."""
        if self._closed or not self._wants(event):
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def get(self) -> Event | None:
        """Wait for the next event; ``None`` once closed and drained."""
        if self._closed and self._queue.empty():
            return None
        item = await self._queue.get()
        if isinstance(item, _Closed):
            # Pass the marker on so any other reader waiting on this queue wakes too.
            self._queue.put_nowait(item)
            return None
        return item

    def get_nowait(self) -> Event | None:
        """The next queued event, or ``None`` when nothing is queued (or closed)."""
        try:
            item = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if isinstance(item, _Closed):
            self._queue.put_nowait(item)
            return None
        return item

    def close(self) -> None:
        """Stop receiving events and wake a waiting reader. Idempotent.

        Events already queued are still handed out before iteration ends.
        """
        if self._closed:
            return
        self._closed = True
        self._bus._discard(self)
        # A reader can only be waiting when the queue is empty, so there is always room for
        # the marker then; when the queue is full, readers find ``_closed`` after draining.
        try:
            self._queue.put_nowait(_CLOSED)
        except asyncio.QueueFull:
            return
        self._marker_queued = True

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@final
class EventBus:
    """Fan-out of engine events to bounded subscriber queues, plus a short history."""

    __slots__ = ("_clock", "_closed", "_history", "_subscribers")

    def __init__(self, *, clock: Clock = time.time_ns, history_size: int = HISTORY_SIZE) -> None:
        self._clock = clock
        self._history: deque[Event] = deque(maxlen=history_size)
        # dict as an insertion-ordered set: delivery order is subscription order.
        self._subscribers: dict[Subscription, None] = {}
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        """Number of open subscriptions (``/info`` NEventsListener)."""
        return len(self._subscribers)

    @property
    def closed(self) -> bool:
        return self._closed

    def now_nano(self) -> int:
        """The bus clock: unix time in nanoseconds."""
        return self._clock()

    def publish(self, event: Event) -> None:
        """Record ``event`` and hand it to every subscriber that wants it and has room.

        Synchronous; never blocks and never raises because of a subscriber. After
        :meth:`close` events are still recorded in the history but nobody receives them.
        """
        self._history.append(event)
        for sub in tuple(self._subscribers):
            sub._offer(event)

    def emit(
        self,
        type: str,
        action: str,
        actor_id: str,
        attributes: Mapping[str, str] | None = None,
        *,
        scope: str = "local",
    ) -> Event:
        """Stamp an event with the bus clock, publish it and return it."""
        event = Event(
            type=type,
            action=action,
            actor_id=actor_id,
            attributes=attributes if attributes is not None else {},
            scope=scope,
            time_nano=self._clock(),
        )
        self.publish(event)
        return event

    def history(
        self,
        since_nano: int | None = None,
        until_nano: int | None = None,
        predicate: Predicate | None = None,
    ) -> list[Event]:
        """Buffered events with ``since_nano <= time_nano <= until_nano``, oldest first.

        ``None`` leaves that end open. Bounds are inclusive, as in dockerd.
        """
        return [
            ev
            for ev in self._history
            if (since_nano is None or ev.time_nano >= since_nano)
            and (until_nano is None or ev.time_nano <= until_nano)
            and (predicate is None or predicate(ev))
        ]

    def subscribe(
        self, max_queue: int = 1024, *, predicate: Predicate | None = None
    ) -> Subscription:
        """A new subscription receiving every later event ``predicate`` accepts.

        Filtering with ``predicate`` here (rather than after ``get``) keeps events the
        listener does not want from filling its queue. A subscription made after
        :meth:`close` is already closed.
        """
        sub = Subscription(self, max_queue, predicate)
        if self._closed:
            sub.close()
        else:
            self._subscribers[sub] = None
        return sub

    def subscribe_with_history(
        self,
        since_nano: int | None = None,
        until_nano: int | None = None,
        max_queue: int = 1024,
        *,
        predicate: Predicate | None = None,
    ) -> tuple[list[Event], Subscription]:
        """Atomically take :meth:`history` and subscribe.

        Every event is either in the returned list or delivered to the subscription,
        never both and never neither (barring drops for a full queue).
        """
        past = self.history(since_nano, until_nano, predicate)
        return past, self.subscribe(max_queue, predicate=predicate)

    def close(self) -> None:
        """Close every subscription (their readers drain what is queued, then stop)."""
        self._closed = True
        for sub in tuple(self._subscribers):
            sub.close()

    def _discard(self, sub: Subscription) -> None:
        self._subscribers.pop(sub, None)


class EventFilter(Protocol):
    """What :func:`event_matches` needs from parsed filters (``whaled.api.filters``)."""

    def get(self, key: str) -> tuple[str, ...]: ...

    def contains(self, key: str) -> bool: ...

    def exact_match(self, key: str, value: str) -> bool: ...

    def fuzzy_match(self, key: str, value: str) -> bool: ...

    def match_kv(self, key: str, mapping: Mapping[str, str]) -> bool: ...


# Keys matched by prefix against the actor ID or its "name" attribute, whatever the
# event's type (dockerd's fuzzyMatchName): `container=abc` therefore keeps only events
# whose actor is that container.
_NAME_KEYS: Final = (
    "config",
    "container",
    "daemon",
    "network",
    "node",
    "plugin",
    "secret",
    "service",
    "volume",
)


def _match_action(event: Event, filters: EventFilter) -> bool:
    wanted = filters.get("event")
    if not wanted:
        return True
    action = event.action
    # "health_status: healthy", "exec_start: sh -c ..." match a filter on the part before
    # the colon as well as on the whole action.
    head = action.split(":", 1)[0].strip()
    return any(value == action or value == head for value in wanted)


def _match_name(event: Event, filters: EventFilter, key: str) -> bool:
    if not filters.get(key):
        return True
    return filters.fuzzy_match(key, event.actor_id) or filters.fuzzy_match(
        key, event.attributes.get("name", "")
    )


def familiar_image_name(ref: str) -> str:
    """``ref`` without tag or digest, with Docker Hub's default prefixes removed.

    ``docker.io/library/busybox:latest`` → ``busybox``; ``localhost:5000/app:1`` →
    ``localhost:5000/app``. Image IDs (``sha256:…``) are returned unchanged.
    """
    if ref.startswith("sha256:"):
        return ref
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    parts = name.split("/")
    if len(parts) > 1 and parts[0] in ("docker.io", "index.docker.io"):
        parts = parts[1:]
        if len(parts) == 2 and parts[0] == "library":
            parts = parts[1:]
    return "/".join(parts)


def _match_image(event: Event, filters: EventFilter) -> bool:
    if not filters.get("image"):
        return True
    # Image events name the image in "name", container events in "image".
    name_attr = "name" if event.type == "image" else "image"
    candidates: Iterable[str] = (
        event.actor_id,
        event.attributes.get(name_attr, ""),
    )
    return any(
        filters.exact_match("image", c) or filters.exact_match("image", familiar_image_name(c))
        for c in candidates
        if c
    )


def event_matches(event: Event, filters: EventFilter) -> bool:
    """Whether ``event`` passes ``filters`` with dockerd's ``/events`` semantics.

    Values of one key are OR'ed and different keys AND'ed, except ``label``: every
    ``label`` value must hold (dockerd's MatchKVList). ``label=k`` needs attribute ``k``,
    ``label=k=v`` needs it equal to ``v``.
    """
    if not _match_action(event, filters):
        return False
    if not filters.exact_match("type", event.type):
        return False
    if not filters.exact_match("scope", event.scope):
        return False
    if not all(_match_name(event, filters, key) for key in _NAME_KEYS):
        return False
    if not _match_image(event, filters):
        return False
    return not filters.contains("label") or filters.match_kv("label", event.attributes)
