"""Parsing of ``-H/--host`` listen addresses (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from whaled.config.model import DEFAULT_UNIX_SOCKET
from whaled.errors import ConfigError

DEFAULT_HTTP_PORT = 2375
DEFAULT_TLS_PORT = 2376


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenAddress:
    proto: str  # "unix" or "tcp"
    path: str = ""  # unix
    host: str = ""  # tcp; "" means every address
    port: int = 0  # tcp

    def url(self) -> str:
        if self.proto == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"



def parse_host(value: str, tls: bool = False) -> ListenAddress:
    """Parse one ``-H`` value the way dockerd does (``fd://`` is not supported)."""
    text = value.strip()
    if text in ("", "unix://"):
        return ListenAddress(proto="unix", path=DEFAULT_UNIX_SOCKET)
    if "://" not in text:
        text = "tcp://" + text
    proto, _, rest = text.partition("://")
    if proto == "unix":
        if not rest.startswith("/"):
            raise ConfigError(f"invalid bind address ({value}): unix socket path must be absolute")
        return ListenAddress(proto="unix", path=rest)
    if proto == "fd":
        raise ConfigError(f"invalid bind address ({value}): fd:// is not supported by whaled")
    if proto != "tcp":
        raise ConfigError(f"invalid bind address ({value}): unsupported protocol '{proto}'")
    if "/" in rest.rstrip("/"):
        raise ConfigError(f"invalid bind address ({value}): should not contain a path element")
    rest = rest.rstrip("/")
    if rest.startswith("["):
        host, sep, port_text = rest[1:].partition("]")
        if not sep:
            raise ConfigError(f"invalid bind address ({value}): missing ']' in address")
        port_text = port_text.removeprefix(":")
    elif rest.count(":") > 1:
        raise ConfigError(f"invalid bind address ({value}): IPv6 addresses need brackets")
    else:
        host, _, port_text = rest.partition(":")
    if host == "0.0.0.0" or host == "::":
        host = ""
    if port_text == "":
        port = DEFAULT_TLS_PORT if tls else DEFAULT_HTTP_PORT
    else:
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(
                f"invalid bind address ({value}): invalid port '{port_text}'"
            ) from None
        if not 0 < port < 65536:
            raise ConfigError(f"invalid bind address ({value}): port out of range")
    return ListenAddress(proto="tcp", host=host, port=port)
