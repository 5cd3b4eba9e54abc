from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.unit.logger.crifiles import Conmon, reference
from whaled.errors import Conflict
from whaled.logger.rotate import LogRotator, Remove, Rename, plan_rotation


def test_plan_shifts_oldest_first_and_drops_what_passes_max_file() -> None:
    assert plan_rotation("/l", 3, [1, 2]) == [
        Remove(path="/l.2"),
        Rename(src="/l.1", dst="/l.2"),
        Rename(src="/l", dst="/l.1"),
    ]
    assert plan_rotation("/l", 2, [1, 5]) == [
        Remove(path="/l.5"),
        Remove(path="/l.1"),
        Rename(src="/l", dst="/l.1"),
    ]
    assert plan_rotation("/l", 5, [3, 1]) == [  # a gap stays a gap
        Rename(src="/l.3", dst="/l.4"),
        Rename(src="/l.1", dst="/l.2"),
        Rename(src="/l", dst="/l.1"),
    ]
    assert plan_rotation("/l", 1, [1]) == [Rename(src="/l", dst="/l.rotating")]
    with pytest.raises(ValueError):
        plan_rotation("/l", 0, [])


def files_of(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path))


def test_rotation_keeps_max_file_files_and_every_record(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")
    w = Conmon(path)

    async def main() -> LogRotator:
        rot = LogRotator(path, max_size=500, max_file=3, reopen=w.areopen)
        assert not await rot.check()  # nothing there yet is fine
        for i in range(4):
            for j in range(10):
                w.line(f"round {i} line {j}")
            assert await rot.check()
            assert not await rot.check()  # the new file is small
        return rot

    rot = asyncio.run(main())
    assert rot.rotations == 4
    assert files_of(tmp_path) == ["c.log", "c.log.1", "c.log.2"]
    contents = [(tmp_path / n).read_bytes() for n in ("c.log.2", "c.log.1", "c.log")]
    assert contents[2] == b""
    texts = [e.data for e in reference(contents)]
    assert texts == [f"round {i} line {j}\n".encode() for i in (2, 3) for j in range(10)]
    w.close()


def test_max_file_1_starts_over(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")
    w = Conmon(path)
    w.line("x" * 100)
    rot = LogRotator(path, max_size=50, max_file=1, reopen=w.areopen)
    assert asyncio.run(rot.check())
    assert files_of(tmp_path) == ["c.log"]
    assert (tmp_path / "c.log").read_bytes() == b""
    w.close()


def test_a_failed_reopen_puts_the_file_back(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(b"y" * 100)

    async def gone() -> None:
        raise Conflict("container c is not running")

    rot = LogRotator(str(path), max_size=50, max_file=3, reopen=gone)
    with pytest.raises(Conflict):
        asyncio.run(rot.check())
    assert files_of(tmp_path) == ["c.log"] and path.read_bytes() == b"y" * 100


def test_run_checks_until_stopped_and_survives_errors(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")
    w = Conmon(path)
    calls = 0

    async def flaky_reopen() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Conflict("not yet")
        await w.areopen()

    async def main() -> LogRotator:
        rot = LogRotator(path, max_size=100, max_file=2, reopen=flaky_reopen)
        stop = asyncio.Event()
        task = asyncio.create_task(rot.run(stop, interval=0.01))
        w.line("z" * 200)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if rot.rotations:
                break
        stop.set()
        await asyncio.wait_for(task, 1)
        return rot

    rot = asyncio.run(main())
    assert calls == 2 and rot.rotations == 1
    assert files_of(tmp_path) == ["c.log", "c.log.1"]
    w.close()


def test_bad_arguments() -> None:
    async def reopen() -> None:
        pass

    with pytest.raises(ValueError):
        LogRotator("/x", max_size=0, max_file=1, reopen=reopen)
    with pytest.raises(ValueError):
        LogRotator("/x", max_size=10, max_file=0, reopen=reopen)
