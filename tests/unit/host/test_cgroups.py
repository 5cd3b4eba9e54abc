# ruff: noqa: E501  -- fixtures are verbatim mountinfo lines, which run longer than 100.
from __future__ import annotations

from pathlib import Path

from whaled.host.cgroups import (
    CgroupCapabilities,
    CgroupInfo,
    CgroupMode,
    build_cgroup_info,
    cgroup_mounts,
    cgroup_v1_mount,
    cgroup_v2_root,
    cgroup_warnings,
    detect_mode,
    find_v1_mount,
    find_v2_mount,
    parse_cgroup_controllers,
    parse_mountinfo,
    parse_proc_cgroup,
    parse_proc_mounts,
    read_cgroup_info,
    v1_capabilities,
    v2_capabilities,
)

# Debian 12 VM without systemd: v1 controllers each on their own hierarchy, a cgroup2
# hierarchy at /sys/fs/cgroup/unified holding only hugetlb.
HYBRID_MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334432k,nr_inodes=3083608,mode=755
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

# Debian 12 with systemd: pure cgroup v2.
UNIFIED_MOUNTINFO = """\
21 26 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
22 26 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
26 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
27 21 0:6 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:8 - securityfs securityfs rw
30 21 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
31 21 0:27 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
"""

# CentOS 7: legacy v1 with co-mounted controllers and a release agent on the named hierarchy.
LEGACY_MOUNTINFO = """\
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:24 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,net_prio,net_cls
29 24 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpuacct,cpu
30 24 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
31 24 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,pids
"""

# Inside a container on a v1 host: the hierarchy's root is the container's own cgroup.
CONTAINER_MOUNTINFO = """\
600 599 0:60 /docker/3f2a /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:15 - cgroup cgroup rw,memory
601 599 0:61 /docker/3f2a /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:16 - cgroup cgroup rw,cpu,cpuacct
"""

HYBRID_PROC_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""

V1_MEMORY_FILES = frozenset(
    {
        "cgroup.procs",
        "memory.limit_in_bytes",
        "memory.soft_limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "memory.kmem.limit_in_bytes",
        "memory.kmem.tcp.limit_in_bytes",
        "memory.oom_control",
        "memory.swappiness",
    }
)
V1_CPU_FILES = frozenset(
    {"cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.rt_period_us", "cpu.rt_runtime_us"}
)
V1_BLKIO_FILES = frozenset(
    {
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
    }
)


def test_parse_mountinfo_fields() -> None:
    entries = parse_mountinfo(UNIFIED_MOUNTINFO)
    assert len(entries) == 6
    cg = entries[4]
    assert cg.mount_point == "/sys/fs/cgroup"
    assert cg.root == "/"
    assert cg.fstype == "cgroup2"
    assert cg.source == "cgroup2"
    assert cg.mount_options == ("rw", "nosuid", "nodev", "noexec", "relatime")
    assert cg.super_options == ("rw", "nsdelegate", "memory_recursiveprot")


def test_parse_mountinfo_unescapes_and_skips_garbage() -> None:
    text = (
        "50 27 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw\n"
        "garbage line\n"
        "51 27 0:41 / /mnt/empty-source rw - tmpfs  rw\n"
    )
    entries = parse_mountinfo(text)
    assert [e.mount_point for e in entries] == ["/mnt/with space", "/mnt/empty-source"]
    assert entries[1].source == ""
    assert entries[1].super_options == ("rw",)


def test_hybrid_mounts_and_mode() -> None:
    mounts = cgroup_mounts(parse_mountinfo(HYBRID_MOUNTINFO))
    v1 = {c for m in mounts if m.version == 1 for c in m.controllers}
    assert v1 == {
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "name=systemd",
    }
    assert detect_mode(mounts) is CgroupMode.HYBRID
    v2 = find_v2_mount(mounts)
    assert v2 is not None and v2.mount_point == "/sys/fs/cgroup/unified"
    memory = find_v1_mount(mounts, "memory")
    assert memory is not None and memory.mount_point == "/sys/fs/cgroup/memory"
    assert find_v1_mount(mounts, "hugetlb") is None


def test_unified_mode() -> None:
    mounts = cgroup_mounts(parse_mountinfo(UNIFIED_MOUNTINFO))
    assert detect_mode(mounts) is CgroupMode.UNIFIED
    assert [m.mount_point for m in mounts] == ["/sys/fs/cgroup"]
    assert find_v1_mount(mounts, "memory") is None


def test_legacy_mode_with_co_mounted_controllers() -> None:
    mounts = cgroup_mounts(parse_mountinfo(LEGACY_MOUNTINFO))
    assert detect_mode(mounts) is CgroupMode.LEGACY
    cpu = find_v1_mount(mounts, "cpu")
    assert cpu is not None and cpu.mount_point == "/sys/fs/cgroup/cpu,cpuacct"
    assert cpu.controllers == {"cpu", "cpuacct"}
    systemd = find_v1_mount(mounts, "name=systemd")
    # xattr and release_agent= are options, not controllers.
    assert systemd is not None and systemd.controllers == {"name=systemd"}
    assert find_v2_mount(mounts) is None


def test_container_mount_keeps_hierarchy_root() -> None:
    mounts = cgroup_mounts(parse_mountinfo(CONTAINER_MOUNTINFO))
    memory = find_v1_mount(mounts, "memory")
    assert memory is not None and memory.root == "/docker/3f2a"


def test_named_hierarchy_alone_with_cgroup2_is_unified() -> None:
    text = UNIFIED_MOUNTINFO + (
        "40 30 0:50 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    )
    assert detect_mode(cgroup_mounts(parse_mountinfo(text))) is CgroupMode.UNIFIED


def test_no_cgroups_is_legacy_without_controllers() -> None:
    mounts = cgroup_mounts(parse_mountinfo("27 1 254:0 / / rw - ext4 /dev/vda rw\n"))
    info = build_cgroup_info(
        mounts, v1_files={}, v2_controllers=frozenset(), v2_probe_files=frozenset()
    )
    assert info.version == 1 and info.mode is CgroupMode.LEGACY
    assert info.capabilities == CgroupCapabilities()


def test_parse_proc_mounts() -> None:
    mounts = cgroup_mounts(parse_proc_mounts(HYBRID_PROC_MOUNTS))
    assert detect_mode(mounts) is CgroupMode.HYBRID
    cpu = find_v1_mount(mounts, "cpu")
    # relatime is a generic mount flag merged into the list, not a controller.
    assert cpu is not None and cpu.controllers == {"cpu"}


def test_parse_proc_cgroup() -> None:
    text = "9:name=systemd:/\n4:memory:/process_api/5bc8\n1:cpu,cpuacct:/x\n0::/user.slice\n"
    paths = parse_proc_cgroup(text)
    assert paths["memory"] == "/process_api/5bc8"
    assert paths["cpu"] == paths["cpuacct"] == "/x"
    assert paths["name=systemd"] == "/"
    assert paths[""] == "/user.slice"


def test_parse_cgroup_controllers() -> None:
    assert parse_cgroup_controllers("cpuset cpu io memory hugetlb pids rdma misc\n") == {
        "cpuset",
        "cpu",
        "io",
        "memory",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    }
    assert parse_cgroup_controllers("") == frozenset()


def test_v1_capabilities_full() -> None:
    caps = v1_capabilities(
        {
            "memory": V1_MEMORY_FILES,
            "cpu": V1_CPU_FILES,
            "blkio": V1_BLKIO_FILES | {"blkio.bfq.weight"},
            "cpuset": frozenset(),
            "pids": frozenset(),
            "devices": frozenset(),
            "freezer": frozenset(),
        }
    )
    assert caps.memory_limit and caps.swap_limit and caps.memory_reservation
    assert caps.kernel_memory and caps.kernel_memory_tcp and caps.oom_kill_disable
    assert caps.cpu_shares and caps.cpu_cfs_period and caps.cpu_cfs_quota and caps.cpu_realtime
    assert caps.cpuset and caps.pids_limit and caps.devices and caps.freezer
    assert caps.blkio_weight and not caps.blkio_weight_device
    assert caps.blkio_read_bps_device and caps.blkio_write_iops_device


def test_v1_capabilities_without_swap_accounting() -> None:
    caps = v1_capabilities({"memory": V1_MEMORY_FILES - {"memory.memsw.limit_in_bytes"}})
    assert caps.memory_limit and not caps.swap_limit
    assert not caps.cpu_shares and not caps.pids_limit


def test_v2_capabilities_from_controllers_and_probe() -> None:
    controllers = frozenset({"cpuset", "cpu", "io", "memory", "pids"})
    probe = frozenset({"cgroup.type", "cgroup.freeze", "memory.max", "memory.swap.max"})
    caps = v2_capabilities(controllers, probe)
    assert caps.memory_limit and caps.swap_limit and caps.memory_reservation
    assert not caps.kernel_memory_tcp and not caps.oom_kill_disable and not caps.cpu_realtime
    assert caps.cpu_shares and caps.cpu_cfs_quota and caps.cpuset and caps.pids_limit
    assert caps.blkio_weight and caps.blkio_read_bps_device
    assert caps.devices and caps.freezer


def test_v2_swap_follows_probe_when_memory_files_seen() -> None:
    probe = frozenset({"cgroup.type", "memory.max"})  # swap accounting off
    assert not v2_capabilities(frozenset({"memory"}), probe).swap_limit
    # No non-root cgroup with memory files to look at: the controller alone decides.
    assert v2_capabilities(frozenset({"memory"}), frozenset()).swap_limit
    assert not v2_capabilities(frozenset({"cpu"}), frozenset()).swap_limit


def test_v2_freezer_needs_cgroup_freeze_in_non_root_group() -> None:
    assert not v2_capabilities(frozenset(), frozenset({"cgroup.type"})).freezer


def test_build_cgroup_info_hybrid_uses_v1() -> None:
    mounts = cgroup_mounts(parse_mountinfo(HYBRID_MOUNTINFO))
    info = build_cgroup_info(
        mounts,
        v1_files={"memory": V1_MEMORY_FILES, "cpu": V1_CPU_FILES},
        v2_controllers=frozenset({"hugetlb"}),
        v2_probe_files=frozenset(),
    )
    assert info.version == 1
    assert info.mode is CgroupMode.HYBRID
    assert info.driver == "cgroupfs"
    assert info.v2_root() == "/sys/fs/cgroup/unified"
    assert info.v2_controllers == {"hugetlb"}
    assert info.v1_mount("memory") == "/sys/fs/cgroup/memory"
    assert info.v1_mount("hugetlb") is None
    assert "name=systemd" in info.v1_controllers
    assert info.capabilities.memory_limit and not info.capabilities.pids_limit


def test_build_cgroup_info_unified() -> None:
    mounts = cgroup_mounts(parse_mountinfo(UNIFIED_MOUNTINFO))
    info = build_cgroup_info(
        mounts,
        v1_files={},
        v2_controllers=frozenset({"cpu", "memory", "pids"}),
        v2_probe_files=frozenset(),
    )
    assert info.version == 2 and info.mode is CgroupMode.UNIFIED
    assert info.v2_root() == "/sys/fs/cgroup"
    assert info.v1_mounts == ()
    assert info.capabilities.pids_limit and not info.capabilities.cpuset


def test_cgroup_warnings() -> None:
    full_v1 = CgroupInfo(
        version=1,
        mode=CgroupMode.LEGACY,
        capabilities=v1_capabilities(
            {
                "memory": V1_MEMORY_FILES,
                "cpu": V1_CPU_FILES,
                "blkio": V1_BLKIO_FILES,
                "cpuset": frozenset(),
            }
        ),
    )
    # blkio weight is not warned about on v1, as in dockerd.
    assert cgroup_warnings(full_v1) == ()
    empty_v2 = CgroupInfo(version=2, mode=CgroupMode.UNIFIED)
    warnings = cgroup_warnings(empty_v2)
    assert warnings[0] == "WARNING: No memory limit support"
    assert "WARNING: No io.max (rbps) support" in warnings
    assert "WARNING: No oom kill disable support" not in warnings
    empty_v1 = CgroupInfo(version=1, mode=CgroupMode.LEGACY)
    assert "WARNING: No blkio throttle.read_bps_device support" in cgroup_warnings(empty_v1)
    assert "WARNING: No oom kill disable support" in cgroup_warnings(empty_v1)


# -------------------------------------------------------------- readers over a fake tree


def _fake_v2_host(tmp_path: Path) -> Path:
    """A fake /proc with a mountinfo whose cgroup2 mount point is a temp directory."""
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    service = root / "whaled.service"
    service.mkdir()
    for name in ("cgroup.type", "cgroup.freeze", "memory.max", "memory.swap.max"):
        (service / name).write_text("")
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        f"30 21 0:26 / {root} rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    (proc / "self" / "cgroup").write_text("0::/whaled.service\n")
    return proc


def test_read_cgroup_info_on_fake_v2_host(tmp_path: Path) -> None:
    proc = _fake_v2_host(tmp_path)
    info = read_cgroup_info(str(proc))
    assert info.version == 2 and info.mode is CgroupMode.UNIFIED
    assert info.v2_root() == str(tmp_path / "cgroup")
    assert info.v2_controllers == {"cpuset", "cpu", "io", "memory", "pids"}
    assert info.capabilities.swap_limit and info.capabilities.freezer
    assert cgroup_v2_root(proc_root=str(proc)) == str(tmp_path / "cgroup")
    assert cgroup_v1_mount("memory", proc_root=str(proc)) is None
    assert (info.cpuset_cpus, info.cpuset_mems) == ("", "")  # no *.effective files


def test_the_root_cpusets_are_read_from_the_effective_files(tmp_path: Path) -> None:
    proc = _fake_v2_host(tmp_path)
    (tmp_path / "cgroup" / "cpuset.cpus.effective").write_text("0-3,8\n")
    (tmp_path / "cgroup" / "cpuset.mems.effective").write_text("0\n")
    info = read_cgroup_info(str(proc))
    assert (info.cpuset_cpus, info.cpuset_mems) == ("0-3,8", "0")


def test_read_cgroup_info_v2_without_swap_file(tmp_path: Path) -> None:
    proc = _fake_v2_host(tmp_path)
    (tmp_path / "cgroup" / "whaled.service" / "memory.swap.max").unlink()
    assert not read_cgroup_info(str(proc)).capabilities.swap_limit


def test_read_cgroup_info_on_fake_v1_host(tmp_path: Path) -> None:
    memory = tmp_path / "memory"
    memory.mkdir()
    for name in V1_MEMORY_FILES - {"memory.memsw.limit_in_bytes"}:
        (memory / name).write_text("")
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        f"35 31 0:32 / {memory} rw,relatime - cgroup cgroup rw,memory\n"
    )
    info = read_cgroup_info(str(proc))
    assert info.version == 1 and info.mode is CgroupMode.LEGACY
    assert info.capabilities.memory_limit and not info.capabilities.swap_limit
    assert cgroup_v1_mount("memory", proc_root=str(proc)) == str(memory)


def test_read_cgroup_info_falls_back_to_proc_mounts(tmp_path: Path) -> None:
    (tmp_path / "mounts").write_text(HYBRID_PROC_MOUNTS)
    info = read_cgroup_info(str(tmp_path))
    assert info.mode is CgroupMode.HYBRID


def test_read_cgroup_info_without_proc(tmp_path: Path) -> None:
    info = read_cgroup_info(str(tmp_path / "nothing-here"))
    assert info.version == 1 and info.v1_mounts == () and info.v2_mount is None
