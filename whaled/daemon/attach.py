"""Bridging a client's stdio to a monitor's attach socket (no HTTP here).

conmon's attach socket is a SOCK_SEQPACKET unix socket: each packet the monitor sends is one
byte naming the stream (``STREAM_STDOUT``/``STREAM_STDERR``) followed by the data; what we
send is the process's stdin. :func:`pump` moves bytes both ways until the output ends (the
process exited and the monitor hung up), the client detached with the detach keys, or the
client went away. Stdin EOF from the client is passed on by half-closing the connection,
so the output of e.g. ``cat`` still arrives on it afterwards.

Input and output run as two independent tasks, so neither waits for the other (a process
whose output fills up while stdin still comes cannot deadlock the pair); each side waits
only for its own peer (the client's transport, the socket), so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from whaled.errors import Conflict
from whaled.runtime.backend.api import STREAM_STDERR, STREAM_STDOUT

#: Docker's stream numbers in multiplexed frames.
DOCKER_STDOUT = 1
DOCKER_STDERR = 2
#: conmon reads stdin packets into a fixed buffer: never send more per packet.
STDIN_PACKET = 4096
_RECV = 65536


class Detacher(Protocol):
    def feed(self, data: bytes) -> tuple[bytes, bool]: ...


StdinSource = Callable[[], Awaitable[bytes]]
OutputSink = Callable[[int, bytes], Awaitable[None]]


class PumpEnd(enum.StrEnum):
    OUTPUT_ENDED = "output-ended"
    DETACHED = "detached"
    CLIENT_GONE = "client-gone"


async def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise Conflict("the container's process is not running") from None
    except BaseException:
        sock.close()
        raise
    return sock


async def pump(
    sock: socket.socket,
    *,
    stdin: StdinSource | None,
    output: OutputSink,
    stdout: bool = True,
    stderr: bool = True,
    detacher: Detacher | None = None,
    eof_closes_stdin: bool = True,
    client_gone: Awaitable[None] | None = None,
) -> PumpEnd:
    """Run until the output ends, the client detaches or goes away. Closes ``sock``.

    ``eof_closes_stdin``: the client's stdin EOF ends the process's stdin (Docker's
    StdinOnce, and exec sessions); otherwise the process's stdin stays open for later
    attaches and the EOF only stops this client's input. ``client_gone`` resolves when the
    client's connection is gone: the pump ends then, also while there is no output (a
    half-close only ends stdin)."""
    loop = asyncio.get_running_loop()
    wanted = {STREAM_STDOUT: stdout, STREAM_STDERR: stderr}
    docker_stream = {STREAM_STDOUT: DOCKER_STDOUT, STREAM_STDERR: DOCKER_STDERR}

    async def pump_output() -> PumpEnd:
        reset = False
        while True:
            try:
                packet = await loop.sock_recv(sock, _RECV)
            except ConnectionResetError:
                # The monitor hung up with stdin we sent still unread (the process exited
                # without reading it all). The kernel reports that once, ahead of the
                # output still queued here: read on to the end.
                if reset:
                    return PumpEnd.OUTPUT_ENDED
                reset = True
                continue
            except OSError:
                return PumpEnd.OUTPUT_ENDED
            reset = False
            if not packet:
                return PumpEnd.OUTPUT_ENDED
            kind = packet[0]
            if kind not in wanted or not wanted[kind] or len(packet) == 1:
                continue
            try:
                await output(docker_stream[kind], packet[1:])
            except (ConnectionError, OSError, RuntimeError):
                return PumpEnd.CLIENT_GONE

    async def pump_input() -> PumpEnd | None:
        assert stdin is not None
        while True:
            try:
                data = await stdin()
            except (ConnectionError, OSError):
                return PumpEnd.CLIENT_GONE
            if not data:
                if eof_closes_stdin:
                    # Half-close: conmon ends the process's stdin while it goes on sending
                    # output on this connection.
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                return None  # stdin done; keep the output flowing
            detached = False
            if detacher is not None:
                data, detached = detacher.feed(data)
            # Never an empty packet: conmon reads a zero-length packet as the end of stdin.
            for i in range(0, len(data), STDIN_PACKET):
                try:
                    await loop.sock_sendall(sock, data[i : i + STDIN_PACKET])
                except OSError:
                    return None  # the process is gone; the output side sees the end
            if detached:
                return PumpEnd.DETACHED

    out_task = asyncio.ensure_future(pump_output())
    in_task = asyncio.ensure_future(pump_input()) if stdin is not None else None
    gone_task = asyncio.ensure_future(client_gone) if client_gone is not None else None
    try:
        pending: set[asyncio.Future[Any]] = {out_task}
        if in_task is not None:
            pending.add(in_task)
        if gone_task is not None:
            pending.add(gone_task)
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if out_task in done:
                return out_task.result()
            if in_task is not None and in_task in done:
                end = in_task.result()
                if end is not None:
                    return end
            if gone_task is not None and gone_task in done:
                return PumpEnd.CLIENT_GONE
    finally:
        for t in (out_task, in_task, gone_task):
            if t is not None and not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        sock.close()
