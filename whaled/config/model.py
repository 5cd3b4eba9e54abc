"""The daemon configuration as one immutable value.

Why frozen dataclasses and not pydantic: the snapshot must be immutable all the way down
(the RCU store hands the same object to many concurrent operations), validation has to
produce dockerd's own wording for every key, and the merge of flags and daemon.json is done
on plain JSON values before a Config exists. pydantic would give us type coercion we do not
want (dockerd rejects "true" for a bool) and error texts we would have to rewrite anyway;
frozen, slotted dataclasses with hand-written decoders (``whaled.config.decode``) keep the
model small, dependency-free and trivially deep-copyable.

Every field is immutable: sequences are tuples, mappings are ``FrozenMap``. A reload
therefore "deep-copies" by building a new Config with ``dataclasses.replace`` — nested
values can be shared because nothing can mutate them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_UNIX_SOCKET = "/run/whaled.sock"
DEFAULT_HOST = f"unix://{DEFAULT_UNIX_SOCKET}"
DEFAULT_CONFIG_FILE = "/etc/whaled/daemon.json"


class FrozenMap(Mapping[K, V]):
    """A read-only, hashable mapping (insertion ordered)."""

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._data: dict[K, V] = dict(items)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(sorted(((repr(k), repr(v)) for k, v in self._data.items()))))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeConfig:
    """One entry of daemon.json ``runtimes``."""

    path: str = ""
    runtime_args: tuple[str, ...] = ()
    runtime_type: str = ""
    options: FrozenMap[str, Any] = field(default_factory=FrozenMap)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressPool:
    base: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Proxies:
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The effective daemon configuration (flags merged with daemon.json).

    Field names are daemon.json keys with ``-`` replaced by ``_``; ``whaled.config.options``
    maps each key to its field, decoder, flag and reload behaviour.
    """

    # Daemon process, sockets and state.
    hosts: tuple[str, ...] = ()
    data_root: str = "/var/lib/whaled"
    exec_root: str = "/run/whaled"
    pidfile: str = "/run/whaled.pid"
    group: str = "docker"
    debug: bool = False
    log_level: str = "info"
    log_format: str = "text"
    raw_logs: bool = False
    experimental: bool = False
    labels: tuple[str, ...] = ()
    shutdown_timeout: int = 15
    live_restore: bool = False
    api_cors_header: str = ""
    features: FrozenMap[str, bool] = field(default_factory=FrozenMap)
    metrics_addr: str = ""
    # TLS for tcp listeners. ``tls`` is None when not set at all: an explicit
    # ``--tls=false`` is what allows plain TCP on a non-loopback address.
    tls: bool | None = None
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    # Runtimes and containers.
    default_runtime: str = "runc"
    runtimes: FrozenMap[str, RuntimeConfig] = field(default_factory=FrozenMap)
    exec_opts: tuple[str, ...] = ()
    default_ulimits: FrozenMap[str, Ulimit] = field(default_factory=FrozenMap)
    default_shm_size: int = 64 * 1024 * 1024
    default_ipc_mode: str = "private"
    default_cgroupns_mode: str = ""  # "" = host on cgroup v1, private on v2 (dockerd's rule)
    cgroup_parent: str = ""
    init: bool = False
    init_path: str = ""
    no_new_privileges: bool = False
    seccomp_profile: str = ""
    selinux_enabled: bool = False
    userns_remap: str = ""
    oom_score_adjust: int = 0
    cdi_spec_dirs: tuple[str, ...] = ()
    # Storage and logging.
    storage_driver: str = ""
    storage_opts: tuple[str, ...] = ()
    log_driver: str = "json-file"
    log_opts: FrozenMap[str, str] = field(default_factory=FrozenMap)
    # Registries and distribution.
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    allow_nondistributable_artifacts: tuple[str, ...] = ()
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    max_download_attempts: int = 5
    proxies: Proxies = field(default_factory=Proxies)
    # Networking (used by the networking issue).
    bridge: str = ""
    bip: str = ""
    fixed_cidr: str = ""
    fixed_cidr_v6: str = ""
    default_gateway: str = ""
    default_gateway_v6: str = ""
    ip: str = "0.0.0.0"
    mtu: int = 1500
    icc: bool = True
    ip_forward: bool = True
    ip_masq: bool = True
    iptables: bool = True
    ip6tables: bool = False
    ipv6: bool = False
    userland_proxy: bool = True
    userland_proxy_path: str = ""
    host_gateway_ip: str = ""
    dns: tuple[str, ...] = ()
    dns_opts: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    default_address_pools: tuple[AddressPool, ...] = ()
    default_network_opts: FrozenMap[str, FrozenMap[str, str]] = field(default_factory=FrozenMap)
    # Accepted for compatibility with dockerd's daemon.json; whaled has no use for them.
    authorization_plugins: tuple[str, ...] = ()
    containerd: str = ""
    containerd_namespace: str = ""
    containerd_plugin_namespace: str = ""
    node_generic_resources: tuple[str, ...] = ()
    swarm_default_advertise_addr: str = ""
    builder: FrozenMap[str, Any] = field(default_factory=FrozenMap)

    def effective_hosts(self) -> tuple[str, ...]:
        return self.hosts or (DEFAULT_HOST,)
