"""Wire shapes of /version and /info (pure functions over daemon-side views)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from whaled import __version__
from whaled.api.versions import CURRENT_API_VERSION, MIN_API_VERSION, ApiVersion
from whaled.config.model import Config
from whaled.config.reload import mask_credentials
from whaled.daemon.system import InfoView, VersionView, default_init_binary

DEFAULT_INSECURE_CIDRS = ("::1/128", "127.0.0.0/8")
INDEX_NAME = "docker.io"


def rfc3339_nano(time_ns: int) -> str:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def shape_version(view: VersionView) -> dict[str, Any]:
    engine_details = {
        "ApiVersion": CURRENT_API_VERSION,
        "Arch": view.arch,
        "BuildTime": "",
        "Experimental": "true" if view.experimental else "false",
        "GitCommit": "",
        "GoVersion": f"python{view.python_version}",
        "KernelVersion": view.kernel_version,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": view.os,
    }
    components: list[dict[str, Any]] = [
        {"Name": "Engine", "Version": view.version, "Details": engine_details}
    ]
    for binary in view.components:
        name = "docker-init" if binary.name in ("catatonit", "tini") else binary.name
        components.append(
            {
                "Name": name,
                "Version": binary.version or "",
                "Details": {"GitCommit": binary.commit or ""},
            }
        )
    body: dict[str, Any] = {
        "Platform": {"Name": "whaled"},
        "Components": components,
        "Version": view.version,
        "ApiVersion": CURRENT_API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": f"python{view.python_version}",
        "Os": view.os,
        "Arch": view.arch,
        "KernelVersion": view.kernel_version,
        "BuildTime": "",
    }
    if view.experimental:
        body["Experimental"] = True
    return body


def registry_config(cfg: Config) -> dict[str, Any]:
    """dockerd's RegistryConfig: insecure CIDRs and per-registry index configs."""
    cidrs: list[str] = []
    insecure_names: list[str] = []
    for entry in cfg.insecure_registries:
        try:
            cidrs.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            insecure_names.append(entry)
    for default in DEFAULT_INSECURE_CIDRS:
        if default not in cidrs:
            cidrs.append(default)
    index_configs: dict[str, Any] = {
        INDEX_NAME: {
            "Name": INDEX_NAME,
            "Mirrors": list(cfg.registry_mirrors),
            "Secure": True,
            "Official": True,
        }
    }
    for name in insecure_names:
        index_configs[name] = {"Name": name, "Mirrors": [], "Secure": False, "Official": False}
    nd_cidrs: list[str] = []
    nd_hosts: list[str] = []
    for entry in cfg.allow_nondistributable_artifacts:
        try:
            nd_cidrs.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            nd_hosts.append(entry)
    return {
        "AllowNondistributableArtifactsCIDRs": nd_cidrs or None,
        "AllowNondistributableArtifactsHostnames": nd_hosts or None,
        "InsecureRegistryCIDRs": cidrs,
        "IndexConfigs": index_configs,
        "Mirrors": list(cfg.registry_mirrors),
    }


def _commit(binary_id: str) -> dict[str, str]:
    return {"ID": binary_id, "Expected": binary_id} if binary_id else {"ID": "", "Expected": ""}


def proxy_fields(cfg: Config) -> dict[str, str]:
    """/info's proxy settings, credentials masked as dockerd masks them
    (``http://xxxxx:xxxxx@host``): /info is readable by every API client."""
    return {
        "HttpProxy": mask_credentials(cfg.proxies.http_proxy),
        "HttpsProxy": mask_credentials(cfg.proxies.https_proxy),
        "NoProxy": cfg.proxies.no_proxy,
    }


def shape_info(view: InfoView, api_version: ApiVersion) -> dict[str, Any]:
    cfg = view.config
    facts = view.facts
    host = facts.host
    caps = facts.cgroups.capabilities
    runc = facts.binaries.get("runc")
    init = facts.binaries.get("init")
    security = []
    if host.seccomp_available:
        profile = cfg.seccomp_profile if cfg.seccomp_profile not in ("", "builtin") else "builtin"
        if profile != "unconfined":
            security.append(f"name=seccomp,profile={profile}")
    if facts.cgroups.version == 2:
        security.append("name=cgroupns")
    if cfg.no_new_privileges:
        security.append("name=no-new-privileges")
    # dockerd's shape: {"name": {"path": ..., "runtimeArgs": [...]}}, runtimeArgs only when
    # set; the path is the configured binary (a wrapper script is internal).
    runtimes: dict[str, Any] = {}
    for rt in view.runtimes:
        entry: dict[str, Any] = {"path": rt.path}
        if rt.args:
            entry["runtimeArgs"] = list(rt.args)
        runtimes[rt.name] = entry
    body: dict[str, Any] = {
        "ID": view.engine_id,
        "Containers": view.containers.total,
        "ContainersRunning": view.containers.running,
        "ContainersPaused": view.containers.paused,
        "ContainersStopped": view.containers.stopped,
        "Images": view.images,
        "Driver": cfg.storage_driver or "overlay2",
        "DriverStatus": [
            ["Backing Filesystem", facts.backing_fs],
            ["Supports d_type", "true"],
            ["Using metacopy", "false"],
            ["Native Overlay Diff", "true"],
            ["userxattr", "false"],
        ],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Authorization": None,
            "Log": ["json-file", "none"],
        },
        "MemoryLimit": caps.memory_limit,
        "SwapLimit": caps.swap_limit,
        "KernelMemoryTCP": caps.kernel_memory_tcp,
        "CpuCfsPeriod": caps.cpu_cfs_period,
        "CpuCfsQuota": caps.cpu_cfs_quota,
        "CPUShares": caps.cpu_shares,
        "CPUSet": caps.cpuset,
        "PidsLimit": caps.pids_limit,
        "IPv4Forwarding": host.ipv4_forwarding,
        "BridgeNfIptables": host.bridge_nf_iptables,
        "BridgeNfIp6tables": host.bridge_nf_ip6tables,
        "Debug": cfg.debug,
        "NFd": view.open_fds,
        "OomKillDisable": caps.oom_kill_disable,
        "NGoroutines": view.threads,
        "SystemTime": rfc3339_nano(view.system_time_ns),
        "LoggingDriver": cfg.log_driver,
        "CgroupDriver": facts.cgroups.driver,
        "CgroupVersion": str(facts.cgroups.version),
        "NEventsListener": view.events_listeners,
        "KernelVersion": host.kernel_version,
        "OperatingSystem": host.operating_system,
        "OSVersion": host.os_version,
        "OSType": host.os_type,
        "Architecture": host.architecture,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(cfg),
        "NCPU": host.ncpu,
        "MemTotal": host.mem_total,
        "GenericResources": None,
        "DockerRootDir": cfg.data_root,
        **proxy_fields(cfg),
        "Name": host.hostname,
        "Labels": list(cfg.labels),
        "ExperimentalBuild": cfg.experimental,
        "ServerVersion": __version__,
        "Runtimes": runtimes,
        "DefaultRuntime": cfg.default_runtime,
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": None,
        },
        "LiveRestoreEnabled": cfg.live_restore,
        "Isolation": "",
        "InitBinary": default_init_binary(facts),
        "ContainerdCommit": _commit(""),
        "RuncCommit": _commit(runc.commit or runc.version or "" if runc else ""),
        "InitCommit": _commit(init.version or "" if init else ""),
        "SecurityOptions": security,
        "ProductLicense": "",
        "DefaultAddressPools": [{"Base": p.base, "Size": p.size} for p in cfg.default_address_pools]
        or None,
        "Warnings": list(view.warnings) or None,
    }
    if api_version < (1, 42):
        body["KernelMemory"] = caps.kernel_memory
    return body
