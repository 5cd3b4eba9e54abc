"""Request bodies and request handling at the API edge."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.container.helpers import NONE, call, poll
from tests.support.whaled_proc import WhaledProcess


def _create_body(image: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"Image": image, "Cmd": ["sleep", "30"]}
    host = extra.pop("HostConfig", {})
    body.update(extra)
    body["HostConfig"] = {"NetworkMode": NONE, **host}
    return body


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
