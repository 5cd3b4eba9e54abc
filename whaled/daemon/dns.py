"""The embedded DNS server of user-defined networks: one UDP listener per network on its
gateway address, port 53, which containers on the network have as their nameserver. Names
of the network's running containers (name, aliases, short ID) get their addresses on that
network, so containers find each other by name; other queries go to the host's own
nameservers (from /etc/resolv.conf, loopback ones skipped), as dockerd's resolver does.

Why the gateway (podman's aardvark-dns choice) and not dockerd's 127.0.0.11 inside each
container: 127.0.0.11 needs a listener in every container's namespace (dockerd runs one per
sandbox and rewrites the port with iptables inside it) — a thread or a process per container
and NAT rules in namespaces whaled does not otherwise touch. The gateway is an address the
host already has on the bridge: one listener per network serves every container on it, and
the container's resolv.conf simply names it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import Any, cast

from whaled.network.model import Network
from whaled.osutil.files import read_text

log = logging.getLogger(__name__)

DNS_PORT = 53
UPSTREAM_TIMEOUT = 2.0
#: (network ID, the querying address) → name → addresses
NetworkNames = Callable[[str, str], Mapping[str, Sequence[str]]]


def host_nameservers(resolv_conf: str | None) -> list[str]:
    """The host's nameservers that a container network can reach (not loopback ones)."""
    out = []
    for line in (resolv_conf or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            ns = parts[1]
            if not ns.startswith("127.") and ns not in ("::1",) and ":" not in ns:
                out.append(ns)
    return out


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future[bytes]) -> None:
        self._done = done

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self._done.done():
            self._done.set_result(data)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, owner: NetworkDns, network_id: str) -> None:
        # dnspython (~35 ms to import) only once a network has a DNS server
        from whaled.network import dnsmsg

        self._dns = dnsmsg
        self._owner = owner
        self._network_id = network_id
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        names = self._owner.names(self._network_id, addr[0])
        reply, forward = self._dns.answer(data, lambda name: names.get(name))
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)
        elif forward:
            self._owner.spawn(self._forward(data, addr))

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        for server in host_nameservers(read_text("/etc/resolv.conf")):
            loop = asyncio.get_running_loop()
            done: asyncio.Future[bytes] = loop.create_future()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    partial(_Upstream, done), remote_addr=(server, DNS_PORT)
                )
            except OSError:
                continue
            try:
                transport.sendto(data)
                reply = await asyncio.wait_for(done, UPSTREAM_TIMEOUT)
            except (TimeoutError, OSError):
                continue
            finally:
                transport.close()
            if self.transport is not None:
                self.transport.sendto(reply, addr)
            return
        fail = self._dns.failure(data)
        if fail is not None and self.transport is not None:
            self.transport.sendto(fail, addr)


class NetworkDns:
    def __init__(self, names: NetworkNames) -> None:
        self.names = names
        self._listeners: dict[str, _Listener] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, n: Network) -> None:
        if n.id in self._listeners or not n.gateway:
            return
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: _Listener(self, n.id), local_addr=(n.gateway, DNS_PORT)
            )
        except OSError as e:
            log.warning("network %s: no embedded DNS on %s:53: %s", n.name, n.gateway, e)
            return
        self._listeners[n.id] = protocol

    def stop(self, network_id: str) -> None:
        listener = self._listeners.pop(network_id, None)
        if listener is not None and listener.transport is not None:
            listener.transport.close()

    async def close(self) -> None:
        for nid in list(self._listeners):
            self.stop(nid)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
