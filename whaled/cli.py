"""The ``whaled`` command: dockerd's flags → daemon.json-shaped values → Config; run it.

Every flag maps onto a daemon.json key and is converted to that key's JSON shape here, so
``whaled.config`` merges and validates flags and the file with one set of rules. Only
flags the user actually gave are passed on (that is what flag/file conflicts are about).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from whaled import __version__
from whaled.config.model import DEFAULT_CONFIG_FILE
from whaled.config.source import StartupSource, load_and_validate
from whaled.errors import ConfigError, WhaledError


def parse_go_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _kv(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"invalid {what} '{text}': expected key=value")
    return key, value


def _runtime(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for text in values:
        name, path = _kv(text, "--add-runtime value")
        out[name] = {"path": path}
    return out


def _ulimits(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for text in values:
        name, limits = _kv(text, "--default-ulimit value")
        soft_text, _, hard_text = limits.partition(":")
        try:
            soft = int(soft_text)
            hard = int(hard_text) if hard_text else soft
        except ValueError:
            raise ConfigError(
                f"invalid --default-ulimit value '{text}': limits must be numbers"
            ) from None
        out[name] = {"Name": name, "Soft": soft, "Hard": hard}
    return out


def _map(values: list[str]) -> dict[str, str]:
    return dict(_kv(v, "option") for v in values)


def _address_pools(values: list[str]) -> list[dict[str, Any]]:
    pools = []
    for text in values:
        fields = dict(_kv(part, "--default-address-pool field") for part in text.split(","))
        try:
            pools.append({"base": fields["base"], "size": int(fields["size"])})
        except (KeyError, ValueError):
            raise ConfigError(
                f"invalid --default-address-pool '{text}': expected base=CIDR,size=N"
            ) from None
    return pools


@dataclass(frozen=True, slots=True)
class Flag:
    names: tuple[str, ...]
    key: str  # daemon.json key this flag sets
    kind: str  # bool, str, int, list
    convert: Callable[[list[str]], Any] | None = None  # for list flags with a shaped value
    help: str = ""


def _f(
    names: str,
    key: str,
    kind: str = "str",
    help: str = "",
    convert: Callable[[list[str]], Any] | None = None,
) -> Flag:
    return Flag(tuple(names.split()), key, kind, convert, help)


FLAGS: tuple[Flag, ...] = (
    _f(
        "-H --host",
        "hosts",
        "list",
        "daemon socket(s) to listen on (default unix:///run/whaled.sock)",
    ),
    _f("--data-root", "data-root", help="root of persistent state (default /var/lib/whaled)"),
    _f("--exec-root", "exec-root", help="root of execution state (default /run/whaled)"),
    _f("-p --pidfile", "pidfile", help="path of the daemon PID file (default /run/whaled.pid)"),
    _f("-G --group", "group", help="group owning the unix socket(s) (default docker)"),
    _f("-D --debug", "debug", "bool", "enable debug mode"),
    _f("-l --log-level", "log-level", help='logging level ("debug"|"info"|"warn"|"error"|"fatal")'),
    _f("--log-format", "log-format", help='format of the daemon log ("text"|"json")'),
    _f("--raw-logs", "raw-logs", "bool", "full timestamps without ANSI coloring"),
    _f("--experimental", "experimental", "bool", "enable experimental features"),
    _f("--label", "labels", "list", "key=value label for the daemon"),
    _f(
        "--shutdown-timeout",
        "shutdown-timeout",
        "int",
        "seconds to wait for containers at shutdown",
    ),
    _f(
        "--live-restore", "live-restore", "bool", "keep containers running while the daemon is down"
    ),
    _f("--api-cors-header", "api-cors-header", help="CORS header for the remote API"),
    _f("--metrics-addr", "metrics-addr", help="address for the metrics API"),
    _f("--tls", "tls", "bool", "use TLS; implied by --tlsverify"),
    _f("--tlsverify", "tlsverify", "bool", "use TLS and verify the remote"),
    _f("--tlscacert", "tlscacert", help="trust certs signed only by this CA"),
    _f("--tlscert", "tlscert", help="path to TLS certificate file"),
    _f("--tlskey", "tlskey", help="path to TLS key file"),
    _f("--default-runtime", "default-runtime", help="default OCI runtime for containers"),
    _f("--add-runtime", "runtimes", "list", "register a runtime name=path", _runtime),
    _f("--exec-opt", "exec-opts", "list", "runtime execution options"),
    _f("--default-ulimit", "default-ulimits", "list", "default ulimit name=soft[:hard]", _ulimits),
    _f("--default-shm-size", "default-shm-size", help="default /dev/shm size for containers"),
    _f("--default-ipc-mode", "default-ipc-mode", help='default IPC mode ("private"|"shareable")'),
    _f("--default-cgroupns-mode", "default-cgroupns-mode", help='"host" or "private"'),
    _f("--cgroup-parent", "cgroup-parent", help="parent cgroup for all containers"),
    _f("--init", "init", "bool", "run an init inside containers"),
    _f("--init-path", "init-path", help="path to the init binary"),
    _f("--no-new-privileges", "no-new-privileges", "bool", "set no-new-privileges by default"),
    _f(
        "--seccomp-profile",
        "seccomp-profile",
        help='seccomp profile ("builtin", "unconfined" or a path)',
    ),
    _f("--selinux-enabled", "selinux-enabled", "bool", "enable SELinux support (unsupported)"),
    _f("--userns-remap", "userns-remap", help="user namespace remapping (unsupported)"),
    _f("--oom-score-adjust", "oom-score-adjust", "int", "oom_score_adj for the daemon"),
    _f("--cdi-spec-dir", "cdi-spec-dirs", "list", "CDI specification directories"),
    _f("-s --storage-driver", "storage-driver", help="storage driver (overlay2)"),
    _f("--storage-opt", "storage-opts", "list", "storage driver options"),
    _f("--log-driver", "log-driver", help="default container log driver"),
    _f("--log-opt", "log-opts", "list", "default log driver options key=value", _map),
    _f(
        "--insecure-registry",
        "insecure-registries",
        "list",
        "insecure registry (host:port or CIDR)",
    ),
    _f("--registry-mirror", "registry-mirrors", "list", "preferred registry mirror"),
    _f(
        "--allow-nondistributable-artifacts",
        "allow-nondistributable-artifacts",
        "list",
        "push nondistributable artifacts to this registry",
    ),
    _f("--max-concurrent-downloads", "max-concurrent-downloads", "int", "default 3"),
    _f("--max-concurrent-uploads", "max-concurrent-uploads", "int", "default 5"),
    _f("--max-download-attempts", "max-download-attempts", "int", "default 5"),
    _f("-b --bridge", "bridge", help="attach containers to a network bridge"),
    _f("--bip", "bip", help="default bridge IP (CIDR)"),
    _f("--fixed-cidr", "fixed-cidr", help="IPv4 subnet for fixed IPs"),
    _f("--fixed-cidr-v6", "fixed-cidr-v6", help="IPv6 subnet for fixed IPs"),
    _f("--default-gateway", "default-gateway", help="default gateway IPv4 for containers"),
    _f("--default-gateway-v6", "default-gateway-v6", help="default gateway IPv6 for containers"),
    _f("--ip", "ip", help="default IP when binding container ports"),
    _f("--mtu", "mtu", "int", "network MTU"),
    _f("--icc", "icc", "bool", "inter-container communication"),
    _f("--ip-forward", "ip-forward", "bool", "enable net.ipv4.ip_forward"),
    _f("--ip-masq", "ip-masq", "bool", "enable IP masquerading"),
    _f("--iptables", "iptables", "bool", "enable iptables rules"),
    _f("--ip6tables", "ip6tables", "bool", "enable ip6tables rules"),
    _f("--ipv6", "ipv6", "bool", "enable IPv6 networking"),
    _f("--userland-proxy", "userland-proxy", "bool", "userland proxy for loopback traffic"),
    _f("--userland-proxy-path", "userland-proxy-path", help="path to the userland proxy binary"),
    _f("--host-gateway-ip", "host-gateway-ip", help="IP for the special 'host-gateway' string"),
    _f("--dns", "dns", "list", "DNS server to use"),
    _f("--dns-opt", "dns-opts", "list", "DNS options to use"),
    _f("--dns-search", "dns-search", "list", "DNS search domains to use"),
    _f(
        "--default-address-pool",
        "default-address-pools",
        "list",
        "base=CIDR,size=N",
        _address_pools,
    ),
    _f(
        "--authorization-plugin",
        "authorization-plugins",
        "list",
        "authorization plugins (unsupported)",
    ),
    _f("--containerd", "containerd", help="accepted for compatibility; unused"),
    _f("--containerd-namespace", "containerd-namespace", help="accepted for compatibility; unused"),
    _f("--node-generic-resource", "node-generic-resources", "list", "advertised resources"),
    _f("--swarm-default-advertise-addr", "swarm-default-advertise-addr", help="unused"),
)

_PROXY_FLAGS = (
    ("--http-proxy", "http-proxy"),
    ("--https-proxy", "https-proxy"),
    ("--no-proxy", "no-proxy"),
)


def _dest(flag: Flag) -> str:
    return "opt_" + flag.key.replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whaled", description="A container engine daemon that speaks the Docker Engine API."
    )
    parser.add_argument(
        "--config-file", default=None, help=f"daemon config file (default {DEFAULT_CONFIG_FILE})"
    )
    parser.add_argument(
        "--validate", action="store_true", help="validate the configuration and exit"
    )
    parser.add_argument("-v", "--version", action="store_true", help="print version and exit")
    for flag in FLAGS:
        dest = _dest(flag)
        if flag.kind == "bool":
            parser.add_argument(
                *flag.names,
                dest=dest,
                nargs="?",
                const=True,
                default=None,
                type=parse_go_bool,
                metavar="BOOL",
                help=flag.help,
            )
        elif flag.kind == "int":
            parser.add_argument(*flag.names, dest=dest, type=int, default=None, help=flag.help)
        elif flag.kind == "list":
            parser.add_argument(
                *flag.names, dest=dest, action="append", default=None, help=flag.help
            )
        else:
            parser.add_argument(*flag.names, dest=dest, default=None, help=flag.help)
    for name, field in _PROXY_FLAGS:
        parser.add_argument(
            name,
            dest="proxy_" + field.replace("-", "_"),
            default=None,
            help=f"{field} for the daemon's outgoing requests",
        )
    return parser


def flags_to_values(ns: argparse.Namespace) -> dict[str, Any]:
    """The explicitly given flags, as daemon.json-shaped values keyed by daemon.json key."""
    values: dict[str, Any] = {}
    for flag in FLAGS:
        value = getattr(ns, _dest(flag))
        if value is None:
            continue
        if flag.convert is not None:
            value = flag.convert(value)
        values[flag.key] = value
    proxies = {
        field: getattr(ns, "proxy_" + field.replace("-", "_"))
        for _, field in _PROXY_FLAGS
        if getattr(ns, "proxy_" + field.replace("-", "_")) is not None
    }
    if proxies:
        values["proxies"] = proxies
    return values


def parse_startup(argv: Sequence[str]) -> tuple[argparse.Namespace, StartupSource]:
    ns = build_parser().parse_args(list(argv))
    startup = StartupSource(
        flags=flags_to_values(ns),
        config_file=ns.config_file or DEFAULT_CONFIG_FILE,
        explicit_file=ns.config_file is not None,
    )
    return ns, startup


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["reload"]:
        from whaled.reloadcmd import main as reload_main

        return reload_main(args[1:])
    try:
        ns, startup = parse_startup(args)
        if ns.version:
            print(f"whaled version {__version__}")
            return 0
        cfg = load_and_validate(startup)
    except ConfigError as e:
        print(e.message, file=sys.stderr)
        return 1
    if ns.validate:
        print("configuration OK")
        return 0
    # Before the heavy imports: the pidfile, the API sockets, and /_ping answered at once
    # (whaled.api.early); the daemon takes the sockets over once it is up.
    from whaled.api.early import EarlyStart
    from whaled.logsetup import setup_logging

    setup_logging(cfg)
    try:
        early = EarlyStart.begin(cfg)
    except WhaledError as e:
        logging.getLogger("whaled").error("%s", e)
        return 1
    # Importing the daemon's modules makes ~50,000 objects the cyclic collector tracks,
    # nearly all of them living as long as the daemon. Collections run while they are
    # made walk them again and again (~30 ms of a ~350 ms import here). The collector
    # waits until they are made, then leaves them out of every later collection
    # (gc.freeze), which also shortens the daemon's full collections.
    gc.disable()
    try:
        from whaled.wiring import run_daemon
    finally:
        gc.freeze()
        gc.enable()

    return run_daemon(cfg, startup, early)
