"""Semantic validation of a decoded Config.

``validate_config`` is pure and checks values against each other (dockerd's rules and
wording where it has them). ``check_host`` checks the config against the host (runtime
binaries, certificate files, limits) through an injected ``HostProbe`` so it stays testable
without touching the filesystem.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from whaled.config.hosts import parse_host
from whaled.config.model import Config
from whaled.config.options import parse_ram_size
from whaled.errors import ConfigError

# Runtime names whaled provides itself; daemon.json may not redefine them.
BUILTIN_RUNTIMES = ("runc", "crun", "io.containerd.runc.v2")
RESERVED_RUNTIME_NAMES = (
    *BUILTIN_RUNTIMES,
    "io.containerd.runc.v1",
    "io.containerd.runtime.v1.linux",
)

ULIMIT_NAMES = frozenset(
    "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime "
    "sigpending stack".split()
)
LOG_DRIVERS = ("json-file", "none")
JSON_FILE_LOG_OPTS = frozenset(
    {"max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag"}
)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_labels(labels: tuple[str, ...]) -> None:
    seen: dict[str, str] = {}
    for label in labels:
        key, sep, value = label.partition("=")
        _check(bool(sep) and bool(key.strip()), f"bad attribute format: {label}")
        if key in seen and seen[key] != value:
            raise ConfigError(f"conflict labels for {key}={seen[key]} and {key}={value}")
        seen[key] = value


def _check_mirror(mirror: str) -> None:
    parts = urlsplit(mirror)
    if not parts.scheme:
        raise ConfigError(
            f'invalid mirror: no scheme specified for "{mirror}": '
            "must use either 'https://' or 'http://'"
        )
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f'invalid mirror: unsupported scheme "{parts.scheme}" in "{mirror}"')
    if parts.path.strip("/") or parts.query or parts.fragment or not parts.netloc:
        raise ConfigError(f'invalid mirror: path, query, or fragment at end of the URI "{mirror}"')


def _check_insecure_registry(entry: str) -> None:
    _check("://" not in entry, f"insecure registry {entry} should not contain '://'")
    if "/" in entry:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"insecure registry {entry} is not a valid CIDR") from None
    else:
        _check(bool(entry.strip()), "insecure registry must not be empty")


def _check_ip(key: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f'invalid value for "{key}": {value} is not an IP address') from None


def _check_cidr(key: str, value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(f'invalid value for "{key}": {value} is not a valid CIDR') from None


def check_runtime_config(cfg: Config) -> None:
    """The runtime rules of daemon.json (pure): reserved names, a path for each runtime, a
    default runtime that exists. Shared by start-up, ``--validate`` and reload."""
    for name, runtime in cfg.runtimes.items():
        if name in RESERVED_RUNTIME_NAMES:
            raise ConfigError(f"runtime name '{name}' is reserved")
        _check(bool(name.strip()), "runtime name must not be empty")
        if runtime.runtime_type:
            raise ConfigError(
                f"runtime {name}: runtimeType is not supported by whaled (it runs OCI runtimes "
                "under conmon); configure a path instead"
            )
        _check(
            bool(runtime.path),
            f"runtime {name}: either a runtimeType or a path must be configured",
        )
    known = (*BUILTIN_RUNTIMES, *cfg.runtimes)
    _check(
        cfg.default_runtime in known,
        f"specified default runtime '{cfg.default_runtime}' does not exist",
    )


def _check_log(cfg: Config) -> None:
    if cfg.log_driver not in LOG_DRIVERS:
        raise ConfigError(
            f"log driver '{cfg.log_driver}' is not supported by whaled "
            f"(supported: {', '.join(LOG_DRIVERS)})"
        )
    for opt, value in cfg.log_opts.items():
        if cfg.log_driver == "json-file":
            _check(opt in JSON_FILE_LOG_OPTS, f"unknown log opt '{opt}' for json-file log driver")
        else:
            raise ConfigError(f"unknown log opt '{opt}' for {cfg.log_driver} log driver")
        if opt == "max-size":
            try:
                size = parse_ram_size(value)
            except ValueError as e:
                raise ConfigError(f'invalid value for "log-opts.max-size": {e}') from None
            _check(size >= 0, "max-size must be a positive number")
        elif opt == "max-file":
            _check(value.isdigit() and int(value) >= 1, "max-file cannot be less than 1")
        elif opt == "compress":
            _check(value in ("true", "false"), f"invalid value for compress: {value}")


def _check_exec_opts(cfg: Config) -> None:
    for opt in cfg.exec_opts:
        key, sep, value = opt.partition("=")
        _check(bool(sep), f"unable to parse exec-opt: {opt}")
        if key.strip() == "native.cgroupdriver":
            _check(
                value.strip() == "cgroupfs",
                f'cgroup driver "{value.strip()}" is not supported by whaled (use cgroupfs)',
            )
        else:
            raise ConfigError(f'unknown exec-opt "{key.strip()}"')


def _check_network(cfg: Config) -> None:
    _check_ip("ip", cfg.ip)
    for key, cidr in (
        ("bip", cfg.bip),
        ("fixed-cidr", cfg.fixed_cidr),
        ("fixed-cidr-v6", cfg.fixed_cidr_v6),
    ):
        if cidr:
            _check_cidr(key, cidr)
    for key, ip in (
        ("default-gateway", cfg.default_gateway),
        ("default-gateway-v6", cfg.default_gateway_v6),
        ("host-gateway-ip", cfg.host_gateway_ip),
    ):
        if ip:
            _check_ip(key, ip)
    for ip in cfg.dns:
        _check_ip("dns", ip)
    _check(cfg.mtu >= 0, f"invalid MTU: {cfg.mtu}")
    for pool in cfg.default_address_pools:
        _check_cidr("default-address-pools", pool.base)
        prefix = ipaddress.ip_network(pool.base, strict=False).prefixlen
        bits = 32 if ":" not in pool.base else 128
        _check(
            prefix <= pool.size <= bits,
            f"invalid default-address-pools size {pool.size} for base {pool.base}",
        )


def validate_config(cfg: Config) -> None:
    """Raise ConfigError for the first inconsistent value (pure)."""
    for key, path in (
        ("data-root", cfg.data_root),
        ("exec-root", cfg.exec_root),
        ("pidfile", cfg.pidfile),
    ):
        _check(os.path.isabs(path), f'invalid value for "{key}": "{path}" must be an absolute path')
    tls_on = bool(cfg.tls) or cfg.tlsverify
    for host in cfg.effective_hosts():
        address = parse_host(host, tls=tls_on)
        # dockerd 27 and later: loopback too, since every local user and any web page a
        # browser on this host opens can reach it (a simple POST needs no CORS preflight).
        if address.proto == "tcp" and not tls_on and cfg.tls is None:
            raise ConfigError(
                f"refusing to serve the API without TLS on {address.url()}: anyone who can reach "
                "it (on loopback: every local user and the web pages a browser here opens) "
                "controls this host as root. Configure --tlsverify, or pass --tls=false to "
                "accept an unencrypted, unauthenticated API"
            )
    _check_labels(cfg.labels)
    _check(cfg.shutdown_timeout >= -1, f"invalid shutdown-timeout: {cfg.shutdown_timeout}")
    _check(
        cfg.max_concurrent_downloads >= 0,
        f"invalid max concurrent downloads: {cfg.max_concurrent_downloads}",
    )
    _check(
        cfg.max_concurrent_uploads >= 0,
        f"invalid max concurrent uploads: {cfg.max_concurrent_uploads}",
    )
    _check(
        cfg.max_download_attempts >= 1,
        f"invalid max download attempts: {cfg.max_download_attempts}",
    )
    for mirror in cfg.registry_mirrors:
        _check_mirror(mirror)
    for entry in cfg.insecure_registries:
        _check_insecure_registry(entry)
    for entry in cfg.allow_nondistributable_artifacts:
        _check(
            "://" not in entry,
            f"allow-nondistributable-artifacts registry {entry} should not contain '://'",
        )
    check_runtime_config(cfg)
    for name, ulimit in cfg.default_ulimits.items():
        _check(name in ULIMIT_NAMES, f"invalid ulimit type: {name}")
        _check(
            ulimit.soft <= ulimit.hard or ulimit.hard == -1,
            f"ulimit soft limit must be less than or equal to hard limit: "
            f"{ulimit.soft} > {ulimit.hard}",
        )
    _check(cfg.default_shm_size > 0, 'invalid value for "default-shm-size": must be positive')
    _check(
        cfg.storage_driver in ("", "overlay2"),
        f'storage driver "{cfg.storage_driver}" is not supported by whaled (supported: overlay2)',
    )
    _check_log(cfg)
    _check_exec_opts(cfg)
    _check(not cfg.selinux_enabled, "SELinux is not supported by whaled on this host")
    _check(not cfg.userns_remap, "userns-remap is not supported by whaled")
    _check(not cfg.authorization_plugins, "authorization plugins are not supported by whaled")
    _check_network(cfg)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostProbe:
    """The host facts ``check_host`` needs, as functions (swap them out in tests)."""

    is_executable: Callable[[str], bool]
    which: Callable[[str], str | None]
    is_file: Callable[[str], bool]
    nofile_hard_limit: Callable[[], int]
    #: The text of a small file (the seccomp profile); None: not checked.
    read_text: Callable[[str], str] | None = None


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def real_host_probe() -> HostProbe:
    import resource

    return HostProbe(
        is_executable=lambda p: os.path.isfile(p) and os.access(p, os.X_OK),
        which=shutil.which,
        is_file=os.path.isfile,
        read_text=_read_text,
        nofile_hard_limit=lambda: resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    )


def tls_paths(cfg: Config, home: str) -> tuple[str, str, str]:
    """(ca, cert, key) with dockerd's defaults (``~/.docker/*.pem``) filled in."""
    base = os.path.join(home, ".docker")
    return (
        cfg.tlscacert or os.path.join(base, "ca.pem"),
        cfg.tlscert or os.path.join(base, "cert.pem"),
        cfg.tlskey or os.path.join(base, "key.pem"),
    )


def check_runtime_paths(cfg: Config, probe: HostProbe) -> None:
    """Every configured runtime names an executable file (absolute, or found on PATH), and
    a built-in default runtime other than runc is installed."""
    for name, runtime in cfg.runtimes.items():
        path = runtime.path if os.path.isabs(runtime.path) else probe.which(runtime.path)
        if path is None or not probe.is_executable(path):
            raise ConfigError(f'runtime {name}: path "{runtime.path}" is not an executable file')
    if cfg.default_runtime == "crun" and probe.which("crun") is None:
        raise ConfigError("default runtime crun is not installed on this host")


def _check_seccomp_profile(path: str, read_text: Callable[[str], str]) -> None:
    """dockerd refuses to start with a profile it cannot load; whaled would otherwise start
    and fail every container start. The profile's rules are checked at container start."""
    try:
        doc = json.loads(read_text(path))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f'seccomp-profile "{path}": cannot load it: {e}') from None
    _check(
        isinstance(doc, dict) and isinstance(doc.get("defaultAction"), str),
        f'seccomp-profile "{path}": not a seccomp profile (a JSON object with a defaultAction)',
    )


def check_host(cfg: Config, probe: HostProbe, home: str = "/root") -> None:
    """Raise ConfigError when the config names files or limits this host cannot honour."""
    check_runtime_paths(cfg, probe)
    if cfg.init_path and not probe.is_executable(cfg.init_path):
        raise ConfigError(f'init-path "{cfg.init_path}" is not an executable file')
    if cfg.seccomp_profile not in ("", "builtin", "unconfined") and not probe.is_file(
        cfg.seccomp_profile
    ):
        raise ConfigError(f'seccomp-profile "{cfg.seccomp_profile}": no such file')
    if cfg.seccomp_profile not in ("", "builtin", "unconfined") and probe.read_text is not None:
        _check_seccomp_profile(cfg.seccomp_profile, probe.read_text)
    if cfg.tls or cfg.tlsverify:
        ca, cert, key = tls_paths(cfg, home)
        needed = [("tlscert", cert), ("tlskey", key)] + (
            [("tlscacert", ca)] if cfg.tlsverify else []
        )
        for key_name, path in needed:
            _check(probe.is_file(path), f'{key_name}: could not read "{path}": no such file')
    nofile = cfg.default_ulimits.get("nofile")
    if nofile is not None:
        hard = probe.nofile_hard_limit()
        if hard >= 0 and max(nofile.soft, nofile.hard) > hard:
            raise ConfigError(
                f"default-ulimits nofile={nofile.soft}:{nofile.hard} exceeds this host's hard "
                f"limit of {hard} open files (whaled cannot raise it)"
            )
