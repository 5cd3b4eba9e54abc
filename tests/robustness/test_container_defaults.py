"""A container's security envelope, read from inside it (issue 17, part 4): the capability
sets, the seccomp filter, no-new-privileges, masked and read-only paths, the device cgroup,
``--privileged``, ``--cap-add``/``--cap-drop``, ``--security-opt`` values this host cannot
honour, ``--userns=host``, and the daemon's own ``seccomp-profile`` and
``no-new-privileges``. (``--userns-remap``, which whaled does not support, is refused at
start: ``test_daemon_surface.py``.)

The reference is dockerd's documented default for an unprivileged container. Each test
runs one busybox container per configuration through the real docker CLI (or docker-py)
and reads ``/proc/self/status``, ``/proc/mounts`` and the result of a few system calls.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

#: Kernel bit numbers of dockerd's default capabilities (linux/capability.h).
DOCKERD_DEFAULT_CAPS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
    "MKNOD": 27,
    "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}
DEFAULT_MASK = sum(1 << bit for bit in DOCKERD_DEFAULT_CAPS.values())
CAP_SYS_ADMIN = 1 << 21
EPERM = "Operation not permitted"
EROFS = "Read-only file system"
#: Masked files (bound to /dev/null); a kernel may lack some of them.
MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list")

#: ``try KEY CMD…``: prints ``KEY=ok`` or ``KEY=<CMD's error message>``.
TRY = r"""
try() { k=$1; shift; if "$@" 2>/tmp/err; then echo "$k=ok"; else echo "$k=$(cat /tmp/err)"; fi; }
"""

#: One line per fact, ``key=value`` (``/proc/self/status`` lines are turned into that form).
PROBE = (
    TRY
    + r"""
for k in CapPrm CapEff CapBnd CapInh CapAmb Seccomp NoNewPrivs; do
  grep "^$k:" /proc/self/status | sed 's/:[[:space:]]*/=/'
done
for p in /proc/kcore /proc/keys /proc/timer_list; do
  if [ -e $p ]; then echo "$p=$(stat -c %F $p)"; else echo "$p=absent"; fi
done
echo "firmware_mount=$(awk '$2 == "/sys/firmware" {print $3 "," $4}' /proc/mounts)"
echo "firmware_entries=$(ls -A /sys/firmware | wc -l)"
echo "procsys_mount=$(awk '$2 == "/proc/sys" {print $4}' /proc/mounts | cut -d, -f1)"
f=/proc/sys/net/ipv4/ping_group_range
v=$(cat $f)
try procsys_write sh -c "echo '$v' > $f"
try unshare unshare -U true
try mkdir mkdir /tmp/d
"""
)

#: The device cgroup: mknod of any node is allowed (CAP_MKNOD and the ``m`` rules), opening
#: one outside the allow-list is not; /dev/null made by hand opens fine.
DEVICES = (
    TRY
    + r"""
try mknod mknod /tmp/mem c 1 1
try open_mem head -c 1 /tmp/mem
mknod /tmp/null c 1 3 && try open_null sh -c "echo x > /tmp/null"
"""
)


def host_has(path: str) -> bool:
    """This kernel provides ``path`` (this host's has no /proc/kcore, for one)."""
    return os.path.exists(path)


def host_bounding_set() -> int:
    """The capabilities this test (root, like the daemon it starts) may hand out."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))


def parse_probe(out: str) -> dict[str, str]:
    facts: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key] = value.strip()
    return facts


def probe(cli: DockerCLI, image: str, *opts: str, script: str = PROBE) -> dict[str, str]:
    done = cli.run("run", "--rm", "--network", "none", *opts, image, "sh", "-c", script)
    return parse_probe(done.stdout)


def caps(facts: dict[str, str], key: str = "CapEff") -> int:
    return int(facts[key], 16)


def test_the_default_envelope_is_dockerds(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    facts = probe(docker_cli, busybox_image)
    # capabilities: exactly dockerd's 14, in every set a root process has
    for key in ("CapPrm", "CapEff", "CapBnd"):
        assert caps(facts, key) == DEFAULT_MASK, (key, facts)
    assert caps(facts, "CapInh") == 0 and caps(facts, "CapAmb") == 0
    # seccomp filter mode; a syscall the default profile blocks (a user namespace needs no
    # capability, so only the filter can refuse it) fails with EPERM; ordinary ones work
    assert facts["Seccomp"] == "2"
    assert EPERM in facts["unshare"], facts
    assert facts["mkdir"] == "ok"
    # dockerd leaves no-new-privileges off unless asked
    assert facts["NoNewPrivs"] == "0"
    # masked paths: /proc/kcore (where the kernel has it), /proc/keys, /proc/timer_list are
    # /dev/null, /sys/firmware an empty read-only tmpfs
    for path in MASKED_FILES:
        assert facts[path] == ("character special file" if host_has(path) else "absent"), facts
    fs_type, _, options = facts["firmware_mount"].partition(",")
    assert fs_type == "tmpfs" and options.startswith("ro"), facts
    assert facts["firmware_entries"] == "0"
    # read-only paths: /proc/sys cannot be written even by root with its capabilities
    assert facts["procsys_mount"] == "ro"
    assert EROFS in facts["procsys_write"], facts


def test_the_device_cgroup_lets_mknod_make_a_node_but_not_open_it(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    facts = probe(docker_cli, busybox_image, script=DEVICES)
    assert facts["mknod"] == "ok"  # CAP_MKNOD is held and the cgroup allows "m" for all
    assert EPERM in facts["open_mem"], facts  # c 1:1 (/dev/mem) is not in the allow-list
    assert facts["open_null"] == "ok"  # c 1:3 is


def test_privileged_lifts_every_default(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    facts = probe(docker_cli, busybox_image, "--privileged")
    for key in ("CapPrm", "CapEff", "CapBnd"):
        assert caps(facts, key) == host_bounding_set(), (key, facts)
    assert facts["Seccomp"] == "0"
    assert facts["unshare"] == "ok"
    for path in MASKED_FILES:
        assert facts[path].startswith("regular" if host_has(path) else "absent"), facts
    assert facts["firmware_mount"] == ""
    assert int(facts["firmware_entries"]) == len(os.listdir("/sys/firmware"))
    assert facts["procsys_mount"] == ""  # no read-only bind over it: /proc's own mount
    assert facts["procsys_write"] == "ok"  # the container's own network namespace
    dev = probe(docker_cli, busybox_image, "--privileged", script=DEVICES)
    assert dev["open_null"] == "ok" and dev["mknod"] == "ok"


def test_cap_add_and_cap_drop(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    def cap_eff(**kw: Any) -> int:
        out = docker_client.containers.run(
            busybox_image,
            ["grep", "^CapEff:", "/proc/self/status"],
            network_mode="none",
            remove=True,
            **kw,
        )
        return int(out.split()[1], 16)

    assert cap_eff(cap_drop=["ALL"]) == 0
    assert cap_eff(cap_add=["ALL"]) == host_bounding_set()
    assert cap_eff(cap_add=["SYS_ADMIN"]) == DEFAULT_MASK | CAP_SYS_ADMIN
    assert cap_eff(cap_add=["CAP_SYS_ADMIN"], cap_drop=["NET_RAW"]) == (
        DEFAULT_MASK | CAP_SYS_ADMIN
    ) & ~(1 << 13)
    assert cap_eff(cap_drop=["ALL"], cap_add=["CHOWN"]) == 1
    assert cap_eff(cap_add=["ALL"], cap_drop=["MKNOD"]) == host_bounding_set() & ~(1 << 27)


def test_security_opts(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    nnp = probe(docker_cli, busybox_image, "--security-opt", "no-new-privileges")
    assert nnp["NoNewPrivs"] == "1"
    assert nnp["Seccomp"] == "2"  # the rest of the envelope stays

    free = probe(docker_cli, busybox_image, "--security-opt", "seccomp=unconfined")
    assert free["Seccomp"] == "0"
    assert free["unshare"] == "ok"
    assert caps(free) == DEFAULT_MASK  # unconfined seccomp adds no capability

    # a profile of our own, given as a file to the CLI (which sends its contents)
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps(profile))
    custom = probe(docker_cli, busybox_image, "--security-opt", f"seccomp={path}")
    assert custom["Seccomp"] == "2"
    assert EPERM in custom["mkdir"], custom
    assert custom["unshare"] == "ok"  # only what the profile blocks is blocked

    # the host's user namespace is every container's (no userns-remap): asking for it works
    host_userns = probe(docker_cli, busybox_image, "--userns", "host")
    assert caps(host_userns) == DEFAULT_MASK


def run_error(cli: DockerCLI, image: str, *opts: str) -> str:
    done = cli.run("run", "--rm", "--network", "none", *opts, image, "true", check=False)
    assert done.returncode != 0, done
    return done.stderr


@pytest.mark.skipif(
    os.path.exists("/sys/kernel/security/apparmor") or os.path.exists("/sys/fs/selinux"),
    reason="this host has an LSM: profiles and labels would be honoured",
)
def test_security_opts_this_host_cannot_honour_are_refused_clearly(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    err = run_error(docker_cli, busybox_image, "--security-opt", "apparmor=docker-default")
    assert "AppArmor is not supported on this host" in err, err
    err = run_error(docker_cli, busybox_image, "--security-opt", "label=type:svirt_lxc_net_t")
    assert "SELinux labels are not supported on this host" in err, err
    # asking for less confinement than there is is no error
    for opt in ("apparmor=unconfined", "label=disable", "label:disable"):
        docker_cli.run(
            "run", "--rm", "--network", "none", "--security-opt", opt, busybox_image, "true"
        )
    # dockerd's wording for what it does not know
    err = run_error(docker_cli, busybox_image, "--security-opt", "bogus=1")
    assert 'invalid --security-opt 2: "bogus=1"' in err, err
    err = run_error(docker_cli, busybox_image, "--security-opt", "no-new-privileges=maybe")
    assert 'invalid --security-opt 2: "no-new-privileges=maybe"' in err, err


NO_MKDIR_PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
}


def test_the_daemons_seccomp_profile_and_no_new_privileges_are_every_containers_default(
    whaled_factory: Any, busybox_tar: str, tmp_path: Path
) -> None:
    """dockerd's ``seccomp-profile`` and ``no-new-privileges`` daemon options: the default of
    every container, which its own ``--security-opt`` still overrides."""
    path = tmp_path / "daemon-profile.json"
    path.write_text(json.dumps(NO_MKDIR_PROFILE))
    w = whaled_factory({"seccomp-profile": str(path), "no-new-privileges": True})
    image = "busybox:latest"
    w.import_image(busybox_tar, image)
    with DockerCLI(w.sock) as cli:
        facts = probe(cli, image)
        assert facts["Seccomp"] == "2" and EPERM in facts["mkdir"], facts
        assert facts["unshare"] == "ok"  # the daemon's profile replaced the builtin one
        assert facts["NoNewPrivs"] == "1"
        own = probe(
            cli,
            image,
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "no-new-privileges=false",
        )
        assert own["Seccomp"] == "0" and own["mkdir"] == "ok" and own["NoNewPrivs"] == "0", own
        builtin = probe(cli, image, "--security-opt", "seccomp=builtin")
        assert builtin["mkdir"] == "ok" and EPERM in builtin["unshare"], builtin


def test_an_unconfined_daemon_profile_turns_the_filter_off(
    whaled_factory: Any, busybox_tar: str
) -> None:
    w = whaled_factory({"seccomp-profile": "unconfined"})
    image = "busybox:latest"
    w.import_image(busybox_tar, image)
    with DockerCLI(w.sock) as cli:
        facts = probe(cli, image)
        assert facts["Seccomp"] == "0" and facts["unshare"] == "ok", facts
        assert caps(facts) == DEFAULT_MASK


def test_a_daemon_seccomp_profile_that_cannot_load_stops_the_start(
    whaled_factory: Any, tmp_path: Path
) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    w = whaled_factory({"seccomp-profile": str(path)}, wait=False)
    assert w._proc is not None
    assert w._proc.wait(timeout=20) != 0
    assert f'seccomp-profile "{path}": cannot load it' in w.log_text(), w.log_tail()
