"""Compose v1 (Debian's ``docker-compose`` 1.29, installed by ``make``) drives whaled as it
drives dockerd: a project with a ``build:`` service (a Dockerfile with a healthcheck), an
``image:`` service from a registry the test runs on 127.0.0.1, a user network with aliases,
a named volume, published ports, ``depends_on`` with ``service_healthy``, environment and an
env file, ``restart:`` and labels; then the commands users type, and ``down -v --rmi
local`` leaves nothing of the project behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dockercli import DockerCLI
from tests.support.registry import RegistryProcess, push_image, registry_available
from tests.support.whaled_proc import WhaledProcess

COMPOSE = shutil.which("docker-compose")
PROJECT = "wtproj"

COMPOSE_FILE = """\
version: "3.8"
services:
  db:
    image: {registry}/t/busybox:1
    command: sh -c 'echo db-ready > /data/state; while true; do echo pong | nc -l -p 5000; done'
    volumes:
      - dbdata:/data
    networks:
      back:
        aliases: [database]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/state"]
      interval: 1s
      retries: 30
    labels:
      app.role: db
    stop_grace_period: 1s
  web:
    build: ./app
    depends_on:
      db:
        condition: service_healthy
    environment:
      MODE: test
    env_file: web.env
    ports:
      - "127.0.0.1::8080"
    networks: [back]
    restart: unless-stopped
    stop_grace_period: 1s
volumes:
  dbdata:
networks:
  back:
    ipam:
      config:
        - subnet: 10.213.30.0/24
"""

DOCKERFILE = """\
FROM busybox:latest
RUN mkdir /www && echo web-page > /www/index.html
HEALTHCHECK --interval=1s CMD wget -qO- http://127.0.0.1:8080/ >/dev/null || exit 1
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""


@pytest.fixture
def project(
    whaled: WhaledProcess, busybox_image: str, busybox_tar: str, tmp_path: Path
) -> Iterator[tuple[Path, dict[str, str]]]:
    if COMPOSE is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    reg = RegistryProcess(root=tmp_path / "registry").start()
    try:
        push_image(reg.uploader(), "t/busybox", "1", tars=[Path(busybox_tar).read_bytes()])
        root = tmp_path / "proj"
        (root / "app").mkdir(parents=True)
        (root / "docker-compose.yml").write_text(COMPOSE_FILE.format(registry=reg.host))
        (root / "app" / "Dockerfile").write_text(DOCKERFILE)
        (root / "web.env").write_text("FROM_FILE=yes\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
        env["DOCKER_HOST"] = f"unix://{whaled.sock}"
        yield root, env
    finally:
        reg.stop()


def _dc(project: tuple[Path, dict[str, str]], *args: str, check: bool = True) -> str:
    root, env = project
    assert COMPOSE is not None
    done = subprocess.run(
        [COMPOSE, "-p", PROJECT, *args], cwd=root, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def _wait_healthy(cli: DockerCLI, name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = json.loads(cli.run("inspect", name).stdout)[0]["State"]
        if (state.get("Health") or {}).get("Status") == "healthy":
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} never became healthy")


def _web(cli: DockerCLI, name: str) -> bytes:
    ports = json.loads(cli.run("inspect", name).stdout)[0]["NetworkSettings"]["Ports"]
    (binding,) = ports["8080/tcp"]
    assert binding["HostIp"] == "127.0.0.1"
    url = f"http://127.0.0.1:{binding['HostPort']}/index.html"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body


def test_a_compose_project_from_up_to_down(
    project: tuple[Path, dict[str, str]], whaled: WhaledProcess, docker_cli: DockerCLI
) -> None:
    cli = docker_cli
    assert "dbdata" in _dc(project, "config")
    _dc(project, "up", "-d")
    ps = _dc(project, "ps")
    assert "wtproj_db_1" in ps and "Up (healthy)" in ps and "wtproj_web_1" in ps
    _wait_healthy(cli, "wtproj_web_1")
    assert _web(cli, "wtproj_web_1") == b"web-page\n"

    # the web service reaches the database by its alias on the project network
    assert _dc(project, "exec", "-T", "web", "nc", "-w", "5", "database", "5000") == "pong\n"
    env = _dc(project, "exec", "-T", "web", "env")
    assert "MODE=test" in env and "FROM_FILE=yes" in env
    assert _dc(project, "run", "--rm", "-T", "db", "cat", "/data/state") == "db-ready\n"
    labels = json.loads(cli.run("inspect", "wtproj_db_1").stdout)[0]["Config"]["Labels"]
    assert labels["app.role"] == "db" and labels["com.docker.compose.project"] == PROJECT

    # logs -f follows until the test stops it
    root, env_vars = project
    assert COMPOSE is not None
    follower = subprocess.Popen(
        [COMPOSE, "-p", PROJECT, "logs", "-f", "--no-color", "web"], cwd=root, env=env_vars,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        time.sleep(1)
        assert follower.poll() is None  # still following
    finally:
        follower.terminate()
        follower.wait(10)

    _dc(project, "up", "-d", "--scale", "web=3")
    assert len(cli.run("ps", "-q", "--filter", "label=com.docker.compose.service=web")
               .stdout.split()) == 3  # fmt: skip
    for i in (1, 2, 3):
        _wait_healthy(cli, f"wtproj_web_{i}")
        assert _web(cli, f"wtproj_web_{i}") == b"web-page\n"
    _dc(project, "up", "-d", "--scale", "web=1")
    _dc(project, "restart", "web")
    _dc(project, "stop")
    assert "Exit" in _dc(project, "ps")
    _dc(project, "start")
    _wait_healthy(cli, "wtproj_web_1")
    assert _web(cli, "wtproj_web_1") == b"web-page\n"

    _dc(project, "down", "-v", "--rmi", "local")
    by_label = ["--filter", f"label=com.docker.compose.project={PROJECT}"]
    assert cli.run("ps", "-aq", *by_label).stdout.strip() == ""
    assert cli.run("network", "ls", "-q", *by_label).stdout.strip() == ""
    assert cli.run("volume", "ls", "-q", *by_label).stdout.strip() == ""
    assert cli.run("images", "-q", "wtproj_web").stdout.strip() == ""
