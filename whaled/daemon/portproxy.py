"""The host side of published ports: a socket bound to each one while its container runs.
The socket reserves the port (so a taken one fails the start with dockerd's message, and
nothing else takes it later) and picks the random ones. With the userland proxy (dockerd's
``userland-proxy``, on by default) it also listens and relays what reaches it — traffic to
the host's loopback, which the NAT rules leave alone — to the container's address: TCP
connections both ways with half-closes passed on, UDP datagrams per client. Without the
proxy the socket only holds the port; the kernel's DNAT rules do the forwarding."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import cast

from whaled.errors import InvalidParameter, SystemFailure
from whaled.network.ports import PortMapping, PublishedPort

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
#: UDP clients remembered per published port (the oldest is forgotten beyond this)
UDP_PEERS = 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _relay(
    target: str, port: int, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
) -> None:
    try:
        up_r, up_w = await asyncio.open_connection(target, port)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
    finally:
        for w in (client_w, up_w):
            w.close()
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()


class _UdpBack(asyncio.DatagramProtocol):
    """The container's answers to one client, sent back from the published port."""

    def __init__(self, front: _UdpFront, client: tuple[str, int]) -> None:
        self._front = front
        self._client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._front.transport is not None:
            self._front.transport.sendto(data, self._client)


class _UdpFront(asyncio.DatagramProtocol):
    def __init__(self, target: str, port: int) -> None:
        self._target = (target, port)
        self.transport: asyncio.DatagramTransport | None = None
        #: per client: its own socket to the container (None while it is being opened),
        #: and datagrams waiting for it
        self._peers: dict[tuple[str, int], asyncio.DatagramTransport | None] = {}
        self._waiting: dict[tuple[str, int], list[bytes]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr in self._peers:
            up = self._peers[addr]
            if up is None:
                self._waiting[addr].append(data)
            else:
                up.sendto(data)
            return
        if len(self._peers) >= UDP_PEERS:
            oldest = next(iter(self._peers))
            old = self._peers.pop(oldest)
            self._waiting.pop(oldest, None)
            if old is not None:
                old.close()
        self._peers[addr] = None
        self._waiting[addr] = [data]
        asyncio.get_running_loop().create_task(self._open(addr))

    async def _open(self, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            up, _ = await loop.create_datagram_endpoint(
                partial(_UdpBack, self, addr), remote_addr=self._target
            )
        except OSError:
            self._peers.pop(addr, None)
            self._waiting.pop(addr, None)
            return
        if addr not in self._peers or self.transport is None:
            up.close()  # forgotten or closed meanwhile
            return
        self._peers[addr] = up
        for data in self._waiting.pop(addr, []):
            up.sendto(data)

    def close(self) -> None:
        for up in self._peers.values():
            if up is not None:
                up.close()
        self._peers.clear()
        self._waiting.clear()
        if self.transport is not None:
            self.transport.close()
            self.transport = None


@dataclass(slots=True)
class _Bound:
    port: PublishedPort
    sock: socket.socket
    closers: list[asyncio.AbstractServer | _UdpFront] = field(default_factory=list)

    def close(self) -> None:
        for c in self.closers:
            c.close()
        self.sock.close()


def _bind(proto: str, host: str, port: int, *, listener: bool) -> socket.socket:
    """A socket bound to ``host:port``. Only a listener takes SO_REUSEADDR (it must rebind
    over its old connections' TIME_WAIT): two sockets that have it may share a port as long
    as neither listens, so a mere reservation with it would reserve nothing."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        if proto == "tcp" and listener:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except BaseException:
        s.close()
        raise
    s.setblocking(False)
    return s


def _bind_mapping(m: PortMapping, endpoint: str, *, listener: bool) -> tuple[socket.socket, int]:
    """A socket bound for ``m`` (the first free port of its range) and the port."""
    if m.proto not in ("tcp", "udp"):
        raise InvalidParameter(f"publishing {m.proto} ports is not supported")
    host = m.host_ip or "0.0.0.0"
    failure: OSError | None = None
    for port in m.candidates():
        try:
            s = _bind(m.proto, host, port, listener=listener)
        except OSError as e:
            failure = e
            continue
        return s, int(s.getsockname()[1])
    assert failure is not None
    shown = f"{m.host_port}-{m.host_port_end}" if m.host_port_end else str(m.host_port)
    reason = (
        "port is already allocated"
        if failure.errno == errno.EADDRINUSE
        else (failure.strerror or str(failure))
    )
    raise SystemFailure(
        f"driver failed programming external connectivity on endpoint {endpoint}: "
        f"Bind for {host}:{shown} failed: {reason}"
    )


class HostPorts:
    def __init__(self) -> None:
        #: relay what reaches the sockets (dockerd's ``userland-proxy``); set at start
        self.proxy = True
        self._bound: dict[str, list[_Bound]] = {}

    async def bind(
        self, container_id: str, endpoint: str, mappings: Sequence[PortMapping], target: str
    ) -> list[PublishedPort]:
        """Bind each mapping (and relay to ``target``, the container's address, with the
        proxy); all or nothing: a port in use fails with dockerd's message."""
        done: list[_Bound] = []
        try:
            for m in mappings:
                sock, port = _bind_mapping(m, endpoint, listener=self.proxy)
                b = _Bound(
                    PublishedPort(
                        proto=m.proto,
                        container_port=m.container_port,
                        host_ip=m.host_ip or "0.0.0.0",
                        host_port=port,
                    ),
                    sock,
                )
                done.append(b)
                await self._serve(b, target)
        except BaseException:
            for b in done:
                b.close()
            raise
        self.release(container_id)
        self._bound[container_id] = done
        return [b.port for b in done]

    async def rebind(
        self, container_id: str, ports: Sequence[PublishedPort], target: str
    ) -> list[PublishedPort]:
        """Daemon start: the ports a running container had (live-restore) are bound
        again; one that something else took meanwhile is logged and left out."""
        done: list[_Bound] = []
        for p in ports:
            try:
                b = _Bound(p, _bind(p.proto, p.host_ip, p.host_port, listener=self.proxy))
                await self._serve(b, target)
            except OSError as e:
                log.warning(
                    "container %s: cannot bind %s:%d/%s again: %s",
                    container_id[:12],
                    p.host_ip,
                    p.host_port,
                    p.proto,
                    e.strerror or e,
                )
                continue
            done.append(b)
        self.release(container_id)
        self._bound[container_id] = done
        return [b.port for b in done]

    async def _serve(self, b: _Bound, target: str) -> None:
        if not self.proxy:
            return
        port = b.port.container_port
        if b.port.proto == "tcp":
            b.sock.listen(128)
            server = await asyncio.start_server(partial(_relay, target, port), sock=b.sock)
            b.closers.append(server)
        else:
            front = _UdpFront(target, port)
            await asyncio.get_running_loop().create_datagram_endpoint(lambda: front, sock=b.sock)
            b.closers.append(front)

    def release(self, container_id: str) -> None:
        for b in self._bound.pop(container_id, []):
            b.close()

    def release_all(self) -> None:
        for cid in list(self._bound):
            self.release(cid)

    def published(self, container_id: str) -> list[PublishedPort]:
        return [b.port for b in self._bound.get(container_id, [])]
