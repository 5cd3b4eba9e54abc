"""A container record + facts resolved by the caller → the OCI SpecInput (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from whaled.container.model import Container
from whaled.runtime.devices import Device
from whaled.runtime.mounts import Mount
from whaled.runtime.resources import Resources
from whaled.runtime.spec import HostFacts, IpcMode, NamespaceMode, SpecInput
from whaled.runtime.ulimits import Ulimit
from whaled.runtime.usermap import ResolvedUser


def resources_of(hc: Mapping[str, Any]) -> Resources:
    return Resources(
        memory=hc.get("Memory") or 0,
        memory_swap=hc.get("MemorySwap") or 0,
        memory_reservation=hc.get("MemoryReservation") or 0,
        kernel_memory=hc.get("KernelMemory") or 0,
        memory_swappiness=hc.get("MemorySwappiness"),
        cpu_shares=hc.get("CpuShares") or 0,
        cpu_quota=hc.get("CpuQuota") or 0,
        cpu_period=hc.get("CpuPeriod") or 0,
        nano_cpus=hc.get("NanoCpus") or 0,
        cpuset_cpus=hc.get("CpusetCpus") or "",
        cpuset_mems=hc.get("CpusetMems") or "",
        pids_limit=hc.get("PidsLimit"),
        blkio_weight=hc.get("BlkioWeight") or 0,
        oom_kill_disable=bool(hc.get("OomKillDisable")),
    )


def _mode(value: str) -> NamespaceMode:
    return NamespaceMode.host() if value == "host" else NamespaceMode.private()


def _has_security_opt(opts: Sequence[str], key: str) -> bool:
    """An option of ``key`` is among ``opts`` (``key``, ``key=…`` or the old ``key:…``)."""
    return any(o == key or o.startswith((key + "=", key + ":")) for o in opts)


def build_spec_input(
    c: Container,
    *,
    host: HostFacts,
    rootfs: str,
    user: ResolvedUser,
    network: NamespaceMode,
    hosts_path: str | None,
    resolv_conf_path: str | None,
    hostname_path: str | None,
    init_path: str | None,
    shm_source: str | None = None,
    cgroup_parent: str = "",
    mounts: Sequence[Mount] = (),
    devices: Sequence[Device] = (),
    host_devices: Sequence[Device] = (),
    pid: NamespaceMode | None = None,
    no_new_privileges: bool = False,
    seccomp_profile: str | None = None,
) -> SpecInput:
    """The spec input of a start, in one place. The caller resolves what needs the host:
    the user (from the image's files), the init binary, the user mounts
    (``whaled.volume.mounts.user_mounts``), the devices (``devices``: the
    request's ``Devices`` looked up; ``host_devices``: every device node, for
    ``--privileged``), the network namespace and ``pid``, a ``container:<id>`` PID namespace
    to join. ``no_new_privileges`` and ``seccomp_profile`` are the daemon's defaults
    (``--no-new-privileges``; ``--seccomp-profile``: None for the builtin profile,
    ``"unconfined"``, or the contents of the profile file); a container's own
    ``--security-opt`` wins over them."""
    cfg, hc = c.config, c.host_config
    security_opt = tuple(hc.get("SecurityOpt") or ())
    if no_new_privileges and not _has_security_opt(security_opt, "no-new-privileges"):
        security_opt = (*security_opt, "no-new-privileges")
    if seccomp_profile is not None and not _has_security_opt(security_opt, "seccomp"):
        security_opt = (*security_opt, f"seccomp={seccomp_profile}")
    ipc = str(hc.get("IpcMode") or "private")
    ipc_mode = (
        IpcMode(kind="host", shm_source="/dev/shm")
        if ipc == "host"
        else (IpcMode(kind="none") if ipc == "none" else IpcMode(kind="private"))
    )
    ulimits: Sequence[Ulimit] = tuple(
        Ulimit(name=u["Name"], soft=u["Soft"], hard=u["Hard"]) for u in hc.get("Ulimits") or []
    )
    return SpecInput(
        container_id=c.id,
        host=host,
        rootfs=rootfs,
        entrypoint=tuple(cfg.get("Entrypoint") or ()),
        cmd=tuple(cfg.get("Cmd") or ()),
        env=_with_link_env(c.link_env, cfg.get("Env") or ()),
        working_dir=cfg.get("WorkingDir") or "",
        user=user,
        hostname=cfg.get("Hostname") or c.id[:12],
        domainname=cfg.get("Domainname") or "",
        tty=bool(cfg.get("Tty")),
        open_stdin=bool(cfg.get("OpenStdin")),
        stop_signal=cfg.get("StopSignal") or None,
        readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
        mounts=tuple(mounts),
        hosts_path=hosts_path,
        resolv_conf_path=resolv_conf_path,
        hostname_path=hostname_path,
        init_path=init_path if hc.get("Init") else None,
        privileged=bool(hc.get("Privileged")),
        cap_add=tuple(hc.get("CapAdd") or ()),
        cap_drop=tuple(hc.get("CapDrop") or ()),
        security_opt=security_opt,
        masked_paths=tuple(hc["MaskedPaths"]) if hc.get("MaskedPaths") is not None else None,
        readonly_paths=(
            tuple(hc["ReadonlyPaths"]) if hc.get("ReadonlyPaths") is not None else None
        ),
        ulimits=tuple(ulimits),
        resources=resources_of(hc),
        oom_score_adj=hc.get("OomScoreAdj") or 0,
        sysctls=dict(hc.get("Sysctls") or {}),
        shm_size=hc.get("ShmSize") or 64 * 1024 * 1024,
        cgroup_parent=hc.get("CgroupParent") or cgroup_parent,
        network=network,
        devices=tuple(devices),
        host_devices=tuple(host_devices),
        device_cgroup_rules=tuple(hc.get("DeviceCgroupRules") or ()),
        ipc=ipc_mode if shm_source is None else IpcMode(kind=ipc_mode.kind, shm_source=shm_source),
        pid=pid if pid is not None else _mode(str(hc.get("PidMode") or "")),
        uts=_mode(str(hc.get("UTSMode") or "")),
        cgroupns=_mode(str(hc.get("CgroupnsMode") or "")),
    )


def _with_link_env(link_env: Sequence[str], own: Sequence[str]) -> tuple[str, ...]:
    """Link variables first; the container's own ``Env`` wins over them (dockerd)."""
    keys = {str(e).partition("=")[0] for e in own}
    return tuple(e for e in link_env if e.partition("=")[0] not in keys) + tuple(own)
