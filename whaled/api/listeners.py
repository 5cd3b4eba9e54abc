"""The API's listening sockets: unix sockets (0660, group ``docker``) and TCP (+TLS).

Standard library only: they are opened at the very start, before the daemon's heavy imports
(:mod:`whaled.api.early`), so that clients find the socket at once.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import ssl
import stat

from whaled.config.hosts import ListenAddress, parse_host
from whaled.config.model import Config
from whaled.config.validate import tls_paths
from whaled.errors import Conflict, SystemFailure

log = logging.getLogger("whaled.api")

#: (url, listening socket, TLS context) of one ``-H`` address.
Listener = tuple[str, socket.socket, ssl.SSLContext | None]


def open_unix_socket(path: str, group: str) -> socket.socket:
    """Bind a unix socket, refusing to steal one another live daemon is serving."""
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise SystemFailure(f"cannot listen on {path}: it exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale socket from a previous run
        else:
            raise Conflict(f"cannot listen on {path}: another daemon is serving it")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o660)
        gid = _group_id(group)
        if gid is not None:
            os.chown(path, 0, gid)
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise SystemFailure(f"cannot listen on unix://{path}: {e}") from e
    sock.setblocking(False)
    return sock


def _group_id(name: str) -> int | None:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name != "docker":
            log.warning("group %s not found; the socket keeps group root", name)
        return None


def open_tcp_socket(address: ListenAddress) -> socket.socket:
    host = address.host or "::"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not address.host:
        family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
        host = "::" if family == socket.AF_INET6 else "0.0.0.0"
    if address.host == "localhost":
        family, host = socket.AF_INET, "127.0.0.1"
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not address.host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, address.port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise SystemFailure(f"cannot listen on {address.url()}: {e}") from e
    sock.setblocking(False)
    return sock


def tls_context(cert: str, key: str, ca: str | None) -> ssl.SSLContext:
    """Server TLS; with ``ca`` (--tlsverify) a client certificate signed by it is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        if ca is not None:
            ctx.load_verify_locations(ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise SystemFailure(f"could not load TLS material: {e}") from e
    return ctx


def remove_unix_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def open_listeners(cfg: Config) -> list[Listener]:
    """(url, socket, tls context) for every -H address."""
    tls_on = bool(cfg.tls) or cfg.tlsverify
    context = None
    if tls_on:
        ca, cert, key = tls_paths(cfg, os.path.expanduser("~"))
        context = tls_context(cert, key, ca if cfg.tlsverify else None)
    opened: list[Listener] = []
    try:
        for host in cfg.effective_hosts():
            address = parse_host(host, tls=tls_on)
            if address.proto == "unix":
                opened.append((address.url(), open_unix_socket(address.path, cfg.group), None))
            else:
                if not tls_on:
                    log.warning(
                        "API is accessible on http://%s:%d without encryption",
                        address.host or "0.0.0.0",
                        address.port,
                    )
                opened.append((address.url(), open_tcp_socket(address), context))
    except BaseException:
        for _, sock, _ in opened:
            sock.close()
        raise
    return opened
