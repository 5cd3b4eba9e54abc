"""Streaming helpers for the HTTP layer: JSON progress streams and blocking body readers.

:class:`JsonStream` writes dockerd's progress stream (``pull``, ``push``, ``load``,
``import``, ``build``): one JSON message per line, ``\\r\\n``-terminated like dockerd's
``streamformatter``. The response is prepared lazily, on the first message, so a handler
that fails before it sent anything still answers with a real status code (the error
middleware does that); once the first byte is out, :meth:`JsonStream.errors_in_stream` turns
an error into dockerd's ``{"errorDetail":{"message":...},"error":...}`` message instead.

:class:`BlockingBodyReader` gives a worker thread a blocking ``read(n)`` over the request
body, fed by the event loop one bounded chunk at a time (nothing is buffered whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web

from whaled.errors import SystemFailure, WhaledError

log = logging.getLogger("whaled.api")

STREAM_NEWLINE = b"\r\n"
#: How much of the request body one hop to the event loop fetches.
BODY_CHUNK_BYTES = 1 << 20
#: How often a worker blocked on the body checks whether the request was abandoned.
BODY_POLL_SECONDS = 1.0
T = TypeVar("T")

#: How often a stream waiting for something to send checks whether its client left.
CLIENT_POLL_SECONDS = 1.0


def client_gone(request: web.Request) -> bool:
    """Whether the client closed the request's connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def while_connected(request: web.Request, waiting: Awaitable[T]) -> T:
    """``await waiting``, unless the client goes away first: then it is cancelled and
    ``ConnectionResetError`` raised. For streams that may wait long between messages (logs
    follow of a silent container), so that a handler does not outlive its client."""
    task = asyncio.ensure_future(waiting)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=CLIENT_POLL_SECONDS)
            if done:
                return task.result()
            if client_gone(request):
                raise ConnectionResetError("the client closed the stream")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# ------------------------------------------------------------------ messages (pure)


def _human_size(n: float) -> str:
    """Go's ``units.HumanSize`` (decimal, 4 significant digits)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{units[i]}"


def progress_bar(current: int, total: int | None, width: int = 50) -> str:
    """dockerd's ``JSONProgress.String`` for a non-terminal: ``[==>   ]  1.2MB/3.4MB``."""
    if total is None or total <= 0:
        return _human_size(current)
    done = min(current, total)
    filled = done * width // total
    bar = "=" * filled + (">" if filled < width else "") + " " * max(width - filled - 1, 0)
    return f"[{bar}] {_human_size(current):>8}/{_human_size(total)}"


def status_message(
    status: str,
    *,
    id: str | None = None,
    current: int | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """A ``status`` message, with byte progress when ``current`` is given."""
    message: dict[str, Any] = {"status": status}
    if current is not None:
        detail: dict[str, int] = {"current": current}
        if total is not None:
            detail["total"] = total
        message["progressDetail"] = detail
        message["progress"] = progress_bar(current, total)
    if id:
        message["id"] = id
    return message


def stream_message(text: str) -> dict[str, Any]:
    """A ``stream`` message (build output, ``Loaded image: ...``); ends with a newline."""
    return {"stream": text if text.endswith("\n") else text + "\n"}


def error_message(text: str) -> dict[str, Any]:
    """dockerd's in-stream error (``streamformatter.FormatError``)."""
    return {"errorDetail": {"message": text}, "error": text}


def encode_message(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + STREAM_NEWLINE


# ------------------------------------------------------------------ JSON stream


class JsonStream:
    """A newline-delimited JSON response, prepared on the first message."""

    def __init__(self, request: web.Request, *, content_type: str = "application/json") -> None:
        self._request = request
        self._response = web.StreamResponse(headers={"Content-Type": content_type})
        self._started = False

    @property
    def started(self) -> bool:
        """Whether the status line went out (errors can no longer change it)."""
        return self._started

    async def start(self) -> None:
        """Send the status line and headers now (for endpoints whose status is 200 once the
        request parsed, like dockerd's ``load``: every later error is in the stream)."""
        if not self._started:
            await self._response.prepare(self._request)
            self._started = True

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.start()
        await self._response.write(encode_message(message))

    async def send_error(self, error: BaseException) -> None:
        text = error.message if isinstance(error, WhaledError) else str(error)
        await self.send(error_message(text))

    @asynccontextmanager
    async def errors_in_stream(self) -> AsyncIterator[JsonStream]:
        """Errors before the first byte propagate (the middleware answers with a status);
        later ones become an in-stream error message, as dockerd does."""
        try:
            yield self
        except Exception as e:
            if not self._started:
                raise
            if isinstance(e, WhaledError):
                log.debug("%s %s: error in stream: %s", self._request.method, self._request.path, e)
            else:
                log.exception("%s %s failed mid-stream", self._request.method, self._request.path)
            try:
                await self.send_error(e)
            except (ConnectionError, RuntimeError):
                pass  # the client is gone

    async def finish(self, empty: Mapping[str, Any] | None = None) -> web.StreamResponse:
        """End the stream; with nothing sent, answer ``empty`` (or an empty 200 stream)."""
        if not self._started:
            if empty is not None:
                await self.send(empty)
            else:
                await self._response.prepare(self._request)
                self._started = True
        await self._response.write_eof()
        return self._response


# ------------------------------------------------------------------ request bodies


class BlockingBodyReader:
    """``read(n)`` over an aiohttp request body, for use in a worker thread only.

    Each refill asks the event loop for at most :data:`BODY_CHUNK_BYTES`, so memory stays
    bounded whatever the body size, and the client is slowed down (TCP back-pressure) when
    the worker is slower than the network. :meth:`close` (called on the loop when the
    request ends) makes a worker still blocked in ``read`` fail instead of hanging.
    """

    def __init__(
        self,
        content: asyncio.StreamReader | Any,
        loop: asyncio.AbstractEventLoop,
        *,
        chunk_bytes: int = BODY_CHUNK_BYTES,
    ) -> None:
        self._content = content
        self._loop = loop
        self._chunk = chunk_bytes
        self._data = b""
        self._pos = 0
        self._eof = False
        self._closed = threading.Event()
        self.bytes_read = 0

    def _fetch(self) -> bytes:
        if self._closed.is_set():
            raise SystemFailure("the request was abandoned while its body was being read")
        future = asyncio.run_coroutine_threadsafe(self._content.read(self._chunk), self._loop)
        while True:
            try:
                data: bytes = future.result(timeout=BODY_POLL_SECONDS)
                return data
            except TimeoutError:
                if self._closed.is_set():
                    future.cancel()
                    raise SystemFailure(
                        "the request was abandoned while its body was being read"
                    ) from None

    def read(self, n: int = -1, /) -> bytes:
        parts: list[bytes] = []
        want = n
        while want != 0:
            if self._pos >= len(self._data):
                if self._eof:
                    break
                data = self._fetch()
                if not data:
                    self._eof = True
                    break
                self.bytes_read += len(data)
                self._data, self._pos = data, 0
            available = len(self._data) - self._pos
            take = available if want < 0 else min(want, available)
            if take == len(self._data):
                parts.append(self._data)
            else:
                parts.append(self._data[self._pos : self._pos + take])
            self._pos += take
            if want > 0:
                want -= take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self._closed.set()


async def drain_body(request: web.Request) -> None:
    """Read and drop what is left of the request body, so that an early error answer
    reaches a client that is still uploading (and the connection stays usable)."""
    try:
        while await request.content.read(BODY_CHUNK_BYTES):
            pass
    except (ConnectionError, asyncio.CancelledError, RuntimeError):
        raise
    except Exception:  # a broken body: nothing more to drain
        pass


async def send_body(
    request: web.Request, chunks: AsyncIterable[bytes], headers: Mapping[str, str]
) -> web.StreamResponse:
    """Stream ``chunks`` out as the body of a 200 answer with ``headers``.

    Errors before the call (a missing container, a bad name...) keep their status because
    nothing is sent before it. Once the status is out, an error cuts the connection, like
    dockerd, so the client sees a truncated body instead of a well-formed short one; a
    client that leaves ends the stream quietly. ``chunks`` is closed (``close`` or
    ``aclose``) whichever way the stream ends.
    """
    response = web.StreamResponse(headers=dict(headers))
    try:
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
    except asyncio.CancelledError:
        raise
    except ConnectionError:
        return response  # the client went away
    except Exception:
        log.exception("%s %s failed mid-stream", request.method, request.path)
        if request.transport is not None:
            request.transport.abort()
        return response
    finally:
        await _close(chunks)
    await response.write_eof()
    return response


async def _close(chunks: object) -> None:
    close = getattr(chunks, "close", None)
    if callable(close):
        close()
        return
    aclose = getattr(chunks, "aclose", None)
    if callable(aclose):
        await aclose()
