"""A container's runtime files and the OCI spec of a start.

:class:`RunFiles` says where the runtime's files of a container are under exec-root (the
run dir = bundle = conmon's files, the runtime's ``--root``, the wrapper scripts) and builds
the backend's :class:`CreateOptions` from them. :class:`SpecAssembler` resolves what the
spec needs from the host (the user from the image's files, the init binary, device nodes,
namespaces to join, rlimits) and hands it to the pure ``build_spec_input`` /
``build_spec`` once; :func:`write_bundle` writes the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import resource
import shutil
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from whaled.config.model import Config
from whaled.container import archive as cp
from whaled.container.model import Container
from whaled.container.spec_input import build_spec_input
from whaled.container.state import Status
from whaled.container.store import ContainerStore
from whaled.daemon.runs import Runs
from whaled.daemon.system import HostFacts as DaemonFacts
from whaled.errors import Conflict, InvalidParameter, NotFound, SystemFailure, WhaledError
from whaled.host.devices import all_device_nodes, device_node
from whaled.logger.options import LogOptions, parse_log_config
from whaled.network.links import parse_link
from whaled.osutil.atomic import replace_file
from whaled.osutil.files import read_text
from whaled.runtime.backend.api import CreateOptions, StdioOptions
from whaled.runtime.devices import Device
from whaled.runtime.mounts import Mount
from whaled.runtime.registry import resolve_runtime
from whaled.runtime.seccomp import UNCONFINED
from whaled.runtime.spec import HostFacts, NamespaceMode, build_spec, validate_spec_input
from whaled.runtime.usermap import ResolvedUser, resolve_user
from whaled.runtime.wrappers import ensure_wrapper
from whaled.volume.mounts import user_mounts


def log_options(c: Container) -> LogOptions | None:
    """The container's log driver options (None: the ``none`` driver, no log file)."""
    lc = c.host_config.get("LogConfig") or {}
    driver = str(lc.get("Type") or "json-file")
    if driver == "none":
        return None
    return parse_log_config(driver, lc.get("Config") or {})


class RunFiles:
    """Where a container's runtime files are under exec-root."""

    def __init__(self, exec_root: str, builtin: Mapping[str, str | None]) -> None:
        self.exec_root = exec_root
        self.builtin = dict(builtin)
        self.wrappers_dir = os.path.join(exec_root, "runtimes")
        self.runtime_state = os.path.join(exec_root, "runc")

    def run_dir(self, cid: str) -> str:
        # Short: conmon's attach socket lives below (unix socket paths < 108 bytes).
        return os.path.join(self.exec_root, "c", cid[:16])

    def bare_options(self, cid: str, runtime_path: str) -> CreateOptions:
        """Where a container's runtime files are: enough to delete it from the runtime."""
        base = self.run_dir(cid)
        return CreateOptions(
            container_id=cid,
            bundle_dir=base,
            state_dir=os.path.join(base, "m"),
            runtime_path=runtime_path,
            runtime_args=("--root", self.runtime_state),
        )

    def runtime_options(
        self, c: Container, runtime_path: str, log_opts: LogOptions | None
    ) -> CreateOptions:
        cfg = c.config
        return dataclasses.replace(
            self.bare_options(c.id, runtime_path),
            name=c.name,
            stdio=StdioOptions(
                tty=bool(cfg.get("Tty")),
                stdin=bool(cfg.get("OpenStdin")),
                # dockerd closes the process's stdin at a client's EOF only without a TTY.
                stdin_once=bool(cfg.get("StdinOnce")) and not cfg.get("Tty"),
            ),
            log_path=c.log_path if log_opts is not None else None,
            timeout=30.0,
            exec_fifo=(
                os.path.join(self.runtime_state, c.id, "exec.fifo")
                if runtime_path == self.builtin.get("runc")
                else None
            ),
        )

    async def resolve_runtime(self, cfg: Config, c: Container) -> str:
        """The executable of the container's runtime under ``cfg`` (a wrapper is written
        first when the runtime has ``runtimeArgs``)."""
        resolved = resolve_runtime(cfg, c.runtime, self.builtin, shutil.which)
        if resolved.wrapper is not None:
            await asyncio.to_thread(ensure_wrapper, self.wrappers_dir, resolved.wrapper)
        return resolved.executable(self.wrappers_dir)


class SpecAssembler:
    """The OCI spec of a container's start (and the create-time check of its settings)."""

    def __init__(
        self,
        *,
        facts: DaemonFacts,
        capability_bounding: frozenset[str] | None,
        store: ContainerStore,
        runs: Runs,
    ) -> None:
        self.facts = facts
        self.capability_bounding = capability_bounding
        self.store = store
        self.runs = runs

    def check_runnable(self, cfg: Config, c: Container, network: NamespaceMode) -> list[str]:
        """What a start would refuse for the container's settings alone (resources, OOM score,
        capabilities, sysctls, security options, ...), refused at create as dockerd does;
        returns the warnings for settings this host drops."""
        return validate_spec_input(
            build_spec_input(
                c,
                host=self.host_facts(),
                rootfs="/",
                user=ResolvedUser(uid=0, gid=0),
                network=network,
                hosts_path=None,
                resolv_conf_path=None,
                hostname_path=None,
                init_path=None,
                cgroup_parent=cfg.cgroup_parent,
                mounts=user_mounts(c.host_config),
            )
        )

    def spec_for(
        self,
        cfg: Config,
        c: Container,
        rootfs: str,
        volumes: Sequence[Mount] = (),
        netns: str | None = None,
    ) -> dict[str, Any]:
        """The spec of a start (reads the image's passwd/group and device nodes);
        ``volumes``: the container's volume mounts, ready on the host; ``netns``: the
        network namespace whaled wired for it (user networks), joined by path."""
        hc = c.host_config
        user = resolve_user(
            str(c.config.get("User") or ""),
            passwd=read_in_root(rootfs, "/etc/passwd"),
            group=read_in_root(rootfs, "/etc/group"),
            group_add=[str(g) for g in hc.get("GroupAdd") or []],
        )
        init_path = None
        if hc.get("Init"):
            init_path = cfg.init_path or init_binary(self.facts)
            if not init_path:
                raise InvalidParameter(
                    "--init needs an init binary (catatonit or tini); none is installed"
                )
        host_devices: tuple[Device, ...] = ()
        if hc.get("Privileged"):
            host_devices = tuple(
                Device(path=p, type=t, major=ma, minor=mi, file_mode=m, uid=u, gid=g)  # type: ignore[arg-type]
                for p, t, ma, mi, m, u, g in all_device_nodes()
            )
        pid = None
        if str(hc.get("PidMode") or "").startswith("container:"):
            pid = self.namespace(c, "PidMode", "pid")
        self._check_links(c)
        return build_spec(
            build_spec_input(
                c,
                host=self.host_facts(),
                rootfs=rootfs,
                user=user,
                network=(
                    NamespaceMode.join(netns) if netns else self.namespace(c, "NetworkMode", "net")
                ),
                hosts_path=c.hosts_path,
                resolv_conf_path=c.resolv_conf_path,
                hostname_path=c.hostname_path,
                init_path=init_path,
                cgroup_parent=cfg.cgroup_parent,
                mounts=user_mounts(hc) + tuple(volumes),
                devices=devices_of(hc),
                host_devices=host_devices,
                pid=pid,
                no_new_privileges=cfg.no_new_privileges,
                seccomp_profile=daemon_seccomp_profile(cfg.seccomp_profile),
            )
        )

    def _check_links(self, c: Container) -> None:
        """Every linked container runs (dockerd refuses the start otherwise)."""
        for entry in c.host_config.get("Links") or ():
            link = parse_link(str(entry))
            try:
                child = self.store.get(link.child)
            except NotFound:
                child = None
            if child is None or child.state.status != Status.RUNNING:
                raise SystemFailure(
                    f"Cannot link to a non running container: /{link.child} AS "
                    f"/{c.name}/{link.alias}"
                )

    def namespace(self, c: Container, key: str, kind: str) -> NamespaceMode:
        """The namespace of ``kind`` that HostConfig ``key`` asks for (a ``container:<id>``
        one is joined through the other container's init process, which must run)."""
        mode = str(c.host_config.get(key) or "")
        if mode == "host":
            return NamespaceMode.host()
        if mode.startswith("container:"):
            other = self.store.get(mode.removeprefix("container:"))
            run = self.runs.run_of(other.id)
            if run is None or other.state.status != Status.RUNNING:
                raise Conflict(f"cannot join container {other.id}: it is not running")
            return NamespaceMode.join(f"/proc/{run.task.pid}/ns/{kind}")
        return NamespaceMode.private()

    def host_facts(self) -> HostFacts:
        caps = self.facts.cgroups.capabilities
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        limits = {"nofile": hard}
        if nproc != resource.RLIM_INFINITY:
            limits["nproc"] = nproc
        version: Literal[1, 2] = 2 if self.facts.cgroups.version == 2 else 1
        return HostFacts(
            cgroup_version=version,
            machine=self.facts.host.architecture,
            seccomp=self.facts.host.seccomp_available,
            swap_limit=caps.swap_limit,
            cpus=self.facts.host.ncpu,
            cpusets=self.facts.cpusets,
            rlimit_hard=limits,
            capability_bounding=self.capability_bounding,
            absent_syscall_abis=self.facts.host.absent_syscall_abis,
        )


def devices_of(hc: Mapping[str, Any]) -> tuple[Device, ...]:
    """HostConfig.Devices with their host nodes looked up."""
    out = []
    for d in hc.get("Devices") or []:
        host_path = str(d.get("PathOnHost") or "")
        kind, major, minor, mode, uid, gid = device_node(host_path)
        out.append(
            Device(
                path=str(d.get("PathInContainer") or host_path),
                type=kind,  # type: ignore[arg-type]
                major=major,
                minor=minor,
                file_mode=mode,
                uid=uid,
                gid=gid,
                permissions=str(d.get("CgroupPermissions") or "rwm"),
            )
        )
    return tuple(out)


def daemon_seccomp_profile(setting: str) -> str | None:
    """The daemon's ``seccomp-profile`` as a container default: None for the builtin
    profile, ``"unconfined"``, or the contents of the profile file (read at each start, so
    an edited file applies to the containers started afterwards)."""
    if setting in ("", "builtin"):
        return None
    if setting == UNCONFINED:
        return UNCONFINED
    try:
        with open(setting, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise SystemFailure(f'cannot read the seccomp profile "{setting}": {e}') from e


def init_binary(facts: DaemonFacts) -> str:
    init = facts.binaries.get("init")
    return init.path if init is not None and init.path else ""


def write_bundle(bundle_dir: str, spec: Mapping[str, Any]) -> None:
    """``config.json`` is written anew at every start and read only by the runtime's
    ``create`` right after: no state to recover, so no fsync."""
    os.makedirs(bundle_dir, mode=0o700, exist_ok=True)
    replace_file(os.path.join(bundle_dir, "config.json"), json.dumps(spec).encode(), 0o600)


def read_in_root(root: str, path: str) -> str | None:
    """A file of the container's root file system, its path resolved inside the container
    (``whaled.container.archive.resolve``: links never lead to the host); None if missing."""
    try:
        return read_text(cp.resolve(root, {}, path))
    except WhaledError:
        return None
