"""A create request → the container's stored Config and HostConfig (pure).

dockerd's rules: the image's config fills what the request leaves out (``merge_config``);
HostConfig gets the daemon defaults filled in (``complete_host_config``) so that inspect
shows what the container really runs with — ulimits merged with the daemon's
default-ulimits, the runtime, shm size, IPC and cgroupns modes, the log config.
Then ``validate_host_config`` refuses what whaled cannot honour with a clear 400.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from whaled.errors import InvalidParameter
from whaled.runtime.command import merge_command, merge_config_env
from whaled.runtime.defaults import normalize_capabilities
from whaled.runtime.ulimits import Ulimit, merge_ulimits, validate_ulimit

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
#: The kernel's limit for a hostname (HOST_NAME_MAX); sethostname refuses longer ones.
HOST_NAME_MAX = 64
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonDefaults:
    """The parts of the daemon config (and host) a create needs, resolved by the caller."""

    default_runtime: str
    runtimes: frozenset[str]
    shm_size: int
    ipc_mode: str
    cgroupns_mode: str  # already resolved for the host's cgroup version
    log_driver: str
    log_opts: Mapping[str, str]
    ulimits: Sequence[Ulimit]
    init: bool
    #: The host can limit swap (cgroup v1 memsw / v2 memory.swap.max).
    swap_limit: bool = False


def merge_config(request: Mapping[str, Any], image: Mapping[str, Any]) -> dict[str, Any]:
    """The container's Config: the request, completed from the image's config."""
    config = copy.deepcopy(dict(request))
    entrypoint, cmd = merge_command(
        image.get("Entrypoint"),
        image.get("Cmd"),
        request.get("Entrypoint"),
        request.get("Cmd"),
        entrypoint_given=request.get("Entrypoint") is not None,
    )
    config["Entrypoint"] = list(entrypoint) or None
    config["Cmd"] = list(cmd) or None
    config["Env"] = list(merge_config_env(image.get("Env"), request.get("Env"))) or None
    for key in ("User", "WorkingDir", "StopSignal"):
        if not config.get(key) and image.get(key):
            config[key] = image[key]
    for key in ("ExposedPorts", "Volumes", "Labels"):
        merged = dict(image.get(key) or {})
        merged.update(request.get(key) or {})
        config[key] = merged or None
    if config.get("Healthcheck") is None and image.get("Healthcheck") is not None:
        config["Healthcheck"] = copy.deepcopy(image["Healthcheck"])
    elif config.get("Healthcheck") and image.get("Healthcheck"):
        health = dict(image["Healthcheck"])
        health.update({k: v for k, v in config["Healthcheck"].items() if v})
        config["Healthcheck"] = health
    if config.get("OnBuild") is None and image.get("OnBuild") is not None:
        config["OnBuild"] = list(image["OnBuild"])
    for key, default in (
        ("Hostname", ""),
        ("Domainname", ""),
        ("User", ""),
        ("AttachStdin", False),
        ("AttachStdout", False),
        ("AttachStderr", False),
        ("Tty", False),
        ("OpenStdin", False),
        ("StdinOnce", False),
        ("WorkingDir", ""),
        ("OnBuild", None),
    ):
        config.setdefault(key, default)
    return config


def _ulimits_from(raw: Any) -> list[Ulimit]:
    out = []
    for item in raw or []:
        if not isinstance(item, Mapping):
            raise InvalidParameter("invalid ulimit: expected an object with Name, Soft and Hard")
        out.append(
            validate_ulimit(
                Ulimit(
                    name=str(item.get("Name", "")),
                    soft=int(item.get("Soft", 0)),
                    hard=int(item.get("Hard", 0)),
                )
            )
        )
    return out


def complete_host_config(request: Mapping[str, Any], d: DaemonDefaults) -> dict[str, Any]:
    hc = copy.deepcopy(dict(request))
    if not hc.get("Runtime"):
        hc["Runtime"] = d.default_runtime
    if not hc.get("ShmSize"):
        hc["ShmSize"] = d.shm_size
    if not hc.get("IpcMode"):
        hc["IpcMode"] = d.ipc_mode
    if not hc.get("CgroupnsMode"):
        hc["CgroupnsMode"] = d.cgroupns_mode
    if not hc.get("NetworkMode"):
        hc["NetworkMode"] = "default"
    # dockerd's mergeAndVerifyLogConfig: no type means the daemon's driver; options given
    # without a type are kept; the daemon's log-opts fill the gaps for the daemon's driver.
    log_config = dict(hc.get("LogConfig") or {})
    if not log_config.get("Type"):
        log_config["Type"] = d.log_driver
    options = dict(log_config.get("Config") or {})
    if log_config["Type"] == d.log_driver:
        for key, value in d.log_opts.items():
            options.setdefault(key, value)
    log_config["Config"] = options
    hc["LogConfig"] = log_config
    # dockerd's adaptContainerSettings: --memory without --memory-swap gets as much swap
    # again (MemorySwap = 2 * Memory) where swap can be limited.
    if hc.get("Memory") and not hc.get("MemorySwap") and d.swap_limit:
        swap = 2 * int(hc["Memory"])
        hc["MemorySwap"] = swap if swap <= INT64_MAX else -1  # beyond int64: unlimited
    policy = dict(hc.get("RestartPolicy") or {})
    policy.setdefault("Name", "no")
    if not policy["Name"]:
        policy["Name"] = "no"
    policy.setdefault("MaximumRetryCount", 0)
    hc["RestartPolicy"] = policy
    merged = merge_ulimits(_ulimits_from(hc.get("Ulimits")), d.ulimits)
    hc["Ulimits"] = [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in merged] or None
    if hc.get("Init") is None and d.init:
        hc["Init"] = True
    for key, default in (
        ("Binds", None),
        ("Privileged", False),
        ("ReadonlyRootfs", False),
        ("AutoRemove", False),
        ("CapAdd", None),
        ("CapDrop", None),
        ("Dns", []),
        ("DnsOptions", []),
        ("DnsSearch", []),
        ("ExtraHosts", None),
        ("SecurityOpt", None),
        ("Tmpfs", None),
        ("PidMode", ""),
        ("UTSMode", ""),
        ("UsernsMode", ""),
        ("Devices", []),
        ("PortBindings", {}),
        ("VolumesFrom", None),
        ("GroupAdd", None),
        ("Sysctls", None),
        ("OomScoreAdj", 0),
        ("Mounts", None),
        ("ConsoleSize", [0, 0]),
        ("Isolation", ""),
        ("CgroupParent", ""),
        ("MaskedPaths", None),
        ("ReadonlyPaths", None),
    ):
        hc.setdefault(key, default)
    return hc


def validate_host_config(hc: Mapping[str, Any], d: DaemonDefaults) -> list[str]:
    """Raise InvalidParameter for what cannot run; return warnings. (The network and mount
    settings are checked by ``whaled.network.mode`` and ``whaled.volume.mounts``.)"""
    warnings: list[str] = []
    policy = hc["RestartPolicy"]
    name = policy["Name"]
    retries = policy.get("MaximumRetryCount", 0)
    if name not in RESTART_POLICIES:
        raise InvalidParameter(f"invalid restart policy '{name}'")
    if retries < 0:
        raise InvalidParameter("maximum retry count cannot be negative")
    if retries and name != "on-failure":
        raise InvalidParameter(f"maximum retry count cannot be used with restart policy '{name}'")
    if hc.get("AutoRemove") and name != "no":
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    runtime = hc["Runtime"]
    if runtime not in d.runtimes:
        raise InvalidParameter(f"unknown or invalid runtime name: {runtime}")
    userns = hc.get("UsernsMode") or ""
    if userns not in ("", "host"):
        # "host" is what every container gets without userns-remap (which whaled does not
        # support), so compose files' ``userns_mode: host`` works as on dockerd.
        raise InvalidParameter(
            f"invalid USER mode: {userns}: only the host's user namespace (--userns=host) "
            "is supported by whaled"
        )
    _check_modes(hc)
    return warnings


IPC_MODES = ("", "none", "private", "shareable", "host")
CGROUPNS_MODES = ("", "private", "host")


def _check_modes(hc: Mapping[str, Any]) -> None:
    """dockerd's checks of the enumerated HostConfig modes, in its wording."""
    ipc = str(hc.get("IpcMode") or "")
    if ipc not in IPC_MODES and not (ipc.startswith("container:") and len(ipc) > 10):
        raise InvalidParameter(f"invalid IPC mode: {ipc}")
    cgroupns = str(hc.get("CgroupnsMode") or "")
    if cgroupns not in CGROUPNS_MODES:
        raise InvalidParameter(f"invalid cgroup namespace mode: {cgroupns}")
    isolation = str(hc.get("Isolation") or "")
    if isolation not in ("", "default"):
        raise InvalidParameter(
            f"Invalid isolation: {json.dumps(isolation)} - linux only supports 'default'"
        )


def check_request(request: Mapping[str, Any], hc: Mapping[str, Any]) -> None:
    """dockerd's create-time checks of values in the request's Config and HostConfig that
    the OCI spec checks (``validate_spec_input``) do not make, in its wording."""
    hostname = str(request.get("Hostname") or "")
    if len(hostname.encode()) > HOST_NAME_MAX:
        raise InvalidParameter(
            f'invalid hostname format: "{hostname[:80]}" is longer than {HOST_NAME_MAX} bytes'
        )
    for env in request.get("Env") or ():
        if not str(env).partition("=")[0]:
            raise InvalidParameter(f"invalid environment variable: {env}")
    for key in ("CapAdd", "CapDrop"):
        try:
            normalize_capabilities(hc.get(key) or ())
        except InvalidParameter as e:
            raise InvalidParameter(f"invalid {key}: {e}") from None
