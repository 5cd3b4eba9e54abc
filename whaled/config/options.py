"""The table of daemon options: daemon.json key → Config field, decoder, reload behaviour.

Pure: decoders take a JSON value (from daemon.json, or built from a command-line flag in the
same shape) and return the typed field value, raising ``ConfigError`` that names the key.
Flags and the file share these decoders, so both are checked by exactly the same rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from whaled.config.model import AddressPool, FrozenMap, Proxies, RuntimeConfig, Ulimit
from whaled.errors import ConfigError

Decoder = Callable[[str, Any], Any]


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _bad(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(
        f'invalid value for "{key}": expected {expected}, got {_type_name(value)} '
        f"{json.dumps(value)}"
    )


def decode_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(key, "a boolean", value)
    return value


def decode_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _bad(key, "an integer", value)
    return value


def decode_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(key, "a string", value)
    return value


def decode_str_list(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(key, "an array of strings", value)
    return tuple(value)


def decode_str_map(key: str, value: Any) -> FrozenMap[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad(key, "an object of strings", value)
    return FrozenMap(value)


def decode_bool_map(key: str, value: Any) -> FrozenMap[str, bool]:
    if not isinstance(value, dict) or not all(isinstance(v, bool) for v in value.values()):
        raise _bad(key, "an object of booleans", value)
    return FrozenMap(value)


def _freeze_json(value: Any) -> Any:
    if isinstance(value, dict):
        return FrozenMap((k, _freeze_json(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_freeze_json(v) for v in value)
    return value


def decode_object(key: str, value: Any) -> FrozenMap[str, Any]:
    if not isinstance(value, dict):
        raise _bad(key, "an object", value)
    frozen: FrozenMap[str, Any] = _freeze_json(value)
    return frozen


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_ram_size(text: str) -> int:
    """Parse a size like dockerd's RAMInBytes: ``64M``, ``1g``, ``512kb``, ``100``."""
    s = text.strip().lower()
    num = s.rstrip("bkmgtpi")
    unit = s[len(num) :].replace("i", "")
    if unit.endswith("b") and len(unit) == 2:
        unit = unit[0]
    try:
        amount = float(num)
    except ValueError:
        raise ValueError(f"invalid size: '{text}'") from None
    if unit not in _SIZE_UNITS or amount < 0:
        raise ValueError(f"invalid size: '{text}'")
    return int(amount * _SIZE_UNITS[unit])


def decode_size(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise _bad(key, 'a size string such as "64M"', value)
    try:
        return parse_ram_size(value)
    except ValueError as e:
        raise ConfigError(f'invalid value for "{key}": {e}') from None


def decode_choice(*choices: str) -> Decoder:
    def decode(key: str, value: Any) -> str:
        text = decode_str(key, value)
        if text not in choices:
            allowed = ", ".join(f'"{c}"' for c in choices if c)
            raise ConfigError(f'invalid value for "{key}": "{text}" (must be one of {allowed})')
        return text

    return decode


def decode_runtimes(key: str, value: Any) -> FrozenMap[str, RuntimeConfig]:
    if not isinstance(value, dict):
        raise _bad(key, "an object of runtimes", value)
    out: dict[str, RuntimeConfig] = {}
    for name, spec in value.items():
        where = f"{key}.{name}"
        if not isinstance(spec, dict):
            raise _bad(where, "an object", spec)
        unknown = sorted(set(spec) - {"path", "runtimeArgs", "runtimeType", "options"})
        if unknown:
            raise ConfigError(f'invalid value for "{where}": unknown field(s) {", ".join(unknown)}')
        out[name] = RuntimeConfig(
            path=decode_str(f"{where}.path", spec.get("path", "")),
            runtime_args=decode_str_list(f"{where}.runtimeArgs", spec.get("runtimeArgs", [])),
            runtime_type=decode_str(f"{where}.runtimeType", spec.get("runtimeType", "")),
            options=decode_object(f"{where}.options", spec.get("options", {})),
        )
    return FrozenMap(out)


def decode_ulimits(key: str, value: Any) -> FrozenMap[str, Ulimit]:
    if not isinstance(value, dict):
        raise _bad(key, "an object of ulimits", value)
    out: dict[str, Ulimit] = {}
    for name, spec in value.items():
        where = f"{key}.{name}"
        if not isinstance(spec, dict):
            raise _bad(where, "an object with Name, Soft and Hard", spec)
        soft = decode_int(f"{where}.Soft", spec.get("Soft", 0))
        hard = decode_int(f"{where}.Hard", spec.get("Hard", 0))
        uname = decode_str(f"{where}.Name", spec.get("Name", name)) or name
        out[name] = Ulimit(name=uname, soft=soft, hard=hard)
    return FrozenMap(out)


def decode_address_pools(key: str, value: Any) -> tuple[AddressPool, ...]:
    if not isinstance(value, list):
        raise _bad(key, "an array of {base, size} objects", value)
    pools = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _bad(f"{key}[{i}]", "an object with base and size", item)
        pools.append(
            AddressPool(
                base=decode_str(f"{key}[{i}].base", item.get("base", "")),
                size=decode_int(f"{key}[{i}].size", item.get("size", 0)),
            )
        )
    return tuple(pools)


def decode_proxies(key: str, value: Any) -> Proxies:
    if not isinstance(value, dict):
        raise _bad(key, "an object", value)
    unknown = sorted(set(value) - {"http-proxy", "https-proxy", "no-proxy"})
    if unknown:
        raise ConfigError(f'invalid value for "{key}": unknown field(s) {", ".join(unknown)}')
    return Proxies(
        http_proxy=decode_str(f"{key}.http-proxy", value.get("http-proxy", "")),
        https_proxy=decode_str(f"{key}.https-proxy", value.get("https-proxy", "")),
        no_proxy=decode_str(f"{key}.no-proxy", value.get("no-proxy", "")),
    )


def decode_network_opts(key: str, value: Any) -> FrozenMap[str, FrozenMap[str, str]]:
    if not isinstance(value, dict):
        raise _bad(key, "an object of driver options", value)
    return FrozenMap((k, decode_str_map(f"{key}.{k}", v)) for k, v in value.items())


@dataclass(frozen=True, slots=True)
class Option:
    key: str  # daemon.json key
    decode: Decoder
    reloadable: bool = False

    @property
    def field(self) -> str:
        return self.key.replace("-", "_")


_o = Option

OPTIONS: tuple[Option, ...] = (
    _o("hosts", decode_str_list),
    _o("data-root", decode_str),
    _o("exec-root", decode_str),
    _o("pidfile", decode_str),
    _o("group", decode_str),
    _o("debug", decode_bool, reloadable=True),
    _o("log-level", decode_choice("debug", "info", "warn", "error", "fatal", "panic")),
    _o("log-format", decode_choice("text", "json")),
    _o("raw-logs", decode_bool),
    _o("experimental", decode_bool),
    _o("labels", decode_str_list, reloadable=True),
    _o("shutdown-timeout", decode_int, reloadable=True),
    _o("live-restore", decode_bool, reloadable=True),
    _o("api-cors-header", decode_str),
    _o("features", decode_bool_map, reloadable=True),
    _o("metrics-addr", decode_str),
    _o("tls", decode_bool),
    _o("tlsverify", decode_bool),
    _o("tlscacert", decode_str),
    _o("tlscert", decode_str),
    _o("tlskey", decode_str),
    _o("default-runtime", decode_str, reloadable=True),
    _o("runtimes", decode_runtimes, reloadable=True),
    _o("exec-opts", decode_str_list),
    _o("default-ulimits", decode_ulimits),
    _o("default-shm-size", decode_size, reloadable=True),
    _o("default-ipc-mode", decode_choice("private", "shareable"), reloadable=True),
    _o("default-cgroupns-mode", decode_choice("", "private", "host"), reloadable=True),
    _o("cgroup-parent", decode_str),
    _o("init", decode_bool),
    _o("init-path", decode_str),
    _o("no-new-privileges", decode_bool),
    _o("seccomp-profile", decode_str),
    _o("selinux-enabled", decode_bool),
    _o("userns-remap", decode_str),
    _o("oom-score-adjust", decode_int),
    _o("cdi-spec-dirs", decode_str_list),
    _o("storage-driver", decode_str),
    _o("storage-opts", decode_str_list),
    _o("log-driver", decode_str),
    _o("log-opts", decode_str_map),
    _o("insecure-registries", decode_str_list, reloadable=True),
    _o("registry-mirrors", decode_str_list, reloadable=True),
    _o("allow-nondistributable-artifacts", decode_str_list, reloadable=True),
    _o("max-concurrent-downloads", decode_int, reloadable=True),
    _o("max-concurrent-uploads", decode_int, reloadable=True),
    _o("max-download-attempts", decode_int, reloadable=True),
    _o("proxies", decode_proxies),
    _o("bridge", decode_str),
    _o("bip", decode_str),
    _o("fixed-cidr", decode_str),
    _o("fixed-cidr-v6", decode_str),
    _o("default-gateway", decode_str),
    _o("default-gateway-v6", decode_str),
    _o("ip", decode_str),
    _o("mtu", decode_int),
    _o("icc", decode_bool),
    _o("ip-forward", decode_bool),
    _o("ip-masq", decode_bool),
    _o("iptables", decode_bool),
    _o("ip6tables", decode_bool),
    _o("ipv6", decode_bool),
    _o("userland-proxy", decode_bool),
    _o("userland-proxy-path", decode_str),
    _o("host-gateway-ip", decode_str),
    _o("dns", decode_str_list),
    _o("dns-opts", decode_str_list),
    _o("dns-search", decode_str_list),
    _o("default-address-pools", decode_address_pools),
    _o("default-network-opts", decode_network_opts),
    _o("authorization-plugins", decode_str_list),
    _o("containerd", decode_str),
    _o("containerd-namespace", decode_str),
    _o("containerd-plugin-namespace", decode_str),
    _o("node-generic-resources", decode_str_list),
    _o("swarm-default-advertise-addr", decode_str),
    _o("builder", decode_object),
)

OPTIONS_BY_KEY: Mapping[str, Option] = {o.key: o for o in OPTIONS}
RELOADABLE_KEYS: frozenset[str] = frozenset(o.key for o in OPTIONS if o.reloadable)


def encode_value(value: Any) -> Any:
    """Turn a Config field value back into its daemon.json (JSON) form."""
    if isinstance(value, RuntimeConfig):
        out: dict[str, Any] = {}
        if value.path:
            out["path"] = value.path
        if value.runtime_args:
            out["runtimeArgs"] = list(value.runtime_args)
        if value.runtime_type:
            out["runtimeType"] = value.runtime_type
        if value.options:
            out["options"] = encode_value(value.options)
        return out
    if isinstance(value, Ulimit):
        return {"Name": value.name, "Soft": value.soft, "Hard": value.hard}
    if isinstance(value, AddressPool):
        return {"base": value.base, "size": value.size}
    if isinstance(value, Proxies):
        return {
            "http-proxy": value.http_proxy,
            "https-proxy": value.https_proxy,
            "no-proxy": value.no_proxy,
        }
    if isinstance(value, FrozenMap):
        return {k: encode_value(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [encode_value(v) for v in value]
    return value
