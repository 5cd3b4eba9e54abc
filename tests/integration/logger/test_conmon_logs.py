"""The logger against real conmon + runc: a container writes lines while ``LogRotator``
rotates its CRI log through conmon's reopen; ``read_logs`` returns every line exactly once,
in order, following and afterwards."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

from tests.integration.runtime.conftest import Rig
from whaled.logger.reader import LogEntry, read_logs
from whaled.logger.rotate import LogRotator
from whaled.runtime.backend.conmon import ConmonBackend, ConmonTask

LINES = 20000
PAD = "." * 72
# Every 7th line goes to stderr; stdout lines are padded: the log is about 2.5 MB, written
# in bursts of 500 lines (about 60 KB) with short pauses, so that the rotator gets going.
WRITER = (
    f"i=0; while [ $i -lt {LINES} ]; do "
    'if [ $((i % 7)) -eq 3 ]; then echo "err $i" >&2; '
    f'else echo "out $i {PAD}"; fi; '
    "i=$((i+1)); if [ $((i % 500)) -eq 0 ]; then sleep 0.02; fi; done"
)
OUT = [n for n in range(LINES) if n % 7 != 3]
ERR = [n for n in range(LINES) if n % 7 == 3]


async def start(rig: Rig, cid: str, script: str) -> tuple[ConmonTask, str]:
    opts = rig.options(cid, rig.bundle(cid, ["sh", "-c", script]))
    container = await ConmonBackend().create(opts)
    task = await container.start()
    assert opts.log_path is not None
    return task, opts.log_path


def run(
    rig: Rig, cid: str, script: str, test: Callable[[ConmonTask, str], Awaitable[None]]
) -> None:
    """Run ``script`` in a container and ``test(task, log_path)``; delete it afterwards."""

    async def main() -> None:
        task, path = await start(rig, cid, script)
        try:
            await test(task, path)
        finally:
            await task.container.delete(force=True)

    asyncio.run(main())


def numbers(entries: list[LogEntry]) -> list[int]:
    return [int(e.data.split()[1]) for e in entries]


def test_rotated_log_is_read_whole_and_in_order(rig: Rig) -> None:
    max_file = 1000  # large enough that nothing is dropped

    async def test(task: ConmonTask, path: str) -> None:
        rotator = LogRotator(path, max_size=16 * 1024, max_file=max_file, reopen=task.reopen_log)
        stop, done = asyncio.Event(), asyncio.Event()
        rotating = asyncio.create_task(rotator.run(stop, interval=0.01))
        followed: list[LogEntry] = []

        async def follow() -> None:
            async for e in read_logs(
                path, stdout=True, stderr=True, follow=True, done=done, max_files=max_file
            ):
                followed.append(e)

        following = asyncio.create_task(follow())
        status = await asyncio.wait_for(task.wait(), 60)
        assert status.exit_code == 0
        stop.set()
        await rotating
        done.set()
        await asyncio.wait_for(following, 30)

        rotated = [n for n in os.listdir(rig.root) if n.startswith("rot1.log.")]
        # (bursts past the reopen are cut into more files than there were rotations)
        assert rotator.rotations >= 10 and len(rotated) >= rotator.rotations
        # Every line once; in order within each stream (conmon reads stdout and stderr from
        # separate pipes: their relative order is the order it read them in).
        assert sorted(numbers(followed)) == list(range(LINES))
        assert numbers([e for e in followed if e.stream == "stdout"]) == OUT
        assert numbers([e for e in followed if e.stream == "stderr"]) == ERR
        stamps = [e.timestamp_ns for e in followed]
        assert stamps == sorted(stamps)

        # Read again once it is over: the same entries; one stream; a tail across files.
        again = [e async for e in read_logs(path, stdout=True, stderr=True, max_files=max_file)]
        assert again == followed
        errs = [e async for e in read_logs(path, stdout=False, stderr=True, max_files=max_file)]
        assert numbers(errs) == ERR
        tail = [
            e
            async for e in read_logs(path, stdout=True, stderr=False, tail=3000, max_files=max_file)
        ]
        assert numbers(tail) == OUT[-3000:]

    run(rig, "rot1", WRITER, test)


def test_partial_and_long_lines_through_conmon(rig: Rig) -> None:
    # conmon writes a line without its newline as a partial record and splits long lines.
    script = "printf abc; sleep 0.3; echo def; printf 'x%.0s' $(seq 1 20000); echo; printf noeol"

    async def test(task: ConmonTask, path: str) -> None:
        done = asyncio.Event()
        seen: list[bytes] = []

        async def follow() -> None:
            async for e in read_logs(path, stdout=True, stderr=True, follow=True, done=done):
                seen.append(e.data)

        following = asyncio.create_task(follow())
        await asyncio.sleep(0.15)
        assert seen == []  # "abc" is not a line yet
        await asyncio.wait_for(task.wait(), 20)
        done.set()
        await asyncio.wait_for(following, 10)
        assert seen == [b"abcdef\n", b"x" * 20000 + b"\n", b"noeol"]
        after = [e.data async for e in read_logs(path, stdout=True, stderr=True, tail=2)]
        assert after == seen[1:]

    run(rig, "part1", script, test)


def test_max_file_1_rotation_starts_a_fresh_file(rig: Rig) -> None:
    async def test(task: ConmonTask, path: str) -> None:
        rotator = LogRotator(path, max_size=10, max_file=1, reopen=task.reopen_log)
        await asyncio.sleep(0.25)
        assert await rotator.check()
        await asyncio.wait_for(task.wait(), 20)
        assert sorted(n for n in os.listdir(rig.root) if n.startswith("one1.log")) == ["one1.log"]
        got = [e.data async for e in read_logs(path, stdout=True, stderr=True)]
        assert got == [b"second\n"]

    run(rig, "one1", "echo first; sleep 0.5; echo second", test)
