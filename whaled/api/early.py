"""The daemon's first moments: the API sockets open, and ``/_ping`` answered, before the
heavy imports and the daemon's initialisation (stores, networks, re-adopting containers).

dockerd answers its first ``/_ping`` ~150 ms after it is started; whaled's imports alone
take longer than that, and re-adopting many containers longer still. So ``cli.main``, right
after the configuration is read, takes the pidfile, opens the listeners and starts an
:class:`EarlyResponder` thread (standard library only), then imports the rest. The thread
answers ``GET``/``HEAD /_ping`` on the unix sockets exactly as the API will (the same
headers: clients negotiate the API version from them) and holds every other connection
untouched: it only ever *peeks* at a request it does not answer, so nothing of it is
consumed. When the API server is up, :meth:`EarlyStart.handover` stops the thread and gives
the held connections to the server, which serves them as if it had accepted them: a
``docker ps`` sent during start-up waits for the daemon instead of failing. TCP listeners
(TLS or not) are only opened early: their clients wait in the kernel's backlog.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import re
import resource
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

from whaled import __version__
from whaled.api.limits import ServerLimits, server_limits
from whaled.api.listeners import Listener, open_listeners, remove_unix_socket
from whaled.api.versions import CURRENT_API_VERSION, check_api_version
from whaled.config.model import Config
from whaled.errors import WhaledError
from whaled.osutil.pidfile import PidFile

log = logging.getLogger("whaled.api")

SERVER_HEADER = f"whaled/{__version__} (linux)"
#: The headers of every ``/_ping`` answer besides the common ones (dockerd's set).
PING_HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Builder-Version": "1",
    "Swarm": "inactive",
}
#: A request head larger than this is not a ping: held for the API server.
MAX_PING_HEAD = 8192
#: How long a connection whose head arrived in part waits before it is looked at again.
PARTIAL_HEAD_RETRY_SECONDS = 0.005

#: Signals noted during start-up and handled once the daemon is up.
LATCHED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

_ENV_HANDOVER_DELAY = "_WHALED_HANDOVER_DELAY"

_PING_PATH = re.compile(r"/(?:v([0-9.]+)/)?_ping")


#: A 200's head in two parts, around where its ``Content-Length`` goes (see ``ok_response``).
HeadParts = tuple[bytes, bytes]


def ok_head(
    extra: tuple[tuple[str, str], ...],
    content_type: str,
    *,
    experimental: bool,
    date: str,
    close: bool = False,
) -> HeadParts:
    """The head of a 200 with the headers every API answer has (those of ``api.app``'s
    ``_common_headers``); ``extra`` first, its ``Cache-Control`` replacing the default."""
    before = ["HTTP/1.1 200 OK", *(f"{k}: {v}" for k, v in extra), f"Content-Type: {content_type}"]
    after = [
        f"Date: {date}",
        f"Server: {SERVER_HEADER}",
        f"Api-Version: {CURRENT_API_VERSION}",
        f"Docker-Experimental: {'true' if experimental else 'false'}",
        "Ostype: linux",
    ]
    if not any(k == "Cache-Control" for k, _ in extra):
        after.append("Cache-Control: no-cache")
    if close:
        after.append("Connection: close")
    return (
        ("\r\n".join(before) + "\r\n").encode("latin-1"),
        ("\r\n".join(after) + "\r\n\r\n").encode("latin-1"),
    )


def ok_response(head: HeadParts, body: bytes | None) -> bytes:
    """The whole 200: ``head`` with the body's length, then the body (None: the answer
    to a ``HEAD``, without either)."""
    before, after = head
    if body is None:
        return before + after
    return b"%sContent-Length: %d\r\n%s%s" % (before, len(body), after, body)


def ping_response(method: str, *, experimental: bool, keep_alive: bool = True) -> bytes:
    """The bytes of the API's answer to ``GET``/``HEAD /_ping`` (HEAD: no body, no length)."""
    head = ok_head(
        tuple(PING_HEADERS.items()),
        "text/plain",
        experimental=experimental,
        date=email.utils.formatdate(usegmt=True),
        close=not keep_alive,
    )
    return ok_response(head, b"OK" if method == "GET" else None)


@dataclass(frozen=True, slots=True)
class PingRequest:
    method: str
    keep_alive: bool


def parse_ping(head: bytes) -> PingRequest | None:
    """The ping ``head`` (a whole request head, ending with a blank line) asks for, or None
    when it is anything else: another path, a query, a body, an upgrade, HTTP/1.0, an API
    version the API would refuse. Those go to the API server."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    request_line, *header_lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[0] not in ("GET", "HEAD") or parts[2] != "HTTP/1.1":
        return None
    match = _PING_PATH.fullmatch(parts[1])
    if match is None:
        return None
    if match.group(1) is not None:
        try:
            check_api_version(match.group(1))
        except WhaledError:
            return None
    keep_alive = True
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            return None
        name, value = name.strip().lower(), value.strip().lower()
        if name in ("content-length", "transfer-encoding", "upgrade", "expect"):
            if name != "content-length" or value != "0":
                return None
        if name == "connection":
            tokens = {t.strip() for t in value.split(",")}
            if "upgrade" in tokens:
                return None
            if "close" in tokens:
                keep_alive = False
    return PingRequest(parts[0], keep_alive)


@dataclass(slots=True)
class _Conn:
    sock: socket.socket
    listener: int
    retry_at: float = 0.0


@dataclass(slots=True)
class HeldConnection:
    """A connection accepted early, to be served by the API: nothing of what the client
    sent after its answered pings has been read."""

    sock: socket.socket
    listener: int


@dataclass(slots=True)
class EarlyResponder:
    """A thread answering pings on ``listeners`` (unix sockets) until :meth:`stop`."""

    listeners: list[socket.socket]
    experimental: bool
    #: The daemon's connection cap (``ServerLimits.max_connections``): at it, the
    #: responder stops accepting and new clients wait in the backlog, as with the server.
    max_connections: int
    _accepting: bool = False
    _held: list[HeldConnection] = field(default_factory=list)
    _waiting: list[_Conn] = field(default_factory=list)
    _stop_r: socket.socket | None = None
    _stop_w: socket.socket | None = None
    _thread: threading.Thread | None = None
    answered: int = 0

    def start(self) -> None:
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="early-ping", daemon=True)
        self._thread.start()

    def stop(self) -> list[HeldConnection]:
        """Stop answering; the connections accepted and not closed, in accept order. The
        listening sockets are left as they were (non-blocking, listening)."""
        if self._thread is not None:
            assert self._stop_w is not None
            self._stop_w.send(b"x")
            self._thread.join()
            self._thread = None
        for s in (self._stop_r, self._stop_w):
            if s is not None:
                s.close()
        self._stop_r = self._stop_w = None
        held, self._held = self._held, []
        return held

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            assert self._stop_r is not None
            sel.register(self._stop_r, selectors.EVENT_READ, None)
            conns: dict[int, _Conn] = {}
            self._gate(sel, conns)
            while True:
                timeout = None
                if self._waiting:
                    timeout = max(0.0, min(c.retry_at for c in self._waiting) - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.fileobj is self._stop_r:
                        self._finish(sel, conns)
                        return
                    if isinstance(key.data, int):
                        self._accept(sel, conns, key.data)
                    else:
                        self._look(sel, conns, key.data)
                self._retry(sel)
                self._gate(sel, conns)
        except Exception:
            log.exception("the early /_ping responder failed; connections wait for the API")
            with contextlib.suppress(Exception):
                assert self._stop_r is not None
                self._stop_r.recv(1)  # wait for stop() as usual
        finally:
            sel.close()

    def _gate(self, sel: selectors.BaseSelector, conns: dict[int, _Conn]) -> None:
        """Accept while the open connections are below the cap."""
        room = len(conns) + len(self._held) < self.max_connections
        if room == self._accepting:
            return
        for index, sock in enumerate(self.listeners):
            if room:
                sel.register(sock, selectors.EVENT_READ, index)
            else:
                sel.unregister(sock)
        self._accepting = room

    def _accept(self, sel: selectors.BaseSelector, conns: dict[int, _Conn], index: int) -> None:
        try:
            sock, _ = self.listeners[index].accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log.debug("early accept: %s", e)
            return
        sock.setblocking(False)
        conn = _Conn(sock, index)
        conns[sock.fileno()] = conn
        sel.register(sock, selectors.EVENT_READ, conn)

    def _look(self, sel: selectors.BaseSelector, conns: dict[int, _Conn], conn: _Conn) -> None:
        """Answer the ping at the head of ``conn``'s input, or hold it."""
        while True:
            try:
                data = conn.sock.recv(MAX_PING_HEAD, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:  # the client hung up
                sel.unregister(conn.sock)
                del conns[conn.sock.fileno()]
                conn.sock.close()
                return
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) >= MAX_PING_HEAD:
                    self._hold(sel, conns, conn)
                else:  # the rest of the head is on its way: look again shortly
                    sel.unregister(conn.sock)
                    conn.retry_at = time.monotonic() + PARTIAL_HEAD_RETRY_SECONDS
                    self._waiting.append(conn)
                return
            ping = parse_ping(data[: end + 4])
            if ping is None:
                self._hold(sel, conns, conn)
                return
            conn.sock.recv(end + 4)  # consume exactly the ping's head
            try:
                conn.sock.settimeout(1.0)
                conn.sock.sendall(
                    ping_response(
                        ping.method, experimental=self.experimental, keep_alive=ping.keep_alive
                    )
                )
                conn.sock.setblocking(False)
            except OSError:
                ping = PingRequest(ping.method, keep_alive=False)
            self.answered += 1
            if not ping.keep_alive:
                sel.unregister(conn.sock)
                del conns[conn.sock.fileno()]
                conn.sock.close()
                return

    def _hold(self, sel: selectors.BaseSelector, conns: dict[int, _Conn], conn: _Conn) -> None:
        sel.unregister(conn.sock)
        del conns[conn.sock.fileno()]
        self._held.append(HeldConnection(conn.sock, conn.listener))

    def _retry(self, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        due = [c for c in self._waiting if c.retry_at <= now]
        if due:
            self._waiting = [c for c in self._waiting if c.retry_at > now]
            for conn in due:
                sel.register(conn.sock, selectors.EVENT_READ, conn)

    def _finish(self, sel: selectors.BaseSelector, conns: dict[int, _Conn]) -> None:
        """Every connection still open is held: idle ones, and ones with a partial head
        (those waiting for a second look are not registered)."""
        for conn in conns.values():
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(conn.sock)
            self._held.append(HeldConnection(conn.sock, conn.listener))
        conns.clear()
        self._waiting = []


def _seconds(text: str) -> float:
    try:
        return max(float(text), 0.0) if text else 0.0
    except ValueError:
        return 0.0


@dataclass(slots=True)
class EarlyStart:
    """What ``cli.main`` set up before the daemon's imports: the pidfile held, the
    listeners open, pings answered. The daemon takes the listeners over with
    :meth:`handover`; :meth:`close` undoes what is left (idempotent)."""

    pidfile: PidFile
    limits: ServerLimits
    listeners: list[Listener]
    responder: EarlyResponder | None
    #: Tests only (``_WHALED_HANDOVER_DELAY``): seconds the daemon waits, once up, before
    #: it takes the listeners over, so that tests can act during start-up.
    handover_delay: float = 0.0
    #: Signals that arrived before the daemon's own handlers were installed, in order.
    _signals: list[int] = field(default_factory=list)

    @classmethod
    def begin(cls, cfg: Config) -> EarlyStart:
        limits = server_limits(os.environ, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        pidfile = PidFile(cfg.pidfile)
        pidfile.acquire()
        try:
            listeners = open_listeners(cfg)
        except BaseException:
            pidfile.release()
            raise
        start = cls(
            pidfile,
            limits,
            listeners,
            None,
            handover_delay=_seconds(os.environ.get(_ENV_HANDOVER_DELAY, "")),
        )
        # Once pings are answered, clients take the daemon for up: a SIGHUP (reload) or
        # SIGTERM sent now must not kill it half-started (the default action). They are
        # noted and acted on once the daemon's own handlers are in place.
        for sig in LATCHED_SIGNALS:
            signal.signal(sig, start._latch)
        unix = start._unix()
        if unix:
            # The responder indexes the unix listeners; map back through :meth:`handover`.
            start.responder = EarlyResponder(
                [sock for _, sock, _ in unix],
                experimental=cfg.experimental,
                max_connections=limits.max_connections,
            )
            start.responder.start()
        return start

    def _latch(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    def pending_signals(self) -> list[int]:
        """The signals latched so far (the daemon has installed its handlers: no more
        arrive here)."""
        pending, self._signals = self._signals, []
        return pending

    def _unix(self) -> list[Listener]:
        return [entry for entry in self.listeners if entry[0].startswith("unix://")]

    def handover(self) -> list[tuple[Listener, socket.socket]]:
        """Stop the responder; the held connections with the listener each came from."""
        if self.responder is None:
            return []
        held = self.responder.stop()
        self.responder = None
        unix = self._unix()
        return [(unix[h.listener], h.sock) for h in held]

    def close(self) -> None:
        """Stop the responder and close the held connections and the listeners (for a
        daemon that stops before it served)."""
        for _, sock in self.handover():
            sock.close()
        for _, sock, _ in self.listeners:
            sock.close()
        for url, _, _ in self._unix():
            remove_unix_socket(url.removeprefix("unix://"))
