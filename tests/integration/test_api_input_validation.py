"""Bad input answered with a precise 4xx, never a 5xx (issue 17): the regressions the
OpenAPI fuzzing (tests/robustness/test_fuzz_api.py) and the input audit found, checked
through the real API."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from tests.support.openapi_check import assert_conforms
from tests.support.whaled_proc import WhaledProcess


def call(
    w: WhaledProcess, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, Any] | None]:
    status, headers, raw = w.request(method, path, body)
    content_type = headers.get("Content-Type", "")
    assert_conforms(method, path, status, content_type, raw)
    if not content_type.startswith("application/json"):
        return status, None
    return status, json.loads(raw)


def q(value: object) -> str:
    return urllib.parse.quote(json.dumps(value))


def test_version_prefixes_dockerd_routes_take_are_checked(whaled: WhaledProcess) -> None:
    """``/v1/`` and ``/v1.2.3/`` were a 404 (the route wanted X.Y); dockerd answers 400."""
    assert call(whaled, "GET", "/v1/version") == (
        400,
        {
            "message": "client version 1 is too old. Minimum supported API version is 1.24, "
            "please upgrade your client to a newer version"
        },
    )
    status, body = call(whaled, "GET", "/v1.45.1/_ping")
    assert status == 400 and body is not None
    assert body["message"].startswith("client version 1.45.1 is too new")
    assert call(whaled, "GET", "/v1.45.0/_ping")[0] == 200
    assert call(whaled, "GET", "/vx/_ping") == (404, {"message": "page not found"})


def test_link_removal_errors_are_4xx(whaled: WhaledProcess) -> None:
    """dockerd answers these with an unclassified 500; the request is what is wrong."""
    assert call(whaled, "DELETE", "/containers/anything?link=1") == (
        409,
        {"message": "Conflict, cannot remove the default link name of the container"},
    )
    assert call(whaled, "DELETE", "/containers/ghost/alias?link=1") == (
        404,
        {"message": "Cannot get parent /ghost for link name /ghost/alias"},
    )


def test_login_with_an_unparsable_server_address_is_a_400(whaled: WhaledProcess) -> None:
    status, body = call(whaled, "POST", "/auth", {"serveraddress": "a\x10b", "username": "u"})
    assert status == 400 and body is not None
    assert body["message"] == (
        'unable to parse server address: parse "https://a\x10b": '
        "net/url: invalid control character in URL"
    )


def test_network_filters_are_checked(whaled: WhaledProcess) -> None:
    assert call(whaled, "GET", "/networks?filters=" + q({"type": ["bogus"]})) == (
        400,
        {"message": "invalid filter 'bogus'"},
    )
    status, body = call(whaled, "GET", "/networks?filters=" + q({"type": ["builtin"]}))
    assert status == 200 and body is not None
    assert {n["Name"] for n in body} == {"bridge", "host", "none"}
    # prune's until was accepted and ignored: now checked, and it keeps newer networks
    assert call(whaled, "POST", "/networks/prune?filters=" + q({"until": ["abc"]})) == (
        400,
        {"message": "failed to parse value as time or duration: 'abc'"},
    )
    assert call(whaled, "POST", "/networks/create", {"Name": "young"})[0] == 201
    assert call(whaled, "POST", "/networks/prune?filters=" + q({"until": ["1h"]})) == (
        200,
        {"NetworksDeleted": None},
    )
    assert call(whaled, "POST", "/networks/prune") == (200, {"NetworksDeleted": ["young"]})


def test_container_create_refuses_unknown_modes_and_ports(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    base = {"Image": busybox_image, "Cmd": ["true"]}
    for host_config, message in [
        ({"IpcMode": "bogus"}, "invalid IPC mode: bogus"),
        ({"CgroupnsMode": "bogus"}, "invalid cgroup namespace mode: bogus"),
        ({"Isolation": "hyperv"}, "Invalid isolation: \"hyperv\" - linux only supports 'default'"),
        ({"PortBindings": {"abc/tcp": None}}, 'invalid port specification: "abc/tcp"'),
        ({"Tmpfs": {"/x": "size=abc"}}, 'invalid tmpfs option "size=abc"'),
    ]:
        assert call(whaled, "POST", "/containers/create", {**base, "HostConfig": host_config}) == (
            400,
            {"message": message},
        )
    assert call(whaled, "GET", "/containers/json?all=1") == (200, [])


def test_top_with_arguments_ps_refuses_is_a_400(whaled: WhaledProcess, busybox_image: str) -> None:
    status, body = call(
        whaled,
        "POST",
        "/containers/create?name=top",
        {"Image": busybox_image, "Cmd": ["sleep", "60"]},
    )
    assert status == 201
    assert call(whaled, "POST", "/containers/top/start")[0] == 204
    status, body = call(whaled, "GET", "/containers/top/top?ps_args=--no-such-option")
    assert status == 400 and body is not None
    assert body["message"].startswith("ps: ")
    status, body = call(whaled, "GET", "/containers/top/top?ps_args=-o%20uid=PID")
    assert (status, body) == (400, {"message": 'specifying "uid=PID" is not allowed'})
    assert call(whaled, "GET", "/containers/top/top")[0] == 200
    # bad detach keys: refused at exec create (they were accepted, then refused at start)
    assert call(
        whaled, "POST", "/containers/top/exec", {"Cmd": ["true"], "DetachKeys": "ctrl-€"}
    ) == (400, {"message": "Invalid detach keys (ctrl-€) provided"})
    assert call(whaled, "DELETE", "/containers/top?force=1")[0] == 204
