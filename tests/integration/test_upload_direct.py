"""The upload pipe's direct mode over a real socket pair: the handler's reader reads the
rest of the body from the connection itself, hands out what the tap had pushed first, and
gives the connection back to the tap once (body done, abandoned, cut or badly framed)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable

import pytest
import uvloop

from whaled.api.uploads import (
    ChunkDecoder,
    ConnectionTap,
    DirectEnd,
    LengthDecoder,
    UploadPipe,
    _State,
)
from whaled.errors import SystemFailure


def _chunked(parts: list[bytes], trailer: bytes = b"") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return out + b"0\r\n" + trailer + b"\r\n"


class _HandBacks:
    """What the pipe gave back to the tap, with the thread-safe event the tests wait on."""

    def __init__(self) -> None:
        self.calls: list[tuple[DirectEnd, bytes, object]] = []
        self.done = threading.Event()

    def __call__(self, end: DirectEnd, rest: bytes, decoder: object) -> None:
        self.calls.append((end, rest, decoder))
        self.done.set()


def _direct_pipe(
    decoder: ChunkDecoder | LengthDecoder | None = None,
) -> tuple[UploadPipe, socket.socket, _HandBacks, ChunkDecoder | LengthDecoder]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    pipe = UploadPipe()
    backs = _HandBacks()
    decoder = decoder or ChunkDecoder()
    pipe.go_direct(os.dup(ours.fileno()), decoder, backs)
    ours.close()  # the pipe reads its own dup
    return pipe, theirs, backs, decoder


def _read_all(pipe: UploadPipe) -> bytes:
    out = bytearray()
    while data := pipe.read(1 << 20):
        out += data
    return bytes(out)


def test_a_direct_reader_reads_the_body_and_hands_back_what_follows_it() -> None:
    body = [bytes(range(256)) * 1000, b"x" * 70000, b"end"]
    pipe, client, backs, _ = _direct_pipe()
    sender = threading.Thread(
        target=client.sendall, args=(_chunked(body, b"X-T: 1\r\n") + b"GET /_ping HTTP/1.1\r\n",)
    )
    sender.start()
    assert _read_all(pipe) == b"".join(body)
    sender.join()
    assert backs.done.is_set()
    ((end, rest, _),) = backs.calls
    assert end is DirectEnd.BODY_DONE and rest == b"GET /_ping HTTP/1.1\r\n"
    assert pipe.bytes_read == sum(map(len, body)) and pipe.ended
    client.close()


def test_a_direct_reader_first_hands_out_what_the_tap_had_pushed() -> None:
    ours, client = socket.socketpair()
    ours.setblocking(False)
    pipe = UploadPipe()
    decoder = LengthDecoder(10)
    pieces: list[memoryview] = []
    decoder.feed(b"0123", 0, pieces)  # the tap's part, before the handler took the pipe
    assert pipe.push(pieces)
    backs = _HandBacks()
    pipe.go_direct(os.dup(ours.fileno()), decoder, backs)
    ours.close()
    client.sendall(b"456789")
    assert _read_all(pipe) == b"0123456789"
    assert backs.calls[0][:2] == (DirectEnd.BODY_DONE, b"")
    client.close()


def test_a_direct_reader_whose_client_leaves_fails_and_gives_the_connection_back() -> None:
    pipe, client, backs, decoder = _direct_pipe()
    client.sendall(b"5\r\nhello\r\n")
    client.close()
    assert pipe.read() == b"hello"
    with pytest.raises(SystemFailure, match="cut"):
        pipe.read()
    ((end, _, handed),) = backs.calls
    assert end is DirectEnd.ABANDONED and handed is decoder


def test_bad_framing_read_directly_fails_and_passes_the_bytes_on() -> None:
    pipe, client, backs, _ = _direct_pipe()
    client.sendall(b"zz\r\n")
    with pytest.raises(SystemFailure, match="invalid chunked request body"):
        pipe.read()
    ((end, rest, _),) = backs.calls
    assert end is DirectEnd.BROKEN and rest == b"zz\r\n"
    client.close()


def test_closing_a_direct_pipe_gives_the_rest_of_the_body_back_to_the_tap() -> None:
    pipe, client, backs, decoder = _direct_pipe()
    pipe.close()  # the handler answered before reading (an error)
    ((end, _, handed),) = backs.calls
    assert end is DirectEnd.ABANDONED and handed is decoder
    with pytest.raises(SystemFailure, match="abandoned"):
        pipe.read()
    client.close()


def test_closing_while_the_reader_waits_on_the_socket_wakes_it() -> None:
    pipe, client, backs, _ = _direct_pipe()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            pipe.read()
        except SystemFailure as e:
            errors.append(e)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.05)  # the reader polls the silent socket
    pipe.close()
    thread.join(5)
    assert not thread.is_alive() and errors
    assert backs.done.wait(5) and len(backs.calls) == 1
    assert backs.calls[0][0] is DirectEnd.ABANDONED
    client.close()


class _Inner(asyncio.Protocol):
    """aiohttp's place behind the tap: collects what the tap passes on."""

    def __init__(self) -> None:
        self.data = b""

    def data_received(self, data: bytes) -> None:
        self.data += data


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_the_tap_pauses_a_full_upload_and_lets_a_build_context_be_read_directly(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # The daemon's loop is uvloop's, whose transports are no asyncio.Transport instances:
    # the tap lost its transport there, so an upload had no back-pressure and a build
    # context was never read directly.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        inner = _Inner()
        transport, _ = await loop.connect_accepted_socket(lambda: inner, ours)
        tap = ConnectionTap(inner)  # as install_connection_tap puts it in front
        tap._bind(transport)
        transport.set_protocol(tap)
        body = bytes(range(256)) * (40 << 12)  # 40 MiB: far past the pipe's high water
        head = b"POST /v1.45/build?t=x HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n"
        sender = threading.Thread(target=theirs.sendall, args=(head + _chunked([body]),))
        sender.start()
        while b"X-Whaled-Upload: " not in inner.data:
            await asyncio.sleep(0.01)
        token = inner.data.split(b"X-Whaled-Upload: ")[1].split(b"\r\n")[0].decode()
        for _ in range(500):  # nobody reads the pipe yet: the tap stops reading
            if not transport.is_reading():
                break
            await asyncio.sleep(0.01)
        assert not transport.is_reading()
        pipe = tap.take_upload(token, direct=True)
        assert pipe is not None
        assert tap._state is _State.DIRECT  # the pipe's reader reads the socket now
        got = await asyncio.to_thread(_read_all, pipe)
        await asyncio.to_thread(sender.join)
        assert got == body
        while tap._state is not _State.HEAD:  # handed back after the body
            await asyncio.sleep(0.01)
        transport.close()
        theirs.close()

    loop = loop_factory()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
