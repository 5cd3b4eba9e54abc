from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path

import pytest

from tests.unit.logger.crifiles import Conmon, reference
from whaled.errors import Conflict
from whaled.logger.reader import read_logs
from whaled.logger.rotate import (
    LogRotator,
    Remove,
    Rename,
    piece_bounds,
    plan_rotation,
    plan_spread,
)


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


def test_pieces_start_at_line_starts_newest_first() -> None:
    data = b"aaa\nbbb\ncc\nd\n"  # lines at 0, 4, 8, 11
    assert piece_bounds(data, 8, 10) == [(8, 13), (0, 8)]
    assert piece_bounds(data, 8, 1) == [(8, 13)]
    assert piece_bounds(data, 100, 3) == [(0, 13)]
    assert piece_bounds(data, 4, 10) == [(11, 13), (8, 11), (4, 8), (0, 4)]
    assert piece_bounds(b"", 4, 3) == []
    for size in range(1, 20):
        pieces = piece_bounds(data, size, 100)
        assert pieces[0][1] == len(data) and pieces[-1][0] == 0
        for (start, _), (_, older_end) in itertools.pairwise(pieces):
            assert older_end == start
        for start, _ in pieces:
            assert start == 0 or data[start - 1 : start] == b"\n"


def test_a_line_longer_than_max_size_is_a_piece_of_its_own() -> None:
    data = b"a\n" + b"x" * 20 + b"\nb\n"  # lines at 0, 2, 23
    assert piece_bounds(data, 5, 10) == [(23, 25), (2, 23), (0, 2)]
    assert piece_bounds(b"y" * 30, 5, 10) == [(0, 30)]
    with pytest.raises(ValueError):
        piece_bounds(data, 0, 1)


def test_plan_spread_moves_older_files_up_to_make_room() -> None:
    steps, names = plan_spread("/l", 1, 3, 5, [1, 2, 3])
    assert steps == [Remove(path="/l.3"), Rename(src="/l.2", dst="/l.4")]
    assert names == ["/l.1", "/l.2", "/l.3"]
    steps, names = plan_spread("/l", 0, 2, 3, [1, 2])
    assert steps == [Remove(path="/l.2"), Rename(src="/l.1", dst="/l.2")]
    assert names == ["/l", "/l.1"]
    assert plan_spread("/l", 0, 1, 3, [1, 2]) == ([], ["/l"])


def test_a_burst_past_the_reopen_ends_in_files_of_max_size(tmp_path: Path) -> None:
    """The writer outruns rotation: the file rotated holds many times max_size. Once the
    writer has reopened it is cut, and when it is gone the live file too; the files end at
    most max_size each and hold the newest records, whole."""
    path = str(tmp_path / "c.log")
    w = Conmon(path)

    async def main() -> None:
        rot = LogRotator(path, max_size=500, max_file=4, reopen=w.areopen)
        for j in range(100):
            w.line(f"first burst line {j}")
        assert await rot.check()
        assert os.path.getsize(path + ".1") > 500  # conmon may still write there
        for j in range(100):
            w.line(f"second burst line {j}")
        await rot.check()  # conmon has reopened: .1 is cut, and the live file rotated
        w.close()
        await rot.settle()

    asyncio.run(main())
    assert files_of(tmp_path) == ["c.log", "c.log.1", "c.log.2", "c.log.3"]
    names = ["c.log.3", "c.log.2", "c.log.1", "c.log"]
    contents = [(tmp_path / n).read_bytes() for n in names]
    assert all(0 < len(c) <= 500 for c in contents[:3]) and contents[3] == b"", contents
    texts = [e.data for e in reference(contents)]
    assert texts == [f"second burst line {j}\n".encode() for j in range(100 - len(texts), 100)]
    assert len(texts) > 20


def test_settle_cuts_only_files_past_twice_max_size(tmp_path: Path) -> None:
    """A steady writer's files end a few lines past max_size: they stay whole."""
    path = tmp_path / "c.log"
    path.write_bytes(b"z\n" * 50)

    async def reopen() -> None:
        pass

    asyncio.run(LogRotator(str(path), max_size=50, max_file=2, reopen=reopen).settle())
    assert files_of(tmp_path) == ["c.log"] and path.read_bytes() == b"z\n" * 50
    path.write_bytes(b"z\n" * 51)
    asyncio.run(LogRotator(str(path), max_size=50, max_file=2, reopen=reopen).settle())
    assert files_of(tmp_path) == ["c.log", "c.log.1"]
    assert path.read_bytes() == b""  # rotated whole; the newest piece is kept
    assert (tmp_path / "c.log.1").read_bytes() == b"z\n" * 25


def test_a_follower_reads_each_line_once_across_the_cut_at_exit(tmp_path: Path) -> None:
    """``docker logs -f`` is still reading the live file when the exit cuts it: the cut
    leaves the follower nothing it has not read (no piece takes the live file's place)."""
    path = str(tmp_path / "c.log")
    w = Conmon(path)
    for j in range(100):
        w.line(f"burst line {j}")
    w.close()

    async def main() -> list[bytes]:
        got: list[bytes] = []
        done = asyncio.Event()

        async def follow() -> None:
            async for e in read_logs(
                path, stdout=True, stderr=True, follow=True, done=done, max_files=4
            ):
                got.append(e.data)

        task = asyncio.create_task(follow())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(got) == 100:
                break
        rot = LogRotator(path, max_size=500, max_file=4, reopen=w.areopen)
        await rot.settle()
        await asyncio.sleep(0.3)  # the follower polls and finds the files moved
        done.set()
        await asyncio.wait_for(task, 5)
        return got

    got = asyncio.run(main())
    assert got == [f"burst line {j}\n".encode() for j in range(100)]
    sizes = {n: os.path.getsize(tmp_path / n) for n in files_of(tmp_path)}
    assert all(size <= 500 for size in sizes.values()), sizes
