"""Request bodies at the API edge: wrong types, out-of-range and malformed values are refused
at create with a 400 naming the field (and nothing accepted can break list, inspect or stop
later); keys are matched case-insensitively like dockerd's Go decoder; query values that are
a client's mistake are 400s, not tracebacks; a restarting container is not removed without
force."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.container.helpers import NONE, call, poll, run_bg
from tests.integration.container.test_api_exec_attach import raw_socket, stream_ends
from tests.support.whaled_proc import WhaledProcess


def _create_body(image: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"Image": image, "Cmd": ["sleep", "30"]}
    host = extra.pop("HostConfig", {})
    body.update(extra)
    body["HostConfig"] = {"NetworkMode": NONE, **host}
    return body


def _assert_engine_healthy(whaled: WhaledProcess, image: str) -> None:
    """List, inspect and stop all still work (a stored bad value would break them)."""
    status, listed = call(whaled, "GET", "/containers/json?all=1")
    assert status == 200, listed
    for item in listed:
        status, out = call(whaled, "GET", f"/containers/{item['Id']}/json")
        assert status == 200, out
    status, out = call(whaled, "POST", "/containers/create", _create_body(image))
    assert status == 201, out
    cid = out["Id"]
    assert call(whaled, "POST", f"/containers/{cid}/start")[0] == 204
    assert call(whaled, "POST", f"/containers/{cid}/stop?t=0")[0] == 204
    assert call(whaled, "DELETE", f"/containers/{cid}")[0] == 204


# (extra create body, field the message names)
BAD_CREATE_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"Cmd": [1, 2]}, "Cmd"),
    ({"Labels": {"a": 5}}, "Labels"),
    ({"Labels": ["a"]}, "Labels"),
    ({"User": 0}, "User"),
    ({"Tty": "yes"}, "Tty"),
    ({"StopTimeout": "x"}, "StopTimeout"),
    ({"Volumes": ["/x"]}, "Volumes"),
    ({"Env": [None]}, "Env"),
    ({"Env": ["A=b\u0000c"]}, "Env"),
    ({"ExposedPorts": "x"}, "ExposedPorts"),
    ({"Healthcheck": "x"}, "Healthcheck"),
    ({"Hostname": "h" * 200_000}, "Hostname"),
    ({"HostConfig": {"Memory": 2**63}}, "Memory"),
    ({"HostConfig": {"Memory": "lots"}}, "Memory"),
    ({"HostConfig": {"PidsLimit": "x"}}, "PidsLimit"),
    ({"HostConfig": {"BlkioWeight": 70000}}, "BlkioWeight"),
    ({"HostConfig": {"RestartPolicy": "always"}}, "RestartPolicy"),
]


@pytest.mark.parametrize(("extra", "field"), BAD_CREATE_BODIES, ids=lambda v: str(v)[:40])
def test_create_refuses_wrong_types_naming_the_field(
    whaled: WhaledProcess, busybox_image: str, extra: dict[str, Any], field: str
) -> None:
    status, out = call(whaled, "POST", "/containers/create", _create_body(busybox_image, **extra))
    assert status == 400, out
    assert field in out["message"]
    _assert_engine_healthy(whaled, busybox_image)


# (extra create body, words of dockerd's message)
CREATE_TIME_CHECKS: list[tuple[dict[str, Any], str]] = [
    ({"StopSignal": "SIGFOO"}, "Invalid signal: SIGFOO"),
    ({"HostConfig": {"CapAdd": ["NOSUCHCAP"]}}, 'unknown capability: "CAP_NOSUCHCAP"'),
    ({"HostConfig": {"Memory": 1024}}, "Minimum memory limit allowed is 6MB"),
    ({"HostConfig": {"CpuShares": -5}}, "invalid CPU shares"),
    ({"HostConfig": {"BlkioWeight": 5}}, "Range of blkio weight is from 10 to 1000"),
    ({"HostConfig": {"OomScoreAdj": 5000}}, "range for oom score adj is [-1000, 1000]"),
    ({"Hostname": "h" * 65}, "invalid hostname format"),
    # this host has fewer CPUs and memory nodes than that (the runtime would refuse at start)
    (
        {"HostConfig": {"CpusetCpus": "0-4095"}},
        "Requested CPUs are not available - requested 0-4095, available: 0",
    ),
    ({"HostConfig": {"CpusetMems": "1023"}}, "Requested memory nodes are not available"),
]


@pytest.mark.parametrize(("extra", "words"), CREATE_TIME_CHECKS, ids=lambda v: str(v)[:40])
def test_dockerd_checks_happen_at_create(
    whaled: WhaledProcess, busybox_image: str, extra: dict[str, Any], words: str
) -> None:
    status, out = call(whaled, "POST", "/containers/create", _create_body(busybox_image, **extra))
    assert status == 400, out
    assert words in out["message"]
    status, listed = call(whaled, "GET", "/containers/json?all=1")
    assert status == 200 and listed == []


def test_malformed_json_is_a_400(whaled: WhaledProcess) -> None:
    for raw in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"Image": "busybox", "Cmd": ["x"], "StopTimeout": NaN}',
        b'{"Image": "busybox", "Cmd": ["x"], "StopTimeout": 1e400}',
        b'{"Image": "busybox", "Cmd": ["x"], "Labels": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001,
    ):
        status, _, out = whaled.request("POST", "/v1.45/containers/create", raw)
        assert status == 400, out[:200]
    assert "Traceback" not in whaled.log_text()


def test_query_and_update_mistakes_are_400s(whaled: WhaledProcess, busybox_image: str) -> None:
    status, out = call(whaled, "POST", "/containers/create", _create_body(busybox_image))
    cid = out["Id"]
    assert call(whaled, "POST", f"/containers/{cid}/start")[0] == 204
    status, out = call(whaled, "POST", f"/containers/{cid}/update", {"Memory": "lots"})
    assert status == 400 and "Memory" in out["message"], out
    status, out = call(whaled, "POST", f"/containers/{cid}/update", {"CpusetCpus": "4095"})
    assert status == 400 and "Requested CPUs are not available" in out["message"], out
    status, out = call(whaled, "POST", f"/containers/{cid}/resize?h=-1&w=10")
    assert status == 400, out
    # dockerd: a ps that fails carries ps's first line, not a traceback; as it failed on the
    # client's ps_args, a 400 (dockerd: an unclassified 500; issue 17: no 5xx for bad input).
    status, out = call(whaled, "GET", f"/containers/{cid}/top?ps_args=--bogus")
    assert status == 400 and out["message"].startswith("ps: "), out
    status, out = call(whaled, "POST", f"/containers/{cid}/exec", {"Cmd": ["true"], "Env": [1]})
    assert status == 400 and "Env" in out["message"], out
    assert "Traceback" not in whaled.log_text()
    assert call(whaled, "POST", f"/containers/{cid}/stop?t=0")[0] == 204


def test_keys_are_matched_case_insensitively(whaled: WhaledProcess, busybox_image: str) -> None:
    body = {
        "image": busybox_image,
        "cmd": ["sleep", "30"],
        "LABELS": {"k": "v"},
        "HostConfig": {"networkmode": NONE, "CPURealtimeRuntime": 0, "memory": 64 * 1024 * 1024},
    }
    status, out = call(whaled, "POST", "/containers/create", body)
    assert status == 201, out
    cid = out["Id"]
    status, info = call(whaled, "GET", f"/containers/{cid}/json")
    assert info["Config"]["Cmd"] == ["sleep", "30"]
    assert info["Config"]["Labels"] == {"k": "v"}
    assert info["HostConfig"]["NetworkMode"] == NONE
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert "CpuRealtimeRuntime" in info["HostConfig"]
    assert "CPURealtimeRuntime" not in info["HostConfig"]
    assert call(whaled, "POST", f"/containers/{cid}/start")[0] == 204
    # docker-py sends the exec's detach keys as ``detachKeys``.
    status, out = call(
        whaled, "POST", f"/containers/{cid}/exec", {"cmd": ["true"], "detachKeys": "ctrl-x"}
    )
    assert status == 201, out
    status, info = call(whaled, "GET", f"/exec/{out['Id']}/json")
    assert info["ProcessConfig"]["entrypoint"] == "true"
    assert call(whaled, "POST", f"/containers/{cid}/stop?t=0")[0] == 204


def test_docker_py_exec_detach_keys_are_honoured(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    api = docker_client.api
    # docker-py sends ``detachKeys``; detach keys apply only with a TTY (dockerd's rule)
    ex = api.exec_create(c.id, ["cat"], stdin=True, tty=True, detach_keys="ctrl-x")
    sock = api.exec_start(ex["Id"], socket=True, tty=True)
    raw = raw_socket(sock)
    raw.sendall(b"\x18")  # ctrl-x
    assert stream_ends(raw)
    sock.close()
    c.remove(force=True)


def test_restarting_container_is_not_removed_without_force(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    body = _create_body(
        busybox_image, Cmd=["false"], HostConfig={"RestartPolicy": {"Name": "always"}}
    )
    status, out = call(whaled, "POST", "/containers/create?name=flappy", body)
    assert status == 201, out
    cid = out["Id"]
    assert call(whaled, "POST", f"/containers/{cid}/start")[0] == 204
    # The back-off grows with each restart: after a few, the restarting window is long.
    poll(lambda: call(whaled, "GET", f"/containers/{cid}/json")[1]["RestartCount"] >= 3)
    deadline = time.monotonic() + 20
    while True:
        state = call(whaled, "GET", f"/containers/{cid}/json")[1]["State"]
        if state["Restarting"]:
            status, out = call(whaled, "DELETE", f"/containers/{cid}")
            assert status != 204, "a restarting container was removed without force"
            if "restarting" in out["message"]:
                break  # otherwise it had just started again: try again
        assert time.monotonic() < deadline, "never caught the container restarting"
        time.sleep(0.02)
    assert status == 409
    assert out["message"] == (
        'cannot remove container "/flappy": container is restarting: stop the container '
        "before removing or force remove"
    )
    assert call(whaled, "DELETE", f"/containers/{cid}?force=1")[0] == 204
    status, _, _ = whaled.request("GET", f"/v1.45/containers/{cid}/json")
    assert status == 404


# Values of the right type that a container may still not be able to use: each is either
# refused at create (400) or accepted and then harmless to list, inspect, start and stop.
ODD_BUT_TYPED: list[dict[str, Any]] = [
    {"ExposedPorts": {"abc": {}}},
    {"ExposedPorts": {"99999/tcp": {}}},
    {"Volumes": {"relative": {}}},
    {"Labels": {"": ""}},
    {"StopTimeout": -5},
    {"Healthcheck": {"Test": []}},
    {"Entrypoint": ""},
    {"User": "nobody-here"},
    {"WorkingDir": "relative"},
    {"MacAddress": "zz"},
    {"Env": ["=x"]},
    {"HostConfig": {"ConsoleSize": [1]}},
    {"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": -1, "Hard": -1}]}},
    {"HostConfig": {"Memory": 2**63 - 1}},
    {"HostConfig": {"MemorySwappiness": 500}},
    {"HostConfig": {"NanoCpus": -1}},
    {"HostConfig": {"CpuPeriod": 5}},
    {"HostConfig": {"ShmSize": -1}},
    {"HostConfig": {"Sysctls": {"bogus.key": "1"}}},
    {"HostConfig": {"SecurityOpt": ["bogus"]}},
    {"HostConfig": {"DeviceCgroupRules": ["bogus"]}},
    {"HostConfig": {"CpusetCpus": "x"}},
    {"HostConfig": {"LogConfig": {"Type": "nosuchdriver"}}},
    {"HostConfig": {"RestartPolicy": {"Name": "sometimes"}}},
]


@pytest.mark.parametrize("extra", ODD_BUT_TYPED, ids=lambda v: str(v)[:50])
def test_nothing_accepted_breaks_later_calls(
    whaled: WhaledProcess, busybox_image: str, extra: dict[str, Any]
) -> None:
    status, out = call(whaled, "POST", "/containers/create", _create_body(busybox_image, **extra))
    assert status in (201, 400), out
    if status == 201:
        cid = out["Id"]
        assert call(whaled, "GET", "/containers/json?all=1")[0] == 200
        assert call(whaled, "GET", f"/containers/{cid}/json")[0] == 200
        status, out = call(whaled, "POST", f"/containers/{cid}/start")
        assert status in (204, 400), out
        assert call(whaled, "GET", "/containers/json?all=1")[0] == 200
        assert call(whaled, "GET", f"/containers/{cid}/json")[0] == 200
        assert call(whaled, "POST", f"/containers/{cid}/stop?t=0")[0] in (204, 304)
        assert call(whaled, "DELETE", f"/containers/{cid}?force=1")[0] == 204
    assert "Traceback" not in whaled.log_text()
