from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from whaled.container.create import (
    DaemonDefaults,
    check_request,
    complete_host_config,
    merge_config,
    validate_host_config,
)
from whaled.container.model import Container
from whaled.container.spec_input import build_spec_input
from whaled.errors import InvalidParameter
from whaled.network.mode import check_network_config
from whaled.runtime.spec import HostFacts, NamespaceMode, build_spec
from whaled.runtime.ulimits import Ulimit
from whaled.runtime.usermap import ResolvedUser

DEFAULTS = DaemonDefaults(
    default_runtime="runc",
    runtimes=frozenset({"runc", "custom"}),
    shm_size=64 << 20,
    ipc_mode="private",
    cgroupns_mode="host",
    log_driver="json-file",
    log_opts={"max-size": "10m"},
    ulimits=(Ulimit(name="nofile", soft=1024, hard=2048),),
    init=False,
)
IMAGE = {
    "Cmd": ["sh"],
    "Env": ["PATH=/bin", "A=1"],
    "WorkingDir": "/srv",
    "Labels": {"l": "1"},
    "ExposedPorts": {"80/tcp": {}},
}


def test_image_config_fills_the_gaps() -> None:
    cfg = merge_config({"Image": "busybox", "Env": ["A=2"], "Labels": {"m": "2"}}, IMAGE)
    assert cfg["Cmd"] == ["sh"] and cfg["Entrypoint"] is None
    assert cfg["Env"] == ["A=2", "PATH=/bin"]
    assert cfg["WorkingDir"] == "/srv"
    assert cfg["Labels"] == {"l": "1", "m": "2"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}}
    assert cfg["Tty"] is False and cfg["Image"] == "busybox"


def test_entrypoint_resets_image_cmd() -> None:
    cfg = merge_config({"Entrypoint": ["echo"]}, IMAGE)
    assert cfg["Entrypoint"] == ["echo"] and cfg["Cmd"] is None


def test_host_config_defaults_and_ulimit_merge() -> None:
    hc = complete_host_config({"Ulimits": [{"Name": "nproc", "Soft": 10, "Hard": 20}]}, DEFAULTS)
    assert hc["Runtime"] == "runc" and hc["ShmSize"] == 64 << 20
    assert hc["IpcMode"] == "private" and hc["CgroupnsMode"] == "host"
    assert hc["NetworkMode"] == "default"
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m"}}
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert hc["Ulimits"] == [
        {"Name": "nproc", "Soft": 10, "Hard": 20},
        {"Name": "nofile", "Soft": 1024, "Hard": 2048},
    ]
    assert not validate_host_config(hc, DEFAULTS)
    assert check_network_config(hc)  # the no-bridge warning


@pytest.mark.parametrize(
    ("hc", "error", "message"),
    [
        ({"RestartPolicy": {"Name": "sometimes"}}, InvalidParameter, "invalid restart policy"),
        (
            {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}},
            InvalidParameter,
            "maximum retry count cannot be used with restart policy 'always'",
        ),
        (
            {"RestartPolicy": {"Name": "always"}, "AutoRemove": True},
            InvalidParameter,
            "can't create 'AutoRemove' container with restart policy",
        ),
        ({"Runtime": "ghost"}, InvalidParameter, "unknown or invalid runtime name: ghost"),
        ({"UsernsMode": "private"}, InvalidParameter, "invalid USER mode: private"),
        # issue 17: unknown enum values were stored (and silently ran as the default)
        ({"IpcMode": "bogus"}, InvalidParameter, "^invalid IPC mode: bogus$"),
        ({"IpcMode": "container:"}, InvalidParameter, "^invalid IPC mode: container:$"),
        ({"CgroupnsMode": "bogus"}, InvalidParameter, "^invalid cgroup namespace mode: bogus$"),
        (
            {"Isolation": "hyperv"},
            InvalidParameter,
            "^Invalid isolation: \"hyperv\" - linux only supports 'default'$",
        ),
    ],
)
def test_refused_host_configs(hc: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        validate_host_config(complete_host_config(hc, DEFAULTS), DEFAULTS)


def test_spec_input_builds_a_spec() -> None:
    hc = complete_host_config({"Memory": 32 << 20, "CapDrop": ["ALL"], "Init": True}, DEFAULTS)
    c = Container(
        id="c" * 64,
        name="x",
        created="",
        image_id="",
        image_ref="busybox",
        path="sh",
        args=[],
        config=merge_config({"Cmd": ["true"]}, IMAGE),
        host_config=hc,
    )
    inp = build_spec_input(
        c,
        host=HostFacts(cgroup_version=1),
        rootfs="/r",
        user=ResolvedUser(uid=0, gid=0),
        network=NamespaceMode.private(),
        hosts_path="/h",
        resolv_conf_path="/rc",
        hostname_path="/hn",
        init_path="/usr/bin/catatonit",
    )
    spec = build_spec(inp)
    assert spec["process"]["args"][-1] == "true"
    assert spec["process"]["capabilities"]["bounding"] == []
    assert spec["linux"]["resources"]["memory"]["limit"] == 32 << 20
    assert spec["hostname"] == "c" * 12
    assert {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048} in spec["process"]["rlimits"]


@pytest.mark.parametrize(
    ("request_config", "hc", "message"),
    [
        ({"Hostname": "h" * 65}, {}, 'invalid hostname format: "' + "h" * 65),
        ({"Env": ["=x"]}, {}, "invalid environment variable: =x"),
        ({"Env": [""]}, {}, "invalid environment variable: "),
        ({}, {"CapAdd": ["NOSUCHCAP"]}, 'invalid CapAdd: unknown capability: "CAP_NOSUCHCAP"'),
        ({}, {"CapDrop": ["bogus"]}, 'invalid CapDrop: unknown capability: "CAP_BOGUS"'),
    ],
)
def test_create_time_request_checks(
    request_config: dict[str, Any], hc: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidParameter) as e:
        check_request(request_config, hc)
    assert str(e.value).startswith(message)


def test_create_time_request_checks_pass_good_values() -> None:
    check_request(
        {"Hostname": "h" * 64, "Env": ["A=b", "FLAG"]},
        {"CapAdd": ["net_admin"], "CapDrop": ["ALL"]},
    )


def test_good_modes_pass() -> None:
    for hc in (
        {"IpcMode": "shareable", "CgroupnsMode": "host", "Isolation": "default"},
        {"IpcMode": "container:web", "CgroupnsMode": "private"},
        {"IpcMode": "none"},
    ):
        validate_host_config(complete_host_config(hc, DEFAULTS), DEFAULTS)


def test_doubled_memory_beyond_int64_means_unlimited_swap() -> None:
    swap = dataclasses.replace(DEFAULTS, swap_limit=True)
    assert complete_host_config({"Memory": 2**63 - 1}, swap)["MemorySwap"] == -1
    assert complete_host_config({"Memory": 8 << 20}, swap)["MemorySwap"] == 16 << 20


def _spec_with_daemon_defaults(
    security_opt: list[str], *, nnp: bool, profile: str | None
) -> dict[str, Any]:
    hc = complete_host_config({"SecurityOpt": security_opt}, DEFAULTS)
    c = Container(
        id="d" * 64,
        name="x",
        created="",
        image_id="",
        image_ref="busybox",
        path="sh",
        args=[],
        config=merge_config({"Cmd": ["true"]}, IMAGE),
        host_config=hc,
    )
    inp = build_spec_input(
        c,
        host=HostFacts(cgroup_version=1),
        rootfs="/r",
        user=ResolvedUser(uid=0, gid=0),
        network=NamespaceMode.private(),
        hosts_path=None,
        resolv_conf_path=None,
        hostname_path=None,
        init_path=None,
        no_new_privileges=nnp,
        seccomp_profile=profile,
    )
    return build_spec(inp)


NO_MKDIR = (
    '{"defaultAction": "SCMP_ACT_ALLOW",'
    ' "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}'
)


def test_the_daemons_seccomp_profile_is_the_containers_default() -> None:
    """Regression: ``seccomp-profile`` in daemon.json was shown by /info but never applied."""
    spec = _spec_with_daemon_defaults([], nnp=False, profile=NO_MKDIR)
    seccomp = spec["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ALLOW"
    assert seccomp["syscalls"][0]["names"] == ["mkdir"]
    assert "seccomp" not in _spec_with_daemon_defaults([], nnp=False, profile="unconfined")["linux"]
    builtin = _spec_with_daemon_defaults([], nnp=False, profile=None)["linux"]["seccomp"]
    assert builtin["defaultAction"] == "SCMP_ACT_ERRNO"


@pytest.mark.parametrize("own", ["seccomp=unconfined", "seccomp:unconfined"])
def test_a_containers_own_seccomp_option_wins_over_the_daemons(own: str) -> None:
    assert "seccomp" not in _spec_with_daemon_defaults([own], nnp=False, profile=NO_MKDIR)["linux"]
    builtin = _spec_with_daemon_defaults(["seccomp=builtin"], nnp=False, profile="unconfined")
    assert builtin["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        ([], True),
        (["no-new-privileges=false"], False),
        (["no-new-privileges:false"], False),
        (["no-new-privileges"], True),
        # a seccomp profile that mentions the words is not a no-new-privileges option
        (['seccomp={"defaultAction":"SCMP_ACT_ALLOW","comment":"no-new-privileges=false"}'], True),
    ],
)
def test_the_daemons_no_new_privileges_unless_the_container_says(
    own: list[str], expected: bool
) -> None:
    spec = _spec_with_daemon_defaults(own, nnp=True, profile=None)
    assert spec["process"]["noNewPrivileges"] is expected


@pytest.mark.parametrize("mode", ["", "host"])
def test_the_hosts_user_namespace_is_accepted(mode: str) -> None:
    """Regression: ``--userns=host`` (compose's ``userns_mode: host``) was refused, although
    without userns-remap it is every container's namespace, as on dockerd."""
    validate_host_config(complete_host_config({"UsernsMode": mode}, DEFAULTS), DEFAULTS)
