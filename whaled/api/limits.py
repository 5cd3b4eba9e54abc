"""Bounds on what one client can hold: time, connections, memory (pure; standard library).

Limits (dockerd's Go ``http.Server`` has ``ReadHeaderTimeout``; aiohttp has none of these by
default):

- a request head must arrive within :attr:`ServerLimits.head_timeout` of the connection
  opening or of the previous response (aiohttp's keep-alive timer, which also covers a head
  left half-sent);
- at most :attr:`ServerLimits.max_connections` connections are open at once, a cap below
  ``RLIMIT_NOFILE`` that leaves room for the containers' files: at the cap, a listener stops
  accepting (new clients wait in the kernel's backlog) instead of accepting and failing;
- JSON request bodies are limited in size and read time (``whaled.api.app``); streamed
  uploads (load, import, archive) and streamed answers stay unbounded in time.

Tests lower the limits through ``_WHALED_*`` environment variables (:func:`server_limits`);
they are not a user-facing setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from whaled.errors import SystemFailure

#: dockerd sets ``ReadHeaderTimeout`` to 5 minutes; a minute is plenty for a head of at most
#: a few kB on a local socket and frees a slow client's slot five times sooner.
HEAD_TIMEOUT_SECONDS = 60.0
#: Time to receive a whole JSON request body once its head arrived.
JSON_BODY_TIMEOUT_SECONDS = 60.0
#: The largest JSON request body. dockerd has no explicit limit (Go's decoder streams); the
#: biggest real bodies are container creates, whose environment and command line the kernel
#: caps at a few MB anyway (ARG_MAX), so 10 MiB refuses nothing legitimate while keeping a
#: hostile body from costing more than that much memory.
JSON_BODY_MAX_BYTES = 10 << 20

_ENV_HEAD_TIMEOUT = "_WHALED_HEAD_TIMEOUT"
_ENV_BODY_TIMEOUT = "_WHALED_BODY_TIMEOUT"
_ENV_MAX_CONNECTIONS = "_WHALED_MAX_CONNECTIONS"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    """Bounds on what one client can hold: time, connections, memory."""

    head_timeout: float = HEAD_TIMEOUT_SECONDS
    body_timeout: float = JSON_BODY_TIMEOUT_SECONDS
    json_body_max: int = JSON_BODY_MAX_BYTES
    max_connections: int = 1024


def connection_cap(nofile_soft: int) -> int:
    """Open API connections allowed under a soft ``RLIMIT_NOFILE`` of ``nofile_soft``: a
    quarter of the descriptors (at least 512) stay for containers' logs, attach sockets,
    pipes and the daemon's own files."""
    reserve = max(nofile_soft // 4, 512)
    return max(nofile_soft - reserve, 32)


def server_limits(environ: Mapping[str, str], nofile_soft: int) -> ServerLimits:
    """The limits for a daemon whose soft fd limit is ``nofile_soft``, with the internal
    test overrides from ``environ`` applied."""

    def number(key: str, default: float) -> float:
        raw = environ.get(key, "")
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SystemFailure(f"{key}: not a number: {raw!r}") from None
        if value <= 0:
            raise SystemFailure(f"{key}: must be positive, got {raw!r}")
        return value

    return ServerLimits(
        head_timeout=number(_ENV_HEAD_TIMEOUT, HEAD_TIMEOUT_SECONDS),
        body_timeout=number(_ENV_BODY_TIMEOUT, JSON_BODY_TIMEOUT_SECONDS),
        max_connections=int(number(_ENV_MAX_CONNECTIONS, connection_cap(nofile_soft))),
    )
