"""The container lifecycle through docker-py against a real whaled, checked against dockerd's
documented behaviour: status codes and messages, wait conditions, rename/update, restart
policies and their back-off, stop/kill signals, events, and what a container's HostConfig
really does inside it (cgroups, mounts, /etc files, users, devices, seccomp)."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from typing import Any

import docker.errors
import pytest
import requests

from tests.integration.container.helpers import NONE, call, create_id, poll, run_bg
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess, mounts_under


def state_of(client: Any, cid: str) -> dict[str, Any]:
    state: dict[str, Any] = client.api.inspect_container(cid)["State"]
    return state


def events_between(client: Any, since: float, cid: str | None = None) -> list[dict[str, Any]]:
    """Container events from ``since`` until now (the stream ends a moment after now)."""
    filters = {"type": "container"}
    if cid is not None:
        filters["container"] = cid
    until = time.time() + 0.3
    return [
        e
        for e in client.api.events(since=since, until=until, decode=True, filters=filters)
        if e.get("Type") == "container"
    ]


def actions(events: list[dict[str, Any]]) -> list[str]:
    return [e["Action"] for e in events]


# ================================================================== status codes


def test_create_refusals_match_dockerd(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    body = {"Image": busybox_image, "Cmd": ["true"], "HostConfig": {"NetworkMode": NONE}}
    status, out = call(whaled, "POST", "/containers/create?name=-bad", body)
    assert status == 400
    assert out["message"] == (
        "Invalid container name (-bad), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    )
    status, out = call(whaled, "POST", "/containers/create?name=taken", body)
    assert status == 201, out
    holder = out["Id"]
    status, out = call(whaled, "POST", "/containers/create?name=taken", body)
    assert status == 409
    assert out["message"] == (
        f'Conflict. The container name "/taken" is already in use by container "{holder}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )
    status, out = call(
        whaled, "POST", "/containers/create", {**body, "Image": "nosuchimage:latest"}
    )
    assert status == 404
    assert out["message"] == "No such image: nosuchimage:latest"
    for platform in ("linux/arm64", "windows/amd64"):
        status, out = call(whaled, "POST", f"/containers/create?platform={platform}", body)
        assert status in (400, 404), (platform, out)
        assert platform in out["message"], out
    status, out = call(whaled, "POST", "/containers/create?platform=linux/amd64", body)
    assert status == 201, out
    assert len(docker_client.api.containers(all=True)) == 2


def test_state_conflicts_and_not_modified(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    cid = c.id
    assert call(whaled, "POST", f"/containers/{cid}/start") == (304, None)
    status, out = call(whaled, "DELETE", f"/containers/{cid}")
    assert status == 409 and cid in out["message"], out
    assert call(whaled, "POST", f"/containers/{cid}/pause")[0] == 204
    status, out = call(whaled, "POST", f"/containers/{cid}/pause")
    assert status == 409 and out["message"] == f"Container {cid} is already paused"
    status, out = call(whaled, "POST", f"/containers/{cid}/exec", {"Cmd": ["true"]})
    assert status == 409 and "paused" in out["message"]
    assert call(whaled, "POST", f"/containers/{cid}/unpause")[0] == 204
    status, out = call(whaled, "POST", f"/containers/{cid}/unpause")
    assert status == 409 and out["message"] == f"Container {cid} is not paused"
    assert call(whaled, "POST", f"/containers/{cid}/stop?t=0")[0] == 204
    assert call(whaled, "POST", f"/containers/{cid}/stop") == (304, None)
    status, out = call(whaled, "POST", f"/containers/{cid}/kill")
    assert status == 409 and out["message"] == f"Container {cid} is not running"
    status, out = call(whaled, "POST", f"/containers/{cid}/exec", {"Cmd": ["true"]})
    assert status == 409 and out["message"] == f"Container {cid} is not running"
    status, out = call(whaled, "POST", f"/containers/{cid}/pause")
    assert status == 409, out
    assert call(whaled, "DELETE", f"/containers/{cid}")[0] == 204


def test_unknown_container_bad_signal_bad_condition(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    for method, path in (
        ("GET", "/containers/x/json"),
        ("POST", "/containers/x/start"),
        ("POST", "/containers/x/stop"),
        ("POST", "/containers/x/kill"),
        ("POST", "/containers/x/wait"),
        ("DELETE", "/containers/x"),
        ("POST", "/containers/x/rename?name=yy"),
        ("GET", "/containers/x/logs?stdout=1"),
    ):
        status, out = call(whaled, method, path)
        assert status == 404, (method, path, out)
        assert out == {"message": "No such container: x"}, (method, path)
    c = run_bg(docker_client, busybox_image, "sleep", "300")
    for bad in ("BOGUS", "SIGNOPE", "-1"):
        status, out = call(whaled, "POST", f"/containers/{c.id}/kill?signal={bad}")
        assert status == 400, (bad, out)
        assert "Invalid signal" in out["message"], out
    status, out = call(whaled, "POST", f"/containers/{c.id}/wait?condition=bogus")
    assert status == 400, out
    assert state_of(docker_client, c.id)["Running"] is True
    c.remove(force=True)


def test_wait_bad_condition_message_is_dockerds(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = docker_client.containers.create(busybox_image, ["true"], network_mode=NONE)
    status, out = call(whaled, "POST", f"/containers/{c.id}/wait?condition=bogus")
    assert (status, out["message"]) == (400, 'invalid condition: "bogus"')


# ================================================================== wait


def test_wait_not_running_and_removed_with_auto_remove(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    cid = create_id(api, busybox_image, ["sh", "-c", "exit 4"])
    api.start(cid)
    assert api.wait(cid, condition="not-running", timeout=30)["StatusCode"] == 4
    assert api.wait(cid, timeout=30) == {"StatusCode": 4, "Error": None}
    cid = create_id(
        api, busybox_image, ["sh", "-c", "sleep 0.3; exit 5"], host={"auto_remove": True}
    )
    result: dict[str, Any] = {}

    def wait_removed() -> None:
        result["wait"] = api.wait(cid, condition="removed", timeout=30)

    waiter = threading.Thread(target=wait_removed)
    waiter.start()
    time.sleep(0.2)  # the wait is accepted before the start (what `docker run --rm` does)
    api.start(cid)
    waiter.join(30)
    assert result["wait"]["StatusCode"] == 5
    with pytest.raises(docker.errors.NotFound):
        api.inspect_container(cid)


def test_wait_next_exit_waits_for_the_next_run(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    cid = create_id(api, busybox_image, ["sh", "-c", "exit 5"])
    early = []
    for _ in range(5):  # the window is short: try a few runs
        api.start(cid)
        assert api.wait(cid, timeout=30)["StatusCode"] == 5
        # The container is exited and nobody starts it again: next-exit must block.
        try:
            early.append(api.wait(cid, condition="next-exit", timeout=0.5))
        except requests.exceptions.ConnectionError:
            pass  # timed out: right
    assert early == []


def test_wait_next_exit_after_cleanup_answers_the_next_run(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    cid = create_id(api, busybox_image, ["sh", "-c", "sleep 0.3; exit 6"])
    api.start(cid)
    api.wait(cid, timeout=30)
    merged = api.inspect_container(cid)["GraphDriver"]["Data"]["MergedDir"]
    poll(lambda: merged not in mounts_under(whaled.root))
    time.sleep(0.2)
    result: dict[str, Any] = {}

    def wait_next() -> None:
        result["wait"] = api.wait(cid, condition="next-exit", timeout=30)

    waiter = threading.Thread(target=wait_next)
    waiter.start()
    time.sleep(0.4)
    assert "wait" not in result  # still waiting: nothing ran yet
    api.start(cid)
    waiter.join(30)
    assert result["wait"]["StatusCode"] == 6


def test_daemon_stop_right_after_an_exit_leaves_no_mount(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    for attempt in range(4):  # the window is short: try a few times
        client = docker_client if attempt == 0 else whaled.client()
        c = run_bg(client, busybox_image, "true")
        c.wait(timeout=30)
        whaled.stop()
        assert [m for m in mounts_under(whaled.root) if m.endswith("/merged")] == []
        whaled.start()
        whaled.wait_ready()


# ================================================================== rename / update


def _cgroup_dir(pid: int, controller: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, controllers, path in lines:
        if controller in controllers.split(","):
            return f"/sys/fs/cgroup/{controller}{path}"
    for hierarchy, controllers, path in lines:
        if hierarchy == "0" and controllers == "":
            return f"/sys/fs/cgroup{path}"  # cgroup v2
    raise AssertionError(f"no {controller} cgroup for {pid}")


def _cgroup_read(pid: int, controller: str, v1_file: str, v2_file: str) -> str:
    d = _cgroup_dir(pid, controller)
    path = os.path.join(d, v1_file)
    if not os.path.exists(path):
        path = os.path.join(d, v2_file)
    with open(path) as f:
        return f.read().strip()


def test_rename_and_update(whaled: WhaledProcess, docker_client: Any, busybox_image: str) -> None:
    since = time.time()
    c = run_bg(docker_client, busybox_image, "sleep", "300", name="before", mem_limit="64m")
    docker_client.containers.create(busybox_image, ["true"], name="other", network_mode=NONE)
    c.rename("after")
    assert docker_client.api.inspect_container(c.id)["Name"] == "/after"
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_container("before")
    with pytest.raises(docker.errors.APIError) as info:
        c.rename("other")
    assert info.value.status_code == 409
    with pytest.raises(docker.errors.APIError) as info:
        c.rename("-bad")
    assert info.value.status_code == 400
    pid = state_of(docker_client, c.id)["Pid"]
    limit = _cgroup_read(pid, "memory", "memory.limit_in_bytes", "memory.max")
    assert int(limit) == 64 * 1024 * 1024
    c.update(
        mem_limit="96m",
        memswap_limit="128m",
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
    )
    hc = docker_client.api.inspect_container(c.id)["HostConfig"]
    assert hc["Memory"] == 96 * 1024 * 1024
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    limit = _cgroup_read(pid, "memory", "memory.limit_in_bytes", "memory.max")
    assert int(limit) == 96 * 1024 * 1024
    with pytest.raises(docker.errors.APIError) as info:
        c.update(restart_policy={"Name": "sometimes"})
    assert info.value.status_code == 400
    evs = events_between(docker_client, since, c.id)
    renames = [e for e in evs if e["Action"] == "rename"]
    assert len(renames) == 1
    assert renames[0]["Actor"]["Attributes"]["oldName"] == "/before"
    assert renames[0]["Actor"]["Attributes"]["name"] == "after"
    assert "update" in actions(evs)
    c.remove(force=True)


# ================================================================== restart policies


def _start_times(events: list[dict[str, Any]]) -> list[float]:
    return [e["timeNano"] / 1e9 for e in events if e["Action"] == "start"]


def test_on_failure_restarts_with_growing_backoff(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    since = time.time()
    c = run_bg(
        docker_client,
        busybox_image,
        "sh",
        "-c",
        "exit 2",
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
    )

    def done() -> bool:
        body = docker_client.api.inspect_container(c.id)
        return bool(body["State"]["Status"] == "exited" and body["RestartCount"] == 3)

    poll(done, timeout=20)
    time.sleep(0.5)  # a fourth start would come within 0.8 s
    body = docker_client.api.inspect_container(c.id)
    assert body["RestartCount"] == 3 and body["State"]["ExitCode"] == 2
    evs = events_between(docker_client, since, c.id)
    starts = _start_times(evs)
    assert len(starts) == 4, actions(evs)
    assert [e["Actor"]["Attributes"]["exitCode"] for e in evs if e["Action"] == "die"] == ["2"] * 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.1 and gaps[1] > gaps[0] and gaps[2] > gaps[1], gaps
    c.remove()


def test_always_and_unless_stopped_restart_until_stopped(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    for policy in ("always", "unless-stopped"):
        c = run_bg(
            docker_client, busybox_image, "sh", "-c", "sleep 0.2", restart_policy={"Name": policy}
        )
        cid: str = c.id

        def restarted_twice(cid: str = cid) -> bool:
            return bool(docker_client.api.inspect_container(cid)["RestartCount"] >= 2)

        poll(restarted_twice, timeout=20)
        c.stop(timeout=1)
        state = state_of(docker_client, c.id)
        assert state["Status"] == "exited" and state["Restarting"] is False, policy
        count = docker_client.api.inspect_container(c.id)["RestartCount"]
        time.sleep(0.8)
        body = docker_client.api.inspect_container(c.id)
        assert body["State"]["Status"] == "exited", policy
        assert body["RestartCount"] == count, policy
        c.remove(force=True)


def test_always_container_stopped_by_user_starts_with_the_daemon(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    always = run_bg(docker_client, busybox_image, "sleep", "300", restart_policy={"Name": "always"})
    unless = run_bg(
        docker_client, busybox_image, "sleep", "300", restart_policy={"Name": "unless-stopped"}
    )
    always.stop(timeout=0)
    unless.stop(timeout=0)
    whaled.restart()
    client = whaled.client()
    assert state_of(client, unless.id)["Status"] == "exited"
    poll(lambda: state_of(client, always.id)["Status"] == "running", timeout=3)


def test_auto_remove_with_failing_commands(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, docker_cli: DockerCLI
) -> None:
    since = time.time()
    done = docker_cli.run(
        *("run", "--rm", "--network", NONE), busybox_image, "sh", "-c", "exit 3", check=False
    )
    assert done.returncode == 3
    done = docker_cli.run(
        *("run", "--rm", "--network", NONE), busybox_image, "nosuchcmd", check=False
    )
    assert done.returncode == 127, done.stderr
    poll(lambda: docker_client.api.containers(all=True) == [], timeout=10)
    evs = events_between(docker_client, since)
    assert actions(evs).count("destroy") == 2, actions(evs)


# ================================================================== stop / kill


def test_stop_signal_and_timeout(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    trap = "trap 'exit 42' TERM; while true; do sleep 0.1; done"
    c = run_bg(docker_client, busybox_image, "sh", "-c", trap)
    poll(lambda: c.exec_run(["true"]).exit_code == 0)
    time.sleep(0.2)  # the trap is set
    started = time.monotonic()
    c.stop(timeout=10)
    assert time.monotonic() - started < 5
    assert state_of(docker_client, c.id)["ExitCode"] == 42
    usr1 = "trap 'exit 43' USR1; while true; do sleep 0.1; done"
    c2 = run_bg(docker_client, busybox_image, "sh", "-c", usr1, stop_signal="SIGUSR1")
    assert docker_client.api.inspect_container(c2.id)["Config"]["StopSignal"] == "SIGUSR1"
    time.sleep(0.3)
    c2.stop(timeout=10)
    assert state_of(docker_client, c2.id)["ExitCode"] == 43
    # PID 1 ignores TERM without a handler: the stop timeout ends in SIGKILL.
    c3 = run_bg(docker_client, busybox_image, "sleep", "300")
    started = time.monotonic()
    c3.stop(timeout=1)
    took = time.monotonic() - started
    assert 0.9 <= took < 6, took
    assert state_of(docker_client, c3.id)["ExitCode"] == 137
    # StopTimeout from the create request is the default for a stop without t.
    c4 = run_bg(docker_client, busybox_image, "sleep", "300", stop_signal="SIGTERM")
    docker_client.api.stop(c4.id, timeout=0)
    assert state_of(docker_client, c4.id)["ExitCode"] == 137
    for cc in (c, c2, c3, c4):
        cc.remove()


def test_stop_timeout_from_config(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    cid = create_id(api, busybox_image, ["sleep", "300"], stop_timeout=1)
    api.start(cid)
    assert api.inspect_container(cid)["Config"]["StopTimeout"] == 1
    started = time.monotonic()
    status, _ = call(whaled, "POST", f"/containers/{cid}/stop")
    took = time.monotonic() - started
    assert status == 204 and 0.9 <= took < 6, took
    api.remove_container(cid)


def test_kill_with_signal_names_and_numbers(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    script = (
        "trap 'echo got-usr1' USR1; trap 'echo got-hup' HUP; trap 'exit 12' USR2; "
        "echo ready; while true; do sleep 0.1; done"
    )
    c = run_bg(docker_client, busybox_image, "sh", "-c", script)
    poll(lambda: b"ready" in c.logs())
    since = time.time()
    c.kill(signal="SIGUSR1")
    poll(lambda: b"got-usr1" in c.logs())
    c.kill(signal="hup")
    poll(lambda: b"got-hup" in c.logs())
    assert state_of(docker_client, c.id)["Running"] is True
    c.kill(signal=int(signal.SIGUSR2))
    assert c.wait(timeout=30)["StatusCode"] == 12
    evs = events_between(docker_client, since, c.id)
    kills = [e["Actor"]["Attributes"]["signal"] for e in evs if e["Action"] == "kill"]
    assert kills == [str(int(signal.SIGUSR1)), str(int(signal.SIGHUP)), str(int(signal.SIGUSR2))]
    die = [e for e in evs if e["Action"] == "die"]
    assert die[0]["Actor"]["Attributes"]["exitCode"] == "12"
    c.start()
    c.kill()  # SIGKILL by default
    assert c.wait(timeout=30)["StatusCode"] == 137
    c.remove()


# ================================================================== events


def test_events_for_each_lifecycle_step(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    since = time.time()
    c = docker_client.containers.create(
        busybox_image, ["sleep", "300"], name="ev1", network_mode=NONE, labels={"team": "a"}
    )
    c.start()
    c.pause()
    c.unpause()
    ex = docker_client.api.exec_create(c.id, ["sh", "-c", "exit 3"])
    docker_client.api.exec_start(ex["Id"])
    c.rename("ev2")
    c.restart(timeout=0)
    c.stop(timeout=0)
    c.remove()
    evs = events_between(docker_client, since, c.id)
    got = [a.split(":")[0] for a in actions(evs)]
    expected_order = [
        "create",
        "start",
        "pause",
        "unpause",
        "exec_create",
        "exec_start",
        "exec_die",
        "rename",
        "kill",
        "kill",
        "die",
        "stop",
        "start",
        "restart",
        "kill",
        "kill",
        "die",
        "stop",
        "destroy",
    ]  # stop with t=0: the stop signal, then SIGKILL, each with its kill event (as dockerd)
    assert got == expected_order, got
    by_action: dict[str, dict[str, Any]] = {}
    for e in evs:
        by_action.setdefault(e["Action"].split(":")[0], e)
    for e in evs:
        assert e["id"] == c.id and e["Actor"]["ID"] == c.id
        assert e["Actor"]["Attributes"]["team"] == "a"
        assert e["Actor"]["Attributes"]["image"] == busybox_image
        assert e["time"] == e["timeNano"] // 1_000_000_000
    assert by_action["create"]["Actor"]["Attributes"]["name"] == "ev1"
    assert by_action["destroy"]["Actor"]["Attributes"]["name"] == "ev2"
    assert by_action["die"]["Actor"]["Attributes"]["exitCode"] == "137"
    signals = [e["Actor"]["Attributes"]["signal"] for e in evs if e["Action"] == "kill"]
    assert signals == ["15", "9", "15", "9"]
    assert by_action["exec_die"]["Actor"]["Attributes"]["exitCode"] == "3"
    assert by_action["exec_create"]["Action"] == "exec_create: sh -c exit 3"
    assert by_action["exec_start"]["Action"] == "exec_start: sh -c exit 3"
    exec_ids = {
        by_action[a]["Actor"]["Attributes"]["execID"]
        for a in ("exec_create", "exec_start", "exec_die")
    }
    assert exec_ids == {ex["Id"]}


def test_oom_and_health_status_events(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    since = time.time()
    hog = run_bg(
        docker_client,
        busybox_image,
        "sh",
        "-c",
        "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        mem_limit="32m",
        memswap_limit="32m",
    )
    assert hog.wait(timeout=60)["StatusCode"] == 137
    assert state_of(docker_client, hog.id)["OOMKilled"] is True
    healthy = run_bg(
        docker_client,
        busybox_image,
        "sh",
        "-c",
        "sleep 0.6; touch /ok; sleep 300",
        healthcheck={"test": ["CMD", "test", "-f", "/ok"], "interval": 200_000_000, "retries": 1},
    )
    poll(lambda: state_of(docker_client, healthy.id)["Health"]["Status"] == "healthy")
    health = state_of(docker_client, healthy.id)["Health"]
    assert health["FailingStreak"] == 0 and health["Log"]
    assert health["Log"][-1]["ExitCode"] == 0
    evs = events_between(docker_client, since)
    hog_actions = [e["Action"] for e in evs if e["id"] == hog.id]
    assert "oom" in hog_actions
    assert hog_actions.index("oom") < hog_actions.index("die")
    statuses = [
        e["Action"]
        for e in evs
        if e["id"] == healthy.id and e["Action"].startswith("health_status")
    ]
    assert statuses[-1] == "health_status: healthy", statuses
    healthy.remove(force=True)
    hog.remove()


# ================================================================== what HostConfig does


def test_resources_show_in_the_cgroups(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(
        docker_client,
        busybox_image,
        "sleep",
        "300",
        cpu_shares=512,
        cpu_period=100_000,
        cpu_quota=50_000,
        mem_limit="64m",
        mem_reservation="32m",
        oom_kill_disable=True,
        pids_limit=50,
    )
    pid = state_of(docker_client, c.id)["Pid"]
    hc = docker_client.api.inspect_container(c.id)["HostConfig"]
    assert hc["CpuShares"] == 512 and hc["CpuQuota"] == 50_000 and hc["OomKillDisable"] is True
    assert _cgroup_read(pid, "cpu", "cpu.shares", "cpu.weight") in ("512", "20")
    quota = _cgroup_read(pid, "cpu", "cpu.cfs_quota_us", "cpu.max")
    assert quota.split()[0] == "50000"
    reservation = _cgroup_read(pid, "memory", "memory.soft_limit_in_bytes", "memory.low")
    assert int(reservation) == 32 * 1024 * 1024
    if os.path.exists(os.path.join(_cgroup_dir(pid, "memory"), "memory.oom_control")):
        oom = _cgroup_read(pid, "memory", "memory.oom_control", "")
        assert "oom_kill_disable 1" in oom
    assert _cgroup_read(pid, "pids", "pids.max", "pids.max") == "50"
    c.remove(force=True)


def test_memory_without_swap_gets_as_much_swap_as_memory(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    if not docker_client.info().get("SwapLimit"):
        pytest.skip("no swap limit support on this host")
    c = run_bg(docker_client, busybox_image, "sleep", "300", mem_limit="64m")
    assert docker_client.api.inspect_container(c.id)["HostConfig"]["MemorySwap"] == 128 << 20
    pid = state_of(docker_client, c.id)["Pid"]
    swap = _cgroup_read(pid, "memory", "memory.memsw.limit_in_bytes", "memory.swap.max")
    assert int(swap) in (128 << 20, 64 << 20)  # v1: memory+swap; v2: swap alone


def test_update_memory_above_swap_is_refused_like_dockerd(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(docker_client, busybox_image, "sleep", "300", mem_limit="64m", memswap_limit="128m")
    status, out = call(whaled, "POST", f"/containers/{c.id}/update", {"Memory": 256 << 20})
    assert status == 400
    assert out["message"] == (
        f"Cannot update container {c.id}: Memory limit should be smaller than already set "
        "memoryswap limit, update the memoryswap at the same time"
    )


SCRIPT = r"""
echo "hostname=$(hostname)"
echo "domain=$(cat /proc/sys/kernel/domainname)"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "pwd=$(pwd)"
echo "env=$GREETING"
echo "forward=$(cat /proc/sys/net/ipv4/ip_forward)"
echo "nofile=$(ulimit -n)/$(ulimit -Hn)"
echo "shm=$(df -k /dev/shm | tail -1 | awk '{print $2}')"
echo "tmpfs=$(grep ' /scratch ' /proc/mounts | cut -d' ' -f3)"
if echo hi > /dev/mynull; then echo "device=ok"; else echo "device=fail"; fi
if touch /rootfs-file 2>/dev/null; then echo "rootfs=rw"; else echo "rootfs=ro"; fi
if touch /ro/x 2>/dev/null; then echo "robind=rw"; else echo "robind=ro"; fi
if touch /rw/x 2>/dev/null; then echo "rwbind=rw"; else echo "rwbind=ro"; fi
echo "hosts=$(grep -c 'db-host' /etc/hosts) $(grep db-host /etc/hosts | cut -f1)"
echo "resolv=$(tr '\n' '|' < /etc/resolv.conf)"
"""


def test_host_config_inside_the_container(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, tmp_path: Any
) -> None:
    ro_dir, rw_dir = tmp_path / "ro", tmp_path / "rw"
    ro_dir.mkdir()
    rw_dir.mkdir()
    c = run_bg(
        docker_client,
        busybox_image,
        "sh",
        "-c",
        SCRIPT,
        hostname="box",
        domainname="example.org",
        init=True,
        working_dir="/work/dir",
        environment={"GREETING": "hello"},
        sysctls={"net.ipv4.ip_forward": "1"},
        ulimits=[docker.types.Ulimit(name="nofile", soft=1024, hard=2048)],
        shm_size="16m",
        tmpfs={"/scratch": "size=1m"},
        devices=["/dev/null:/dev/mynull:rwm"],
        read_only=True,
        volumes={
            str(ro_dir): {"bind": "/ro", "mode": "ro"},
            str(rw_dir): {"bind": "/rw", "mode": "rw"},
        },
        extra_hosts={"db-host": "10.1.2.3"},
        dns=["10.0.0.53"],
        dns_search=["example.com"],
        dns_opt=["ndots:2"],
    )
    assert c.wait(timeout=30)["StatusCode"] == 0
    out = dict(
        line.split("=", 1) for line in c.logs(stderr=False).decode().splitlines() if "=" in line
    )
    assert out["hostname"] == "box"
    assert out["domain"] == "example.org"
    pid1 = out["pid1"].split()
    assert os.path.basename(pid1[0]) != "sh" and "init" in os.path.basename(pid1[0]), pid1
    assert pid1[-3:-1] == ["sh", "-c"] or "sh" in pid1
    assert out["pwd"] == "/work/dir"
    assert out["env"] == "hello"
    assert out["forward"] == "1"
    assert out["nofile"] == "1024/2048"
    assert out["shm"] == "16384"
    assert out["tmpfs"] == "tmpfs"
    assert out["device"] == "ok"
    assert out["rootfs"] == "ro"
    assert out["robind"] == "ro" and out["rwbind"] == "rw"
    assert (rw_dir / "x").exists() and not (ro_dir / "x").exists()
    assert out["hosts"] == "1 10.1.2.3"
    resolv = out["resolv"].split("|")
    assert "nameserver 10.0.0.53" in resolv
    assert "search example.com" in resolv
    assert "options ndots:2" in resolv
    assert [line for line in resolv if line.startswith("nameserver")] == ["nameserver 10.0.0.53"]
    c.remove()


def test_bind_sources_missing_on_the_host(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, tmp_path: Any
) -> None:
    """As dockerd: ``-v`` creates a missing host directory at start; ``--mount type=bind``
    refuses a missing source at create with a 400."""
    fresh = tmp_path / "made" / "by-start"
    out = docker_client.containers.run(
        busybox_image,
        ["sh", "-c", "touch /data/x && echo ok"],
        network_mode="none",
        volumes={str(fresh): {"bind": "/data", "mode": "rw"}},
        remove=True,
    )
    assert out == b"ok\n"
    assert (fresh / "x").exists() and oct(fresh.stat().st_mode & 0o777) == "0o755"
    missing = tmp_path / "missing"
    with pytest.raises(docker.errors.APIError) as err:
        docker_client.containers.create(
            busybox_image,
            "true",
            network_mode="none",
            mounts=[docker.types.Mount("/data", str(missing), type="bind")],
        )
    assert err.value.status_code == 400
    assert err.value.explanation == (
        f'invalid mount config for type "bind": bind source path does not exist: {missing}'
    )
    assert not missing.exists()


def test_user_and_group_add(whaled: WhaledProcess, docker_client: Any, busybox_image: str) -> None:
    c = run_bg(
        docker_client,
        busybox_image,
        "sh",
        "-c",
        "id -u; id -g; id -G; touch /root/x",
        user="65534:65534",
        group_add=["2000"],
    )
    assert c.wait(timeout=30)["StatusCode"] != 0  # /root is not writable for nobody
    lines = c.logs(stderr=False).decode().split("\n")
    assert lines[0] == "65534" and lines[1] == "65534"
    assert "2000" in lines[2].split()
    c.remove()
    c = run_bg(docker_client, busybox_image, "id", "-un", user="test")
    c.wait(timeout=30)
    assert c.logs() == b"test\n"
    c.remove()


def test_seccomp_default_profile_and_unconfined(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    normal = (
        "ls / >/dev/null && cat /etc/passwd >/dev/null && sleep 0.1 && "
        "if nc -w 1 127.0.0.1 1 </dev/null; then echo net=open; else echo net=refused; fi; "
        "grep Seccomp: /proc/self/status; "
        "if unshare -U true 2>/dev/null; then echo unshare=ok; else echo unshare=denied; fi; "
        "if mount -t tmpfs x /mnt 2>/dev/null; then echo mount=ok; else echo mount=denied; fi"
    )
    c = run_bg(docker_client, busybox_image, "sh", "-c", normal)
    assert c.wait(timeout=30)["StatusCode"] == 0, c.logs()
    out = c.logs(stderr=False).decode().split("\n")
    assert "net=refused" in out
    assert "Seccomp:\t2" in out
    assert "unshare=denied" in out and "mount=denied" in out
    u = run_bg(
        docker_client, busybox_image, "sh", "-c", normal, security_opt=["seccomp=unconfined"]
    )
    assert u.wait(timeout=30)["StatusCode"] == 0
    out = u.logs(stderr=False).decode().split("\n")
    assert "Seccomp:\t0" in out
    assert "unshare=ok" in out
    assert "mount=denied" in out  # still no CAP_SYS_ADMIN
    c.remove()
    u.remove()
