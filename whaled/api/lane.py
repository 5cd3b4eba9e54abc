"""The quick lane: body-less ``GET``s (and ``HEAD /_ping``) that the connection tap answers
itself, without aiohttp's request machinery.

Clients poll: the CLI pings before each command, Compose and testcontainers list and
inspect containers in loops, orchestrators watch ``/_ping``. Through aiohttp a request costs
~50 µs of the daemon's CPU, ~40 of them in aiohttp's request and response objects, its
router and its middlewares; an asyncio server that answers canned bytes needs ~14. For a
read answered from memory, the lane does what that path does in a few microseconds:

- the router registers, next to a route's aiohttp handler, a *quick* handler
  (:class:`QuickHandler`) sharing the same body code: it returns the answer's body, or
  None when the request needs what only the full path has (a thread, a stream, an error
  answer);
- the connection tap (``api.uploads``), holding a complete request head without a body,
  asks :meth:`Lane.answer` for the response's bytes when aiohttp has nothing in progress
  on that connection (so answers keep the requests' order) and the client reads its
  answers (nothing waits in the write buffer);
- the lane takes only what it can answer exactly as aiohttp would: HTTP/1.1 keep-alive,
  a clean path without escapes, an API version in range, a route with a quick handler.
  Anything else (a bad version, a ``Connection: close``, a filter that does not parse, an
  unknown route) goes to aiohttp, which answers it (errors included) as always.

A quick handler must not change anything: a request it gives up on is handled again, in
full, by aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from multidict import MultiDict, MultiDictProxy, MultiMapping
from yarl import URL

from whaled.api.early import HeadParts, ok_head, ok_response
from whaled.api.versions import ApiVersion, check_api_version
from whaled.config.model import Config
from whaled.daemon.daemon import Daemon
from whaled.errors import WhaledError

log = logging.getLogger("whaled.api")

#: Answers wait in a connection's write buffer up to this much; past it, aiohttp (whose
#: writes wait for the client) takes the requests, so a client that sends without reading
#: cannot grow the daemon's memory.
WRITE_BUFFER_MAX = 65536

_VERSIONED = re.compile(r"/v([0-9.]+)(/.*)")
_EMPTY_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())
#: bound on the cached response heads (their keys come from the quick handlers' answers)
_HEADS_MAX = 64


_JSON = json.JSONEncoder(separators=(",", ":"))


def encode_json(body: Any) -> bytes:
    """dockerd's JSON encoding: compact, newline-terminated."""
    return _JSON.encode(body).encode() + b"\n"


@dataclass(slots=True)  # not frozen: made per request, and a frozen one costs twice as much
class QuickRequest:
    """What a quick handler gets: the request as its aiohttp handler would read it."""

    method: str
    match_info: Mapping[str, str]
    query: MultiMapping[str]
    api_version: ApiVersion
    daemon: Daemon
    config: Config


@dataclass(frozen=True, slots=True)
class QuickAnswer:
    """A 200 answer: its body and the headers beyond the common ones."""

    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] | None = None

    @classmethod
    def json(cls, body: Any) -> QuickAnswer:
        return cls(encode_json(body))


#: A route's quick handler: its answer, or None for aiohttp to answer the request in full.
#: ``WhaledError`` means the same (aiohttp then answers the error).
QuickHandler = Callable[[QuickRequest], QuickAnswer | None]


@dataclass(frozen=True, slots=True)
class _Pattern:
    parts: tuple[str | None, ...]  # a fixed segment, or None for a parameter
    names: tuple[str, ...]
    handler: QuickHandler
    head: bool


class Lane:
    """The quick handlers of one API application (see the module docstring)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._static: dict[str, tuple[QuickHandler, bool]] = {}
        self._patterns: list[_Pattern] = []
        self._date_second = -1
        #: response heads by (extra headers, content type, experimental, HEAD), this second
        self._heads: dict[tuple[object, ...], HeadParts] = {}

    def add(self, path: str, handler: QuickHandler, *, head: bool = False) -> None:
        """``handler`` answers ``GET path`` (and ``HEAD`` with ``head``); ``{name}``
        segments are parameters, as in aiohttp's routes."""
        segments = path.split("/")
        if not any(s.startswith("{") for s in segments):
            self._static[path] = (handler, head)
            return
        parts = tuple(None if s.startswith("{") else s for s in segments)
        names = tuple(s.strip("{}") for s in segments if s.startswith("{"))
        self._patterns.append(_Pattern(parts, names, handler, head))

    def answer(self, head: bytes) -> bytes | None:
        """The whole response to the request ``head`` (its request line and headers,
        without the blank line; a request without a body), or None for aiohttp."""
        line_end = head.find(b"\r\n")
        request_line = head if line_end < 0 else head[:line_end]
        method, _, rest = request_line.partition(b" ")
        if method != b"GET" and method != b"HEAD":
            return None
        target, _, protocol = rest.partition(b" ")
        if protocol != b"HTTP/1.1" or (line_end >= 0 and not _keeps_alive(head[line_end:])):
            return None
        try:
            text = target.decode("ascii")
        except UnicodeDecodeError:
            return None
        path, _, query_string = text.partition("?")
        if "%" in path or "//" in path or "/." in path or "#" in text or path[:1] != "/":
            return None  # escapes, or what dockerd's router cleans or redirects first
        version_text: str | None = None
        if path.startswith("/v"):
            versioned = _VERSIONED.fullmatch(path)
            if versioned is not None:
                version_text, path = versioned.group(1), versioned.group(2)
        found = self._route(path)
        if found is None:
            return None
        handler, match_info, allows_head = found
        if method == b"HEAD" and not allows_head:
            return None
        try:
            version = check_api_version(version_text)
            query = (
                URL.build(query_string=query_string, encoded=True).query
                if query_string
                else _EMPTY_QUERY
            )
        except (WhaledError, ValueError):
            return None  # aiohttp answers (or refuses) it
        try:
            config = self._daemon.config()
            quick = handler(
                QuickRequest(method.decode(), match_info, query, version, self._daemon, config)
            )
        except WhaledError:
            return None  # aiohttp answers the error
        except Exception:
            log.exception("quick handler for %s failed; aiohttp takes the request", path)
            return None
        if quick is None:
            return None
        return self._render(quick, config, head=method == b"HEAD")

    def _route(self, path: str) -> tuple[QuickHandler, Mapping[str, str], bool] | None:
        static = self._static.get(path)
        if static is not None:
            return static[0], {}, static[1]
        if not self._patterns:
            return None
        segments = path.split("/")
        for pattern in self._patterns:
            if len(pattern.parts) != len(segments):
                continue
            values = []
            for fixed, segment in zip(pattern.parts, segments, strict=True):
                if fixed is None:
                    if not segment:
                        break
                    values.append(segment)
                elif fixed != segment:
                    break
            else:
                return pattern.handler, dict(zip(pattern.names, values, strict=True)), pattern.head
        return None

    def _render(self, quick: QuickAnswer, config: Config, *, head: bool) -> bytes:
        """The bytes aiohttp's path sends for this answer: the same headers (``HEAD``:
        without the body and its length)."""
        extra = tuple(quick.headers.items()) if quick.headers else ()
        key = (extra, quick.content_type, config.experimental, head)
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._heads.clear()
        parts = self._heads.get(key)
        if parts is None:
            if len(self._heads) >= _HEADS_MAX:
                self._heads.clear()
            parts = self._heads[key] = ok_head(
                extra,
                quick.content_type,
                experimental=config.experimental,
                date=formatdate(second, usegmt=True),
            )
        return ok_response(parts, None if head else quick.body)


def _keeps_alive(headers: bytes) -> bool:
    """False when the request's headers (from the CRLF that ends its request line) ask for
    anything but keep-alive in a ``Connection`` header: a close, an upgrade."""
    lowered = headers.lower()
    at = lowered.find(b"\r\nconnection:")
    while at >= 0:
        value_end = lowered.find(b"\r\n", at + 2)
        value = lowered[at + 13 : value_end if value_end >= 0 else len(lowered)]
        if value.strip() != b"keep-alive":
            return False
        at = lowered.find(b"\r\nconnection:", at + 2)
    return True


# -- aiohttp's connection state. aiohttp has no public word for "this connection has no
# request in progress", nor for "a request was served here" (its keep-alive timer): these
# read and set the private attributes of its RequestHandler, and fail safe (busy; timer
# untouched) should they be renamed. tests/unit/api/test_lane.py checks them on aiohttp's
# real class, so an upgrade that renames them fails there.


def handler_idle(handler: object) -> bool:
    """True when aiohttp's handler has no request queued, none in progress and is not
    closing: an answer written now comes in order."""
    try:
        return bool(handler._keepalive) and not (  # type: ignore[attr-defined]
            handler._messages  # type: ignore[attr-defined]
            or handler._request_in_progress  # type: ignore[attr-defined]
            or handler._force_close  # type: ignore[attr-defined]
            or handler._close  # type: ignore[attr-defined]
        )
    except AttributeError:
        return False


def note_served(handler: object, loop: asyncio.AbstractEventLoop) -> None:
    """As after a response of its own: the handler's keep-alive timer runs from now, so
    a client served only by the lane is not closed as idle."""
    try:
        timeout = handler.keepalive_timeout  # type: ignore[attr-defined]
        if timeout:
            handler._next_keepalive_close_time = loop.time() + timeout  # type: ignore[attr-defined]
    except AttributeError:
        pass
