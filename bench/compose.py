"""The ``compose`` group: ``docker-compose up -d`` (Compose v1, Debian's 1.29) of a small
project until every service is healthy, then ``down -v``, timed on each engine. The project
has a database service with a healthcheck, a web service built from a Dockerfile that
depends on it being healthy, a user network with an alias, a named volume and a published
port. Each sample also reads ``docker-compose ps`` and the web service's answer, and the log
says whether both engines gave the same (the side-by-side check of the clients issue)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from typing import Any

from bench.client import Client
from bench.figures import Ctx, FigureSpec, Interleaved, Params, Samples, _require_containers

PROJECT = "wbcompose"
COMPOSE_FILE = """\
version: "3.8"
services:
  db:
    image: busybox:latest
    command: sh -c 'echo ok > /data/state; while true; do echo pong | nc -l -p 5000; done'
    volumes: [dbdata:/data]
    networks:
      back:
        aliases: [database]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/state"]
      interval: 1s
    stop_grace_period: 1s
  web:
    build: ./app
    depends_on:
      db:
        condition: service_healthy
    ports: ["127.0.0.1::8080"]
    networks: [back]
    stop_grace_period: 1s
volumes:
  dbdata:
networks:
  back:
    ipam:
      config:
        - subnet: {subnet}
"""
DOCKERFILE = """\
FROM busybox:latest
RUN mkdir /www && echo compose-page > /www/index.html
HEALTHCHECK --interval=1s CMD wget -qO- http://127.0.0.1:8080/ >/dev/null || exit 1
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""
SUBNETS = {"whaled": "10.214.31.0/24", "dockerd": "10.214.32.0/24"}


class Compose(Interleaved):
    name = "compose"
    help = (
        "docker-compose up -d of a 2-service project (build, healthcheck, depends_on "
        "service_healthy, network alias, volume, port) until all healthy; then down -v"
    )

    def figures(self, p: Params) -> list[FigureSpec]:
        return [FigureSpec("up", "docker-compose up -d until every service is healthy", "ms",
                           "lower")]  # fmt: skip

    def rounds(self, p: Params) -> int:
        return max(3, p.samples // 4)

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        binary = shutil.which("docker-compose")
        if binary is None:
            raise RuntimeError("docker-compose is not installed (Debian package docker-compose)")
        client = _require_containers(ctx, target)
        root = os.path.join(ctx.workdir, f"compose-{target}")
        os.makedirs(os.path.join(root, "app"), exist_ok=True)
        with open(os.path.join(root, "docker-compose.yml"), "w") as f:
            f.write(COMPOSE_FILE.format(subnet=SUBNETS.get(target, "10.214.33.0/24")))
        with open(os.path.join(root, "app", "Dockerfile"), "w") as f:
            f.write(DOCKERFILE)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
        env["DOCKER_HOST"] = f"unix://{client.sock}"
        state = {"client": client, "root": root, "env": env, "binary": binary, "seen": []}
        self._compose(state, "build")  # the image is built once; up measures the start
        return state

    def _compose(self, state: dict[str, Any], *args: str) -> str:
        done = subprocess.run(
            [state["binary"], "-p", PROJECT, *args], cwd=state["root"], env=state["env"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)}: {done.stderr.strip()[-300:]}")
        return done.stdout

    def sample(self, ctx: Ctx, target: str, state: dict[str, Any]) -> dict[str, float | Samples]:
        client: Client = state["client"]
        t0 = time.perf_counter()
        self._compose(state, "up", "-d")
        names = [f"{PROJECT}_db_1", f"{PROJECT}_web_1"]
        deadline = time.monotonic() + 120
        while True:
            states = [_health(client, n) for n in names]
            if all(s == "healthy" for s in states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"services not healthy after 120 s: {states}")
            time.sleep(0.05)
        elapsed = (time.perf_counter() - t0) * 1000.0
        ps = sorted(" ".join(line.split()[-3:]) for line in
                    self._compose(state, "ps").splitlines()[2:] if line.strip())  # fmt: skip
        answer = _answer(client, f"{PROJECT}_web_1")
        seen = (tuple(s.split("->")[0].rsplit(":", 1)[0] for s in ps), answer)
        if seen not in state["seen"]:
            state["seen"].append(seen)
            ctx.log(f"  {target}: compose ps {[p for p in ps]!r}, web answers {answer!r}")
        self._compose(state, "down", "-v")
        return {"up": elapsed}

    def teardown(self, ctx: Ctx, target: str, state: dict[str, Any]) -> None:
        try:
            self._compose(state, "down", "-v", "--rmi", "local")
        except RuntimeError as e:
            ctx.log(f"  {target}: compose down: {e}")


def _health(client: Client, name: str) -> str:
    done = client.cli("inspect", name, check=False)
    if done.returncode != 0:
        return "missing"
    state = json.loads(done.stdout)[0]["State"]
    return str((state.get("Health") or {}).get("Status") or state.get("Status"))


def _answer(client: Client, name: str) -> str:
    info = json.loads(client.cli("inspect", name).stdout)[0]
    (binding,) = info["NetworkSettings"]["Ports"]["8080/tcp"]
    url = f"http://127.0.0.1:{binding['HostPort']}/index.html"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode().strip())
