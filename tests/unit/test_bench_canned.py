"""The canned answers behind the bench's 'CLI alone' rows, and the floor server's replay."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import canned
from bench.client import DOCKER_CLI
from bench.floorserver import answer, route_key, serve
from bench.httpclient import parse_head


def test_head_gets_the_head_only() -> None:
    out, last = answer(b"HEAD", canned.PING_RAW)
    assert out == canned.PING_RAW.removesuffix(b"OK")
    assert out.endswith(b"\r\n\r\n")
    assert not last


def test_a_hijacked_answer_ends_the_connection() -> None:
    assert answer(b"POST", canned.HIJACKED) == (canned.HIJACKED, True)
    assert answer(b"GET", canned.PING_RAW) == (canned.PING_RAW, False)


@pytest.mark.parametrize(
    "table", [canned.exec_answers("box"), canned.run_answers()], ids=["exec", "run"]
)
def test_canned_answers_are_complete_responses(table: dict[str, bytes]) -> None:
    for raw in table.values():
        head, _, body = raw.partition(b"\r\n\r\n")
        status, headers = parse_head(head + b"\r\n\r\n")
        assert headers["api-version"] == "1.45"
        if status == 101:
            assert body == b""
            continue
        if status == 204:
            assert "content-length" not in headers and body == b""
            continue
        assert int(headers["content-length"]) == len(body)
        if headers.get("content-type") == "application/json":
            json.loads(body)


def test_paths_the_cli_sends_find_their_answers() -> None:
    ex = canned.exec_answers("box")
    for target in (
        b"/v1.45/containers/box/json",
        b"/v1.45/containers/box/exec",
        f"/v1.45/exec/{canned.EXEC_ID}/start".encode(),
        f"/v1.45/exec/{canned.EXEC_ID}/json".encode(),
    ):
        assert route_key(target).decode() in ex
    run = canned.run_answers()
    cid = canned.CONTAINER_ID
    for target in (
        b"/v1.45/containers/create?name=",
        f"/v1.45/containers/{cid}/attach?stderr=1&stdout=1&stream=1".encode(),
        f"/v1.45/containers/{cid}/wait?condition=removed".encode(),
        f"/v1.45/containers/{cid}/start".encode(),
    ):
        assert route_key(target).decode() in run


Replay = Callable[[dict[str, bytes]], str]


@pytest.fixture
def replay() -> Iterator[Replay]:
    """Start a floor server on a table in a thread; stop them all at the end."""
    stops: list[tuple[asyncio.AbstractEventLoop, asyncio.Event, threading.Thread]] = []
    root = tempfile.mkdtemp(prefix="wb-canned-")

    def start(table: dict[str, bytes]) -> str:
        sock = os.path.join(root, f"{len(stops)}.sock")
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        encoded = {k.encode(): v for k, v in table.items()}
        t = threading.Thread(
            target=loop.run_until_complete, args=(serve(sock, encoded, stop),), daemon=True
        )
        t.start()
        stops.append((loop, stop, t))
        for _ in range(500):
            if os.path.exists(sock):
                break
            threading.Event().wait(0.01)
        return sock

    yield start
    for loop, stop, t in stops:
        loop.call_soon_threadsafe(stop.set)
        t.join(10)
        loop.close()
    shutil.rmtree(root, ignore_errors=True)


def _cli(sock: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(home)
    return subprocess.run(
        [DOCKER_CLI, "-H", f"unix://{sock}", *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


RUN = ("run", "--rm", "--network", "none", "busybox", "true")


@pytest.mark.skipif(not os.path.exists(DOCKER_CLI), reason="no docker CLI")
@pytest.mark.parametrize(
    ("table", "args", "needed"),
    [
        (canned.exec_answers("box"), ("exec", "box", "true"), "/containers/box/exec"),
        (canned.run_answers(), RUN, f"/containers/{canned.CONTAINER_ID}/start"),
    ],
    ids=["exec", "run"],
)
def test_the_cli_completes_against_canned_answers_only(
    replay: Replay,
    tmp_path: Path,
    table: dict[str, bytes],
    args: tuple[str, ...],
    needed: str,
) -> None:
    # Any request without an answer gets a 404, which fails the command: exit 0 means the
    # CLI went through its whole sequence on canned answers.
    done = _cli(replay(table), *args, home=tmp_path)
    assert done.returncode == 0, done.stderr
    without = {k: v for k, v in table.items() if k != needed}
    done = _cli(replay(without), *args, home=tmp_path)
    assert done.returncode != 0
