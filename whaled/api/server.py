"""Listening sockets for the API: unix sockets (0660, group ``docker``) and TCP (+TLS),
and the accept path that keeps connections bounded.

Limits (dockerd's Go ``http.Server`` has ``ReadHeaderTimeout``; aiohttp has none of these by
default):

- a request head must arrive within :attr:`ServerLimits.head_timeout` of the connection
  opening or of the previous response (aiohttp's keep-alive timer, which also covers a head
  left half-sent);
- at most :attr:`ServerLimits.max_connections` connections are open at once, a cap below
  ``RLIMIT_NOFILE`` that leaves room for the containers' files: at the cap, a listener stops
  accepting (new clients wait in the kernel's backlog) instead of accepting and failing;
- JSON request bodies are limited in size and read time (``whaled.api.app``); streamed
  uploads (load, import, archive) and streamed answers stay unbounded in time.

Tests lower the limits through ``_WHALED_*`` environment variables (:func:`server_limits`);
they are not a user-facing setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import logging
import os
import socket
import ssl
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from whaled.config.hosts import ListenAddress
from whaled.daemon.tasks import BackgroundTasks
from whaled.errors import Conflict, SystemFailure

log = logging.getLogger("whaled.api")

#: dockerd sets ``ReadHeaderTimeout`` to 5 minutes; a minute is plenty for a head of at most
#: a few kB on a local socket and frees a slow client's slot five times sooner.
HEAD_TIMEOUT_SECONDS = 60.0
#: Time to receive a whole JSON request body once its head arrived.
JSON_BODY_TIMEOUT_SECONDS = 60.0
#: The largest JSON request body. dockerd has no explicit limit (Go's decoder streams); the
#: biggest real bodies are container creates, whose environment and command line the kernel
#: caps at a few MB anyway (ARG_MAX), so 10 MiB refuses nothing legitimate while keeping a
#: hostile body from costing more than that much memory.
JSON_BODY_MAX_BYTES = 10 << 20
#: How long the accept loop waits after the process ran out of file descriptors.
ACCEPT_RETRY_SECONDS = 0.5
#: Repeated warnings about the connection cap or accept failures: at most one per interval.
WARN_INTERVAL_SECONDS = 60.0

_ENV_HEAD_TIMEOUT = "_WHALED_HEAD_TIMEOUT"
_ENV_BODY_TIMEOUT = "_WHALED_BODY_TIMEOUT"
_ENV_MAX_CONNECTIONS = "_WHALED_MAX_CONNECTIONS"
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    """Bounds on what one client can hold: time, connections, memory."""

    head_timeout: float = HEAD_TIMEOUT_SECONDS
    body_timeout: float = JSON_BODY_TIMEOUT_SECONDS
    json_body_max: int = JSON_BODY_MAX_BYTES
    max_connections: int = 1024


def connection_cap(nofile_soft: int) -> int:
    """Open API connections allowed under a soft ``RLIMIT_NOFILE`` of ``nofile_soft``: a
    quarter of the descriptors (at least 512) stay for containers' logs, attach sockets,
    pipes and the daemon's own files."""
    reserve = max(nofile_soft // 4, 512)
    return max(nofile_soft - reserve, 32)


def server_limits(environ: Mapping[str, str], nofile_soft: int) -> ServerLimits:
    """The limits for a daemon whose soft fd limit is ``nofile_soft``, with the internal
    test overrides from ``environ`` applied."""

    def number(key: str, default: float) -> float:
        raw = environ.get(key, "")
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SystemFailure(f"{key}: not a number: {raw!r}") from None
        if value <= 0:
            raise SystemFailure(f"{key}: must be positive, got {raw!r}")
        return value

    return ServerLimits(
        head_timeout=number(_ENV_HEAD_TIMEOUT, HEAD_TIMEOUT_SECONDS),
        body_timeout=number(_ENV_BODY_TIMEOUT, JSON_BODY_TIMEOUT_SECONDS),
        max_connections=int(number(_ENV_MAX_CONNECTIONS, connection_cap(nofile_soft))),
    )


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


def open_unix_socket(path: str, group: str) -> socket.socket:
    """Bind a unix socket, refusing to steal one another live daemon is serving."""
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise SystemFailure(f"cannot listen on {path}: it exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale socket from a previous run
        else:
            raise Conflict(f"cannot listen on {path}: another daemon is serving it")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o660)
        gid = _group_id(group)
        if gid is not None:
            os.chown(path, 0, gid)
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise SystemFailure(f"cannot listen on unix://{path}: {e}") from e
    sock.setblocking(False)
    return sock


def _group_id(name: str) -> int | None:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name != "docker":
            log.warning("group %s not found; the socket keeps group root", name)
        return None


def open_tcp_socket(address: ListenAddress) -> socket.socket:
    host = address.host or "::"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not address.host:
        family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
        host = "::" if family == socket.AF_INET6 else "0.0.0.0"
    if address.host == "localhost":
        family, host = socket.AF_INET, "127.0.0.1"
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not address.host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, address.port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise SystemFailure(f"cannot listen on {address.url()}: {e}") from e
    sock.setblocking(False)
    return sock


def tls_context(cert: str, key: str, ca: str | None) -> ssl.SSLContext:
    """Server TLS; with ``ca`` (--tlsverify) a client certificate signed by it is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        if ca is not None:
            ctx.load_verify_locations(ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise SystemFailure(f"could not load TLS material: {e}") from e
    return ctx


def remove_unix_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


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


class _GatedSocket(socket.socket):
    """An accepted connection that gives its slot back when its descriptor is closed
    (the transport closes it whatever protocol it ends with, hijacked or not)."""

    _on_close: Callable[[], None] | None = None

    def close(self) -> None:
        callback, self._on_close = self._on_close, None
        super().close()
        if callback is not None:
            callback()


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
            self._gate.opened()
            gated = _GatedSocket(conn.family, conn.type, conn.proto, fileno=conn.detach())
            gated._on_close = self._gate.closed
            self._tasks.spawn("api connection", self._connect(gated))

    async def _connect(self, sock: _GatedSocket) -> None:
        server = self._runner.server
        if server is None:
            sock.close()
            return
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                server, sock, ssl=self._ssl_context
            )
        except (OSError, ssl.SSLError, TimeoutError) as e:
            log.debug("API connection setup failed: %s", e)
            sock.close()
        except BaseException:
            sock.close()
            raise
