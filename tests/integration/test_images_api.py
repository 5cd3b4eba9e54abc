"""The images issue's "Shows", against a real whaled driven by the docker CLI and docker-py."""

from __future__ import annotations

import json
import os
import tarfile
import time
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import docker.errors
import pytest

from tests.integration.image import tarbuild as tb
from tests.support.dockercli import DockerCLI
from tests.support.registry import free_port
from tests.support.whaled_proc import WhaledProcess

API = "/v1.45"


def json_lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def regular_bytes(tar_path: str) -> int:
    with tarfile.open(tar_path) as tf:
        return sum(m.size for m in tf.getmembers() if m.isreg())


def image_id(w: WhaledProcess, name: str) -> str:
    status, _, body = w.request("GET", f"{API}/images/{name}/json")
    assert status == 200, body
    return str(json.loads(body)["Id"])


def layer_dirs(w: WhaledProcess) -> set[str]:
    out: set[str] = set()
    for root, dirs, _ in os.walk(w.data_root):
        for d in dirs:
            out.add(os.path.relpath(os.path.join(root, d), w.data_root))
        if root.count(os.sep) - w.data_root.count(os.sep) >= 2:
            dirs[:] = []
    return out


# ------------------------------------------------------------------ import / list / inspect


def test_import_then_images_lists_it_with_the_right_size(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_tar: str
) -> None:
    out = docker_cli.run("import", busybox_tar, "busybox:latest").stdout.strip()
    assert out.startswith("sha256:")
    rows = docker_cli.run("images", "--format", "{{json .}}").stdout.splitlines()
    assert len(rows) == 1
    row = json.loads(rows[0])
    assert (row["Repository"], row["Tag"]) == ("busybox", "latest")
    assert out.removeprefix("sha256:").startswith(row["ID"])

    status, _, body = whaled.request("GET", f"{API}/images/json")
    assert status == 200
    (summary,) = json.loads(body)
    size = summary["Size"]
    # The layer's size is what its files take: at least the regular files' bytes, and not
    # much more (directories, symlinks).
    content = regular_bytes(busybox_tar)
    assert content <= size <= content + 512 * 1024
    assert summary["RepoTags"] == ["busybox:latest"]
    assert summary["RepoDigests"] == []
    assert summary["Containers"] == -1 and summary["SharedSize"] == -1
    assert "VirtualSize" not in summary
    assert summary["Id"] == out
    inspect = json.loads(whaled.request("GET", f"{API}/images/busybox/json")[2])
    assert inspect["Size"] == size


def test_inspect_shape_and_format(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    out = docker_cli.run(
        "image", "inspect", "--format", "{{.Id}} {{.RootFS.Layers}}", busybox_image
    ).stdout.strip()
    image, layers = out.split(" ", 1)
    assert image.startswith("sha256:") and len(image) == 71
    assert layers.startswith("[sha256:") and layers.endswith("]")

    body = json.loads(whaled.request("GET", f"{API}/images/{busybox_image}/json")[2])
    assert body["Id"] == image
    assert body["RepoTags"] == ["busybox:latest"]
    assert body["GraphDriver"]["Name"] == "overlay2"
    assert body["RootFS"]["Type"] == "layers"
    assert body["Os"] == "linux"
    assert body["Comment"] == "Imported from -"
    assert "Container" not in body and "ContainerConfig" not in body
    assert "VirtualSize" not in body
    assert body["Metadata"]["LastTagTime"] not in ("", None)
    assert body["Created"].endswith("Z")
    old = json.loads(whaled.request("GET", f"/v1.43/images/{busybox_image}/json")[2])
    assert old["VirtualSize"] == old["Size"] == body["Size"]
    assert "ContainerConfig" in old
    old_list = json.loads(whaled.request("GET", "/v1.43/images/json")[2])
    assert old_list[0]["VirtualSize"] == old_list[0]["Size"]


def test_import_with_changes_and_message(whaled: WhaledProcess, busybox_tar: str) -> None:
    query = urlencode(
        [
            ("fromSrc", "-"),
            ("repo", "example.com:5000/team/app"),
            ("tag", "v1"),
            ("message", "hello"),
            ("changes", 'CMD ["sh"]'),
            ("changes", "ENV A=b"),
            ("changes", "WORKDIR /tmp"),
            ("changes", "LABEL x=y"),
        ]
    )
    with open(busybox_tar, "rb") as f:
        data = f.read()
    status, headers, body = whaled.request("POST", f"{API}/images/create?{query}", data)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    (msg,) = json_lines(body)
    new_id = msg["status"]
    name = "example.com:5000/team/app:v1"
    inspect = json.loads(whaled.request("GET", f"{API}/images/{name}/json")[2])
    assert inspect["Id"] == new_id
    assert inspect["Comment"] == "hello"
    cfg = inspect["Config"]
    assert cfg["Cmd"] == ["sh"] and cfg["WorkingDir"] == "/tmp"
    assert "A=b" in cfg["Env"] and cfg["Labels"] == {"x": "y"}
    labelled = json.loads(
        whaled.request(
            "GET", f"{API}/images/json?filters=" + quote(json.dumps({"label": ["x=y"]}))
        )[2]
    )
    assert [r["Id"] for r in labelled] == [new_id]


def test_docker_py_list_get_history(docker_client: Any, busybox_image: str) -> None:
    images = docker_client.images.list()
    assert [i.tags for i in images] == [["busybox:latest"]]
    image = docker_client.images.get(busybox_image)
    assert image.id == images[0].id
    history = image.history()
    assert history[0]["Id"] == image.id and history[0]["Tags"] == ["busybox:latest"]
    assert history[0]["Size"] == image.attrs["Size"]


def test_history_cli(docker_cli: DockerCLI, busybox_image: str) -> None:
    out = docker_cli.run("history", "--no-trunc", "--format", "{{json .}}", busybox_image)
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["ID"].startswith("sha256:")
    assert row["Comment"] == "Imported from -"


# ------------------------------------------------------------------ errors


def test_unknown_image_404_with_dockerds_message(whaled: WhaledProcess) -> None:
    status, _, body = whaled.request("GET", f"{API}/images/nope:1/json")
    assert status == 404
    assert json.loads(body) == {"message": "No such image: nope:1"}
    # dockerd names a bare repository with its default tag.
    status, _, body = whaled.request("GET", f"{API}/images/nope/history")
    assert (status, json.loads(body)["message"]) == (404, "No such image: nope:latest")
    status, _, body = whaled.request("DELETE", f"{API}/images/nope:2")
    assert (status, json.loads(body)["message"]) == (404, "No such image: nope:2")
    status, _, body = whaled.request("POST", f"{API}/images/nope:3/tag?repo=x&tag=y")
    assert (status, json.loads(body)["message"]) == (404, "No such image: nope:3")
    status, _, _ = whaled.request("GET", f"{API}/images/get?names=nope:4")
    assert status == 404


def test_unknown_image_cli(docker_cli: DockerCLI) -> None:
    done = docker_cli.run("image", "inspect", "nope:1", check=False)
    assert done.returncode != 0
    assert "No such image: nope:1" in done.stderr


def test_invalid_reference_is_400(whaled: WhaledProcess, busybox_image: str) -> None:
    status, _, body = whaled.request("GET", f"{API}/images/NotLower/json")
    assert status == 400
    assert "invalid reference format" in json.loads(body)["message"]
    status, _, body = whaled.request(
        "POST", f"{API}/images/{busybox_image}/tag?repo=Bad%20Repo&tag=x"
    )
    assert status == 400, body
    status, _, body = whaled.request(
        "POST", f"{API}/images/{busybox_image}/tag?repo=ok&tag=" + quote("bad:tag")
    )
    assert status == 400, body
    status, _, body = whaled.request("POST", f"{API}/images/create?fromImage=UPPER")
    assert status == 400, body


def test_unsupported_endpoints_say_so(whaled: WhaledProcess, docker_cli: DockerCLI) -> None:
    status, _, body = whaled.request("POST", f"{API}/images/create?fromSrc=http://x/y.tar")
    assert status == 400
    assert "URL" in json.loads(body)["message"]
    # a Docker Hub search: the test daemon's hub is a closed loopback port
    status, _, body = whaled.request("GET", f"{API}/images/search?term=busybox")
    assert status == 500 and b"connection refused" in body, body
    status, _, body = whaled.request("POST", f"{API}/commit?container=abc")
    assert (status, json.loads(body)["message"]) == (404, "No such container: abc")


def test_pull_from_an_unreachable_registry_is_a_clear_error(
    whaled: WhaledProcess, docker_cli: DockerCLI
) -> None:
    # a closed loopback port (never a name that needs DNS: nothing leaves this machine)
    host = f"127.0.0.1:{free_port()}"
    status, _, body = whaled.request("POST", f"{API}/images/create?fromImage={host}/x&tag=1")
    message = json.loads(body)["message"]
    assert status == 500, body
    assert f"{host}/v2/" in message and "connection refused" in message, message
    done = docker_cli.run("pull", f"{host}/x:1", check=False)
    assert done.returncode != 0 and "connection refused" in done.stderr, done.stderr


# ------------------------------------------------------------------ tag / rmi / prune


def test_tag_and_rmi_untag_then_delete(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    ident = image_id(whaled, busybox_image)
    docker_cli.run("tag", busybox_image, "localhost:5000/my/box:v2")
    assert image_id(whaled, "localhost:5000/my/box:v2") == ident
    status, _, _ = whaled.request("POST", f"{API}/images/{busybox_image}/tag?repo=other&tag=t")
    assert status == 201
    tags = json.loads(whaled.request("GET", f"{API}/images/{ident}/json")[2])["RepoTags"]
    assert sorted(tags) == ["busybox:latest", "localhost:5000/my/box:v2", "other:t"]

    out = docker_cli.run("rmi", "localhost:5000/my/box:v2").stdout
    assert out.strip() == "Untagged: localhost:5000/my/box:v2"
    status, _, body = whaled.request("DELETE", f"{API}/images/other:t")
    assert status == 200
    assert json.loads(body) == [{"Untagged": "other:t"}]
    out = docker_cli.run("rmi", busybox_image).stdout.splitlines()
    assert out[0] == "Untagged: busybox:latest"
    assert f"Deleted: {ident}" in out
    assert docker_cli.run("images", "-q").stdout.strip() == ""
    assert json.loads(whaled.request("GET", f"{API}/info")[2])["Images"] == 0


def test_rmi_by_id_with_several_tags_needs_force(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    ident = image_id(whaled, busybox_image)
    docker_cli.run("tag", busybox_image, "second:tag")
    short = ident.removeprefix("sha256:")[:12]
    done = docker_cli.run("rmi", short, check=False)
    assert done.returncode != 0
    assert "must be forced" in done.stderr
    status, _, body = whaled.request("DELETE", f"{API}/images/{short}?force=1")
    assert status == 200, body
    records = json.loads(body)
    assert {"Deleted": ident} in records
    assert {"Untagged": "second:tag"} in records and {"Untagged": "busybox:latest"} in records


def test_image_prune(whaled: WhaledProcess, docker_cli: DockerCLI, busybox_tar: str) -> None:
    whaled.import_image(busybox_tar, "busybox:latest")
    first = image_id(whaled, "busybox")
    # Importing again with a different message makes a new image and leaves the old one
    # dangling (the tag moves).
    query = urlencode({"fromSrc": "-", "repo": "busybox", "tag": "latest", "message": "again"})
    with open(busybox_tar, "rb") as f:
        status, _, body = whaled.request("POST", f"{API}/images/create?{query}", f.read())
    assert status == 200, body
    dangling = json.loads(
        whaled.request("GET", f"{API}/images/json?filters=" + quote('{"dangling":{"true":true}}'))[
            2
        ]
    )
    assert [r["Id"] for r in dangling] == [first]
    assert dangling[0]["RepoTags"] == []
    old = json.loads(whaled.request("GET", "/v1.41/images/json")[2])
    assert ["<none>:<none>"] in [r["RepoTags"] for r in old]

    out = docker_cli.run("image", "prune", "-f").stdout
    assert f"deleted: {first}" in out
    assert "Total reclaimed space" in out
    ids = docker_cli.run("images", "-q", "--no-trunc").stdout.split()
    assert first not in ids and len(ids) == 1

    status, _, body = whaled.request("POST", f"{API}/images/prune")
    assert status == 200
    assert json.loads(body) == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    status, _, body = whaled.request(
        "POST", f"{API}/images/prune?filters=" + quote('{"dangling":{"false":true}}')
    )
    report = json.loads(body)
    assert status == 200 and report["SpaceReclaimed"] > 0
    assert whaled.request("GET", f"{API}/images/json")[2].strip() == b"[]"
    status, _, body = whaled.request(
        "POST", f"{API}/images/prune?filters=" + quote('{"nope":{"x":true}}')
    )
    assert status == 400


# ------------------------------------------------------------------ save / load


def test_save_rmi_load_restores_the_same_image_id(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Any
) -> None:
    before = image_id(whaled, busybox_image)
    archive = str(tmp_path / "x.tar")
    docker_cli.run("save", busybox_image, "-o", archive)
    with tarfile.open(archive) as tf:
        names = tf.getnames()
    assert "manifest.json" in names and "index.json" in names
    docker_cli.run("rmi", "busybox")
    assert docker_cli.run("images", "-q").stdout.strip() == ""
    out = docker_cli.run("load", "-i", archive).stdout
    assert "Loaded image: busybox:latest" in out
    assert image_id(whaled, busybox_image) == before


def test_load_stream_shapes(whaled: WhaledProcess, busybox_image: str) -> None:
    status, headers, archive = whaled.request("GET", f"{API}/images/{busybox_image}/get")
    assert status == 200 and headers["Content-Type"] == "application/x-tar"
    status, _, body = whaled.request("GET", f"{API}/images/get?names=busybox&names=busybox")
    assert status == 200 and len(body) == len(archive)
    whaled.request("DELETE", f"{API}/images/{busybox_image}")

    status, headers, body = whaled.request("POST", f"{API}/images/load?quiet=1", archive)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == b'{"stream":"Loaded image: busybox:latest\\n"}\r\n'

    whaled.request("DELETE", f"{API}/images/{busybox_image}")
    status, _, body = whaled.request("POST", f"{API}/images/load?quiet=0", archive)
    assert status == 200
    messages = json_lines(body)
    progress = [m for m in messages if m.get("status") == "Loading layer"]
    assert progress, messages
    last = progress[-1]["progressDetail"]
    assert last["current"] == last["total"] and len(progress[-1]["id"]) == 12
    assert messages[-1] == {"stream": "Loaded image: busybox:latest\n"}


def test_docker_py_save_and_load(docker_client: Any, busybox_image: str) -> None:
    image = docker_client.images.get(busybox_image)
    data = b"".join(image.save(named=True))
    docker_client.images.remove(busybox_image)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(busybox_image)
    (loaded,) = docker_client.images.load(data)
    assert loaded.id == image.id and loaded.tags == ["busybox:latest"]


def test_load_garbage_is_an_error_in_the_stream(whaled: WhaledProcess) -> None:
    # dockerd answers 200 before reading the archive; the error is an in-stream message.
    status, _, body = whaled.request("POST", f"{API}/images/load?quiet=1", b"not a tar" * 1000)
    assert status == 200, body
    (error,) = json_lines(body)
    assert error["error"] and error["errorDetail"] == {"message": error["error"]}


# ------------------------------------------------------------------ hostile tars


def _hostile_layers(marker_dir: str) -> dict[str, bytes]:
    escape = "../" * 24 + marker_dir.lstrip("/") + "/dotdot"
    return {
        "dotdot": tb.build([tb.reg("ok", b"fine"), tb.reg(escape, b"pwned")]),
        "absolute": tb.build([tb.reg(marker_dir + "/absolute", b"pwned")]),
        "symlink": tb.build([tb.sym("link", marker_dir), tb.reg("link/through-symlink", b"pwned")]),
    }


def _docker_archive(layer: bytes) -> bytes:
    diff_id = tb.digest(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "created": "2024-01-01T00:00:00Z",
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "test"}],
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    config_name = tb.digest(config).removeprefix("sha256:") + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": ["evil:latest"], "Layers": ["layer/layer.tar"]}]
    ).encode()
    return tb.build(
        [
            tb.reg("manifest.json", manifest),
            tb.reg(config_name, config),
            tb.dir_("layer"),
            tb.reg("layer/layer.tar", layer),
        ]
    )


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_hostile_tar_refused_by_import_and_load(
    whaled: WhaledProcess, docker_cli: DockerCLI, tmp_path: Any, kind: str
) -> None:
    marker = f"/tmp/whaled-escape-{uuid.uuid4().hex}"
    os.mkdir(marker)
    try:
        layer = _hostile_layers(marker)[kind]
        dirs_before = layer_dirs(whaled)

        status, _, body = whaled.request("POST", f"{API}/images/create?fromSrc=-&repo=evil", layer)
        assert status == 400, body
        assert "refusing" in json.loads(body)["message"]

        status, _, body = whaled.request(
            "POST", f"{API}/images/load?quiet=1", _docker_archive(layer)
        )
        assert status == 200, body
        assert "refusing" in json_lines(body)[-1]["error"]

        path = tmp_path / "evil.tar"
        path.write_bytes(layer)
        done = docker_cli.run("import", str(path), "evil:cli", check=False)
        assert done.returncode != 0 and "refusing" in done.stderr
        path.write_bytes(_docker_archive(layer))
        done = docker_cli.run("load", "-i", str(path), check=False)
        assert done.returncode != 0 and "refusing" in done.stderr

        assert os.listdir(marker) == []
        assert not any(os.path.exists(os.path.join(d, "dotdot")) for d in ("/", "/tmp"))
        assert json.loads(whaled.request("GET", f"{API}/images/json")[2]) == []
        assert layer_dirs(whaled) == dirs_before  # no partial layer left behind
    finally:
        for name in os.listdir(marker):
            os.unlink(os.path.join(marker, name))
        os.rmdir(marker)


def test_hostile_outer_archive_refused(whaled: WhaledProcess) -> None:
    marker = f"whaled-escape-{uuid.uuid4().hex}"
    evil = tb.build([tb.reg("../" * 24 + "tmp/" + marker, b"pwned")])
    status, _, body = whaled.request("POST", f"{API}/images/load?quiet=1", evil)
    assert status == 200, body
    assert json_lines(body)[-1]["errorDetail"]["message"]
    assert not os.path.exists("/tmp/" + marker)


# ------------------------------------------------------------------ df / info / events


def test_system_df_and_info(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    docker_cli.run("tag", busybox_image, "copy:1")
    status, _, body = whaled.request("GET", f"{API}/system/df")
    assert status == 200
    df = json.loads(body)
    (row,) = df["Images"]
    assert df["LayersSize"] == row["Size"] > 0
    assert row["Containers"] == 0 and row["SharedSize"] == 0
    assert sorted(row["RepoTags"]) == ["busybox:latest", "copy:1"]
    assert df["Containers"] == [] and df["Volumes"] == [] and df["BuildCache"] == []
    only = json.loads(whaled.request("GET", f"{API}/system/df?type=image")[2])
    assert only["Containers"] is None and len(only["Images"]) == 1
    assert whaled.request("GET", f"{API}/system/df?type=nope")[0] == 400

    rows = docker_cli.run("system", "df", "--format", "{{json .}}").stdout.splitlines()
    images_row = next(json.loads(r) for r in rows if json.loads(r)["Type"] == "Images")
    assert images_row["TotalCount"] == "1" and images_row["Active"] == "0"
    assert docker_cli.run("info", "--format", "{{.Images}}").stdout.strip() == "1"


def test_image_events(whaled: WhaledProcess, docker_api: Any, busybox_tar: str) -> None:
    since = time.time() - 1
    ident = whaled.import_image(busybox_tar, "busybox:latest")
    query = urlencode([("fromSrc", "-"), ("repo", "lab"), ("changes", "LABEL team=x")])
    with open(busybox_tar, "rb") as f:
        status, _, body = whaled.request("POST", f"{API}/images/create?{query}", f.read())
    assert status == 200, body
    labelled = json_lines(body)[-1]["status"]
    assert whaled.request("POST", f"{API}/images/busybox/tag?repo=evt&tag=1")[0] == 201
    status, _, archive = whaled.request("GET", f"{API}/images/evt:1/get")
    assert status == 200
    assert whaled.request("DELETE", f"{API}/images/evt:1")[0] == 200
    assert whaled.request("DELETE", f"{API}/images/busybox")[0] == 200
    assert whaled.request("POST", f"{API}/images/load", archive)[0] == 200
    until = time.time() + 1
    events = list(docker_api.events(since=since, until=until, decode=True))
    seen = [(e["Type"], e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"]) for e in events]
    assert ("image", "import", ident, {"name": ident}) in seen
    assert ("image", "tag", ident, {"name": "evt:1"}) in seen
    assert ("image", "save", ident, {"name": "evt:1"}) in seen
    assert ("image", "untag", ident, {"name": ident}) in seen
    assert ("image", "delete", ident, {"name": ident}) in seen
    assert ("image", "load", ident, {"name": "evt:1"}) in seen
    # Labels of the image travel with its events, as in dockerd.
    assert ("image", "import", labelled, {"name": labelled, "team": "x"}) in seen
    actions = [a for (t, a, i, _) in seen if t == "image"]
    assert actions.index("import") < actions.index("tag") < actions.index("delete")
    filtered = list(
        docker_api.events(since=since, until=until, decode=True, filters={"event": "tag"})
    )
    assert [e["Action"] for e in filtered] == ["tag"]


def test_load_streams_a_large_body(whaled: WhaledProcess, tmp_path: Any) -> None:
    """A 64 MiB layer goes through without the daemon holding the body in memory."""
    payload = os.urandom(1 << 20) * 64
    layer = tb.build([tb.reg("big.bin", payload)])
    archive = _docker_archive(layer)
    del payload, layer

    def peak_kib() -> int:
        with open(f"/proc/{whaled.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM")

    before = peak_kib()
    status, _, body = whaled.request("POST", f"{API}/images/load?quiet=1", archive, timeout=120)
    assert status == 200, body
    assert json_lines(body) == [{"stream": "Loaded image: evil:latest\n"}]
    grown_mib = (peak_kib() - before) / 1024
    assert grown_mib < 40, f"daemon peak memory grew by {grown_mib:.0f} MiB"
    info = json.loads(whaled.request("GET", f"{API}/images/evil/json")[2])
    assert info["Size"] >= 64 << 20


def test_hostile_layer_mid_stream_error(whaled: WhaledProcess) -> None:
    """Without ``quiet`` the layer progress is already out when the bad entry is reached:
    the refusal arrives as dockerd's in-stream error message (status 200 already sent)."""
    marker = f"/tmp/whaled-escape-{uuid.uuid4().hex}"
    pad = os.urandom(4 << 20)
    layer = tb.build([tb.reg("pad", pad), tb.reg("../" * 24 + marker.lstrip("/"), b"pwned")])
    status, _, body = whaled.request("POST", f"{API}/images/load?quiet=0", _docker_archive(layer))
    assert status == 200
    messages = json_lines(body)
    assert messages[0]["status"] == "Loading layer"
    last = messages[-1]
    assert "refusing" in last["error"] and last["errorDetail"] == {"message": last["error"]}
    assert not os.path.exists(marker)
    assert json.loads(whaled.request("GET", f"{API}/images/json")[2]) == []


def test_list_filters(whaled: WhaledProcess, docker_cli: DockerCLI, busybox_tar: str) -> None:
    whaled.import_image(busybox_tar, "busybox:latest")
    time.sleep(1.1)  # Created has one-second resolution
    query = urlencode({"fromSrc": "-", "repo": "other/app", "tag": "1", "message": "x"})
    with open(busybox_tar, "rb") as f:
        assert whaled.request("POST", f"{API}/images/create?{query}", f.read())[0] == 200

    def names(*args: str) -> list[str]:
        out = docker_cli.run("images", "--format", "{{.Repository}}:{{.Tag}}", *args).stdout
        return out.split()

    assert names() == ["other/app:1", "busybox:latest"]
    assert names("--filter", "reference=busy*") == ["busybox:latest"]
    assert names("--filter", "reference=*/app") == ["other/app:1"]
    assert names("--filter", "before=other/app:1") == ["busybox:latest"]
    assert names("--filter", "since=busybox") == ["other/app:1"]
    assert names("--filter", "dangling=true") == []
    done = docker_cli.run("images", "--filter", "bogus=1", check=False)
    assert done.returncode != 0 and "invalid filter 'bogus'" in done.stderr
    legacy = json.loads(whaled.request("GET", "/v1.40/images/json?filter=busybox")[2])
    assert [r["RepoTags"] for r in legacy] == [["busybox:latest"]]
