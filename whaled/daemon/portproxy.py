"""Published ports through a userland proxy (what dockerd's docker-proxy does): each
published port is a listening socket of the daemon that relays every TCP connection to the
container's address on its network, both directions, half-closes passed on. Listeners
exist while the container runs."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from functools import partial

from whaled.errors import InvalidParameter, SystemFailure
from whaled.network.ports import PortMapping

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
Published = tuple[PortMapping, str, int]  # mapping, host address, host port bound


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


class PortProxy:
    def __init__(self) -> None:
        self._servers: dict[str, list[tuple[PortMapping, str, int, asyncio.Server]]] = {}

    async def publish(
        self, container_id: str, endpoint: str, mappings: list[PortMapping], target: str
    ) -> None:
        """Listen for each mapping and relay to ``target`` (the container's address);
        all or nothing (a port in use fails the start with dockerd's message)."""
        opened: list[tuple[PortMapping, str, int, asyncio.Server]] = []
        try:
            for m in mappings:
                if m.proto != "tcp":
                    raise InvalidParameter(f"publishing {m.proto} ports is not supported yet")
                host = m.host_ip or "0.0.0.0"
                try:
                    server = await asyncio.start_server(
                        partial(_relay, target, m.container_port), host, m.host_port
                    )
                except OSError as e:
                    reason = (
                        "port is already allocated"
                        if e.errno == errno.EADDRINUSE
                        else (e.strerror or str(e))
                    )
                    raise SystemFailure(
                        "driver failed programming external connectivity on endpoint "
                        f"{endpoint}: Bind for {host}:{m.host_port} failed: {reason}"
                    ) from None
                bound = server.sockets[0].getsockname()[1]
                opened.append((m, host, int(bound), server))
        except BaseException:
            for *_, server in opened:
                server.close()
            raise
        self._servers[container_id] = opened

    def unpublish(self, container_id: str) -> None:
        for *_, server in self._servers.pop(container_id, []):
            server.close()

    def published(self, container_id: str) -> list[Published]:
        return [(m, host, port) for m, host, port, _ in self._servers.get(container_id, [])]
