"""Container queries through docker-py against a real whaled: inspect (shape, values, by
name/prefix, size, old API versions, the half-removed container of the seed), list with its
filters, and logs (since/until/tail/timestamps/streams/follow, driver none, rotation)."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import docker.errors
import pytest

from tests.integration.container.helpers import (
    NONE,
    V,
    create_id,
    poll,
    raw_json,
    run_bg,
    run_until_file,
)
from tests.support.whaled_proc import WhaledProcess, mounts_under

# ================================================================== inspect


@pytest.mark.whaled_config(
    {"default-ulimits": {"nproc": {"Name": "nproc", "Soft": 500, "Hard": 600}}}
)
def test_inspect_shape_and_values(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, tmp_path: Any
) -> None:
    host_dir = str(tmp_path)
    c = run_bg(
        docker_client,
        busybox_image,
        "sleep",
        "300",
        name="insp",
        environment=["FOO=bar"],
        labels={"k": "v"},
        working_dir="/tmp",
        ulimits=[docker.types.Ulimit(name="nofile", soft=1000, hard=2000)],
        volumes={host_dir: {"bind": "/hostdir", "mode": "ro"}},
        mounts=[docker.types.Mount("/scratch", "", type="tmpfs")],
    )
    body = docker_client.api.inspect_container(c.id)
    assert body["Id"] == c.id
    assert body["Name"] == "/insp"
    assert body["Path"] == "sleep" and body["Args"] == ["300"]
    assert body["RestartCount"] == 0
    assert body["Image"].startswith("sha256:")
    state = body["State"]
    assert state["Status"] == "running"
    assert state["Running"] is True and state["Paused"] is False
    assert state["Restarting"] is False and state["Dead"] is False
    assert state["OOMKilled"] is False and state["ExitCode"] == 0
    assert state["Pid"] > 0 and os.path.exists(f"/proc/{state['Pid']}")
    assert state["StartedAt"].endswith("Z") and state["FinishedAt"].startswith("0001-")
    cfg = body["Config"]
    assert cfg["Image"] == busybox_image
    assert cfg["Cmd"] == ["sleep", "300"]
    assert "FOO=bar" in cfg["Env"]
    assert cfg["Labels"] == {"k": "v"}
    assert cfg["WorkingDir"] == "/tmp"
    assert cfg["Hostname"] == c.id[:12]
    hc = body["HostConfig"]
    assert hc["NetworkMode"] == NONE
    assert hc["RestartPolicy"]["Name"] in ("no", "")
    # The request's ulimit plus the daemon's default-ulimits (request wins on a clash).
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in hc["Ulimits"]}
    assert ulimits == {"nofile": (1000, 2000), "nproc": (500, 600)}
    assert hc["LogConfig"]["Type"] == "json-file"
    assert body["LogPath"].startswith(whaled.data_root) and body["LogPath"].endswith("-json.log")
    assert os.path.exists(body["LogPath"])
    for key in ("HostsPath", "ResolvConfPath", "HostnamePath"):
        assert os.path.isfile(body[key]), key
    assert body["GraphDriver"]["Name"] == "overlay2"
    data = body["GraphDriver"]["Data"]
    assert os.path.isdir(data["UpperDir"]) and os.path.isdir(data["MergedDir"])
    assert data["LowerDir"]
    mounts = {m["Destination"]: m for m in body["Mounts"]}
    assert mounts["/hostdir"]["Type"] == "bind"
    assert mounts["/hostdir"]["Source"] == host_dir
    assert mounts["/hostdir"]["RW"] is False
    assert mounts["/scratch"]["Type"] == "tmpfs" and mounts["/scratch"]["RW"] is True
    assert body["WhaledRuntimePath"] and os.path.isabs(body["WhaledRuntimePath"])
    assert os.access(body["WhaledRuntimePath"], os.X_OK)
    assert body["NetworkSettings"]["Networks"].keys() == {NONE}
    # The ulimits really apply (to the container's init).
    with open(f"/proc/{state['Pid']}/limits") as f:
        limits = {line[:26].strip(): line[26:].split()[:2] for line in f}
    assert limits["Max open files"] == ["1000", "2000"]
    assert limits["Max processes"] == ["500", "600"]
    c.remove(force=True)


def test_inspect_by_name_prefix_and_slash_name(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = docker_client.containers.create(busybox_image, ["true"], name="byname", network_mode=NONE)
    api = docker_client.api
    assert api.inspect_container("byname")["Id"] == c.id
    status, body = raw_json(whaled, "/v1.45/containers/%2Fbyname/json")
    assert status == 200 and body["Id"] == c.id
    assert api.inspect_container(c.id[:7])["Id"] == c.id
    status, body = raw_json(whaled, "/v1.45/containers/nosuchthing/json")
    assert status == 404
    assert body == {"message": "No such container: nosuchthing"}
    state = api.inspect_container(c.id)["State"]
    assert state["Status"] == "created" and state["Pid"] == 0
    assert state["StartedAt"].startswith("0001-")


def test_inspect_size_fields_and_old_api_version(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_until_file(
        docker_client, busybox_image, "/blob", "head -c 5000 /dev/zero > /blob; sleep 300"
    )
    status, plain = raw_json(whaled, f"/v1.45/containers/{c.id}/json")
    assert status == 200 and "SizeRw" not in plain
    status, sized = raw_json(whaled, f"/v1.45/containers/{c.id}/json?size=1")
    assert status == 200
    assert 5000 <= sized["SizeRw"] < 100_000
    assert sized["SizeRootFs"] > sized["SizeRw"] + 1_000_000  # the busybox binary below
    for version in ("v1.41", "v1.24"):
        status, old = raw_json(whaled, f"/{version}/containers/{c.id}/json")
        assert status == 200, version
        assert old["Id"] == c.id and old["State"]["Running"] is True
    status, _ = raw_json(whaled, f"/v1.12/containers/{c.id}/json")
    assert status == 400
    c.remove(force=True)


def _make_half_removed(whaled: WhaledProcess, client: Any, image: str) -> tuple[str, str]:
    """Two exited containers whose RW layers are deleted behind whaled's back while it is
    stopped; the second is also marked dead in its record. Returns their IDs."""
    ids = []
    uppers = []
    for _ in range(2):
        c = run_bg(client, image, "sh", "-c", "echo x > /f")
        c.wait(timeout=30)
        data = client.api.inspect_container(c.id)["GraphDriver"]["Data"]
        upper = data["UpperDir"]
        assert upper.startswith(whaled.data_root + "/")
        # The wait answers before the exit clean-up unmounted the rootfs (see
        # test_api_lifecycle's next-exit test): let it finish first.
        merged: str = data["MergedDir"]

        def unmounted(merged: str = merged) -> bool:
            return merged not in mounts_under(whaled.root)

        poll(unmounted)
        ids.append(c.id)
        uppers.append(upper)
    whaled.stop()
    for upper in uppers:
        layer_dir = os.path.dirname(upper)
        assert layer_dir.startswith(whaled.data_root + "/") and layer_dir != whaled.data_root
        shutil.rmtree(layer_dir)
    record = os.path.join(whaled.data_root, "containers", ids[1], "container.json")
    with open(record) as f:
        body = json.load(f)
    body["state"]["status"] = "dead"
    with open(record, "w") as f:
        json.dump(body, f)
    whaled.restart()
    return ids[0], ids[1]


def test_half_removed_container_still_inspects_lists_and_removes(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    """The seed case: a dead or half-removed container whose RW layer is gone."""
    gone, dead = _make_half_removed(whaled, docker_client, busybox_image)
    for cid in (gone, dead):
        status, body = raw_json(whaled, f"/v1.45/containers/{cid}/json")
        assert status == 200, body
        assert body["Id"] == cid
        status, sized = raw_json(whaled, f"/v1.45/containers/{cid}/json?size=1")
        assert status == 200, sized
    status, body = raw_json(whaled, f"/v1.45/containers/{dead}/json")
    assert body["State"]["Status"] == "dead" and body["State"]["Dead"] is True
    status, listed = raw_json(whaled, "/v1.45/containers/json?all=1&size=1")
    assert status == 200
    assert {c["Id"] for c in listed} == {gone, dead}
    status, listed = raw_json(
        whaled, "/v1.45/containers/json?all=1&filters=%7B%22status%22%3A%5B%22dead%22%5D%7D"
    )
    assert [c["Id"] for c in listed] == [dead]
    for cid in (gone, dead):
        status, _, out = whaled.request("DELETE", f"/v1.45/containers/{cid}?force=1")
        assert status == 204, out
    status, listed = raw_json(whaled, "/v1.45/containers/json?all=1")
    assert listed == []
    # The daemon is still fine.
    assert whaled.request("GET", "/_ping")[0] == 200


def test_half_removed_container_file_endpoints_answer_cleanly(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    """Endpoints that need the lost layer fail with an error message, never hang or
    take the daemon down; logs (kept beside the record) still work."""
    gone, _ = _make_half_removed(whaled, docker_client, busybox_image)
    for method, path in (
        ("GET", f"/v1.45/containers/{gone}/changes"),
        ("GET", f"/v1.45/containers/{gone}/export"),
        ("GET", f"/v1.45/containers/{gone}/archive?path=/f"),
        ("POST", f"/v1.45/containers/{gone}/start"),
    ):
        status, _, out = whaled.request(method, path, timeout=20)
        assert status >= 400, (method, path, status)
        if out:
            assert json.loads(out)["message"], (method, path, out)
    status, _, _ = whaled.request("HEAD", f"/v1.45/containers/{gone}/archive?path=/f")
    assert status >= 400
    status, _, _ = whaled.request("GET", f"/v1.45/containers/{gone}/logs?stdout=1")
    assert status == 200
    assert whaled.request("GET", "/_ping")[0] == 200


# ================================================================== list


def _names(listed: list[dict[str, Any]]) -> list[str]:
    return [c["Names"][0].lstrip("/") for c in listed]


def test_list_filters_and_order(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str, tmp_path: Any
) -> None:
    api = docker_client.api
    create_id(api, busybox_image, ["true"], name="l1", labels={"tier": "db"})
    c2 = run_bg(
        docker_client,
        busybox_image,
        "sh",
        "-c",
        "exit 3",
        name="l2",
        labels={"tier": "web", "env": "prod"},
    )
    c2.wait(timeout=30)
    run_bg(
        docker_client,
        busybox_image,
        "sleep",
        "300",
        name="l3",
        volumes={str(tmp_path): {"bind": "/vol", "mode": "rw"}},
    )
    run_bg(
        docker_client,
        busybox_image,
        "sleep",
        "300",
        name="l4",
        healthcheck={"test": ["CMD", "true"], "interval": 200_000_000, "retries": 1},
    )
    poll(
        lambda: docker_client.api.inspect_container("l4")["State"]["Health"]["Status"] == "healthy"
    )

    def ls(**kw: Any) -> list[str]:
        return _names(api.containers(**kw))

    assert ls() == ["l4", "l3"]
    assert ls(all=True) == ["l4", "l3", "l2", "l1"]
    assert ls(limit=2) == ["l4", "l3"]
    assert ls(all=True, filters={"id": api.inspect_container("l2")["Id"][:10]}) == ["l2"]
    assert ls(all=True, filters={"name": "l2"}) == ["l2"]
    assert ls(all=True, filters={"label": "tier"}) == ["l2", "l1"]
    assert ls(all=True, filters={"label": "tier=web"}) == ["l2"]
    assert ls(all=True, filters={"status": "created"}) == ["l1"]
    assert ls(all=True, filters={"status": "exited"}) == ["l2"]
    assert ls(all=True, filters={"exited": 3}) == ["l2"]
    assert ls(all=True, filters={"ancestor": busybox_image}) == ["l4", "l3", "l2", "l1"]
    assert ls(all=True, filters={"ancestor": "busybox"}) == ["l4", "l3", "l2", "l1"]
    assert ls(all=True, filters={"before": "l3"}) == ["l2", "l1"]
    assert ls(all=True, filters={"since": "l2"}) == ["l4", "l3"]
    assert ls(all=True, filters={"volume": "/vol"}) == ["l3"]
    assert ls(all=True, filters={"volume": str(tmp_path)}) == ["l3"]
    assert ls(all=True, filters={"health": "healthy"}) == ["l4"]
    assert ls(all=True, filters={"health": "none"}) == ["l3", "l2", "l1"]
    for bad in ({"bogus": "x"}, {"status": "sleeping"}, {"health": "sick"}, {"exited": "x"}):
        with pytest.raises(docker.errors.APIError) as info:
            api.containers(all=True, filters=bad)
        assert info.value.status_code == 400, bad
    with pytest.raises(docker.errors.NotFound):
        api.containers(all=True, filters={"before": "nosuch"})
    docker_client.containers.get("l3").remove(force=True)
    docker_client.containers.get("l4").remove(force=True)


def test_list_item_shape_and_size(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_until_file(
        docker_client, busybox_image, "/x", "echo hi > /x; sleep 300", labels={"a": "b"}
    )
    [item] = docker_client.api.containers(size=True)
    assert item["Id"] == c.id
    assert item["Image"] == busybox_image
    assert item["ImageID"].startswith("sha256:")
    assert item["Command"] == "sh -c 'echo hi > /x; sleep 300'"
    assert item["State"] == "running" and item["Status"].startswith("Up ")
    assert item["Labels"] == {"a": "b"}
    assert item["HostConfig"]["NetworkMode"] == NONE
    assert abs(item["Created"] - time.time()) < 60
    assert item["SizeRw"] >= 3 and item["SizeRootFs"] > item["SizeRw"]
    [plain] = docker_client.api.containers()
    assert "SizeRw" not in plain
    c.remove(force=True)


# ================================================================== logs


def test_logs_streams_tail_timestamps_since_until(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(
        docker_client,
        busybox_image,
        "sh",
        "-c",
        "echo o1; echo e1 >&2; sleep 1.2; echo o2; echo e2 >&2",
    )
    c.wait(timeout=30)
    assert c.logs(stdout=True, stderr=False) == b"o1\no2\n"
    assert c.logs(stdout=False, stderr=True) == b"e1\ne2\n"
    assert sorted(c.logs().splitlines()) == [b"e1", b"e2", b"o1", b"o2"]
    assert c.logs(stdout=True, stderr=False, tail=1) == b"o2\n"
    assert c.logs(stdout=True, stderr=False, tail=0) == b""
    stamped = c.logs(stdout=True, stderr=False, timestamps=True).decode().splitlines()
    stamps = [line.split(" ", 1)[0] for line in stamped]
    assert [line.split(" ", 1)[1] for line in stamped] == ["o1", "o2"]
    assert all(s.endswith("Z") and len(s.split(".")[1]) == 10 for s in stamps), stamps
    # A cut between the two bursts (their times are a second apart).
    from datetime import datetime

    def unix(stamp: str) -> float:
        main, frac = stamp.rstrip("Z").split(".")
        return datetime.fromisoformat(main + "+00:00").timestamp() + float("0." + frac)

    t1, t2 = unix(stamps[0]), unix(stamps[1])
    assert t2 - t1 >= 1.0
    cut = (t1 + t2) / 2
    assert c.logs(stdout=True, stderr=True, since=cut) in (b"o2\ne2\n", b"e2\no2\n")
    assert c.logs(stdout=True, stderr=False, until=cut) == b"o1\n"
    status, _, out = whaled.request("GET", f"/v1.45/containers/{c.id}/logs")
    assert status == 400, out
    c.remove()


def test_logs_of_a_chatty_process_come_back_byte_for_byte(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    """Several MB with lines longer than conmon's 8 KiB pieces, on both streams: what
    ``docker logs`` gives (frames of many lines each) is what the process wrote."""
    script = (
        "i=0; while [ $i -lt 40 ]; do head -c 20000 /dev/zero | tr '\\0' a; echo; "
        "echo err$i >&2; yes line-$i | head -n 2000; i=$((i+1)); done"
    )
    c = run_bg(docker_client, busybox_image, "sh", "-c", script)
    assert c.wait(timeout=60)["StatusCode"] == 0
    out = c.logs(stdout=True, stderr=False)
    want = b"".join(
        b"a" * 20000 + b"\n" + f"line-{i}\n".encode() * 2000 for i in range(40)
    )
    assert out == want
    assert c.logs(stdout=False, stderr=True) == b"".join(f"err{i}\n".encode() for i in range(40))
    c.remove()


def test_logs_follow_ends_when_the_container_exits(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(
        docker_client, busybox_image, "sh", "-c", "for i in 1 2 3; do echo f$i; sleep 0.2; done"
    )
    started = time.monotonic()
    chunks = list(c.logs(stream=True, follow=True))
    assert b"".join(chunks) == b"f1\nf2\nf3\n"
    assert time.monotonic() - started < 10
    c.remove()


def test_logs_with_driver_none_is_not_implemented(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = run_bg(
        docker_client, busybox_image, "echo", "hi", log_config=docker.types.LogConfig(type="none")
    )
    c.wait(timeout=30)
    status, _, out = whaled.request("GET", f"/v1.45/containers/{c.id}/logs?stdout=1")
    assert status == 501, out
    assert json.loads(out)["message"] == "configured logging driver does not support reading"
    assert docker_client.api.inspect_container(c.id)["HostConfig"]["LogConfig"]["Type"] == "none"
    c.remove()


_SPAM = (
    "i=0; while [ $i -lt 3000 ]; do echo line$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
    "i=$((i+1)); done"
)


_ROTATION = {"max-size": "10k", "max-file": "3"}


def _spam_with_rotation(client: Any, image: str) -> Any:
    """A container that wrote 3000 log lines (about 140 kB) with json-file's ``_ROTATION``."""
    c = run_bg(
        client,
        image,
        "sh",
        "-c",
        _SPAM,
        log_config=docker.types.LogConfig(type="json-file", config=_ROTATION),
    )
    c.wait(timeout=60)
    return c


def _log_files(logpath: str) -> dict[str, int]:
    d, base = os.path.split(logpath)
    return {n: os.path.getsize(os.path.join(d, n)) for n in os.listdir(d) if n.startswith(base)}


def test_log_rotation_keeps_max_file_and_the_last_lines(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    c = _spam_with_rotation(docker_client, busybox_image)
    body = docker_client.api.inspect_container(c.id)
    assert body["HostConfig"]["LogConfig"]["Config"] == {"max-size": "10k", "max-file": "3"}
    files = _log_files(body["LogPath"])
    assert 1 <= len(files) <= 3, files
    assert c.logs(tail=2) == b"line2998-" + b"x" * 37 + b"\nline2999-" + b"x" * 37 + b"\n"
    c.remove()


def test_log_rotation_keeps_each_file_near_max_size(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    """3000 lines in a few ms outrun the reopen; still, once the container has exited, no
    file holds more than twice max-size and the last lines are there."""
    c = _spam_with_rotation(docker_client, busybox_image)
    files = _log_files(docker_client.api.inspect_container(c.id)["LogPath"])
    assert 1 <= len(files) <= 3, files
    assert all(size <= 2 * 10 * 1024 for size in files.values()), files
    assert c.logs(tail=1) == b"line2999-" + b"x" * 37 + b"\n"
    c.remove()


def test_log_opts_without_driver_name_are_kept(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    api = docker_client.api
    hc = api.create_host_config(network_mode=NONE)
    hc["LogConfig"] = {"Type": "", "Config": {"max-size": "10k", "max-file": "3"}}
    cid = api.create_container(busybox_image, ["true"], host_config=hc)["Id"]
    log_config = api.inspect_container(cid)["HostConfig"]["LogConfig"]
    assert log_config == {"Type": "json-file", "Config": {"max-size": "10k", "max-file": "3"}}


def test_log_rotation_keeps_a_steady_writers_files_at_max_size(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    """Rotation reacts to each write: a writer that does not outrun the monitor's reopen
    gets files of max-size plus at most a few lines, and every line stays readable."""
    script = (
        "i=0; while [ $i -lt 300 ]; do echo line-$i-$(printf '%050d' 0); "
        "i=$((i+1)); usleep 2000; done"
    )
    c = run_bg(
        docker_client,
        busybox_image,
        "sh",
        "-c",
        script,
        log_config=docker.types.LogConfig(
            type="json-file", config={"max-size": "10k", "max-file": "10"}
        ),
    )
    c.wait(timeout=60)
    files = _log_files(docker_client.api.inspect_container(c.id)["LogPath"])
    rotated = {name: size for name, size in files.items() if not name.endswith(".log")}
    assert len(rotated) >= 2, files
    assert all(size <= 10_000 + 1_000 for size in rotated.values()), files
    lines = c.logs().decode().splitlines()
    assert len(lines) == 300 and lines[-1].startswith("line-299-")
    c.remove()


def test_unclean_paths_redirect_like_dockerd(
    whaled: WhaledProcess, docker_client: Any, busybox_image: str
) -> None:
    """docker-py sends ``containers//name/json`` for a name given with its leading slash;
    dockerd's router answers 301 to the clean path (query kept), which clients follow."""
    c = docker_client.containers.create(busybox_image, "true", name="slashy", network_mode="none")
    assert docker_client.containers.get("/slashy").id == c.id
    status, headers, _ = whaled.request("GET", f"{V}/containers//slashy/json?size=1")
    assert status == 301
    assert headers["Location"] == f"{V}/containers/slashy/json?size=1"
    c.remove()
