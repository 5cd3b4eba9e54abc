"""``docker build`` on a real whaled (dockerd's legacy builder behind ``POST /build``): the
CLI installed here (no BuildKit plugin) and docker-py, a multi-stage Dockerfile, the build
cache, ``.dockerignore``, build args and targets, and failures that leave nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from tests.support.dockercli import DockerCLI
from tests.support.registry import RegistryProcess, push_image, registry_available
from tests.support.whaled_proc import WhaledProcess, mounts_under

DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox:latest
FROM $BASE AS base
ARG GREETING=hello
ENV APP=/app NAME="whaled builder"
WORKDIR $APP
COPY files/ ./
RUN echo "$GREETING from $NAME" > greeting && ls
LABEL stage=base

FROM base
COPY --from=base /app/greeting /final/greeting
ADD bundle.tar /unpacked/
USER 1000
EXPOSE 8080/tcp
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=1s --retries=2 CMD test -f /final/greeting
ENTRYPOINT ["cat"]
CMD ["/final/greeting"]
"""


def _context(tmp: Path, dockerfile: str = DOCKERFILE) -> Path:
    ctx = tmp / "ctx"
    (ctx / "files").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "files" / "a.txt").write_text("one\n")
    (ctx / "files" / "b.log").write_text("ignored\n")
    (ctx / "files" / "keep.log").write_text("kept\n")
    (ctx / ".dockerignore").write_text("files/*.log\n!files/keep.log\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("inside.txt")
        data = b"from a tar\n"
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    (ctx / "bundle.tar").write_bytes(buf.getvalue())
    return ctx


def _inspect(cli: DockerCLI, ref: str) -> Any:
    return json.loads(cli.run("image", "inspect", ref).stdout)[0]


def test_cli_builds_a_multi_stage_dockerfile_and_caches_it(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    cli = docker_cli
    ctx = _context(tmp_path)
    out = cli.run("build", "-t", "built:1", "--build-arg", "GREETING=hi", str(ctx))
    text = out.stdout + out.stderr
    assert "Step 1/17 : ARG BASE=busybox:latest" in text, text
    assert "Successfully built" in text and "Successfully tagged built:1" in text, text
    assert "a.txt" in text and "keep.log" in text and "b.log" not in text  # ls, .dockerignore
    assert "Removing intermediate container" in text

    info = _inspect(cli, "built:1")
    config = info["Config"]
    assert config["User"] == "1000" and config["WorkingDir"] == "/app"
    assert config["Entrypoint"] == ["cat"] and config["Cmd"] == ["/final/greeting"]
    assert config["ExposedPorts"] == {"8080/tcp": {}} and config["StopSignal"] == "SIGUSR1"
    assert config["Labels"] == {"stage": "base"}
    assert "APP=/app" in config["Env"] and "NAME=whaled builder" in config["Env"]
    assert config["Healthcheck"]["Test"] == ["CMD-SHELL", "test -f /final/greeting"]
    assert cli.run("run", "--rm", "built:1").stdout == "hi from whaled builder\n"
    assert cli.run(
        "run", "--rm", "--entrypoint", "cat", "built:1", "/unpacked/inside.txt"
    ).stdout == "from a tar\n"  # fmt: skip
    history = json.loads(cli.run("history", "--no-trunc", "--format", "{{json .}}", "built:1")
                         .stdout.splitlines()[0])  # fmt: skip
    assert "CMD" in history["CreatedBy"]

    # fully cached the second time; one changed file invalidates from its COPY on
    again = cli.run("build", "-t", "built:2", "--build-arg", "GREETING=hi", str(ctx)).stdout
    assert again.count("Using cache") == 14, again  # all but the meta ARG and the FROMs
    assert _inspect(cli, "built:2")["Id"] == info["Id"]
    (ctx / "files" / "a.txt").write_text("two\n")
    changed = cli.run("build", "--build-arg", "GREETING=hi", str(ctx)).stdout
    assert changed.count("Using cache") == 3, changed  # ARG, ENV, WORKDIR
    # a different build arg: RUN runs again
    other = cli.run("build", "-q", "--build-arg", "GREETING=yo", str(ctx)).stdout.strip()
    assert cli.run("run", "--rm", other).stdout == "yo from whaled builder\n"
    nocache = cli.run("build", "--no-cache", "--build-arg", "GREETING=hi", str(ctx)).stdout
    assert "Using cache" not in nocache
    # --target stops at a stage
    cli.run("build", "--target", "base", "-t", "built:base", str(ctx))
    assert _inspect(cli, "built:base")["Config"]["Labels"] == {"stage": "base"}
    assert _inspect(cli, "built:base")["Config"]["Entrypoint"] is None


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        ("FROM busybox:latest\nRUN exit 3\n",
         "The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        ("FROM busybox:latest\nFROBNICATE x\n", "unknown instruction: FROBNICATE"),
        ("FROM busybox:latest\nCOPY missing.txt /\n", "missing.txt: file does not exist"),
        ("FROM busybox:latest\nRUN --mount=type=cache,target=/x true\n", "needs BuildKit"),
    ],
)  # fmt: skip
def test_failures_say_why_and_leave_nothing(
    whaled: WhaledProcess,
    docker_cli: DockerCLI,
    busybox_image: str,
    tmp_path: Path,
    dockerfile: str,
    message: str,
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    failed = docker_cli.run("build", "-t", "broken:1", str(ctx), check=False)
    assert failed.returncode == 1, failed
    assert message in failed.stderr + failed.stdout, failed
    assert docker_cli.run("ps", "-aq").stdout.strip() == ""
    assert docker_cli.run("images", "-q", "broken:1").stdout.strip() == ""
    _only_kept_contexts(whaled, docker_cli)
    assert not mounts_under(whaled.root)  # no container rootfs left mounted


def _only_kept_contexts(whaled: WhaledProcess, cli: DockerCLI) -> None:
    """The builder's temp directory holds nothing but contexts kept for the next build,
    and ``docker builder prune`` removes those."""
    tmp = Path(whaled.data_root) / "builder" / "tmp"
    left = sorted(p.name for p in tmp.iterdir())
    assert all(name.startswith("context-") for name in left), left
    out = cli.run("builder", "prune", "-f").stdout
    assert all(name in out for name in left), (left, out)
    assert not list(tmp.iterdir())


def test_docker_py_build(whaled: WhaledProcess, busybox_image: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox:latest AS one\nARG WHO\nRUN echo $WHO > /who\n"
        "FROM one AS two\nRUN cat /etc/hosts > /hosts\n"
    )
    client = whaled.client()
    image, logs = client.images.build(
        path=str(ctx), tag="py:1", buildargs={"WHO": "docker-py"}, labels={"via": "py"},
        target="two", extra_hosts={"buildhost": "10.9.8.7"}, rm=True,
    )  # fmt: skip
    assert image.labels == {"via": "py"}
    assert any("Successfully built" in str(chunk.get("stream", "")) for chunk in logs)
    out = client.containers.run("py:1", ["cat", "/who", "/hosts"], remove=True).decode()
    assert out.startswith("docker-py\n") and "10.9.8.7\tbuildhost" in out
    with pytest.raises(docker.errors.BuildError, match="non-zero code: 1"):
        client.images.build(fileobj=io.BytesIO(b"FROM busybox:latest\nRUN false\n"))


def test_dockerfile_outside_the_context_and_context_from_stdin(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.txt").write_text("data\n")
    outside = tmp_path / "elsewhere.Dockerfile"
    outside.write_text("FROM busybox:latest\nCOPY data.txt /data.txt\nCMD cat /data.txt\n")
    docker_cli.run("build", "-f", str(outside), "-t", "outside:1", str(ctx))
    assert docker_cli.run("run", "--rm", "outside:1").stdout == "data\n"

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in (("Dockerfile", "FROM busybox:latest\nCOPY x /x\n"), ("x", "x\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tf.addfile(info, io.BytesIO(text.encode()))
    docker_cli.run_bytes("build", "-t", "stdin:1", "-", input=buf.getvalue())
    assert docker_cli.run("run", "--rm", "stdin:1", "cat", "/x").stdout == "x\n"


def test_scratch_image_from_a_static_binary(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    """``FROM scratch`` + ``COPY``: the files are the image's first layer."""
    ctx = tmp_path / "ctx"
    (ctx / "etc").mkdir(parents=True)
    shutil.copy("/bin/busybox", ctx / "busybox")
    (ctx / "etc" / "motd").write_text("scratch\n")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY etc /etc/\n"
        'ENTRYPOINT ["/bin/busybox"]\nCMD ["cat", "/etc/motd"]\n'
    )
    docker_cli.run("build", "-t", "scratchy:1", str(ctx))
    assert docker_cli.run("run", "--rm", "--network", "none", "scratchy:1").stdout == "scratch\n"
    info = _inspect(docker_cli, "scratchy:1")
    assert len(info["RootFS"]["Layers"]) == 2


def test_a_missing_from_image_is_pulled(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_tar: str, tmp_path: Path
) -> None:
    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    reg = RegistryProcess(root=tmp_path / "registry").start()
    try:
        push_image(reg.uploader(), "t/base", "1", tars=[Path(busybox_tar).read_bytes()])
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {reg.host}/t/base:1\nRUN echo pulled > /p\n")
        out = docker_cli.run("build", "-t", "frompull:1", str(ctx)).stdout
        assert "Pulling from t/base" in out or "Pull complete" in out, out
        assert docker_cli.run("run", "--rm", "frompull:1", "cat", "/p").stdout == "pulled\n"
        assert docker_cli.run("images", "-q", f"{reg.host}/t/base:1").stdout.strip()
    finally:
        reg.stop()


def test_a_client_that_goes_away_cancels_the_build(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        text = b"FROM busybox:latest\nRUN echo started; sleep 60\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(text)
        tf.addfile(info, io.BytesIO(text))
    body = buf.getvalue()
    conn = whaled.connection(timeout=30)
    conn.putrequest("POST", "/v1.45/build?t=gone:1")
    conn.putheader("Content-Type", "application/x-tar")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    seen = b""
    while b"Running in" not in seen:
        chunk = resp.read1(4096)
        assert chunk, seen
        seen += chunk
    conn.close()  # the client is gone mid-RUN
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and docker_cli.run("ps", "-aq").stdout.strip():
        time.sleep(0.2)
    assert docker_cli.run("ps", "-aq").stdout.strip() == ""
    assert docker_cli.run("images", "-q", "gone:1").stdout.strip() == ""
    assert not list((Path(whaled.data_root) / "builder" / "tmp").iterdir())


def test_copy_chown_by_name_and_id(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("f\n")
    (ctx / "Dockerfile").write_text(
        "FROM busybox:latest\nCOPY --chown=test:extra f /by-name\n"
        "COPY --chown=123:456 f /by-id\nCOPY --chown=nobody f /user-only\nCOPY f /default\n"
    )
    docker_cli.run("build", "-t", "owned:1", str(ctx))
    out = docker_cli.run(
        "run", "--rm", "owned:1", "stat", "-c", "%n %u:%g", "/by-name", "/by-id", "/user-only",
        "/default",
    ).stdout.split("\n")  # fmt: skip
    assert out[:4] == ["/by-name 1000:2000", "/by-id 123:456", "/user-only 65534:65534",
                       "/default 0:0"]  # fmt: skip
    ctx2 = tmp_path / "ctx2"
    ctx2.mkdir()
    (ctx2 / "f").write_text("f\n")
    (ctx2 / "Dockerfile").write_text("FROM busybox:latest\nCOPY --chown=nosuchuser f /x\n")
    failed = docker_cli.run("build", str(ctx2), check=False)
    assert failed.returncode == 1 and "unable to convert uid/gid chown string" in failed.stderr


class _Files:
    """A web server on 127.0.0.1 serving fixed files (with a Last-Modified time)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = files.get(self.path.split("?", 1)[0])  # (git asks info/refs?service=)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _tar_gz(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tf.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def test_add_of_a_url_and_remote_contexts(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    server = _Files({
        "/file.txt": b"fetched\n",
        "/ctx.tar.gz": _tar_gz({"Dockerfile": "FROM busybox:latest\nCOPY in.txt /in.txt\n",
                                "in.txt": "from a remote context\n"}),
        "/Dockerfile": b"FROM busybox:latest\nRUN echo plain-dockerfile > /p\n",
    })  # fmt: skip
    try:
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            f"FROM busybox:latest\nADD {server.base}/file.txt /downloaded/\n"
        )
        docker_cli.run("build", "-t", "added:1", str(ctx))
        out = docker_cli.run(
            "run", "--rm", "added:1", "stat", "-c", "%a %Y", "/downloaded/file.txt"
        ).stdout.split()  # fmt: skip
        assert out == ["600", "1445412480"]  # 0600 and the Last-Modified time
        assert docker_cli.run("run", "--rm", "added:1", "cat", "/downloaded/file.txt").stdout == (
            "fetched\n"
        )

        docker_cli.run("build", "-t", "remote:1", f"{server.base}/ctx.tar.gz")
        assert docker_cli.run("run", "--rm", "remote:1", "cat", "/in.txt").stdout == (
            "from a remote context\n"
        )
        docker_cli.run("build", "-t", "remote:2", f"{server.base}/Dockerfile")
        assert docker_cli.run("run", "--rm", "remote:2", "cat", "/p").stdout == "plain-dockerfile\n"
        missing = docker_cli.run("build", f"{server.base}/nothing.tar", check=False)
        assert missing.returncode != 0 and "404" in missing.stderr
    finally:
        server.close()


def test_copy_never_follows_a_link_out_of_the_context(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    """Links among COPY's sources are followed inside the context, as dockerd does: an
    absolute target is the context's file, never the host's."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.txt").write_text("inside\n")
    (ctx / "inside-link").symlink_to("data.txt")
    (ctx / "abs-link").symlink_to("/data.txt")  # the context's /data.txt
    (ctx / "host-etc").symlink_to("/etc")  # the context has no etc/
    (ctx / "Dockerfile").write_text("FROM busybox:latest\nCOPY inside-link abs-link /copied/\n")
    docker_cli.run("build", "-t", "links:1", str(ctx))
    out = docker_cli.run(
        "run", "--rm", "links:1", "cat", "/copied/inside-link", "/copied/abs-link"
    ).stdout  # fmt: skip
    assert out == "inside\ninside\n"  # followed inside the context, named as the source
    (ctx / "Dockerfile").write_text("FROM busybox:latest\nCOPY host-etc /leak/\n")
    refused = docker_cli.run("build", str(ctx), check=False)
    assert refused.returncode == 1 and "host-etc: file does not exist" in refused.stderr


def test_docker_py_low_level_build_with_a_custom_context(
    whaled: WhaledProcess, busybox_image: str
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        text = b"FROM busybox:latest\nRUN df -k /dev/shm | tail -1 > /shm\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(text)
        tf.addfile(info, io.BytesIO(text))
    buf.seek(0)
    api = whaled.api()
    stream = api.build(
        fileobj=buf, custom_context=True, encoding="gzip", tag="lowlevel:1", decode=True,
        shmsize=32 * 1024 * 1024, platform="linux/amd64", rm=True, forcerm=True,
    )  # fmt: skip
    messages = list(stream)
    assert any("aux" in m for m in messages), messages
    out = whaled.client().containers.run("lowlevel:1", ["cat", "/shm"], remove=True).decode()
    assert out.split()[1] == "32768", out  # the RUN had the 32 MiB /dev/shm asked for
    with pytest.raises(docker.errors.APIError, match="cannot be built here"):
        list(api.build(fileobj=io.BytesIO(b"FROM busybox:latest\n"), platform="linux/s390x",
                       decode=True))  # fmt: skip


def test_builder_prune_removes_the_kept_contexts(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    out = docker_cli.run("builder", "prune", "-f")
    assert "Total reclaimed space: 0B" in out.stdout, out
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox:latest\nCOPY big /\n")
    (ctx / "big").write_bytes(b"x" * 300_000)
    docker_cli.run("build", "-q", str(ctx))
    tmp = Path(whaled.data_root) / "builder" / "tmp"
    (kept,) = [p.name for p in tmp.iterdir()]
    df = [json.loads(line) for line in
          docker_cli.run("system", "df", "--format", "{{json .}}").stdout.splitlines()]  # fmt: skip
    (cache,) = [row for row in df if row["Type"] == "Build Cache"]
    assert cache["TotalCount"] == "1" and cache["Size"].startswith("300"), df
    verbose = docker_cli.run("system", "df", "-v").stdout
    assert kept[:12] in verbose and "source.local" in verbose, verbose
    out = docker_cli.run("builder", "prune", "-f")
    assert "Deleted build cache objects:" in out.stdout and kept in out.stdout, out
    assert "Total reclaimed space: 300" in out.stdout, out  # 300kB (and the Dockerfile)
    assert not list(tmp.iterdir())
    bad = docker_cli.run("builder", "prune", "-f", "--filter", "bogus=1", check=False)
    assert bad.returncode != 0 and "is invalid" in bad.stderr


def test_run_after_volume_discards_what_it_writes_there(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    """As on dockerd: once a path is a VOLUME, what a later RUN writes there is discarded
    (the RUN container has an anonymous volume there, removed with it)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox:latest\nRUN mkdir /v && echo before > /v/a\nVOLUME /v\n"
        "RUN echo after > /v/b && echo outside > /o\n"
    )
    docker_cli.run("build", "-t", "vol:1", str(ctx))
    out = docker_cli.run("run", "--rm", "vol:1", "sh", "-c", "ls /v; cat /o").stdout
    assert out == "a\noutside\n"
    assert docker_cli.run("volume", "ls", "-q").stdout.strip() == ""


def _bare_repo(tmp: Path) -> dict[str, bytes]:
    """A repository with a Dockerfile on ``main`` and another in ``app/`` of branch
    ``feature``, as the files of a bare repository served over git's dumb HTTP."""
    env = {"HOME": str(tmp), "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    work = tmp / "work"

    def git(*args: str, cwd: Path = work) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    work.mkdir()
    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    (work / "Dockerfile").write_text("FROM busybox:latest\nCOPY top.txt /got\n")
    (work / "top.txt").write_text("from main\n")
    git("add", ".")
    git("commit", "-q", "-m", "main")
    git("checkout", "-q", "-b", "feature")
    (work / "app").mkdir()
    (work / "app" / "Dockerfile").write_text("FROM busybox:latest\nCOPY sub.txt /got\n")
    (work / "app" / "sub.txt").write_text("from feature:app\n")
    git("add", ".")
    git("commit", "-q", "-m", "feature")
    git("clone", "-q", "--bare", str(work), str(tmp / "repo.git"), cwd=tmp)
    git("update-server-info", cwd=tmp / "repo.git")
    files = {}
    for path in (tmp / "repo.git").rglob("*"):
        if path.is_file():
            files["/repo.git/" + str(path.relative_to(tmp / "repo.git"))] = path.read_bytes()
    return files


def test_git_contexts_are_cloned_at_their_ref_and_directory(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    """docker-py sends a git URL as ``remote`` (the CLI clones by itself): the daemon
    fetches it (here over git's dumb HTTP, which cannot do shallow fetches), checks out
    ``#ref:subdir`` and builds from there."""
    server = _Files(_bare_repo(tmp_path))
    api = docker.APIClient(base_url="unix://" + whaled.sock, version="1.41")
    try:
        for url, tag, expected in (
            (f"{server.base}/repo.git", "git:main", "from main\n"),
            (f"{server.base}/repo.git#feature:app", "git:app", "from feature:app\n"),
        ):
            out = list(api.build(path=url, tag=tag, decode=True, rm=True))
            assert any("aux" in line for line in out), out
            got = docker_cli.run("run", "--rm", tag, "cat", "/got").stdout
            assert got == expected
        with pytest.raises(docker.errors.APIError) as nowhere:
            list(api.build(path=f"{server.base}/repo.git#feature:nowhere", decode=True))
        assert nowhere.value.status_code == 400
        assert "path 'nowhere' not found in the repository" in str(nowhere.value)
        with pytest.raises(docker.errors.APIError) as missing:
            list(api.build(path=f"{server.base}/missing.git", decode=True))
        assert "unable to 'git clone'" in str(missing.value)
    finally:
        api.close()
        server.close()


def test_a_rebuild_reuses_kept_context_files_only_when_every_byte_is_the_same(
    whaled: WhaledProcess, docker_cli: DockerCLI, busybox_image: str, tmp_path: Path
) -> None:
    """The CLI sends whole-second mtimes: a file edited in place keeps its size and (here,
    set back on purpose) its mtime, and the rebuild must still see the new bytes."""
    ctx = tmp_path / "ctx"
    (ctx / "data").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(
        'FROM busybox:latest\nCOPY data /data/\nRUN md5sum /data/big\nCMD ["md5sum", "/data/big"]\n'
    )
    big = bytearray(os.urandom(3 << 20))
    stamp = 1_700_000_000

    def write(data: bytes) -> None:
        (ctx / "data" / "big").write_bytes(data)
        (ctx / "data" / "small").write_bytes(b"abc\n")
        for f in (ctx / "data").iterdir():
            os.utime(f, (stamp, stamp))

    write(big)
    first = docker_cli.run("build", "-q", str(ctx)).stdout.strip()
    again = docker_cli.run("build", str(ctx)).stdout
    assert again.count("Using cache") == 3 and first[7:19] in again, again
    big[2 << 20] ^= 0xFF  # one byte, in the middle of the second MiB read
    write(big)
    changed = docker_cli.run("build", str(ctx)).stdout
    assert "Using cache" not in changed, changed
    image = changed.split("Successfully built ")[1].split()[0]
    out = docker_cli.run("run", "--rm", image).stdout
    assert out.split()[0] == hashlib.md5(bytes(big)).hexdigest(), out
