"""conmon's attach socket as an :class:`~whaled.runtime.backend.api.AttachStream`.

The socket is a SOCK_SEQPACKET unix socket: each packet conmon sends is one byte naming the
stream (``STREAM_STDOUT``/``STREAM_STDERR``) followed by the data; what we send is the
process's stdin, at most ``STDIN_PACKET`` bytes per packet (conmon reads into a fixed
buffer) and never an empty packet (conmon reads that as the end of stdin). Half-closing the
connection ends the process's stdin while its output goes on arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from whaled.errors import Conflict
from whaled.runtime.backend.api import STREAM_STDERR, STREAM_STDOUT

#: conmon reads stdin packets into a fixed buffer: never send more per packet.
STDIN_PACKET = 4096
_RECV = 65536
_STREAMS = (STREAM_STDOUT, STREAM_STDERR)


class ConmonAttachStream:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reset = False

    async def recv(self) -> tuple[int, bytes] | None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                packet = await loop.sock_recv(self._sock, _RECV)
            except ConnectionResetError:
                # The monitor hung up with stdin we sent still unread (the process exited
                # without reading it all). The kernel reports that once, ahead of the
                # output still queued here: read on to the end.
                if self._reset:
                    return None
                self._reset = True
                continue
            except OSError:
                return None
            self._reset = False
            if not packet:
                return None
            if packet[0] in _STREAMS and len(packet) > 1:
                return packet[0], packet[1:]

    async def send(self, data: bytes) -> bool:
        loop = asyncio.get_running_loop()
        for i in range(0, len(data), STDIN_PACKET):
            try:
                await loop.sock_sendall(self._sock, data[i : i + STDIN_PACKET])
            except OSError:
                return False  # the process is gone; the output side sees the end
        return True

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._sock.close()


async def open_attach_socket(path: str) -> ConmonAttachStream:
    """Connect to a monitor's attach socket; 409 when the process is not running."""
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
    return ConmonAttachStream(sock)
