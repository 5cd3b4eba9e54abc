"""cgroup layout of the host: which version, which controllers, where they are mounted, and
what resource limits containers can therefore be given.

Pure part: parsers over the text of ``/proc/self/mountinfo``, ``/proc/mounts``,
``/proc/self/cgroup`` and ``cgroup.controllers``, and the functions that turn "which files
exist" into capability flags (the ones dockerd shows in ``/info``). I/O part: the ``read_*``
functions and the two lookups the container layer uses (``cgroup_v1_mount``,
``cgroup_v2_root``). Readers never raise for a missing file; a host without some controller
simply reports the capability as absent.

whaled drives cgroups through cgroupfs only (no systemd), so the driver is always
``"cgroupfs"``.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from whaled.osutil.files import read_text

CGROUP_DRIVER = "cgroupfs"

# Options of a cgroup v1 superblock (and, in /proc/mounts, the generic VFS flags merged into
# the same list) that are not controller names.
_NON_CONTROLLER_OPTIONS = frozenset(
    {
        # cgroup v1 superblock options
        "all",
        "none",
        "noprefix",
        "clone_children",
        "cpuset_v2_mode",
        "xattr",
        "favordynmods",
        "sane_behavior",
        # generic mount flags
        "rw",
        "ro",
        "relatime",
        "noatime",
        "nodiratime",
        "strictatime",
        "lazytime",
        "nosuid",
        "nodev",
        "noexec",
        "sync",
        "dirsync",
        "mand",
        "silent",
    }
)

# At most this many child cgroups of a v2 root are listed when looking for a non-root cgroup
# whose interface files reveal what the kernel supports (the root cgroup lacks most of them).
_V2_PROBE_CHILDREN = 32


class CgroupMode(enum.StrEnum):
    """How cgroups are mounted (the names containerd and systemd use)."""

    LEGACY = "legacy"  # only v1 hierarchies
    HYBRID = "hybrid"  # v1 controllers, plus a cgroup2 hierarchy (usually without controllers)
    UNIFIED = "unified"  # only cgroup2 manages resources


@dataclass(frozen=True, slots=True, kw_only=True)
class MountEntry:
    """One line of mountinfo (or /proc/mounts, where ``root`` is unknown and set to "/")."""

    mount_point: str
    root: str
    fstype: str
    source: str
    mount_options: tuple[str, ...]
    super_options: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupMount:
    """A mounted cgroup hierarchy.

    ``root`` is the cgroup path inside the hierarchy that appears at ``mount_point`` (``/``
    on a host; a container's own cgroup when mounted inside a cgroup namespace or bind
    mounted). ``controllers`` holds, for v1, the controllers attached to the hierarchy plus
    named hierarchies as ``name=<name>`` (e.g. ``name=systemd``); for v2 it is empty (the
    controllers of a v2 hierarchy are read from ``cgroup.controllers``).
    """

    version: int
    mount_point: str
    root: str
    controllers: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupCapabilities:
    """Which resource settings the host can enforce (dockerd's ``sysinfo`` flags)."""

    memory_limit: bool = False
    swap_limit: bool = False
    memory_reservation: bool = False
    memory_swappiness: bool = False
    kernel_memory: bool = False
    kernel_memory_tcp: bool = False
    oom_kill_disable: bool = False
    cpu_cfs_period: bool = False
    cpu_cfs_quota: bool = False
    cpu_shares: bool = False
    cpu_realtime: bool = False
    cpuset: bool = False
    pids_limit: bool = False
    blkio_weight: bool = False
    blkio_weight_device: bool = False
    blkio_read_bps_device: bool = False
    blkio_write_bps_device: bool = False
    blkio_read_iops_device: bool = False
    blkio_write_iops_device: bool = False
    devices: bool = False
    freezer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupInfo:
    """The host's cgroup layout and capabilities. All fields are immutable facts."""

    version: int  # 1 or 2: the version that manages container resources
    mode: CgroupMode
    driver: str = CGROUP_DRIVER
    v1_mounts: tuple[CgroupMount, ...] = ()
    v2_mount: CgroupMount | None = None
    v2_controllers: frozenset[str] = frozenset()
    capabilities: CgroupCapabilities = CgroupCapabilities()
    #: the CPUs and memory nodes of the root cpuset ("0-3"), "" when unknown
    cpuset_cpus: str = ""
    cpuset_mems: str = ""

    @property
    def v1_controllers(self) -> frozenset[str]:
        """Every v1 controller (and ``name=`` hierarchy) that is mounted."""
        return frozenset(c for m in self.v1_mounts for c in m.controllers)

    def v1_mount(self, controller: str) -> str | None:
        """Mount point of the v1 hierarchy holding ``controller``, or None."""
        mount = find_v1_mount(self.v1_mounts, controller)
        return mount.mount_point if mount is not None else None

    def v2_root(self) -> str | None:
        """Mount point of the cgroup2 hierarchy, or None."""
        return self.v2_mount.mount_point if self.v2_mount is not None else None


# --------------------------------------------------------------------------- pure parsers


def _unescape_mount_field(field: str) -> str:
    r"""Decode the octal escapes (``\040`` space, ``\011`` tab, ``\012``, ``\134``) the kernel
    uses for whitespace and backslashes in mount paths."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        chunk = field[i + 1 : i + 4]
        if field[i] == "\\" and len(chunk) == 3 and all(c in "01234567" for c in chunk):
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse ``/proc/<pid>/mountinfo``. Malformed lines are skipped.

    Format (proc(5)): ``id parent major:minor root mount_point mount_options
    [optional fields...] - fstype source super_options``.
    """
    entries: list[MountEntry] = []
    for line in text.splitlines():
        # Fields are separated by single spaces (spaces inside paths are escaped); splitting on
        # " " keeps an empty source field in place.
        fields = line.strip().split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 4:
            continue
        entries.append(
            MountEntry(
                mount_point=_unescape_mount_field(fields[4]),
                root=_unescape_mount_field(fields[3]),
                fstype=fields[sep + 1],
                source=_unescape_mount_field(fields[sep + 2]),
                mount_options=tuple(fields[5].split(",")),
                super_options=tuple(fields[sep + 3].split(",")),
            )
        )
    return entries


def parse_proc_mounts(text: str) -> list[MountEntry]:
    """Parse ``/proc/mounts`` (fstab format). The mounted root is not recorded there, so
    ``root`` is "/" and both option tuples hold the merged option list."""
    entries: list[MountEntry] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        options = tuple(fields[3].split(","))
        entries.append(
            MountEntry(
                mount_point=_unescape_mount_field(fields[1]),
                root="/",
                fstype=fields[2],
                source=_unescape_mount_field(fields[0]),
                mount_options=options,
                super_options=options,
            )
        )
    return entries


def _v1_controllers_from_options(options: Iterable[str]) -> frozenset[str]:
    controllers: set[str] = set()
    for opt in options:
        if opt.startswith("name="):
            controllers.add(opt)
        elif "=" in opt or opt in _NON_CONTROLLER_OPTIONS:
            continue
        elif opt:
            controllers.add(opt)
    return frozenset(controllers)


def cgroup_mounts(entries: Iterable[MountEntry]) -> list[CgroupMount]:
    """The cgroup hierarchies among ``entries``, in mount order."""
    mounts: list[CgroupMount] = []
    for entry in entries:
        if entry.fstype == "cgroup":
            mounts.append(
                CgroupMount(
                    version=1,
                    mount_point=entry.mount_point,
                    root=entry.root,
                    controllers=_v1_controllers_from_options(entry.super_options),
                )
            )
        elif entry.fstype == "cgroup2":
            mounts.append(
                CgroupMount(
                    version=2,
                    mount_point=entry.mount_point,
                    root=entry.root,
                    controllers=frozenset(),
                )
            )
    return mounts


def find_v1_mount(mounts: Iterable[CgroupMount], controller: str) -> CgroupMount | None:
    """The first v1 hierarchy that holds ``controller`` (``name=systemd`` for a named one)."""
    for mount in mounts:
        if mount.version == 1 and controller in mount.controllers:
            return mount
    return None


def find_v2_mount(mounts: Iterable[CgroupMount]) -> CgroupMount | None:
    """The cgroup2 hierarchy; the one at ``/sys/fs/cgroup`` when several are mounted."""
    found: CgroupMount | None = None
    for mount in mounts:
        if mount.version != 2:
            continue
        if mount.mount_point == "/sys/fs/cgroup":
            return mount
        if found is None:
            found = mount
    return found


def _has_v1_resource_controllers(mounts: Iterable[CgroupMount]) -> bool:
    return any(
        mount.version == 1 and any(not c.startswith("name=") for c in mount.controllers)
        for mount in mounts
    )


def detect_mode(mounts: Iterable[CgroupMount]) -> CgroupMode:
    """Classify the layout.

    v1 resource controllers mounted → legacy, or hybrid when a cgroup2 hierarchy is mounted
    too (its controllers, if any, are not used for containers). No v1 resource controllers and
    a cgroup2 hierarchy → unified. Named v1 hierarchies (``name=systemd``) alone do not count:
    they hold no resources. Nothing mounted at all is reported as legacy with no controllers,
    so every capability shows as missing.
    """
    mount_list = list(mounts)
    has_v2 = any(m.version == 2 for m in mount_list)
    if _has_v1_resource_controllers(mount_list):
        return CgroupMode.HYBRID if has_v2 else CgroupMode.LEGACY
    return CgroupMode.UNIFIED if has_v2 else CgroupMode.LEGACY


def parse_cgroup_controllers(text: str) -> frozenset[str]:
    """Parse a v2 ``cgroup.controllers`` (or ``cgroup.subtree_control``) file."""
    return frozenset(text.split())


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Parse ``/proc/<pid>/cgroup`` into controller → cgroup path.

    v1 lines (``4:memory:/a/b``, ``1:cpu,cpuacct:/x``) give one key per controller, named
    hierarchies keep their ``name=`` prefix; the v2 line (``0::/x``) is under the key ``""``.
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths[""] = path
            continue
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def v1_capabilities(files: Mapping[str, frozenset[str]]) -> CgroupCapabilities:
    """Capabilities on a v1 host.

    ``files`` maps each mounted v1 controller to the names of the files in its hierarchy's
    mounted directory; a controller that is not mounted is absent from the mapping.
    """
    memory = files.get("memory")
    cpu = files.get("cpu")
    blkio = files.get("blkio")
    mem = memory if memory is not None else frozenset()
    cpu_files = cpu if cpu is not None else frozenset()
    blk = blkio if blkio is not None else frozenset()
    return CgroupCapabilities(
        memory_limit=memory is not None,
        swap_limit="memory.memsw.limit_in_bytes" in mem,
        memory_reservation="memory.soft_limit_in_bytes" in mem,
        memory_swappiness="memory.swappiness" in mem,
        kernel_memory="memory.kmem.limit_in_bytes" in mem,
        kernel_memory_tcp="memory.kmem.tcp.limit_in_bytes" in mem,
        oom_kill_disable="memory.oom_control" in mem,
        cpu_cfs_period="cpu.cfs_period_us" in cpu_files,
        cpu_cfs_quota="cpu.cfs_quota_us" in cpu_files,
        cpu_shares="cpu.shares" in cpu_files,
        cpu_realtime="cpu.rt_period_us" in cpu_files and "cpu.rt_runtime_us" in cpu_files,
        cpuset="cpuset" in files,
        pids_limit="pids" in files,
        blkio_weight="blkio.weight" in blk or "blkio.bfq.weight" in blk,
        blkio_weight_device="blkio.weight_device" in blk or "blkio.bfq.weight_device" in blk,
        blkio_read_bps_device="blkio.throttle.read_bps_device" in blk,
        blkio_write_bps_device="blkio.throttle.write_bps_device" in blk,
        blkio_read_iops_device="blkio.throttle.read_iops_device" in blk,
        blkio_write_iops_device="blkio.throttle.write_iops_device" in blk,
        devices="devices" in files,
        freezer="freezer" in files,
    )


def v2_capabilities(controllers: frozenset[str], probe_files: frozenset[str]) -> CgroupCapabilities:
    """Capabilities on a unified (v2) host.

    ``controllers`` are those available at the hierarchy's root. ``probe_files`` are the
    interface files seen in non-root cgroups (the root cgroup lacks ``memory.max``,
    ``cgroup.freeze`` and friends); it may be empty when no such cgroup could be listed, in
    which case the controller list alone decides, as dockerd does.
    """
    saw_non_root = "cgroup.type" in probe_files
    memory = "memory" in controllers
    if memory and "memory.max" in probe_files:
        swap = "memory.swap.max" in probe_files
    else:
        swap = memory
    cpu = "cpu" in controllers
    io = "io" in controllers
    return CgroupCapabilities(
        memory_limit=memory,
        swap_limit=swap,
        memory_reservation=memory,
        # v2 has no swappiness, kernel memory or OOM-killer switch per cgroup.
        cpu_cfs_period=cpu,
        cpu_cfs_quota=cpu,
        cpu_shares=cpu,
        cpuset="cpuset" in controllers,
        pids_limit="pids" in controllers,
        blkio_weight=io,
        blkio_weight_device=io,
        blkio_read_bps_device=io,
        blkio_write_bps_device=io,
        blkio_read_iops_device=io,
        blkio_write_iops_device=io,
        # Device rules are eBPF programs on v2: always available to root.
        devices=True,
        # cgroup.freeze exists in every non-root cgroup since Linux 5.2. Without a non-root
        # cgroup to look at, assume a kernel recent enough for cgroup2 containers.
        freezer="cgroup.freeze" in probe_files if saw_non_root else True,
    )


def build_cgroup_info(
    mounts: list[CgroupMount],
    *,
    v1_files: Mapping[str, frozenset[str]],
    v2_controllers: frozenset[str],
    v2_probe_files: frozenset[str],
) -> CgroupInfo:
    """Assemble :class:`CgroupInfo` from what the reader gathered (pure)."""
    mode = detect_mode(mounts)
    v1 = tuple(m for m in mounts if m.version == 1)
    v2 = find_v2_mount(mounts)
    if mode is CgroupMode.UNIFIED:
        caps = v2_capabilities(v2_controllers, v2_probe_files)
        version = 2
    else:
        caps = v1_capabilities(v1_files)
        version = 1
    return CgroupInfo(
        version=version,
        mode=mode,
        v1_mounts=v1,
        v2_mount=v2,
        v2_controllers=v2_controllers,
        capabilities=caps,
    )


def cgroup_warnings(info: CgroupInfo) -> tuple[str, ...]:
    """The cgroup-related warnings dockerd lists in ``/info``, in dockerd's order and
    wording."""
    caps = info.capabilities
    v1 = info.version == 1
    warnings: list[str] = []
    if not caps.memory_limit:
        warnings.append("WARNING: No memory limit support")
    if not caps.swap_limit:
        warnings.append("WARNING: No swap limit support")
    if v1 and not caps.kernel_memory_tcp:
        warnings.append("WARNING: No kernel memory TCP limit support")
    if v1 and not caps.oom_kill_disable:
        warnings.append("WARNING: No oom kill disable support")
    if not caps.cpu_cfs_quota:
        warnings.append("WARNING: No cpu cfs quota support")
    if not caps.cpu_cfs_period:
        warnings.append("WARNING: No cpu cfs period support")
    if not caps.cpu_shares:
        warnings.append("WARNING: No cpu shares support")
    if not caps.cpuset:
        warnings.append("WARNING: No cpuset support")
    if not v1 and not caps.blkio_weight:
        warnings.append("WARNING: No io.weight support")
    if not v1 and not caps.blkio_weight_device:
        warnings.append("WARNING: No io.weight (per device) support")
    for flag, v2_name, v1_name in (
        (caps.blkio_read_bps_device, "io.max (rbps)", "blkio throttle.read_bps_device"),
        (caps.blkio_write_bps_device, "io.max (wbps)", "blkio throttle.write_bps_device"),
        (caps.blkio_read_iops_device, "io.max (riops)", "blkio throttle.read_iops_device"),
        (caps.blkio_write_iops_device, "io.max (wiops)", "blkio throttle.write_iops_device"),
    ):
        if not flag:
            warnings.append(f"WARNING: No {v1_name if v1 else v2_name} support")
    return tuple(warnings)


# --------------------------------------------------------------------------- readers (I/O)


def _list_dir(path: str) -> frozenset[str] | None:
    try:
        return frozenset(os.listdir(path))
    except OSError:
        return None


def read_cgroup_mounts(proc_root: str = "/proc") -> list[CgroupMount]:
    """The cgroup hierarchies visible to this process (mountinfo, else /proc/mounts)."""
    text = read_text(os.path.join(proc_root, "self", "mountinfo"))
    if text is not None:
        return cgroup_mounts(parse_mountinfo(text))
    text = read_text(os.path.join(proc_root, "mounts"))
    if text is not None:
        return cgroup_mounts(parse_proc_mounts(text))
    return []


def _v2_probe_files(mount: CgroupMount, own_path: str | None) -> frozenset[str]:
    """Union of the file names in a few non-root cgroups of the v2 hierarchy: our own cgroup,
    the mounted directory itself (a non-root cgroup inside a cgroup namespace) and some of
    its children."""
    candidates: list[str] = []
    if own_path is not None:
        rel = os.path.relpath(own_path, mount.root)
        if rel != "." and not rel.startswith(".."):
            candidates.append(os.path.join(mount.mount_point, rel))
    candidates.append(mount.mount_point)
    try:
        with os.scandir(mount.mount_point) as it:
            children = [e.path for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        children = []
    candidates.extend(sorted(children)[:_V2_PROBE_CHILDREN])
    seen: set[str] = set()
    for path in candidates:
        names = _list_dir(path)
        if names is not None and "cgroup.type" in names:
            seen.update(names)
    return frozenset(seen)


def read_cgroup_info(proc_root: str = "/proc") -> CgroupInfo:
    """Detect the host's cgroup layout and capabilities. Never raises for missing files."""
    mounts = read_cgroup_mounts(proc_root)
    v1_files: dict[str, frozenset[str]] = {}
    for controller in ("memory", "cpu", "cpuset", "pids", "blkio", "devices", "freezer"):
        mount = find_v1_mount(mounts, controller)
        if mount is not None:
            v1_files[controller] = _list_dir(mount.mount_point) or frozenset()
    v2 = find_v2_mount(mounts)
    v2_controllers: frozenset[str] = frozenset()
    probe_files: frozenset[str] = frozenset()
    if v2 is not None:
        text = read_text(os.path.join(v2.mount_point, "cgroup.controllers"))
        v2_controllers = parse_cgroup_controllers(text or "")
        if detect_mode(mounts) is CgroupMode.UNIFIED:
            own = parse_proc_cgroup(read_text(os.path.join(proc_root, "self", "cgroup")) or "")
            probe_files = _v2_probe_files(v2, own.get(""))
    info = build_cgroup_info(
        mounts, v1_files=v1_files, v2_controllers=v2_controllers, v2_probe_files=probe_files
    )
    cpus, mems = _root_cpusets(info)
    return replace(info, cpuset_cpus=cpus, cpuset_mems=mems)


def _root_cpusets(info: CgroupInfo) -> tuple[str, str]:
    """The root cpuset's CPUs and memory nodes, as dockerd reads them: the v1 cpuset
    hierarchy's ``cpuset.cpus``/``cpuset.mems``, or cgroup v2's ``*.effective`` files."""
    if info.version == 2:
        root, suffix = info.v2_root(), ".effective"
    else:
        root, suffix = info.v1_mount("cpuset"), ""
    if root is None:
        return "", ""
    cpus = read_text(os.path.join(root, f"cpuset.cpus{suffix}")) or ""
    mems = read_text(os.path.join(root, f"cpuset.mems{suffix}")) or ""
    return cpus.strip(), mems.strip()


def cgroup_v1_mount(controller: str, *, proc_root: str = "/proc") -> str | None:
    """Mount point of the v1 hierarchy holding ``controller`` (e.g. ``memory``,
    ``name=systemd``), or None when it is not mounted."""
    mount = find_v1_mount(read_cgroup_mounts(proc_root), controller)
    return mount.mount_point if mount is not None else None


def cgroup_v2_root(*, proc_root: str = "/proc") -> str | None:
    """Mount point of the cgroup2 hierarchy (``/sys/fs/cgroup`` on a unified host,
    ``/sys/fs/cgroup/unified`` on a hybrid one), or None."""
    mount = find_v2_mount(read_cgroup_mounts(proc_root))
    return mount.mount_point if mount is not None else None
