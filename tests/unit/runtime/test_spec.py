from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.defaults import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
)
from whaled.runtime.devices import Device
from whaled.runtime.mounts import BindMount, TmpfsMount
from whaled.runtime.resources import Resources
from whaled.runtime.spec import (
    HostFacts,
    IpcMode,
    NamespaceMode,
    SpecInput,
    build_spec,
    validate_spec_input,
)
from whaled.runtime.ulimits import Ulimit
from whaled.runtime.usermap import ResolvedUser

CID = "0123456789ab" * 5 + "cdef"
V1 = HostFacts(cgroup_version=1, rlimit_hard={"nofile": 20000}, cpus=2)
V2 = HostFacts(cgroup_version=2)
MiB = 1 << 20


def base(**kw: Any) -> SpecInput:
    fields: dict[str, Any] = {
        "container_id": CID,
        "host": V1,
        "rootfs": "/var/lib/whaled/overlay/x/merged",
        "cmd": ("sh", "-c", "echo hi"),
        "env": ("PATH=/usr/bin:/bin", "A=1"),
        "hostname": "0123456789ab",
        "hosts_path": "/var/lib/whaled/containers/x/hosts",
        "resolv_conf_path": "/var/lib/whaled/containers/x/resolv.conf",
        "hostname_path": "/var/lib/whaled/containers/x/hostname",
    }
    fields.update(kw)
    return SpecInput(**fields)


def spec(**kw: Any) -> dict[str, Any]:
    return build_spec(base(**kw))


def mount(s: dict[str, Any], dest: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [m for m in s["mounts"] if m["destination"] == dest]
    assert len(found) == 1
    return found[0]


def ns_types(s: dict[str, Any]) -> dict[str, str | None]:
    return {n["type"]: n.get("path") for n in s["linux"]["namespaces"]}


def test_minimal_spec() -> None:
    s = spec()
    assert s["ociVersion"] == "1.0.2"
    p = s["process"]
    assert p["args"] == ["sh", "-c", "echo hi"]
    assert p["env"] == ["PATH=/usr/bin:/bin", "HOSTNAME=0123456789ab", "A=1"]
    assert p["cwd"] == "/"
    assert p["user"] == {"uid": 0, "gid": 0}
    assert p["terminal"] is False
    assert p["noNewPrivileges"] is False
    assert p["oomScoreAdj"] == 0
    assert "rlimits" not in p
    caps = p["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == list(DEFAULT_CAPABILITIES)
    assert caps["inheritable"] == caps["ambient"] == []
    assert s["root"] == {"path": "/var/lib/whaled/overlay/x/merged", "readonly": False}
    assert s["hostname"] == "0123456789ab"
    linux = s["linux"]
    assert linux["cgroupsPath"] == f"/whaled/{CID}"
    assert linux["maskedPaths"] == list(DEFAULT_MASKED_PATHS)
    assert linux["readonlyPaths"] == list(DEFAULT_READONLY_PATHS)
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert "devices" not in linux and "sysctl" not in linux and "rootfsPropagation" not in linux
    assert "annotations" not in s
    json.dumps(s)  # serialisable as config.json


def test_mount_order_defaults_then_user_by_depth() -> None:
    s = spec(
        mounts=(
            BindMount(source="/h/data", destination="/data/sub", readonly=True),
            TmpfsMount(destination="/run", options=("size=64m",)),
            BindMount(source="/h/d", destination="/data", propagation="rslave"),
        )
    )
    assert [m["destination"] for m in s["mounts"]] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/sys/fs/cgroup",
        "/dev/mqueue",
        "/dev/shm",
        "/run",
        "/data",
        "/data/sub",
        "/etc/resolv.conf",
        "/etc/hostname",
        "/etc/hosts",
    ]
    assert mount(s, "/data/sub")["options"] == ["rbind", "ro", "rprivate"]
    assert mount(s, "/run")["options"] == ["noexec", "nosuid", "nodev", "size=64m"]
    assert mount(s, "/etc/hosts") == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": "/var/lib/whaled/containers/x/hosts",
        "options": ["rbind", "rprivate"],
    }
    assert s["linux"]["rootfsPropagation"] == "rslave"


def test_readonly_rootfs_makes_network_files_readonly() -> None:
    s = spec(readonly_rootfs=True)
    assert s["root"]["readonly"] is True
    for dest in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"):
        assert "ro" in mount(s, dest)["options"]


def test_user_mount_over_network_file_wins() -> None:
    s = spec(mounts=(BindMount(source="/mine/resolv.conf", destination="/etc/resolv.conf"),))
    assert mount(s, "/etc/resolv.conf")["source"] == "/mine/resolv.conf"


def test_no_network_files_when_not_given() -> None:
    s = spec(hosts_path=None, resolv_conf_path=None, hostname_path=None)
    assert not [m for m in s["mounts"] if m["destination"].startswith("/etc/")]


def test_shm_size() -> None:
    assert "size=1048576" in mount(spec(shm_size=MiB), "/dev/shm")["options"]
    assert f"size={64 * MiB}" in mount(spec(shm_size=0), "/dev/shm")["options"]
    with pytest.raises(InvalidParameter, match="SHM size"):
        spec(shm_size=-1)


def test_ipc_modes() -> None:
    s = spec(ipc=IpcMode(kind="shareable", shm_source="/c/x/shm"))
    assert mount(s, "/dev/shm")["source"] == "/c/x/shm"
    assert "ipc" in ns_types(s)

    s = spec(ipc=IpcMode(kind="container", path="/proc/42/ns/ipc", shm_source="/c/y/shm"))
    assert ns_types(s)["ipc"] == "/proc/42/ns/ipc"
    assert mount(s, "/dev/shm")["type"] == "bind"

    s = spec(ipc=IpcMode(kind="host", shm_source="/dev/shm"))
    assert "ipc" not in ns_types(s)
    assert mount(s, "/dev/shm")["source"] == "/dev/shm"

    s = spec(ipc=IpcMode(kind="none"))
    assert "ipc" in ns_types(s)
    assert not [m for m in s["mounts"] if m["destination"] == "/dev/shm"]

    with pytest.raises(InvalidParameter, match="/dev/shm source is required"):
        spec(ipc=IpcMode(kind="shareable"))


def test_namespaces_default_v1_and_v2() -> None:
    assert ns_types(spec()) == {
        "pid": None,
        "network": None,
        "ipc": None,
        "uts": None,
        "mount": None,
    }
    assert ns_types(spec(host=V2))["cgroup"] is None  # private cgroupns on v2
    assert "cgroup" not in ns_types(spec(host=V2, cgroupns=NamespaceMode.host()))
    assert "cgroup" in ns_types(spec(cgroupns=NamespaceMode.private()))


def test_network_modes() -> None:
    assert "network" in ns_types(spec(network=NamespaceMode.private()))  # none: own empty netns
    assert "network" not in ns_types(spec(network=NamespaceMode.host()))
    joined = spec(network=NamespaceMode.join("/proc/99/ns/net"))
    assert ns_types(joined)["network"] == "/proc/99/ns/net"
    with pytest.raises(InvalidParameter, match="path to join"):
        spec(network=NamespaceMode(kind="join"))


def test_pid_and_uts_host() -> None:
    s = spec(pid=NamespaceMode.host(), uts=NamespaceMode.host())
    assert "pid" not in ns_types(s) and "uts" not in ns_types(s)
    assert "hostname" not in s  # the runtime refuses a hostname without a UTS namespace
    assert ns_types(spec(pid=NamespaceMode.join("/proc/7/ns/pid")))["pid"] == "/proc/7/ns/pid"


def test_domainname_via_sysctl() -> None:
    s = spec(domainname="example.org")
    assert s["linux"]["sysctl"] == {"kernel.domainname": "example.org"}
    assert "sysctl" not in spec(domainname="x", uts=NamespaceMode.host())["linux"]
    s = spec(domainname="a", sysctls={"kernel.domainname": "b"})
    assert s["linux"]["sysctl"] == {"kernel.domainname": "b"}


def test_sysctls_validated_against_namespaces() -> None:
    s = spec(sysctls={"net.ipv4.ip_forward": "1", "kernel.shmmax": "1"})
    assert s["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1"}
    with pytest.raises(InvalidParameter, match="host's network namespace"):
        spec(sysctls={"net.ipv4.ip_forward": "1"}, network=NamespaceMode.host())
    with pytest.raises(InvalidParameter, match="not in a separate kernel namespace"):
        spec(sysctls={"vm.overcommit_memory": "1"})


def test_user_and_workdir_and_tty() -> None:
    s = spec(
        user=ResolvedUser(uid=1000, gid=1000, additional_gids=(5, 29)),
        working_dir="/app/",
        tty=True,
    )
    assert s["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [5, 29]}
    assert s["process"]["cwd"] == "/app"
    assert s["process"]["terminal"] is True
    assert "TERM=xterm" in s["process"]["env"]
    with pytest.raises(InvalidParameter, match="needs to be an absolute path"):
        spec(working_dir="app")


def test_entrypoint_and_no_command() -> None:
    assert spec(entrypoint=("/e",), cmd=("x",))["process"]["args"] == ["/e", "x"]
    with pytest.raises(InvalidParameter, match="No command specified"):
        spec(cmd=())


def test_init() -> None:
    s = spec(init_path="/usr/bin/catatonit")
    assert s["process"]["args"] == ["/sbin/docker-init", "--", "sh", "-c", "echo hi"]
    assert mount(s, "/sbin/docker-init") == {
        "destination": "/sbin/docker-init",
        "type": "bind",
        "source": "/usr/bin/catatonit",
        "options": ["bind", "ro", "rprivate"],
    }


def test_caps_add_drop() -> None:
    s = spec(cap_add=("net_admin",), cap_drop=("chown",))
    caps = s["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps
    assert spec(cap_drop=("ALL",))["process"]["capabilities"]["effective"] == []
    with pytest.raises(InvalidParameter, match='unknown capability: "CAP_FOO"'):
        spec(cap_add=("foo",))


def test_added_caps_widen_seccomp() -> None:
    def names(s: dict[str, Any]) -> set[str]:
        return {n for r in s["linux"]["seccomp"]["syscalls"] for n in r["names"]}

    assert "mount" not in names(spec())
    assert "mount" in names(spec(cap_add=("SYS_ADMIN",)))
    assert "ptrace" in names(spec(cap_add=("SYS_PTRACE",)))


def test_privileged() -> None:
    null = Device(path="/dev/null", type="c", major=1, minor=3, file_mode=0o666, uid=0, gid=0)
    sda = Device(path="/dev/sda", type="b", major=8, minor=0, file_mode=0o660, uid=0, gid=6)
    s = spec(
        privileged=True,
        cap_drop=("ALL",),
        host_devices=(null, sda),
        devices=(Device(path="/dev/ignored", type="c", major=1, minor=1),),
    )
    assert s["process"]["capabilities"]["bounding"] == list(ALL_CAPABILITIES)
    linux = s["linux"]
    assert linux["maskedPaths"] == [] and linux["readonlyPaths"] == []
    assert "seccomp" not in linux
    assert [d["path"] for d in linux["devices"]] == ["/dev/null", "/dev/sda"]
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "ro" not in mount(s, "/sys")["options"]
    assert "ro" not in mount(s, "/sys/fs/cgroup")["options"]


def test_devices_for_unprivileged() -> None:
    fuse = Device(path="/dev/fuse", type="c", major=10, minor=229, permissions="rw")
    s = spec(devices=(fuse,), device_cgroup_rules=("c 42:* rmw",))
    assert s["linux"]["devices"] == [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    rules = s["linux"]["resources"]["devices"]
    assert {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"} in rules
    assert {"allow": True, "type": "c", "major": 42, "access": "rmw"} in rules
    with pytest.raises(InvalidParameter, match="invalid device cgroup format"):
        spec(device_cgroup_rules=("bogus",))


def test_security_opts() -> None:
    assert spec(security_opt=("no-new-privileges",))["process"]["noNewPrivileges"] is True
    assert "seccomp" not in spec(security_opt=("seccomp=unconfined",))["linux"]
    custom = json.dumps({"defaultAction": "SCMP_ACT_LOG"})
    assert spec(security_opt=(f"seccomp={custom}",))["linux"]["seccomp"] == {
        "defaultAction": "SCMP_ACT_LOG"
    }
    s = spec(security_opt=("systempaths=unconfined",))
    assert s["linux"]["maskedPaths"] == [] and s["linux"]["readonlyPaths"] == []
    for opt in ("apparmor=docker-default", "label=user:u"):
        with pytest.raises(InvalidParameter, match="not supported on this host"):
            spec(security_opt=(opt,))


def test_host_without_seccomp() -> None:
    host = replace(V1, seccomp=False)
    assert "seccomp" not in spec(host=host)["linux"]
    with pytest.raises(InvalidParameter, match="seccomp is not enabled in your kernel"):
        spec(host=host, security_opt=('seccomp={"defaultAction":"SCMP_ACT_ALLOW"}',))


def test_aarch64_architectures() -> None:
    s = spec(host=replace(V1, machine="aarch64"))
    assert s["linux"]["seccomp"]["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_custom_masked_and_readonly_paths() -> None:
    s = spec(masked_paths=("/proc/x",), readonly_paths=())
    assert s["linux"]["maskedPaths"] == ["/proc/x"]
    assert s["linux"]["readonlyPaths"] == []


def test_ulimits_and_host_limit() -> None:
    s = spec(ulimits=(Ulimit(name="nofile", soft=1024, hard=4096),))
    assert s["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}]
    with pytest.raises(InvalidParameter, match="above this host's hard limit 20000"):
        spec(ulimits=(Ulimit(name="nofile", soft=1024, hard=1048576),))


def test_resources_v1() -> None:
    r = Resources(
        memory=64 * MiB,
        memory_swap=128 * MiB,
        memory_swappiness=0,
        nano_cpus=1_500_000_000,
        pids_limit=50,
        blkio_weight=500,
        oom_kill_disable=True,
        kernel_memory=MiB * 10,
    )
    res = spec(resources=r)["linux"]["resources"]
    assert res["memory"] == {
        "limit": 64 * MiB,
        "swap": 128 * MiB,
        "swappiness": 0,
        "disableOOMKiller": True,
    }
    assert res["cpu"] == {"quota": 150000, "period": 100000}
    assert res["pids"] == {"limit": 50}
    assert res["blockIO"] == {"weight": 500}


def test_resources_v2_drops_v1_only_fields_and_warns() -> None:
    r = Resources(memory=64 * MiB, memory_swappiness=10, oom_kill_disable=True)
    inp = base(host=V2, resources=r)
    assert build_spec(inp)["linux"]["resources"]["memory"] == {"limit": 64 * MiB}
    warnings = validate_spec_input(inp)
    assert len(warnings) == 2


def test_resources_refused() -> None:
    with pytest.raises(InvalidParameter, match="Minimum memory limit allowed is 6MB"):
        spec(resources=Resources(memory=1024))
    with pytest.raises(InvalidParameter, match="as there are only 2 CPUs available"):
        spec(resources=Resources(nano_cpus=4 * 10**9))


def test_oom_score_adj() -> None:
    assert spec(oom_score_adj=500)["process"]["oomScoreAdj"] == 500
    with pytest.raises(InvalidParameter, match=r"range for oom score adj is \[-1000, 1000\]"):
        spec(oom_score_adj=1001)


def test_cgroup_paths() -> None:
    assert spec(cgroup_parent="/custom")["linux"]["cgroupsPath"] == f"/custom/{CID}"
    assert spec(cgroup_parent="rel")["linux"]["cgroupsPath"] == f"rel/{CID}"
    systemd = replace(V2, cgroup_driver="systemd")
    assert spec(host=systemd)["linux"]["cgroupsPath"] == f"system.slice:whaled:{CID}"
    assert spec(host=systemd, cgroup_parent="my.slice")["linux"]["cgroupsPath"] == (
        f"my.slice:whaled:{CID}"
    )
    with pytest.raises(InvalidParameter, match="should be a valid slice"):
        spec(host=systemd, cgroup_parent="/docker")


def test_stop_signal_annotation() -> None:
    s = spec(stop_signal="SIGQUIT", annotations={"a": "b"})
    assert s["annotations"] == {"a": "b", "org.opencontainers.image.stopSignal": "SIGQUIT"}


def test_validate_returns_no_warnings_for_plain_input() -> None:
    assert validate_spec_input(base()) == []
