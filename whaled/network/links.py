"""Legacy container links (``--link name:alias``), pure: parsing, the form stored in
``HostConfig.Links`` (``/child:/parent/alias``, as dockerd shows it), the /etc/hosts line
that names the child by its alias, hostname and name, and dockerd's link environment
variables (``<ALIAS>_NAME``, ``<ALIAS>_PORT_<n>_<PROTO>_ADDR``, ``<ALIAS>_ENV_<VAR>``...)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from whaled.errors import InvalidParameter


@dataclass(frozen=True, slots=True)
class Link:
    child: str  # the linked container's name or ID, as given
    alias: str


def parse_link(entry: str) -> Link:
    """``name:alias``, ``name`` (the alias is the name) or the stored
    ``/name:/parent/alias``."""
    child, sep, alias = str(entry).partition(":")
    child = child.strip("/")
    alias = alias.rstrip("/").rpartition("/")[2] if sep else child
    if not child or not alias or "/" in child:
        raise InvalidParameter(
            f"invalid format to parse. {entry} should match template name:alias"
        )
    return Link(child=child, alias=alias)


def parse_links(entries: Sequence[str] | None) -> list[Link]:
    return [parse_link(e) for e in entries or ()]


def stored_link(child_name: str, parent_name: str, alias: str) -> str:
    return f"/{child_name}:/{parent_name}/{alias}"


def hosts_line(ip: str, alias: str, hostname: str, name: str) -> str:
    """The child reached by its alias and hostname, and its name when that differs from
    the alias."""
    names = [alias, hostname] + ([name] if name != alias else [])
    return f"{ip}\t{' '.join(dict.fromkeys(n for n in names if n))}\n"


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port), (proto or "tcp").lower()


def link_env(
    *,
    parent_name: str,
    alias: str,
    ip: str,
    exposed_ports: Sequence[str],
    child_env: Sequence[str],
) -> list[str]:
    """dockerd's variables for one link: the lowest exposed port as ``<ALIAS>_PORT``, each
    exposed port's four, the link's name, and the child's environment (without HOME and
    PATH)."""
    prefix = _prefix(alias)[:-1]
    env: list[str] = []
    ports = sorted({_port_key(k) for k in exposed_ports if k.partition("/")[0].isdigit()})
    if ports:
        port, proto = ports[0]
        env.append(f"{prefix}_PORT={proto}://{ip}:{port}")
    for port, proto in ports:
        base = f"{prefix}_PORT_{port}_{proto.upper()}"
        env += [
            f"{base}={proto}://{ip}:{port}",
            f"{base}_ADDR={ip}",
            f"{base}_PORT={port}",
            f"{base}_PROTO={proto}",
        ]
    env.append(f"{prefix}_NAME=/{parent_name}/{alias}")
    for entry in child_env:
        key, sep, value = entry.partition("=")
        if sep and key not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{key}={value}")
    return env



def without_link_env(env: Sequence[str], alias: str, others: Sequence[str]) -> list[str]:
    """``env`` without the variables of link ``alias`` (``rm --link``), keeping those of the
    ``others`` that share its prefix (``db`` and ``db-x``: ``DB_`` and ``DB_X_``)."""
    prefix = _prefix(alias)
    longer = [p for p in map(_prefix, others) if p.startswith(prefix) and p != prefix]
    return [
        e for e in env if not e.startswith(prefix) or any(e.startswith(p) for p in longer)
    ]


def _prefix(alias: str) -> str:
    return alias.upper().replace("-", "_") + "_"
