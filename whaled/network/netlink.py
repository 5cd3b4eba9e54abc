"""The kernel side of bridge networking, through netlink (pyroute2): bridges, network
namespaces kept as bind-mounted files under whaled's exec-root, veth pairs with one end in a
bridge and the other in a container's namespace. Only devices and namespaces whaled made are
touched (names it chose). Blocking: called from worker threads."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import threading
from collections.abc import Callable, Sequence

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from whaled.errors import Conflict, SystemFailure
from whaled.network import rtnl

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _index(ipr: IPRoute, ifname: str) -> int | None:
    """The index of ``ifname`` (one request; ``link_lookup`` dumps every link)."""
    try:
        return int(ipr.link("get", ifname=ifname)[0]["index"])
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return None
        raise


def ensure_bridge(
    name: str, gateway: str, prefixlen: int, mtu: int, gateway6: str = "", prefixlen6: int = 0
) -> None:
    """The bridge ``name`` exists, is up and has ``gateway/prefixlen`` (and
    ``gateway6/prefixlen6`` on an IPv6 network)."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            except NetlinkError as e:
                raise SystemFailure(f"failed to create bridge {name}: {e}") from None
            index = _index(ipr, name)
            assert index is not None
        addrs = {
            (a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)
        }
        if (gateway, prefixlen) not in addrs:
            with contextlib.suppress(NetlinkError):
                ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
        if gateway6:
            addrs6 = {
                (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in ipr.get_addr(index=index, family=10)
            }
            if (gateway6, prefixlen6) not in addrs6:
                with contextlib.suppress(NetlinkError):
                    ipr.addr(
                        "add",
                        index=index,
                        address=gateway6,
                        prefixlen=prefixlen6,
                        flags=rtnl.IFA_F_NODAD,
                    )
        ipr.link("set", index=index, state="up")


def remove_bridge(name: str) -> None:
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is not None:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=index)


def bridge_networks(name: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of bridge ``name``'s addresses (none when it does not exist)."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            return []
        out = []
        for a in ipr.get_addr(index=index, family=2):
            net = ipaddress.ip_network(
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", strict=False
            )
            if isinstance(net, ipaddress.IPv4Network):
                out.append(net)
        return out


def host_routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations the host routes to (not the default route): a new network's
    subnet must overlap none of them."""
    out: list[ipaddress.IPv4Network] = []
    with IPRoute() as ipr:
        for r in ipr.get_routes(family=2):
            dst = r.get_attr("RTA_DST")
            if dst and r["dst_len"]:
                with contextlib.suppress(ValueError):
                    net = ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)
                    if isinstance(net, ipaddress.IPv4Network):
                        out.append(net)
    return out


class BridgeGone(Conflict):
    """A network's bridge device does not exist (deleted by hand, or a host reboot)."""


def _in_netns(path: str | None, work: Callable[[], None]) -> None:
    """Run ``work`` in a fresh thread moved into the network namespace at ``path`` (a new
    one when None). ``setns``/``unshare`` move only the calling thread, and the thread ends
    after: no other thread ever leaves the host's namespace. pyroute2's own netns helpers
    fork, and a fork of the daemon shares its signal wakeup fd: a signal to the child would
    reach the daemon's loop as its own, so they are not used."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            if path is None:
                _check(_libc.unshare(CLONE_NEWNET), "unshare")
            else:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _check(_libc.setns(fd, CLONE_NEWNET), f"setns {path}")
                finally:
                    os.close(fd)
            work()
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, name="netns", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise SystemFailure(f"{what}: {os.strerror(err)}")


def make_netns(path: str) -> None:
    """A new network namespace kept at ``path`` (a bind mount), loopback up."""

    def loopback_up() -> None:
        with contextlib.closing(rtnl.open_socket()) as ns:
            (code,) = rtnl.transact(ns, [rtnl.link_up(rtnl.LOOPBACK_INDEX)])
        if code:
            raise SystemFailure(f"setting lo up: {os.strerror(code)}")

    _new_netns(path, loopback_up)


def _new_netns(path: str, work: Callable[[], None]) -> None:
    """A new network namespace kept at ``path`` (a bind mount); ``work`` runs inside it,
    on the thread that made it. On failure nothing is left at ``path``."""
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    if os.path.lexists(path):
        remove_netns(path)
    with open(path, "w"):
        pass

    def keep() -> None:
        source = f"/proc/self/task/{threading.get_native_id()}/ns/net"
        _check(_libc.mount(source.encode(), path.encode(), None, MS_BIND, None), "mount netns")
        work()

    try:
        _in_netns(None, keep)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_netns(path)
        raise


def remove_netns(path: str) -> None:
    if not os.path.lexists(path):
        return
    _libc.umount2(path.encode(), MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def unplug(host_ifname: str) -> None:
    with IPRoute() as ipr:
        index = _index(ipr, host_ifname)
        if index is not None:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=index)


def make_sandbox(path: str, links: Sequence[rtnl.Veth]) -> None:
    """A new network namespace kept at ``path`` and wired in one visit: each of ``links``
    made inside it with its peer in the host's namespace (``lo`` up, addresses, default
    routes: one batch of requests), then the host ends put into their bridges and up
    (another). Raises ``BridgeGone`` before anything is made when a bridge does not
    exist; on another failure the caller removes the namespace, and its devices with it."""
    _wire(path, links, first=0)


def plug(netns_path: str, link: rtnl.Veth, position: int) -> None:
    """One more interface, ``link``, at ``position`` among those of the (running)
    container whose namespace is at ``netns_path``; ``BridgeGone`` as ``make_sandbox``."""
    _wire(netns_path, [link], first=position)


def _wire(path: str, links: Sequence[rtnl.Veth], *, first: int) -> None:
    with contextlib.closing(rtnl.open_socket()) as host:
        masters = {}
        for v in links:
            index = rtnl.link_index(host, v.bridge)
            if index is None:
                raise BridgeGone(f"bridge {v.bridge} of the network is gone")
            masters[v.bridge] = index
        host_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            requests = rtnl.namespace_requests(links, host_ns, first=first)

            def wire() -> None:
                with contextlib.closing(rtnl.open_socket()) as ns:
                    results = rtnl.transact(ns, requests)
                stale = [
                    v.host_ifname
                    for v, code in zip(links, results, strict=False)
                    if code == errno.EEXIST
                ]
                if stale:  # left by a namespace the kernel has not destroyed yet
                    rtnl.transact(host, [rtnl.link_delete(name) for name in stale])
                    with contextlib.closing(rtnl.open_socket()) as ns:
                        results = rtnl.transact(ns, requests)
                _raise_first(results, links)

            if first == 0:
                _new_netns(path, wire)
            else:
                _in_netns(path, wire)
        finally:
            os.close(host_ns)
        enslave = [rtnl.enslave(v.host_ifname, masters[v.bridge]) for v in links]
        results = rtnl.transact(host, enslave)
        for v, code in zip(links, results, strict=True):
            if code:
                raise SystemFailure(
                    f"failed to put {v.host_ifname} into bridge {v.bridge}: {os.strerror(code)}"
                )


def _raise_first(results: Sequence[int], links: Sequence[rtnl.Veth]) -> None:
    for i, code in enumerate(results):
        if code:
            what = (
                f"failed to add the veth pair {links[i].host_ifname}"
                if i < len(links)
                else "failed to configure the container's network"
            )
            raise SystemFailure(f"{what}: {os.strerror(code)}")
