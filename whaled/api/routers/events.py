"""GET /events: past events from the bus history, then the live stream (JSON lines)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from whaled.api.app import DAEMON_KEY, Routes
from whaled.api.filters import parse_filters, parse_timestamp
from whaled.errors import InvalidParameter
from whaled.events import EVENT_FILTER_KEYS, Event, Subscription, event_matches

# How often a quiet stream checks whether its client went away.
DISCONNECT_POLL_SECONDS = 1.0


def _optional_timestamp(value: str | None) -> int | None:
    if not value:
        return None
    return parse_timestamp(value, 0)


async def get_events(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON_KEY]
    bus = daemon.events
    filters = parse_filters(request.query.get("filters"))
    filters.validate(EVENT_FILTER_KEYS)
    since = _optional_timestamp(request.query.get("since"))
    until = _optional_timestamp(request.query.get("until"))
    if since is not None and until is not None and since > until:
        raise InvalidParameter(
            f"`since` time ({request.query['since']}) cannot be after `until` time "
            f"({request.query['until']})"
        )
    now = bus.now_nano()

    def wanted(event: Event) -> bool:
        return event_matches(event, filters)

    past, subscription = bus.subscribe_with_history(
        since_nano=since, until_nano=until, predicate=wanted
    )
    if since is None:
        past = []
    with subscription:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        async def send(event: Event) -> None:
            await response.write(
                json.dumps(event.to_json(), separators=(",", ":")).encode() + b"\n"
            )

        try:
            for past_event in past:
                await send(past_event)
            if until is not None and until <= now:
                return response
            await _stream(request, subscription, send, until, now)
        except ConnectionError:
            pass  # the client went away
    return response


async def _stream(
    request: web.Request,
    subscription: Subscription,
    send: Callable[[Event], Awaitable[None]],
    until: int | None,
    now: int,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = None if until is None else loop.time() + (until - now) / 1e9
    while True:
        wait = DISCONNECT_POLL_SECONDS
        if deadline is not None:
            wait = min(wait, deadline - loop.time())
            if wait <= 0:
                break
        try:
            event: Event | None = await asyncio.wait_for(subscription.get(), wait)
        except TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            continue
        if event is None:  # the bus closed: daemon shutdown
            break
        if until is not None and event.time_nano > until:
            break
        await send(event)


def register(routes: Routes) -> None:
    routes.add("GET", "/events", get_events)
