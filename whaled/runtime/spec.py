"""OCI runtime spec generation (pure).

:func:`build_spec` turns a fully resolved :class:`SpecInput` into the ``config.json`` of a
bundle (runtime-spec 1.0.2, as runc 1.1 and crun read it). Everything that needs the file
system or the kernel — the image's passwd/group files, host device nodes, the container's
/etc/hosts and friends, host limits, the cgroup version — is resolved by the caller and
passed in as data; nothing here reads a file.

:func:`validate_spec_input` runs the same checks without building anything and returns
dockerd-style warnings, so the create use case can refuse bad input with a 400 before a
container exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from whaled.errors import InvalidParameter
from whaled.runtime.command import process_args, process_env
from whaled.runtime.defaults import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    DEFAULT_SHM_SIZE,
    INIT_PATH_IN_CONTAINER,
    effective_capabilities,
)
from whaled.runtime.devices import (
    Device,
    device_rules_for,
    device_to_oci,
    parse_device_cgroup_rule,
    validate_device,
)
from whaled.runtime.mounts import (
    BindMount,
    Mount,
    OciMount,
    clean_path,
    combine_mounts,
    default_mounts,
    rootfs_propagation,
    shm_bind,
    shm_tmpfs,
    to_oci_mount,
    validate_mounts,
)
from whaled.runtime.resources import (
    UNKNOWN_CPUSETS,
    CgroupVersion,
    HostCpusets,
    Resources,
    to_oci_resources,
    validate_resources,
)
from whaled.runtime.seccomp import seccomp_for
from whaled.runtime.secopts import SecurityOptions, parse_security_opts
from whaled.runtime.sysctls import validate_sysctls
from whaled.runtime.ulimits import Ulimit, check_host_limits, to_oci_rlimits
from whaled.runtime.usermap import ResolvedUser

OCI_VERSION = "1.0.2"
#: Annotation carrying the container's stop signal (runtimes ignore it; tools may read it).
STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal"
#: cgroup parent of containers with the cgroupfs driver (dockerd uses /docker).
DEFAULT_CGROUP_PARENT = "/whaled"
DEFAULT_SYSTEMD_SLICE = "system.slice"


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceMode:
    """How a container gets one namespace: a new one, the host's, or one joined by path
    (``/proc/<pid>/ns/<kind>`` of another container's process, or a pre-made netns)."""

    kind: Literal["private", "host", "join"] = "private"
    path: str | None = None

    @classmethod
    def private(cls) -> NamespaceMode:
        return cls(kind="private")

    @classmethod
    def host(cls) -> NamespaceMode:
        return cls(kind="host")

    @classmethod
    def join(cls, path: str) -> NamespaceMode:
        return cls(kind="join", path=path)


@dataclass(frozen=True, slots=True, kw_only=True)
class IpcMode:
    """The IPC namespace and what /dev/shm is.

    - ``private``: new namespace, a tmpfs /dev/shm of ``shm_size``;
    - ``shareable``: new namespace, /dev/shm bound from ``shm_source`` (a per-container
      directory others may join);
    - ``container``: the namespace at ``path``, /dev/shm bound from that container's
      ``shm_source``;
    - ``host``: the host's namespace, /dev/shm bound from ``shm_source`` (the host's /dev/shm);
    - ``none``: new namespace, no /dev/shm at all.
    """

    kind: Literal["private", "shareable", "container", "host", "none"] = "private"
    path: str | None = None
    shm_source: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFacts:
    """What the caller measured about the host (and the daemon's own limits)."""

    cgroup_version: CgroupVersion
    cgroup_driver: Literal["cgroupfs", "systemd"] = "cgroupfs"
    #: ``uname -m``.
    machine: str = "x86_64"
    #: The kernel supports seccomp filters.
    seccomp: bool = True
    #: cgroup v1 memory.memsw / cgroup v2 memory.swap.max exist.
    swap_limit: bool = True
    #: Online CPUs (bounds ``--cpus``); None: unchecked.
    cpus: int | None = None
    #: The CPUs and memory nodes a ``--cpuset-cpus`` / ``--cpuset-mems`` may name.
    cpusets: HostCpusets = UNKNOWN_CPUSETS
    #: Hard limits whaled runs under and cannot raise, by ulimit name (e.g. {"nofile": 20000}).
    rlimit_hard: Mapping[str, int] = field(default_factory=dict)
    #: The daemon's own capability bounding set (None: unknown, no filtering).
    capability_bounding: frozenset[str] | None = None
    #: Compat syscall ABIs the kernel does not run (libseccomp names): left out of the
    #: seccomp filter's architectures.
    absent_syscall_abis: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecInput:
    """Everything a container's spec depends on, already resolved."""

    container_id: str
    host: HostFacts

    # --- process (Config) ---
    #: Entrypoint and Cmd as stored on the container (see ``command.merge_command``).
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    #: Config.Env (image env merged with the request's, see ``command.merge_config_env``).
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: ResolvedUser = field(default_factory=lambda: ResolvedUser(uid=0, gid=0))
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    #: Not part of the spec (conmon keeps stdin open); carried for the backend.
    open_stdin: bool = False
    #: Not part of the spec either; recorded as an annotation.
    stop_signal: str | None = None

    # --- filesystem ---
    rootfs: str
    readonly_rootfs: bool = False
    mounts: tuple[Mount, ...] = ()
    #: Per-container files prepared by the caller (host paths), bound over the image's.
    hosts_path: str | None = None
    resolv_conf_path: str | None = None
    hostname_path: str | None = None
    #: Host path of the init binary for ``--init`` (catatonit or tini); None: no init.
    init_path: str | None = None

    # --- security (HostConfig) ---
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    #: HostConfig.MaskedPaths / ReadonlyPaths; None: dockerd's defaults.
    masked_paths: tuple[str, ...] | None = None
    readonly_paths: tuple[str, ...] | None = None

    # --- devices ---
    devices: tuple[Device, ...] = ()
    device_cgroup_rules: tuple[str, ...] = ()
    #: Every host device, for a privileged container.
    host_devices: tuple[Device, ...] = ()

    # --- limits ---
    #: Already merged with the daemon's default-ulimits (``ulimits.merge_ulimits``).
    ulimits: tuple[Ulimit, ...] = ()
    resources: Resources = field(default_factory=Resources)
    oom_score_adj: int = 0
    sysctls: Mapping[str, str] = field(default_factory=dict)
    shm_size: int = DEFAULT_SHM_SIZE
    #: HostConfig.CgroupParent, or the daemon's cgroup-parent; "" for the default.
    cgroup_parent: str = ""

    # --- namespaces ---
    network: NamespaceMode = field(default_factory=NamespaceMode.private)
    ipc: IpcMode = field(default_factory=IpcMode)
    pid: NamespaceMode = field(default_factory=NamespaceMode.private)
    uts: NamespaceMode = field(default_factory=NamespaceMode.private)
    #: None: the daemon default for the cgroup version (private on v2, host on v1).
    cgroupns: NamespaceMode | None = None

    annotations: Mapping[str, str] = field(default_factory=dict)


def validate_spec_input(inp: SpecInput) -> list[str]:
    """Every check :func:`build_spec` makes; returns warnings, raises InvalidParameter."""
    _process_args(inp)
    if inp.working_dir and not inp.working_dir.startswith("/"):
        raise InvalidParameter(
            f"the working directory '{inp.working_dir}' is invalid, it needs to be an absolute path"
        )
    effective_capabilities(cap_add=inp.cap_add, cap_drop=inp.cap_drop, privileged=inp.privileged)
    secopts = parse_security_opts(inp.security_opt)
    _seccomp(inp, secopts, ())
    validate_mounts(inp.mounts)
    for d in inp.devices:
        validate_device(d)
    for rule in inp.device_cgroup_rules:
        parse_device_cgroup_rule(rule)
    check_host_limits(inp.ulimits, inp.host.rlimit_hard)
    to_oci_rlimits(inp.ulimits)
    if not -1000 <= inp.oom_score_adj <= 1000:
        raise InvalidParameter(
            f"Invalid value {inp.oom_score_adj}, range for oom score adj is [-1000, 1000]"
        )
    if inp.shm_size < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    _check_namespaces(inp)
    _sysctls(inp)
    _cgroups_path(inp)
    return validate_resources(
        inp.resources,
        cgroup_version=inp.host.cgroup_version,
        host_cpus=inp.host.cpus,
        cpusets=inp.host.cpusets,
    )


def build_spec(inp: SpecInput) -> dict[str, Any]:
    """The OCI runtime spec (``config.json``) of the container."""
    validate_spec_input(inp)
    secopts = parse_security_opts(inp.security_opt)
    caps = list(
        effective_capabilities(
            cap_add=inp.cap_add, cap_drop=inp.cap_drop, privileged=inp.privileged
        )
    )
    if inp.host.capability_bounding is not None:
        # A capability the daemon itself lacks cannot be granted (runc: EPERM).
        caps = [c for c in caps if c in inp.host.capability_bounding]

    user: dict[str, Any] = {"uid": inp.user.uid, "gid": inp.user.gid}
    if inp.user.additional_gids:
        user["additionalGids"] = list(inp.user.additional_gids)
    process: dict[str, Any] = {
        "terminal": inp.tty,
        "user": user,
        "args": list(_process_args(inp)),
        "env": list(process_env(inp.env, hostname=inp.hostname, tty=inp.tty)),
        "cwd": clean_path(inp.working_dir) if inp.working_dir else "/",
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
            "inheritable": [],
            "ambient": [],
        },
        "noNewPrivileges": secopts.no_new_privileges,
        "oomScoreAdj": inp.oom_score_adj,
    }
    rlimits = to_oci_rlimits(inp.ulimits)
    if rlimits:
        process["rlimits"] = rlimits

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": inp.rootfs, "readonly": inp.readonly_rootfs},
    }
    if inp.uts.kind == "private" and inp.hostname:
        spec["hostname"] = inp.hostname
    spec["mounts"] = _mounts(inp)

    resources = to_oci_resources(
        inp.resources, cgroup_version=inp.host.cgroup_version, swap_limit=inp.host.swap_limit
    )
    devices = inp.host_devices if inp.privileged else inp.devices
    resources["devices"] = device_rules_for(
        devices,
        [parse_device_cgroup_rule(r) for r in inp.device_cgroup_rules],
        privileged=inp.privileged,
    )
    linux: dict[str, Any] = {
        "namespaces": _namespaces(inp),
        "resources": resources,
        "cgroupsPath": _cgroups_path(inp),
    }
    sysctl = _sysctls(inp)
    if sysctl:
        linux["sysctl"] = sysctl
    if devices:
        linux["devices"] = [device_to_oci(d) for d in devices]
    unconfined_paths = inp.privileged or secopts.unconfined_system_paths
    linux["maskedPaths"] = (
        []
        if unconfined_paths
        else list(DEFAULT_MASKED_PATHS if inp.masked_paths is None else inp.masked_paths)
    )
    linux["readonlyPaths"] = (
        []
        if unconfined_paths
        else list(DEFAULT_READONLY_PATHS if inp.readonly_paths is None else inp.readonly_paths)
    )
    seccomp = _seccomp(inp, secopts, caps)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    propagation = rootfs_propagation(inp.mounts)
    if propagation is not None:
        linux["rootfsPropagation"] = propagation
    spec["linux"] = linux

    annotations = dict(inp.annotations)
    if inp.stop_signal:
        annotations[STOP_SIGNAL_ANNOTATION] = inp.stop_signal
    if annotations:
        spec["annotations"] = annotations
    return spec


def _process_args(inp: SpecInput) -> tuple[str, ...]:
    args = process_args(inp.entrypoint, inp.cmd)
    if inp.init_path is not None:
        return (INIT_PATH_IN_CONTAINER, "--", *args)
    return args


def _seccomp(
    inp: SpecInput, secopts: SecurityOptions, caps: list[str] | tuple[str, ...]
) -> dict[str, Any] | None:
    profile = secopts.seccomp_profile
    if inp.privileged or profile == "unconfined":
        return None
    if not inp.host.seccomp:
        if profile is not None:
            raise InvalidParameter(
                "seccomp is not enabled in your kernel, cannot run a custom seccomp profile."
            )
        return None
    return seccomp_for(
        caps, profile, machine=inp.host.machine, absent_arches=inp.host.absent_syscall_abis
    )


def _check_namespaces(inp: SpecInput) -> None:
    for name, mode in (
        ("network", inp.network),
        ("pid", inp.pid),
        ("uts", inp.uts),
        ("cgroup", inp.cgroupns),
    ):
        if mode is None:
            continue
        if mode.kind == "join" and not mode.path:
            raise InvalidParameter(f"{name} namespace: a path to join is required")
        if name in ("uts", "cgroup") and mode.kind == "join":
            raise InvalidParameter(f"{name} namespace: joining another one is not supported")
    ipc = inp.ipc
    if ipc.kind == "container" and not ipc.path:
        raise InvalidParameter("ipc namespace: a path to join is required")
    if ipc.kind in ("shareable", "container", "host") and not ipc.shm_source:
        raise InvalidParameter(f"ipc mode {ipc.kind}: a /dev/shm source is required")


def _namespaces(inp: SpecInput) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def add(kind: str, mode: NamespaceMode) -> None:
        if mode.kind == "private":
            out.append({"type": kind})
        elif mode.kind == "join" and mode.path:
            out.append({"type": kind, "path": mode.path})

    add("pid", inp.pid)
    add("network", inp.network)
    ipc = inp.ipc
    if ipc.kind == "container" and ipc.path:
        out.append({"type": "ipc", "path": ipc.path})
    elif ipc.kind != "host":
        out.append({"type": "ipc"})
    add("uts", inp.uts)
    out.append({"type": "mount"})
    add("cgroup", _cgroupns(inp))
    return out


def _cgroupns(inp: SpecInput) -> NamespaceMode:
    if inp.cgroupns is not None:
        return inp.cgroupns
    return NamespaceMode.private() if inp.host.cgroup_version == 2 else NamespaceMode.host()


def _sysctls(inp: SpecInput) -> dict[str, str]:
    result: dict[str, str] = {}
    if inp.domainname and inp.uts.kind == "private":
        # runc 1.1 has no domainname field; the UTS-namespaced sysctl does the same job
        # (dockerd does this too). An explicit --sysctl kernel.domainname wins.
        result["kernel.domainname"] = inp.domainname
    result.update(
        validate_sysctls(
            inp.sysctls,
            host_ipc=inp.ipc.kind == "host",
            host_network=inp.network.kind == "host",
            host_uts=inp.uts.kind == "host",
        )
    )
    return result


def _cgroups_path(inp: SpecInput) -> str:
    parent = inp.cgroup_parent
    if inp.host.cgroup_driver == "systemd":
        parent = parent or DEFAULT_SYSTEMD_SLICE
        if not parent.endswith(".slice") or "/" in parent:
            raise InvalidParameter(
                'cgroup-parent for systemd cgroup should be a valid slice named as "xxx.slice"'
            )
        return f"{parent}:whaled:{inp.container_id}"
    parent = parent or DEFAULT_CGROUP_PARENT
    return clean_path(f"{parent}/{inp.container_id}")


def _shm_mount(inp: SpecInput) -> OciMount | None:
    ipc = inp.ipc
    if ipc.kind == "none":
        return None
    if ipc.kind == "private":
        return shm_tmpfs(inp.shm_size or DEFAULT_SHM_SIZE)
    assert ipc.shm_source is not None  # checked by _check_namespaces
    return shm_bind(ipc.shm_source)


def _mounts(inp: SpecInput) -> list[OciMount]:
    user = [to_oci_mount(m) for m in inp.mounts]
    taken = {clean_path(m.destination) for m in inp.mounts}
    # The per-container network files follow the rootfs' writability, like dockerd's.
    for dest, source in (
        ("/etc/resolv.conf", inp.resolv_conf_path),
        ("/etc/hostname", inp.hostname_path),
        ("/etc/hosts", inp.hosts_path),
    ):
        if source is not None and dest not in taken:
            user.append(
                to_oci_mount(
                    BindMount(source=source, destination=dest, readonly=inp.readonly_rootfs)
                )
            )
    if inp.init_path is not None:
        user.append(
            {
                "destination": INIT_PATH_IN_CONTAINER,
                "type": "bind",
                "source": inp.init_path,
                "options": ["bind", "ro", "rprivate"],
            }
        )
    defaults = default_mounts(privileged=inp.privileged, shm=_shm_mount(inp))
    return combine_mounts(defaults, user)
