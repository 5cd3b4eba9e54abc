"""The API server's accept path that keeps connections bounded, and its request-log
filter (the limits themselves: :mod:`whaled.api.limits`; the listening sockets:
:mod:`whaled.api.listeners`)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from whaled.daemon.tasks import BackgroundTasks

log = logging.getLogger("whaled.api")

#: How long the accept loop waits after the process ran out of file descriptors.
ACCEPT_RETRY_SECONDS = 0.5
#: Repeated warnings about the connection cap or accept failures: at most one per interval.
WARN_INTERVAL_SECONDS = 60.0
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class BadRequestLogFilter(logging.Filter):
    """aiohttp logs every malformed request (an oversized head, too many headers, a bad
    request line) as an error with a traceback: one client could fill the log with them.
    They are the client's fault and already answered 400/431 with the connection closed
    (dockerd's Go server logs nothing), so they become one debug line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        if not log.isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.name = log.name
        record.msg, record.args = (
            "refused a malformed request: %s",
            (exc.message or type(exc).__name__,),
        )
        record.exc_info, record.exc_text = None, None
        return True


def quiet_bad_requests(logger: logging.Logger | None = None) -> None:
    """Install :class:`BadRequestLogFilter` on aiohttp's server logger (once)."""
    target = logger or logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequestLogFilter) for f in target.filters):
        target.addFilter(BadRequestLogFilter())


# ------------------------------------------------------------------ bounded accepting


class _Throttle:
    """True at most once per ``interval`` seconds (for warnings that could repeat fast)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: float | None = None

    def ready(self) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return False
        self._last = now
        return True


class ConnectionGate:
    """Counts the open API connections of all listeners against ``cap``; a listener waits in
    :meth:`wait_for_room` before each accept, so at the cap nothing more is accepted."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0
        self._room = asyncio.Event()
        self._room.set()
        self._warn = _Throttle(WARN_INTERVAL_SECONDS)

    async def wait_for_room(self) -> None:
        while self.open >= self.cap:
            if self._room.is_set():
                self._room.clear()
                if self._warn.ready():
                    log.warning(
                        "%d API connections are open, the connection limit: new connections "
                        "wait until some close",
                        self.open,
                    )
            await self._room.wait()

    def opened(self) -> None:
        self.open += 1

    def closed(self) -> None:
        self.open -= 1
        if self.open < self.cap:
            self._room.set()


class _Slot:
    """One accepted connection's place under the gate, given back once: when the
    connection's protocol learns it is lost (whatever protocol it ends with, hijacked or
    not: every one passes ``connection_lost`` on to aiohttp's handler), or when it never
    got a protocol. The event loop owns the descriptor from then on (uvloop closes it in
    libuv, never through the Python socket), so the end is told by the protocol."""

    __slots__ = ("_gate",)

    def __init__(self, gate: ConnectionGate) -> None:
        self._gate: ConnectionGate | None = gate

    def free(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.closed()


def _slots_of(server: web.Server) -> dict[web.RequestHandler, _Slot]:
    """The slots of ``server``'s connections, each freed when its connection is lost. The
    first call makes the server do that; every listener's site then shares the one table
    (they share the server)."""
    hook = server.connection_lost
    slots: dict[web.RequestHandler, _Slot] | None = getattr(hook, "slots", None)
    if slots is not None:
        return slots
    table: dict[web.RequestHandler, _Slot] = {}

    def connection_lost(handler: web.RequestHandler, exc: BaseException | None = None) -> None:
        slot = table.pop(handler, None)
        try:
            hook(handler, exc)
        finally:
            if slot is not None:
                slot.free()

    connection_lost.slots = table  # type: ignore[attr-defined]
    # aiohttp's RequestHandler reports each lost connection to its server here; like the
    # connection tap's ``connection_made``, there is no other hook short of subclassing.
    server.connection_lost = connection_lost  # type: ignore[method-assign]
    return table


class GatedSite(web.BaseSite):
    """aiohttp's ``SockSite`` with an accept loop of our own: it accepts only while
    ``gate`` has room, and backs off (one warning a minute) when accept fails for lack of
    descriptors instead of spinning."""

    __slots__ = ("_accepting", "_gate", "_name", "_sock", "_tasks")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        gate: ConnectionGate,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._sock = sock
        self._gate = gate
        self._tasks = BackgroundTasks()
        self._accepting: asyncio.Task[None] | None = None
        scheme = "https" if ssl_context else "http"
        self._name = f"{scheme}://{sock.getsockname()!r}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        self._runner._reg_site(self)
        self._accepting = asyncio.get_running_loop().create_task(
            self._accept_loop(), name=f"accept {self._name}"
        )

    async def stop(self) -> None:
        self._runner._check_site(self)
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        self._sock.close()
        await self._tasks.cancel_all()
        self._runner._unreg_site(self)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        warn = _Throttle(WARN_INTERVAL_SECONDS)
        while True:
            await self._gate.wait_for_room()
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as e:
                if e.errno in _ACCEPT_RESOURCE_ERRORS:
                    if warn.ready():
                        log.warning(
                            "accepting an API connection failed: %s (%d open); retrying",
                            e.strerror,
                            self._gate.open,
                        )
                    await asyncio.sleep(ACCEPT_RETRY_SECONDS)
                else:
                    log.debug("accept on %s: %s", self._name, e)
                continue
            self.adopt(conn)

    def adopt(self, conn: socket.socket) -> None:
        """Serve ``conn``, accepted on this site's socket (by the accept loop, or before
        the server was up: ``whaled.api.early``), counted against the gate."""
        self._gate.opened()
        conn.setblocking(False)
        self._tasks.spawn("api connection", self._connect(conn, _Slot(self._gate)))

    async def _connect(self, sock: socket.socket, slot: _Slot) -> None:
        server = self._runner.server
        if server is None:
            sock.close()
            slot.free()
            return
        slots = _slots_of(server)
        made: list[web.RequestHandler] = []

        def handler() -> web.RequestHandler:
            made.append(protocol := server())
            slots[protocol] = slot
            return protocol

        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                handler, sock, ssl=self._ssl_context
            )
        except (OSError, ssl.SSLError, TimeoutError) as e:
            log.debug("API connection setup failed: %s", e)
            _never_served(sock, slot, made, slots)
        except BaseException:
            _never_served(sock, slot, made, slots)
            raise


def _never_served(
    sock: socket.socket,
    slot: _Slot,
    made: list[web.RequestHandler],
    slots: dict[web.RequestHandler, _Slot],
) -> None:
    """The connection failed before its protocol was told it was made (a TLS handshake, a
    cancelled start): nothing else will free its slot."""
    for protocol in made:
        slots.pop(protocol, None)
    sock.close()
    slot.free()
