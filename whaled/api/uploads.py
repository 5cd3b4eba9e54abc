"""Streamed uploads (build contexts, ``docker load``, ``docker import``, ``docker cp`` in)
past aiohttp's body parser.

Clients send these bodies with ``Transfer-Encoding: chunked`` (the docker CLI and Go's client
in chunks of 32 KiB): aiohttp's parser calls back into Python for every chunk and a worker
thread then fetches the data from the event loop a piece at a time, which cost more CPU than
everything the daemon does with a 50 MB build context once it has it.

:class:`ConnectionTap` sits in front of aiohttp's handler on every connection (it also keeps
the early-input window of :mod:`whaled.api.hijack`). It follows the framing of the requests
on its connection. When a request head is an upload to one of :data:`UPLOAD_ROUTES` (a
chunked body, or one with a Content-Length: docker-py and other HTTP clients send files so),
the tap passes aiohttp the head as a request with an empty body (``Content-Length: 0``) and
an ``X-Whaled-Upload`` header, decodes the body itself (:class:`ChunkDecoder`, pure, or
:class:`LengthDecoder`) and puts the data into an :class:`UploadPipe` that the handler's
worker thread reads (:func:`open_body`): one hand-over per 256 KiB or more instead of one
per read. Bytes after the body go to aiohttp again.

Direct reading (build contexts, see :func:`open_body`): once the handler takes its pipe on
a plain socket (unix or TCP without TLS), the tap stops reading the connection and hands
the handler's reader a dup of the socket and the decoder (:meth:`UploadPipe.go_direct`).
The worker then reads the rest of the body itself, into one reused buffer: no hand-over
between the loop and the worker per piece, no fresh memory per read, the loop idle. A
50 MB build context arrives in ~3/4 of the time, with a quarter less CPU. When the body
ends, the pipe is closed or fails, the reader gives the connection back to the tap (with
the bytes it read past the body) and the tap reads it again.

Back-pressure: past :data:`PIPE_HIGH_WATER` bytes waiting in a pipe, the tap stops reading
the socket; the reader resumes it below :data:`PIPE_LOW_WATER`. A handler that is done
before the body is (an error answer) closes the pipe: the rest of the body is decoded and
dropped, so the connection stays usable. Anything the tap does not fully understand (an
odd head, both or neither framing header, an upgrade) makes it pass the connection's bytes
through untouched from then on: aiohttp answers such requests as it always did.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from aiohttp import web

from whaled.api.hijack import EarlyInput
from whaled.api.lane import WRITE_BUFFER_MAX, Lane, handler_idle, note_served
from whaled.api.streams import BlockingBodyReader
from whaled.errors import InvalidParameter, SystemFailure

#: The routes whose request body is a streamed upload (method, path without the version).
UPLOAD_ROUTES = re.compile(
    rb"^(?:POST (?:/v[0-9]+\.[0-9]+)?/(?:build|images/load|images/create)"
    rb"|PUT (?:/v[0-9]+\.[0-9]+)?/containers/[^/?]+/archive)(?:\?|$)"
)
UPLOAD_HEADER = "X-Whaled-Upload"
_UPLOAD_HEADER_LOWER = UPLOAD_HEADER.lower().encode()
#: A request head longer than this is passed through whole (aiohttp refuses it).
HEAD_MAX = 256 << 10
#: A chunk-size line (with extensions) or trailer line longer than this is a bad body.
LINE_MAX = 4096
PIPE_HIGH_WATER = 4 << 20
PIPE_LOW_WATER = 1 << 20
#: A waiting reader is woken once this much is buffered (or the body ended).
PIPE_WAKE = 256 << 10
#: How often a blocked reader looks whether the pipe was abandoned.
POLL_SECONDS = 1.0
#: A reader that reads the socket itself (direct) asks for this much per read, and looks
#: this often whether the pipe was abandoned while the client sends nothing.
DIRECT_READ = 1 << 20
DIRECT_POLL_MS = 100


#: a whole chunk-size line: the size in hex, extensions (ignored), CRLF
_SIZE_LINE = re.compile(rb"([0-9a-fA-F]{1,16})[ \t]*(?:;[^\r\n]*)?\r\n")
_HEX = frozenset(b"0123456789abcdefABCDEF")


class ChunkError(ValueError):
    """The chunked body is malformed."""


class _Step(StrEnum):
    SIZE = "size"
    DATA = "data"
    DATA_END = "data-end"
    TRAILER = "trailer"
    DONE = "done"


class ChunkDecoder:
    """Decodes ``Transfer-Encoding: chunked`` (RFC 9112 §7.1) fed in any pieces: the data
    comes out as memoryview slices of what was fed (no copies)."""

    __slots__ = ("_left", "_line", "_step")

    def __init__(self) -> None:
        self._step = _Step.SIZE
        self._left = 0
        self._line = bytearray()

    @property
    def done(self) -> bool:
        return self._step is _Step.DONE

    def feed(
        self,
        data: bytes | bytearray,
        pos: int,
        out: list[memoryview] | None,
        end: int | None = None,
    ) -> int:
        """Decode from ``data[pos:end]``; data pieces are appended to ``out`` (None:
        dropped). Returns where decoding stopped: ``end`` (the end of ``data`` by default),
        or the first byte after the body when it ended there."""
        if end is None:
            end = len(data)
        view = memoryview(data)
        while pos < end:
            step = self._step
            if step is _Step.DATA:
                take = min(self._left, end - pos)
                if out is not None:
                    out.append(view[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._step = _Step.DATA_END
                continue
            if step is _Step.DONE:
                return pos
            if not self._line:  # the usual case: the whole line is in ``data``
                if step is _Step.DATA_END and data.startswith(b"\r\n", pos, end):
                    pos += 2
                    self._step = _Step.SIZE
                    continue
                if step is _Step.SIZE and (m := _SIZE_LINE.match(data, pos, end)) is not None:
                    self._left = int(m.group(1), 16)
                    self._step = _Step.DATA if self._left else _Step.TRAILER
                    pos = m.end()
                    continue
            nl = data.find(b"\n", pos, end)
            if nl < 0:
                self._line += view[pos:end]
                if len(self._line) > LINE_MAX:
                    raise ChunkError("chunk header line too long")
                return end
            self._line += view[pos:nl]
            pos = nl + 1
            line = bytes(self._line)
            self._line.clear()
            if not line.endswith(b"\r") or len(line) > LINE_MAX:
                raise ChunkError("malformed chunk framing")
            line = line[:-1]
            if step is _Step.SIZE:
                self._left = _chunk_size(line)
                self._step = _Step.DATA if self._left else _Step.TRAILER
            elif step is _Step.DATA_END:
                if line:
                    raise ChunkError("chunk data longer than its size")
                self._step = _Step.SIZE
            elif not line:  # TRAILER: the empty line ends the body
                self._step = _Step.DONE
                return pos
        return pos


class LengthDecoder:
    """A body of ``Content-Length`` bytes, with :class:`ChunkDecoder`'s interface."""

    __slots__ = ("_left",)

    def __init__(self, length: int) -> None:
        self._left = length

    @property
    def done(self) -> bool:
        return not self._left

    def feed(
        self,
        data: bytes | bytearray,
        pos: int,
        out: list[memoryview] | None,
        end: int | None = None,
    ) -> int:
        take = min(self._left, (len(data) if end is None else end) - pos)
        if out is not None and take:
            out.append(memoryview(data)[pos : pos + take])
        self._left -= take
        return pos + take


#: what follows an upload's framing: the one interface both decoders have
BodyDecoder = ChunkDecoder | LengthDecoder


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip(b" \t")
    if not digits or len(digits) > 16 or not _HEX.issuperset(digits):
        raise ChunkError(f"invalid chunk size {bytes(digits[:20])!r}")
    return int(digits, 16)


class _Framing(StrEnum):
    NONE = "none"  # no body
    LENGTH = "length"
    CHUNKED = "chunked"
    OPAQUE = "opaque"  # an upgrade or something the tap does not follow: pass through


@dataclass(frozen=True, slots=True)
class HeadFacts:
    framing: _Framing
    length: int = 0
    #: an upload the tap takes over (its head rewritten without the chunked framing)
    upload: bool = False


def scan_head(head: bytes) -> HeadFacts:
    """The framing of a request head (request line and headers, without the final empty
    line) as far as the tap needs it; anything unusual is OPAQUE."""
    lines = head.split(b"\r\n")
    request_line = lines[0]
    if request_line.count(b" ") != 2:
        return HeadFacts(_Framing.OPAQUE)
    lengths: list[bytes] = []
    encodings: list[bytes] = []
    marked = False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[0] in b" \t" or name != name.strip():
            return HeadFacts(_Framing.OPAQUE)  # obs-fold, no colon, "name :": aiohttp decides
        key = name.lower()
        if key == b"content-length":
            lengths.append(value.strip())
        elif key == b"transfer-encoding":
            encodings.append(value.strip().lower())
        elif key in (b"upgrade", b"expect") or key == _UPLOAD_HEADER_LOWER:
            if key == _UPLOAD_HEADER_LOWER:
                marked = True
            else:
                return HeadFacts(_Framing.OPAQUE)
    if request_line.startswith(b"CONNECT "):
        return HeadFacts(_Framing.OPAQUE)
    if encodings:
        if lengths or encodings != [b"chunked"]:
            return HeadFacts(_Framing.OPAQUE)
        upload = not marked and UPLOAD_ROUTES.match(request_line) is not None
        return HeadFacts(_Framing.CHUNKED, upload=upload)
    if lengths:
        if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
            return HeadFacts(_Framing.OPAQUE)
        length = int(lengths[0])
        if not length:
            return HeadFacts(_Framing.NONE)
        upload = not marked and UPLOAD_ROUTES.match(request_line) is not None
        return HeadFacts(_Framing.LENGTH, length, upload=upload)
    return HeadFacts(_Framing.NONE)


def rewrite_head(head: bytes, token: str) -> bytes:
    """The head of an upload as aiohttp gets it: no body, and the pipe's token."""
    lines = [
        line
        for line in head.split(b"\r\n")
        if line.partition(b":")[0].lower() not in (b"transfer-encoding", b"content-length")
    ]
    lines.append(b"Content-Length: 0")
    lines.append(f"{UPLOAD_HEADER}: {token}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


class DirectEnd(StrEnum):
    """How a reader that read the socket itself gives the connection back to the tap."""

    BODY_DONE = "body-done"  # the body ended: what followed it is the next request
    ABANDONED = "abandoned"  # closed, failed or cut: the tap drops the rest of the body
    BROKEN = "broken"  # bad framing: the rest is passed to aiohttp as it is (a 400)


#: the tap's side of a hand-back (called on the event loop): how, the bytes read past the
#: body (BODY_DONE) or past the framing error (BROKEN), and the decoder (ABANDONED)
HandBack = Callable[[DirectEnd, bytes, BodyDecoder], None]


@dataclass(slots=True)
class _Direct:
    """The socket a pipe's reader reads itself (a dup of the connection's), and how to give
    the connection back to the tap."""

    fd: int
    decoder: BodyDecoder
    hand_back: HandBack
    poll: select.poll
    buffer: bytearray


class UploadPipe:
    """The decoded body of one upload, from the event loop (the tap) to a worker thread.
    ``read`` blocks (worker threads only); the rest is called on the loop.

    When the handler takes the pipe asking for it (``open_body(direct=True)``: build
    contexts) on a plain socket, the tap stops reading the connection and the worker reads
    the socket itself (:meth:`go_direct`): one thread moves the bytes from the kernel to
    the consumer, with no hand-over between the loop and the worker for each piece, and
    the loop is free. When the body ends (or the pipe is closed or fails), the connection
    goes back to the tap."""

    def __init__(self) -> None:
        self._pieces: collections.deque[memoryview] = collections.deque()
        self._buffered = 0
        self._cond = threading.Condition()
        self._ended = False
        self._error: BaseException | None = None
        self._closed = False
        self._paused = False
        self._resume: object = None
        self._direct: _Direct | None = None
        self._reading = False  # the reader is in the socket now (direct)
        self.bytes_read = 0

    # -- the tap's side (event loop)

    def push(self, pieces: list[memoryview]) -> bool:
        """Add decoded data; False when the tap should stop reading until resumed."""
        with self._cond:
            if self._closed:
                return True  # abandoned: dropped as it comes
            self._add(pieces)
            if self._buffered >= PIPE_WAKE:
                self._cond.notify()  # fewer, larger reads: each wake costs a GIL hand-over
            if self._buffered > PIPE_HIGH_WATER:
                self._paused = True
                return False
            return True

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if not self._ended:
                self._error = error
            self._cond.notify_all()

    def on_resume(self, resume: object) -> None:
        """``resume()`` is called (from the reader's thread) once the pipe drained below
        the low water mark after a push returned False."""
        self._resume = resume

    def go_direct(self, fd: int, decoder: BodyDecoder, hand_back: HandBack) -> None:
        """From now on the reader reads the rest of the body from ``fd`` (a dup of the
        connection's socket, closed by the pipe) with ``decoder``; the tap has stopped
        reading. ``hand_back`` is called once the reader is done with the socket."""
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        with self._cond:
            self._direct = _Direct(fd, decoder, hand_back, poll, bytearray(DIRECT_READ))
            self._paused = False  # the tap does not read: nothing to resume
            self._resume = None
            self._cond.notify_all()

    @property
    def ended(self) -> bool:
        return self._ended

    # -- the handler's side

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes (all buffered when ``n`` < 0); b"" at the end of the body."""
        while True:
            if self._direct is not None and not self._pieces:
                self._read_socket()
            with self._cond:
                while self._buffered < PIPE_WAKE:
                    if self._error is not None:
                        raise SystemFailure(f"the request body was cut: {self._error}")
                    if self._pieces and (self._ended or self._direct is not None):
                        break
                    if self._ended:
                        return b""
                    if self._closed:
                        raise SystemFailure(
                            "the request was abandoned while its body was being read"
                        )
                    if self._direct is not None:
                        break  # the tap went direct while this reader waited
                    self._cond.wait(POLL_SECONDS)
                if not self._pieces:
                    continue  # direct, nothing buffered: read the socket
                parts: list[memoryview] = []
                size = 0
                while self._pieces and (n < 0 or size < n):
                    piece = self._pieces.popleft()
                    if n >= 0 and size + len(piece) > n:
                        keep = n - size
                        self._pieces.appendleft(piece[keep:])
                        piece = piece[:keep]
                    parts.append(piece)
                    size += len(piece)
                self._buffered -= size
                resume = None
                if self._paused and self._buffered < PIPE_LOW_WATER:
                    self._paused = False
                    resume = self._resume
            self.bytes_read += size
            if callable(resume):
                resume()
            if len(parts) != 1:
                return b"".join(parts)
            whole = parts[0]
            if isinstance(whole.obj, bytes) and len(whole) == len(whole.obj):
                return whole.obj  # a direct read's piece, handed out whole: no copy
            return bytes(whole)

    def close(self) -> None:
        """The handler is done with the body: what is buffered and what still comes is
        dropped (reading the socket resumes if it was stopped)."""
        with self._cond:
            self._closed = True
            self._pieces.clear()
            self._buffered = 0
            resume = self._resume if self._paused else None
            self._paused = False
            give_back = not self._reading
            self._cond.notify_all()
        if give_back:
            self._stop_direct(DirectEnd.ABANDONED)
        if callable(resume):
            resume()

    # -- reading the socket (direct)

    def _add(self, pieces: list[memoryview]) -> None:
        for piece in pieces:
            self._pieces.append(piece)
            self._buffered += len(piece)

    def _read_socket(self) -> None:
        """Read the socket until some data is buffered, the body ended, the pipe was
        closed or failed. Each read lands in the pipe's one read buffer; its data (the
        chunk framing taken out) is copied into one piece, which :meth:`read` then hands
        out without another copy: fresh memory for every read costs more than the copy."""
        with self._cond:
            direct = self._direct
            if direct is None or self._reading:
                return
            self._reading = True
        end, rest = DirectEnd.ABANDONED, b""
        buf = direct.buffer
        try:
            while not (self._closed or self._error is not None or self._ended or self._pieces):
                try:
                    got = os.readv(direct.fd, [buf])
                except BlockingIOError:
                    direct.poll.poll(DIRECT_POLL_MS)
                    continue
                except OSError as e:
                    self.fail(e)
                    break
                if not got:
                    self.fail(ConnectionResetError("the client closed the connection"))
                    break
                pieces: list[memoryview] = []
                try:
                    stop = direct.decoder.feed(buf, 0, pieces, got)
                except ChunkError as e:
                    self.fail(InvalidParameter(f"invalid chunked request body: {e}"))
                    end, rest = DirectEnd.BROKEN, bytes(buf[:got])
                    break
                data = b"".join(pieces)
                pieces.clear()  # no view of the buffer outlives this read
                done = direct.decoder.done
                with self._cond:
                    if data and not self._closed:
                        self._add([memoryview(data)])
                    if done:
                        self._ended = True
                if done:
                    end, rest = DirectEnd.BODY_DONE, bytes(buf[stop:got])
                    break
        finally:
            with self._cond:
                self._reading = False
                finished = self._closed or self._error is not None or self._ended
        if finished:
            self._stop_direct(end, rest)

    def _stop_direct(self, end: DirectEnd, rest: bytes = b"") -> None:
        """Give the connection back to the tap (once)."""
        with self._cond:
            direct, self._direct = self._direct, None
        if direct is None:
            return
        os.close(direct.fd)
        direct.hand_back(end, rest, direct.decoder)


class _State(StrEnum):
    HEAD = "head"
    LENGTH = "length"
    CHUNKED = "chunked"
    UPLOAD = "upload"
    DIRECT = "direct"  # an upload whose reader reads the socket itself
    OPAQUE = "opaque"


#: Reads outside uploads land in this one buffer and are copied out at once (the loop is
#: single-threaded): no allocation per read.
_SHARED_READ = bytearray(64 << 10)
#: An upload's reads land in a fresh buffer each (its pieces wait in the pipe).
UPLOAD_READ = 256 << 10


class ConnectionTap(EarlyInput, asyncio.BufferedProtocol):
    """Follows the requests on one connection and takes uploads over (module docstring).

    A buffered protocol: the transport reads into the buffer :meth:`get_buffer` gives
    (``recv_into``), which costs a fraction of the allocation and copy of a plain
    protocol's ``recv`` (a 200 MB upload: ~15 ms of CPU instead of ~70 ms). It must not
    be an ``asyncio.Protocol`` too: uvloop would then call :meth:`data_received` with
    bytes of its own instead."""

    def __init__(self, inner: web.RequestHandler, lane: Lane | None = None) -> None:
        super().__init__(inner)
        self._lane = lane
        self._state = _State.HEAD
        self._head = bytearray()
        self._left = 0
        self._decoder: BodyDecoder | None = None
        self._pipe: UploadPipe | None = None
        self._uploads: dict[str, UploadPipe] = {}
        self._count = 0
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._read: bytearray | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._bind(transport)

    def _bind(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: uvloop's transports are not asyncio.Transport instances. Without
        # the transport an upload would have no back-pressure and never go direct.
        if callable(getattr(transport, "pause_reading", None)):
            self._transport = cast(asyncio.Transport, transport)
            self._loop = asyncio.get_running_loop()

    def take_upload(self, token: str, *, direct: bool = False) -> UploadPipe | None:
        """The pipe of the upload ``token`` (once), for its handler. With ``direct``, when
        the body still streams in on a plain socket, the handler's reader reads it from
        now on."""
        pipe = self._uploads.pop(token, None)
        if direct and pipe is not None and pipe is self._pipe and self._state is _State.UPLOAD:
            self._go_direct(pipe)
        return pipe

    def _go_direct(self, pipe: UploadPipe) -> None:
        transport, decoder = self._transport, self._decoder
        if transport is None or decoder is None or transport.is_closing():
            return
        if transport.get_extra_info("sslcontext") is not None:
            return  # TLS: only the transport can decrypt
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        transport.pause_reading()
        self._state = _State.DIRECT
        pipe.go_direct(os.dup(sock.fileno()), decoder, self._hand_back_from_thread)

    def _hand_back_from_thread(self, end: DirectEnd, rest: bytes, decoder: BodyDecoder) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._hand_back, end, rest, decoder)
        except RuntimeError:
            pass  # the loop is closed: so is the connection

    def _hand_back(self, end: DirectEnd, rest: bytes, decoder: BodyDecoder) -> None:
        """The upload's reader is done with the socket: the tap reads it again."""
        if self._state is not _State.DIRECT:
            return
        transport = self._transport
        if end is DirectEnd.ABANDONED:
            self._state, self._decoder = _State.UPLOAD, decoder  # the rest is dropped
        else:
            self._state = _State.HEAD if end is DirectEnd.BODY_DONE else _State.OPAQUE
            self._decoder = None
            self._pipe = None
        if transport is None or transport.is_closing():
            return
        transport.resume_reading()
        if rest:
            self.data_received(rest)

    def get_buffer(self, sizehint: int) -> bytearray:
        if self._state is _State.UPLOAD:
            self._read = bytearray(UPLOAD_READ)
            return self._read
        self._read = None
        return _SHARED_READ

    def buffer_updated(self, nbytes: int) -> None:
        read = self._read
        if read is None:
            with memoryview(_SHARED_READ) as view:
                self.data_received(bytes(view[:nbytes]))
            return
        self._read = None
        if nbytes * 2 < len(read):  # mostly empty: copied out rather than kept whole
            with memoryview(read) as view:
                self.data_received(bytes(view[:nbytes]))
            return
        # Not resized to ``nbytes``: the loop may still hold the buffer (uvloop does
        # during this call). Its pieces are views of it; the rest is never looked at.
        self._received(read, nbytes)

    def data_received(self, data: bytes | bytearray) -> None:
        self._received(data, len(data))

    def _received(self, data: bytes | bytearray, end: int) -> None:
        """``data[:end]`` arrived."""
        # The early-input window (a hijack request's stdin): the middle of an upload's
        # body is not copied there, only a read where something follows the body.
        in_upload = self._state is _State.UPLOAD
        if not in_upload:
            self.remember(data if end == len(data) else memoryview(data)[:end])
        if self._state is _State.OPAQUE:
            if isinstance(data, bytes) and end == len(data):
                self.inner.data_received(data)
            else:
                self.inner.data_received(bytes(memoryview(data)[:end]))
            return
        if self._state is _State.DIRECT:
            self._read_while_direct()
            return
        passed: list[bytes | memoryview] = []
        pos = 0
        while pos < end:
            state = self._state
            if state is _State.HEAD:
                pos = self._take_head(data, pos, end, passed)
            elif state is _State.LENGTH:
                take = min(self._left, end - pos)
                passed.append(memoryview(data)[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _State.HEAD
            elif state is _State.CHUNKED or state is _State.UPLOAD:
                pos = self._take_chunks(data, pos, end, passed)
            else:  # OPAQUE from here on
                passed.append(memoryview(data)[pos:end])
                pos = end
        if in_upload and self._state is not _State.UPLOAD:
            self.remember(data if end == len(data) else memoryview(data)[:end])
        if passed:
            whole = len(passed) == 1 and len(passed[0]) == end
            self.inner.data_received(
                data if whole and isinstance(data, bytes) else b"".join(passed)
            )

    def connection_lost(self, exc: Exception | None) -> None:
        pipe = self._pipe
        if pipe is not None and not pipe.ended:
            pipe.fail(exc or ConnectionResetError("the client closed the connection"))
        for waiting in self._uploads.values():
            if not waiting.ended:
                waiting.fail(ConnectionResetError("the client closed the connection"))
        super().connection_lost(exc)

    # -- states

    def _take_head(
        self, data: bytes | bytearray, pos: int, end: int, passed: list[bytes | memoryview]
    ) -> int:
        start = len(self._head)
        self._head += memoryview(data)[pos:end]
        # the head may end across the join: look from 3 bytes before the new part
        found = self._head.find(b"\r\n\r\n", max(0, start - 3))
        if found < 0:
            if len(self._head) > HEAD_MAX:
                self._opaque(passed)
            return end
        head = bytes(self._head[:found])
        used = found + 4 - start  # bytes of ``data`` (from pos) that belong to the head
        self._head.clear()
        stripped = head.lstrip(b"\r\n")
        facts = scan_head(stripped) if stripped else HeadFacts(_Framing.OPAQUE)
        head = stripped
        if facts.framing is _Framing.NONE and not passed and self._quick(head):
            return pos + used
        if facts.framing is _Framing.OPAQUE:
            passed.append(head + b"\r\n\r\n")
            self._state = _State.OPAQUE
            passed.append(memoryview(data)[pos + used : end])
            return end
        if facts.upload:
            self._count += 1
            token = str(self._count)
            pipe = UploadPipe()
            pipe.on_resume(self._resume_from_thread)
            self._uploads[token] = pipe
            self._pipe = pipe
            self._decoder = (
                ChunkDecoder() if facts.framing is _Framing.CHUNKED else LengthDecoder(facts.length)
            )
            self._state = _State.UPLOAD
            passed.append(rewrite_head(head, token))
        else:
            passed.append(head + b"\r\n\r\n")
            if facts.framing is _Framing.LENGTH:
                self._left = facts.length
                self._state = _State.LENGTH
            elif facts.framing is _Framing.CHUNKED:
                self._decoder = ChunkDecoder()
                self._state = _State.CHUNKED
        return pos + used

    def _quick(self, head: bytes) -> bool:
        """Answer a body-less request from the quick lane (``api.lane``) when aiohttp has
        nothing in progress here and the client reads its answers; False: aiohttp takes it."""
        lane, transport, loop = self._lane, self._transport, self._loop
        if (
            lane is None
            or transport is None
            or loop is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > WRITE_BUFFER_MAX
            or not handler_idle(self.inner)
        ):
            return False
        response = lane.answer(head)
        if response is None:
            return False
        transport.write(response)
        note_served(self.inner, loop)
        return True

    def _take_chunks(
        self, data: bytes | bytearray, pos: int, end: int, passed: list[bytes | memoryview]
    ) -> int:
        decoder = self._decoder
        assert decoder is not None
        upload = self._state is _State.UPLOAD
        pieces: list[memoryview] | None = [] if upload else None
        try:
            stop = decoder.feed(data, pos, pieces, end)
        except ChunkError as e:
            if upload and self._pipe is not None:
                self._pipe.fail(InvalidParameter(f"invalid chunked request body: {e}"))
                self._pipe = None
            # The connection cannot be followed any further: from here on aiohttp gets the
            # bytes as they are (a bad request to it, answered and closed after the upload's
            # own answer). Its body was the chunked one aiohttp was told nothing of.
            self._decoder = None
            self._state = _State.OPAQUE
            if not upload:
                passed.append(memoryview(data)[pos:end])
                return end
            return pos
        if upload:
            pipe = self._pipe
            assert pipe is not None and pieces is not None
            if pieces and not pipe.push(pieces) and self._transport is not None:
                self._transport.pause_reading()
            if decoder.done:
                pipe.end()
                self._pipe = None
        else:
            passed.append(memoryview(data)[pos:stop])
        if decoder.done:
            self._decoder = None
            self._state = _State.HEAD
        return stop

    def _read_while_direct(self) -> None:
        """The transport read while the upload's reader owned the socket (someone resumed
        reading): the body's bytes are split between two readers, so the upload fails
        rather than build from a body with a hole, and the connection is closed."""
        pipe = self._pipe
        if pipe is not None:
            pipe.fail(SystemFailure("the connection was read by two readers"))
        if self._transport is not None:
            self._transport.close()

    def _opaque(self, passed: list[bytes | memoryview]) -> None:
        passed.append(bytes(self._head))
        self._head.clear()
        self._state = _State.OPAQUE

    def _resume_from_thread(self) -> None:
        loop, transport = self._loop, self._transport
        if loop is not None and transport is not None:
            loop.call_soon_threadsafe(_resume, transport)


def _resume(transport: asyncio.Transport) -> None:
    if not transport.is_closing():
        transport.resume_reading()


class RequestBody:
    """What a streamed-upload handler reads (in a worker thread): ``read``, ``close`` and
    ``bytes_read`` of the tap's pipe or of aiohttp's own body stream."""

    def __init__(self, source: UploadPipe | BlockingBodyReader) -> None:
        self._source = source

    def read(self, n: int = -1, /) -> bytes:
        return self._source.read(n)

    def close(self) -> None:
        self._source.close()

    @property
    def bytes_read(self) -> int:
        return self._source.bytes_read


def open_body(request: web.Request, *, direct: bool = False) -> RequestBody:
    """The request's streamed body: the tap's pipe when the tap took the upload over, else
    aiohttp's stream (a body with a Content-Length, or a connection the tap passes
    through).

    ``direct``: the reader reads the socket itself (:meth:`UploadPipe.go_direct`). It suits
    a consumer that does little per byte (a build context compared with a kept one: 50 MB
    in ~3/4 of the time). A consumer that hashes and writes what it reads (``docker
    load``) is faster with the loop reading the next bytes while it works: 20-40% more
    MB/s than direct in A/B runs."""
    token = request.headers.get(UPLOAD_HEADER)
    transport = request.transport
    if token is not None and transport is not None:
        tap = transport.get_protocol()
        if isinstance(tap, ConnectionTap):
            pipe = tap.take_upload(token, direct=direct)
            if pipe is not None:
                return RequestBody(pipe)
    return RequestBody(BlockingBodyReader(request.content, asyncio.get_running_loop()))


def install_connection_tap(server: web.Server, lane: Lane | None = None) -> None:
    """Put a :class:`ConnectionTap` in front of aiohttp's handler on every new connection
    (call once, after ``AppRunner.setup()``, with ``runner.server``), answering what it can
    from ``lane``."""
    original = server.connection_made

    def connection_made(handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        original(handler, transport)
        tap = ConnectionTap(handler, lane)
        tap._bind(transport)
        transport.set_protocol(tap)

    # aiohttp's RequestHandler reports each new connection to its server here, before any
    # byte is read; there is no other per-connection hook short of subclassing internals.
    server.connection_made = connection_made  # type: ignore[method-assign]
