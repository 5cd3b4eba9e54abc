"""One daemon meets every hostile-client case of issue 12 in turn (a deep tree, binary stdin,
wrong-typed bodies, JSON nested too deep, half-sent request heads, a restarting container,
a truncated load, swarm calls), then restarts: it still starts, lists, inspects and removes
everything, and leaves nothing on disk that no container or image owns."""

from __future__ import annotations

import hashlib
import os
import socket
from typing import Any

from tests.integration.container.helpers import V, call, poll
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import WhaledProcess

MKDIR = 'mkdir -p $(printf "d/%.0s" $(seq 1100)) && echo hi > $(printf "d/%.0s" $(seq 1100))f'
BAD_BODIES: list[dict[str, Any]] = [
    {"Cmd": [1, 2]},
    {"Labels": {"a": 5}},
    {"User": 0},
    {"Tty": "yes"},
    {"StopTimeout": "x"},
    {"Volumes": ["/x"]},
    {"StopSignal": "SIGFOO"},
    {"Env": [None]},
    {"HostConfig": {"Memory": 2**63}},
]


def _disk_state(data_root: str) -> dict[str, list[str]]:
    """What the data root holds for layers and containers (names only)."""

    def names(*parts: str) -> list[str]:
        path = os.path.join(data_root, *parts)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    return {
        "overlay2": names("overlay2"),
        "mounts": names("image", "layerdb", "mounts"),
        "containers": names("containers"),
        "image": [n for n in names("image") if n.startswith(".tmp-")],
    }


def test_a_daemon_that_met_every_case_restarts_lists_inspects_and_removes_everything(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    clean = _disk_state(whaled.data_root)
    assert clean["mounts"] == [] and clean["containers"] == []

    # 1. a deep tree: one container removed, one kept
    for name in ("deep-gone", "deep-kept"):
        docker_cli.run("run", "--name", name, "--network", "none", busybox_image, "sh", "-c", MKDIR)
    docker_cli.run("rm", "deep-gone")

    # 2. binary stdin holding the detach sequence reaches the process whole
    data = os.urandom(3_000_000) + b"\x10\x11" + os.urandom(1000)
    out = docker_cli.run_bytes(
        "run", "-i", "--rm", "--network", "none", busybox_image, "md5sum", input=data
    ).stdout
    assert hashlib.md5(data).hexdigest().encode() in out

    # 3, 4. wrong-typed bodies and JSON nested too deep are refused, nothing is stored
    for extra in BAD_BODIES:
        status, body = call(
            whaled, "POST", "/containers/create", {"Image": busybox_image, **extra}
        )
        assert status == 400, (extra, body)
    status, _, _ = whaled.request(
        "POST", f"{V}/containers/create", b"[" * 100_000, {"Content-Type": "application/json"}
    )
    assert status == 400

    # 5. half-sent request heads left open while the rest goes on
    loris = []
    for _ in range(50):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(whaled.sock)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n")
        loris.append(s)

    # 10. a restarting container is not removed without force
    status, body = call(
        whaled,
        "POST",
        "/containers/create?name=flappy",
        {
            "Image": busybox_image,
            "Cmd": ["false"],
            "HostConfig": {"RestartPolicy": {"Name": "always"}},
        },
    )
    assert status == 201, body
    assert call(whaled, "POST", "/containers/flappy/start")[0] == 204

    def restarting_refused() -> bool:
        status, body = call(whaled, "DELETE", "/containers/flappy")
        assert status != 204, "a restarting container was removed without force"
        return status == 409 and "restarting" in body["message"]

    poll(restarting_refused, timeout=30, interval=0.02)

    # 12. a truncated load answers 200 with the error in the stream
    status, _, out = whaled.request(
        "POST", f"{V}/images/load", b"not a tar at all" * 10, {"Content-Type": "application/x-tar"}
    )
    assert status == 200 and b"errorDetail" in out

    # 13. swarm calls answer 503 as on a node outside any swarm
    assert call(whaled, "GET", "/nodes")[0] == 503

    # the daemon restarts with all of that behind it
    for s in loris:
        s.close()
    whaled.restart()
    assert whaled.request("GET", "/_ping")[0] == 200

    status, listed = call(whaled, "GET", "/containers/json?all=1")
    assert status == 200, listed
    names = sorted(n for c in listed for n in c["Names"])
    assert names == ["/deep-kept", "/flappy"]
    for c in listed:
        status, info = call(whaled, "GET", f"/containers/{c['Id']}/json")
        assert status == 200, info
        assert call(whaled, "DELETE", f"/containers/{c['Id']}?force=1")[0] == 204
    assert docker_cli.run("ps", "-aq").stdout == ""

    # nothing left on disk that no container or image owns (removal finishes in the background)
    poll(lambda: _disk_state(whaled.data_root) == clean, timeout=60, interval=0.2)
