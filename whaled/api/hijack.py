"""Connection hijacking for ``attach``, ``exec start`` and ``start -a`` (Docker's "Hijacking").

The client sends e.g. ``POST /containers/{id}/attach?stream=1&stdin=1...`` with
``Connection: Upgrade`` and ``Upgrade: tcp``. :func:`hijack` answers ``101 UPGRADED`` (or
``200 OK`` when the request carried no ``Upgrade`` header, as dockerd does for old clients)
and from then on the connection is a raw two-way byte stream: what the client sends is the
process's stdin (it may half-close its write side: stdin EOF), what we send is the output,
raw with a TTY, else in multiplexed frames (:func:`mux_frame`). The server closes the
connection when the output ends.

How the connection is taken away from aiohttp (3.14): after the handler has read the
request body, :func:`hijack` switches the transport over to a protocol of its own
(``transport.set_protocol``), so no byte the client sends from then on reaches aiohttp's
HTTP parser, and client half-close does not close the transport (aiohttp's
``RequestHandler.eof_received`` would). It detaches aiohttp from the transport
(``RequestHandler.transport = None``), so aiohttp never writes on or closes the hijacked
connection by itself: a response the handler returns afterwards is dropped silently
(aiohttp sees a "client disconnection" and does not log), and the connection is not kept
alive. ``connection_lost`` is still passed on to aiohttp's handler, which forgets the
connection as usual. The status line and headers are written directly on the transport.

Bytes the client sent before :func:`hijack` took over (in the same packet as the request
headers, say): aiohttp's pure-Python parser keeps them (it treats ``Upgrade: tcp`` as an
upgrade) and hands them over through ``RequestHandler.set_parser``, as for websockets. The
C parser (llhttp, the default) only does that for ``Upgrade: websocket`` and drops them.
:func:`capture_early_input`, installed on the web server once at start, keeps a short
window of the raw bytes of every connection so that :func:`hijack` can recover them
exactly (:func:`bytes_after_request`). Well-behaved clients (docker CLI, docker-py, Go and
Java SDKs) wait for the ``101`` before they send stdin, so nothing is lost without it.

Closing (:meth:`HijackedStream.close`) half-closes like dockerd's ``CloseWrite``: the
client reads all the output and then EOF, and whatever stdin still arrives is drained and
dropped until the client closes its side (closing outright with unread input makes the
kernel reset the connection, which can cost the client the end of the output). The stream
belongs to the handler's task: when that task ends, a stream the handler did not close is
closed; a client that does not finish within :data:`CLOSE_TIMEOUT_SECONDS` is cut off.

The pure parts (frames, content types, detach keys, finding early input) are in
:mod:`whaled.api.framing`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from types import TracebackType

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from whaled.api.app import API_VERSION_KEY
from whaled.api.framing import bytes_after_request, mux_frame, stream_content_type
from whaled.api.versions import CURRENT
from whaled.osutil.sockets import unread_by_peer

log = logging.getLogger("whaled.api")

#: How long a closed stream waits for the client to take the output and hang up.
CLOSE_TIMEOUT_SECONDS = 10.0
#: Stdin buffered beyond this pauses reading from the client until :meth:`read` catches up.
READ_HIGH_WATER = 256 * 1024
READ_CHUNK = 64 * 1024
#: Raw bytes of a connection kept by :func:`capture_early_input` (per connection).
EARLY_INPUT_WINDOW = 16 * 1024
#: How long the first output waits for the client to read the response head (see
#: :meth:`HijackedStream.write`); then it is sent anyway.
HEAD_READ_WAIT_SECONDS = 1.0


# ------------------------------------------------------------------ early input


class EarlyInput:
    """What sits between a transport and aiohttp's handler: passes everything on and keeps
    the latest raw bytes. Not a protocol class itself: :class:`EarlyInputTap` makes it a
    plain protocol, the upload tap (``api.uploads``) a buffered one. (uvloop reads into a
    protocol's own buffer only when it is not an ``asyncio.Protocol``.)"""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self.inner = inner
        self._chunks: collections.deque[bytes | bytearray | memoryview] = collections.deque()
        self._size = 0

    def recent(self) -> bytes:
        return b"".join(self._chunks)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.remember(data)
        self.inner.data_received(data)

    def remember(self, data: bytes | bytearray | memoryview) -> None:
        """Keep ``data`` in the window of the latest raw bytes."""
        if len(data) > EARLY_INPUT_WINDOW:
            self._chunks.clear()
            self._chunks.append(data[-EARLY_INPUT_WINDOW:])
            self._size = EARLY_INPUT_WINDOW
        else:
            self._chunks.append(data)
            self._size += len(data)
            while self._size - len(self._chunks[0]) >= EARLY_INPUT_WINDOW:
                self._size -= len(self._chunks.popleft())

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._chunks.clear()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class EarlyInputTap(EarlyInput, asyncio.Protocol):
    """:class:`EarlyInput` as a plain protocol."""


def capture_early_input(server: web.Server) -> None:
    """Let :func:`hijack` recover stdin a client sent before the ``101`` (call once, after
    ``AppRunner.setup()``, with ``runner.server``).

    Every new connection gets a thin pass-through protocol in front of aiohttp's handler
    that keeps the last :data:`EARLY_INPUT_WINDOW` bytes received. Costs one extra method
    call per received chunk and at most twice that window of memory per connection.
    """
    original = server.connection_made

    def connection_made(handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        original(handler, transport)
        transport.set_protocol(EarlyInputTap(handler))

    # aiohttp's RequestHandler reports each new connection to its server here, before any
    # byte is read; there is no other per-connection hook short of subclassing internals.
    server.connection_made = connection_made  # type: ignore[method-assign]


# ------------------------------------------------------------------ the stream


class ClientGone(ConnectionResetError):
    """The client closed the hijacked connection (or it was closed)."""


class _TailCollector:
    """Takes what aiohttp buffered after an upgrade request (``RequestHandler.set_parser``)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        pass


class _HijackProtocol(asyncio.Protocol):
    """The transport's protocol once hijacked: feeds the stream, passes the end to aiohttp."""

    def __init__(self, stream: HijackedStream, aiohttp_handler: asyncio.BaseProtocol) -> None:
        self._stream = stream
        self._aiohttp_handler: asyncio.BaseProtocol | None = aiohttp_handler

    def data_received(self, data: bytes) -> None:
        self._stream._on_data(data)

    def eof_received(self) -> bool:
        return self._stream._on_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stream._on_lost(exc)
        handler, self._aiohttp_handler = self._aiohttp_handler, None
        if handler is not None:
            handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._stream._on_pause_writing()

    def resume_writing(self) -> None:
        self._stream._on_resume_writing()


class _HijackedResponse(web.StreamResponse):
    """What the handler returns to aiohttp: writes nothing, its end closes the stream."""

    def __init__(self, stream: HijackedStream, status: int, reason: str) -> None:
        super().__init__(status=status, reason=reason)
        self._stream = stream
        self.force_close()

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        return None

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        raise RuntimeError("write to the HijackedStream, not to its response")

    async def write_eof(self, data: bytes = b"") -> None:
        self._stream._start_close()


class HijackedStream:
    """The raw two-way stream of a hijacked connection (see the module docstring).

    - :meth:`read`: the next stdin bytes; ``b""`` once the client half-closed or is gone
      (or the stream was closed).
    - :meth:`write` / :meth:`write_frame`: output, waiting while the client is slow
      (transport flow control); :class:`ClientGone` once the connection is lost or closed.
    - :meth:`close`: the end of the output (idempotent); also what returning
      :attr:`response` from the handler does. Usable as ``async with``.
    """

    def __init__(self, transport: asyncio.Transport | None, *, tty: bool, upgraded: bool) -> None:
        self.tty = tty
        #: ``101 UPGRADED`` was sent (else ``200 OK``, to a client without ``Upgrade``).
        self.upgraded = upgraded
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._client_eof = False
        self._lost = transport is None
        self._close_started = transport is None
        self._reading_paused = False
        self._writing_paused = False
        self._abort_handle: asyncio.TimerHandle | None = None
        #: The response head may still sit unread in the client's receive queue.
        self._head_unread = False
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._lost_future: asyncio.Future[None] = self._loop.create_future()
        if transport is None:
            self._lost_future.set_result(None)
        self._response = _HijackedResponse(
            self, 101 if upgraded else 200, "UPGRADED" if upgraded else "OK"
        )

    # -------------------------------------------------------------- state

    @property
    def response(self) -> web.StreamResponse:
        """Return this from the aiohttp handler (aiohttp then writes nothing)."""
        return self._response

    @property
    def eof(self) -> bool:
        """No more stdin: the client half-closed, is gone, or the stream was closed."""
        return self._client_eof or self._lost or self._close_started

    @property
    def disconnected(self) -> bool:
        """The connection is gone (the client hung up, or it was closed)."""
        return self._lost

    @property
    def closed(self) -> bool:
        """:meth:`close` was called or the connection is gone: no more output."""
        return self._close_started or self._lost

    async def wait_closed(self) -> None:
        """Until the connection is gone (the client hung up, or the close completed)."""
        await asyncio.shield(self._lost_future)

    # -------------------------------------------------------------- reading

    async def read(self, max_bytes: int = READ_CHUNK) -> bytes:
        """Up to ``max_bytes`` of stdin as soon as there is any; ``b""`` at the end."""
        while not self._buffer:
            if self.eof:
                return b""
            if self._data_waiter is not None:
                raise RuntimeError("read() called while another read() is waiting")
            self._data_waiter = self._loop.create_future()
            try:
                await self._data_waiter
            finally:
                self._data_waiter = None
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        if self._reading_paused and len(self._buffer) <= READ_HIGH_WATER // 2:
            self._resume_reading()
        return data

    # -------------------------------------------------------------- writing

    def frame(self, stream: int, data: bytes) -> bytes:
        """``data`` as sent on this stream: raw with a TTY, else a multiplexed frame."""
        return data if self.tty else mux_frame(stream, data)

    async def write(self, data: bytes) -> None:
        """Send raw bytes; waits while the client does not keep up. :class:`ClientGone`
        when the connection is lost or closed."""
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            raise ClientGone("the client connection is closed")
        if not data:
            return
        if self._head_unread:
            await self._until_head_read(transport)
            if self.closed or transport.is_closing():
                raise ClientGone("the client connection is closed")
        transport.write(data)
        if self._writing_paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    async def _until_head_read(self, transport: asyncio.Transport) -> None:
        """Hold the first output until the client has read the response head (at most
        :data:`HEAD_READ_WAIT_SECONDS`).

        docker-py reads the head through a buffered reader and then the output from the
        raw socket beneath it: output that arrived together with the head is swallowed by
        the buffer and lost (docker-py issues 2042 and 3332: ``exec_run`` of a quick
        command printing nothing, now and then, with dockerd too). On a unix socket the
        kernel tells how much of what we sent is still unread (None on TCP: not waited).
        """
        self._head_unread = False
        sock = transport.get_extra_info("socket")
        deadline = self._loop.time() + HEAD_READ_WAIT_SECONDS
        pause = 0.0005
        while not self.closed and not transport.is_closing():
            unread = unread_by_peer(sock) if sock is not None else None
            if unread is None or (unread == 0 and transport.get_write_buffer_size() == 0):
                return
            if self._loop.time() >= deadline:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)

    async def write_frame(self, stream: int, data: bytes) -> None:
        """Send output of ``stream`` (``framing.STDOUT``/``STDERR``); empty data sends
        nothing."""
        if data:
            await self.write(self.frame(stream, data))

    # -------------------------------------------------------------- closing

    async def close(self) -> None:
        """End the output; idempotent, returns at once.

        Like dockerd, this half-closes (the client reads EOF after all pending output)
        and drops further stdin until the client closes its side; then the connection is
        closed. Closing outright while stdin is unread would make the kernel reset the
        connection, and the client could lose the end of the output. A client that does
        not close within :data:`CLOSE_TIMEOUT_SECONDS` is cut off (also one that does not
        take the pending output).
        """
        self._start_close()

    def abort(self) -> None:
        """Close at once, dropping pending output."""
        self._close_started = True
        self._wake_reader()
        if self._transport is not None and not self._lost:
            self._transport.abort()

    async def __aenter__(self) -> HijackedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._start_close()

    def _start_close(self) -> None:
        if self._close_started or self._lost or self._transport is None:
            return
        self._close_started = True
        self._buffer.clear()
        self._wake_reader()
        transport = self._transport
        if self._reading_paused:
            self._resume_reading()  # keep draining what the client sends
        if self._client_eof or not transport.can_write_eof():
            transport.close()
        else:
            transport.write_eof()
        self._abort_handle = self._loop.call_later(CLOSE_TIMEOUT_SECONDS, self.abort)

    def _close_when_done(self, _: object) -> None:
        """The handler's task ended: the connection does not outlive it."""
        self._start_close()

    # -------------------------------------------------------------- protocol events

    def _wake_reader(self) -> None:
        waiter = self._data_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if self._transport is not None and not self._lost:
            self._transport.resume_reading()

    def _on_data(self, data: bytes) -> None:
        if self._close_started:
            return  # closing: drained and dropped
        self._buffer += data
        self._wake_reader()
        if not self._reading_paused and len(self._buffer) >= READ_HIGH_WATER:
            self._reading_paused = True
            if self._transport is not None:
                self._transport.pause_reading()

    def _on_eof(self) -> bool:
        self._client_eof = True
        self._wake_reader()
        transport = self._transport
        assert transport is not None
        if self._close_started:
            transport.close()  # both sides done
            return True
        # Keep the write side open for the output. TLS cannot half-close: asyncio closes
        # the transport anyway (and warns when asked to keep it open).
        return transport.get_extra_info("sslcontext") is None

    def _on_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._wake_reader()
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        if not self._lost_future.done():
            self._lost_future.set_result(None)
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(ClientGone("the client connection was lost"))
        if exc is not None:
            log.debug("hijacked connection lost: %s", exc)

    def _on_pause_writing(self) -> None:
        self._writing_paused = True

    def _on_resume_writing(self) -> None:
        self._writing_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


# ------------------------------------------------------------------ hijack


async def _head(request: web.Request, *, tty: bool, upgrade: bool) -> bytes:
    version = request.get(API_VERSION_KEY, CURRENT)
    content_type = stream_content_type(tty=tty, upgrade=upgrade, api_version=version)
    if upgrade:
        lines = [
            "HTTP/1.1 101 UPGRADED",
            f"Content-Type: {content_type}",
            "Connection: Upgrade",
            "Upgrade: tcp",
        ]
    else:
        lines = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}"]
    # The app's common headers (Api-Version, Server, ...) as on any response; dockerd's
    # exec start sends them too.
    scratch = web.StreamResponse()
    for app in request.match_info.apps:
        await app.on_response_prepare.send(request, scratch)
    skip = {"content-type", "connection", "upgrade", "content-length", "transfer-encoding"}
    lines += [f"{k}: {v}" for k, v in scratch.headers.items() if k.lower() not in skip]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _drain_request_body(request: web.Request) -> None:
    content = request.content
    while not content.is_eof():
        if not await content.readany():
            break


async def hijack(request: web.Request, *, tty: bool) -> HijackedStream:
    """Take the connection over from aiohttp and answer ``101 UPGRADED`` (``200 OK`` to a
    request without ``Upgrade``); the content type follows the TTY and the API version.

    Read the request body (if any) before: what is left of it is discarded here. Never
    raises for a client that is already gone: the stream is then closed from the start
    (``read`` gives ``b""``, ``write`` raises :class:`ClientGone`). The handler returns
    ``stream.response`` when done (that closes the stream if it is not closed yet); the
    stream must not be used after the handler returned.
    """
    upgrade = "Upgrade" in request.headers
    await _drain_request_body(request)
    head = await _head(request, tty=tty, upgrade=upgrade)
    _ = request.remote  # cached for the access log: aiohttp loses the transport below

    # From here on, synchronous: no byte may reach aiohttp's parser between the steps.
    handler = request.protocol
    transport = request.transport
    if transport is None or transport.is_closing():
        return HijackedStream(None, tty=tty, upgraded=upgrade)
    stream = HijackedStream(transport, tty=tty, upgraded=upgrade)

    collector = _TailCollector()
    handler.set_parser(collector)  # type: ignore[arg-type]  # duck-typed payload parser
    early = bytes(collector.data)
    current = transport.get_protocol()
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if isinstance(current, EarlyInput) and not chunked:
        recovered = bytes_after_request(
            current.recent(),
            method=request.method,
            target=request.raw_path,
            version=(request.version.major, request.version.minor),
            raw_headers=request.raw_headers,
            body_length=request.content_length or 0,
        )
        if recovered is None:
            log.warning(
                "%s %s: could not recover stdin sent before the upgrade",
                request.method,
                request.path,
            )
        else:
            early = recovered

    stream._writing_paused = handler.writing_paused
    transport.set_protocol(_HijackProtocol(stream, handler))
    handler.transport = None  # aiohttp no longer writes on or closes this connection
    if not transport.is_reading():
        transport.resume_reading()  # aiohttp may have paused it for its own buffers
    transport.write(head)
    stream._head_unread = True
    if early:
        stream._on_data(early)

    task = asyncio.current_task()
    if task is not None:
        task.add_done_callback(stream._close_when_done)
    return stream
