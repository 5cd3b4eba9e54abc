"""Socket facts the kernel keeps that the standard library does not expose."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from asyncio.trsock import TransportSocket

#: ``SIOCOUTQ``: on a socket, the same request number as ``TIOCOUTQ``.
_SIOCOUTQ = termios.TIOCOUTQ


def unread_by_peer(sock: socket.socket | TransportSocket) -> int | None:
    """Bytes sent on the unix stream socket ``sock`` that the peer has not read yet
    (``SIOCOUTQ``: a unix socket's send queue holds what sits unread in the peer's receive
    queue). None where the kernel cannot tell that: another family (for TCP the figure is
    what the peer's kernel has not acknowledged, not what its reader took), or an error.
    """
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        return None
    try:
        raw = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return None
    return int(struct.unpack("i", raw)[0])
