"""The upload pipe's direct mode over a real socket pair: the handler's reader reads the
rest of the body from the connection itself, hands out what the tap had pushed first, and
gives the connection back to the tap once (body done, abandoned, cut or badly framed)."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from whaled.api.uploads import ChunkDecoder, DirectEnd, LengthDecoder, UploadPipe
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
