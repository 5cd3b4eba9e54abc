"""Network modes (pure): what a create may ask for and what it means.

- ``none``: a network namespace with loopback only;
- ``host``: the host's network namespace; the container's hostname is the host's unless one
  is given;
- ``container:<id|name>``: the network namespace of another running container, which must
  not itself join one;
- ``default``/``bridge``: the default bridge network (``whaled0``); with ``bridge: none``
  accepted with a warning: a private namespace with loopback only;
- the name of a user-defined bridge network (``docker network create``): a namespace wired
  to that network's bridge; any other name is dockerd's 404 ``network <name> not found``;
- port publishing (tcp and udp) needs a bridge (user-defined or the default one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from whaled.errors import InvalidParameter, NotFound

SUPPORTED_NETWORK_MODES = ("none", "host", "default", "bridge")
CONTAINER_PREFIX = "container:"

HOST_PORTS_WARNING = "Published ports are discarded when using host network mode"
NO_BRIDGE_WARNING = (
    "the default bridge network is off (bridge: none): the container gets its own network "
    "namespace with loopback only"
)


def check_network_config(hc: Mapping[str, Any], *, wired: bool = False) -> list[str]:
    """A create's ``NetworkMode`` and ``PortBindings``: raise for what whaled cannot do,
    return the warnings. ``wired``: the mode's containers get a wired namespace (a
    user-defined network, or the default bridge when it is on)."""
    warnings: list[str] = []
    mode = str(hc["NetworkMode"])
    if not (wired or mode in SUPPORTED_NETWORK_MODES or mode.startswith(CONTAINER_PREFIX)):
        raise NotFound(f"network {mode} not found")
    if mode in ("default", "bridge") and not wired:
        warnings.append(NO_BRIDGE_WARNING)
    publishes = bool(any(hc.get("PortBindings") or {}) or hc.get("PublishAllPorts"))
    if publishes and mode == "host":
        warnings.append(HOST_PORTS_WARNING)  # dockerd too creates it and publishes nothing
    elif publishes and mode.startswith(CONTAINER_PREFIX):
        raise InvalidParameter(
            "conflicting options: port publishing and the container type network mode"
        )
    elif publishes and not wired:
        raise InvalidParameter(
            "port publishing needs a network with a bridge: this container's network mode "
            f"({mode}) has none"
        )
    for key in hc.get("PortBindings") or {}:
        if str(key).lower().endswith("/sctp"):
            raise InvalidParameter(f"publishing {key} is not supported by whaled (tcp and udp are)")
    return warnings


_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def check_mac(mac: str) -> str:
    """A ``MacAddress`` as asked (empty: none), refused with dockerd's message when it is
    not one."""
    if mac and not _MAC.match(mac):
        raise InvalidParameter(f"invalid MAC address: {mac}")
    return mac.lower()


def joined_container(mode: str) -> str | None:
    """The container a ``container:<id|name>`` mode (network, IPC or PID) joins."""
    return mode.removeprefix(CONTAINER_PREFIX) if mode.startswith(CONTAINER_PREFIX) else None


def check_join(key: str, joined_network_mode: str) -> None:
    """A container joining another one's network namespace cannot join one that joins a
    third (``key``: the HostConfig key that asks for the join)."""
    if key == "NetworkMode" and joined_network_mode.startswith(CONTAINER_PREFIX):
        raise InvalidParameter("cannot join a container that joins another one")


def default_hostname(network_mode: str, container_id: str, host_hostname: str) -> str:
    """The hostname of a container that was given none."""
    return host_hostname if network_mode == "host" else container_id[:12]
