"""docker-py drives the main routes of a live whaled; every answer it gets is checked
against whaled/api/openapi.yaml (issue 17): statuses documented, JSON bodies fitting their
schemas, errors ``{"message": ...}``.

docker-py's ``APIClient`` is a ``requests.Session``: a response hook sees every answer.
Streams (logs, events, stats, pull/load progress, tar archives) are left to the client;
each of their statuses is still checked."""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any

import docker.errors
import pytest

from tests.support.openapi_check import check_response, is_stream
from tests.support.whaled_proc import WhaledProcess


class Recorder:
    """The response hook: checks each answer as it arrives."""

    def __init__(self) -> None:
        self.checked: list[str] = []
        self.streams: list[str] = []
        self.problems: list[str] = []

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        request = response.request
        path = request.path_url
        what = f"{request.method} {path} → {response.status_code}"
        # 101: the connection is the stream now (attach, exec start)
        if response.status_code == 101 or is_stream(request.method, path, response.status_code):
            # the status (and that the operation is documented) is still checked
            problems = check_response(request.method, path, response.status_code, "", b"")
            self.problems += [p for p in problems if "content type" not in p]
            self.streams.append(what)
            return response
        body = response.content  # whole (not a stream): safe to read here
        self.problems += check_response(
            request.method, path, response.status_code,
            response.headers.get("Content-Type", ""), body,
        )  # fmt: skip
        self.checked.append(what)
        return response


def context_tar() -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        dockerfile = b"FROM busybox:latest\nRUN echo built > /built\nCMD [\"true\"]\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    return data.getvalue()


def expect_error(call: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(docker.errors.APIError):
        call(*args, **kwargs)


def test_main_routes_answer_as_documented(whaled: WhaledProcess, busybox_image: str) -> None:
    api = whaled.api()
    recorder = Recorder()
    api.hooks["response"].append(recorder)

    # system
    api.ping()
    api.version()
    api.info()
    api.df()
    list(api.events(since=0, until=int(time.time()) + 1, decode=True))

    # images
    api.images()
    api.images(all=True, filters={"dangling": False})
    api.inspect_image(busybox_image)
    api.history(busybox_image)
    api.tag(busybox_image, "fz/copy", "one")
    api.remove_image("fz/copy:one")
    b"".join(api.get_image(busybox_image))
    list(api.build(fileobj=io.BytesIO(context_tar()), custom_context=True, tag="fz/built"))
    api.inspect_image("fz/built")
    api.prune_images(filters={"dangling": True})
    expect_error(api.inspect_image, "no-such-image")
    expect_error(api.tag, busybox_image, "BAD//repo")

    # volumes and networks
    api.create_volume("fz-vol", labels={"a": "b"})
    api.volumes()
    api.inspect_volume("fz-vol")
    expect_error(api.inspect_volume, "no-such-volume")
    net = api.create_network("fz-net", labels={"a": "b"})
    api.networks()
    api.inspect_network(net["Id"])

    # containers
    c = api.create_container(
        busybox_image,
        ["sh", "-c", "echo hello; echo oops >&2; exec sleep 60"],
        name="fz-c",
        labels={"k": "v"},
        host_config=api.create_host_config(
            binds={"fz-vol": {"bind": "/data", "mode": "rw"}}, port_bindings={80: None}
        ),
    )
    api.connect_container_to_network(c["Id"], net["Id"], aliases=["web"])
    api.start(c)
    api.containers()
    api.containers(all=True, size=True, filters={"label": "k=v"})
    api.inspect_container(c)
    api.inspect_container(c["Id"][:12])
    api.inspect_network(net["Id"])
    api.top(c)
    api.logs(c, stdout=True, stderr=True)
    api.stats(c, stream=False, one_shot=True)
    api.diff(c)
    api.resize(c, 24, 80)
    api.update_container(c, mem_limit="64m", memswap_limit="-1")
    api.put_archive(c, "/tmp", context_tar())
    stream, stat = api.get_archive(c, "/tmp/Dockerfile")
    b"".join(stream)
    assert stat["name"] == "Dockerfile"
    e = api.exec_create(c, ["sh", "-c", "echo from exec"])
    api.exec_start(e)
    api.exec_inspect(e)
    d = api.exec_create(c, ["true"])
    api.exec_start(d, detach=True)
    # older API versions see older shapes: those fit the document too
    for version in ("1.24", "1.30", "1.35", "1.41", "1.43"):
        for path in (
            "/containers/json?all=1&size=1",
            f"/containers/{c['Id']}/json?size=1",
            "/images/json",
            f"/images/{busybox_image}/json",
            "/info",
            "/system/df",
            "/networks",
            "/volumes",
        ):
            api.get(f"{api.base_url}/v{version}{path}").raise_for_status()
    api.pause(c)
    api.unpause(c)
    api.commit(c, repository="fz/committed", tag="v1", changes=["ENV A=b"])
    api.rename(c, "fz-c2")
    api.kill(c, signal="SIGUSR1")
    api.restart(c, timeout=1)
    api.stop(c, timeout=1)
    api.wait(c)
    expect_error(api.start, "no-such-container")
    expect_error(api.create_container, busybox_image, ["true"], name="bad/name")
    expect_error(api.kill, c, signal="SIGBOGUS")
    api.disconnect_container_from_network(c, net["Id"])
    api.remove_container(c, v=True)
    api.prune_containers()

    api.remove_network(net["Id"])
    api.prune_networks()
    api.remove_volume("fz-vol")
    api.prune_volumes()
    api.remove_image("fz/committed:v1")
    api.prune_builds()

    assert not recorder.problems, "\n".join(recorder.problems)
    # enough of the API went through the check for it to mean something
    assert len(recorder.checked) >= 90, recorder.checked
    assert len(recorder.streams) >= 5, recorder.streams
