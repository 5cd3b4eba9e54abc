from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.unit.logger.crifiles import BASE_NS, Conmon, record, reference, select
from whaled.errors import SystemFailure
from whaled.logger import reader
from whaled.logger.reader import EntryAssembler, LogEntry, TailScanner, read_logs
from whaled.logger.rotate import LogRotator

Row = tuple[str, int, bytes]


def rows(entries: list[LogEntry]) -> list[Row]:
    return [(e.stream, e.timestamp_ns, e.data) for e in entries]


async def collect(it: AsyncIterator[LogEntry]) -> list[Row]:
    return [(e.stream, e.timestamp_ns, e.data) async for e in it]


def read(path: str, **kw: object) -> list[Row]:
    kw.setdefault("stdout", True)
    kw.setdefault("stderr", True)
    return asyncio.run(collect(read_logs(path, **kw)))  # type: ignore[arg-type]


def ns(i: int) -> int:
    return BASE_NS + i * 1000


# --- the assembler -----------------------------------------------------------------------------


def test_assembler_joins_partial_records_per_stream() -> None:
    log = b"".join(
        [
            record("stdout", "ab", ns(1), partial=True),
            record("stderr", "err", ns(2)),
            record("stdout", "cd", ns(3), partial=True),
            record("stdout", "", ns(4)),
            record("stdout", "x", ns(5)),
        ]
    )
    asm = EntryAssembler()
    out: list[LogEntry] = []
    for i in range(len(log)):  # byte by byte: lines split anywhere
        out += asm.feed(log[i : i + 1])
    out += asm.finish()
    assert rows(out) == [
        ("stderr", ns(2), b"err\n"),
        ("stdout", ns(4), b"abcd\n"),  # stamped when complete
        ("stdout", ns(5), b"x\n"),
    ]


def test_assembler_unfinished_and_torn_lines() -> None:
    log = record("stdout", "no newline yet", ns(1), partial=True) + record("stderr", "b", ns(2))
    torn = record("stderr", "torn", ns(3))[:-3]  # a record cut short, no newline
    asm = EntryAssembler()
    assert rows(asm.feed(log + torn)) == [("stderr", ns(2), b"b\n")]
    # The monitor stopped mid-record: the record as far as it goes. The process exited
    # mid-line: the line as it is, without a newline.
    assert rows(asm.finish()) == [
        ("stderr", ns(3), b"to\n"),
        ("stdout", ns(1), b"no newline yet"),
    ]
    running = EntryAssembler()
    running.feed(log + torn)
    assert rows(running.finish(torn=False)) == [("stdout", ns(1), b"no newline yet")]


def test_assembler_filters_and_skips() -> None:
    log = b"".join(record(("stdout", "stderr")[i % 2], f"l{i}", ns(i)) for i in range(10))
    only_err = EntryAssembler(stdout=False)
    assert [r[2] for r in rows(only_err.feed(log))] == [b"l1\n", b"l3\n", b"l5\n", b"l7\n", b"l9\n"]
    window = EntryAssembler(since_ns=ns(3), until_ns=ns(6))
    assert [r[2] for r in rows(window.feed(log))] == [b"l3\n", b"l4\n", b"l5\n", b"l6\n"]
    assert window.past_until
    assert window.feed(log) == []  # until ends the read for good
    skipping = EntryAssembler(skip=8)
    assert [r[2] for r in rows(skipping.feed(log))] == [b"l8\n", b"l9\n"]


def test_a_line_is_as_old_as_its_last_piece() -> None:
    log = record("stdout", "a", ns(1), partial=True) + record("stdout", "b", ns(5))
    asm = EntryAssembler(until_ns=ns(3))
    assert asm.feed(log) == [] and asm.past_until
    assert rows(EntryAssembler(until_ns=ns(5)).feed(log)) == [("stdout", ns(5), b"ab\n")]
    assert rows(EntryAssembler(since_ns=ns(2)).feed(log)) == [("stdout", ns(5), b"ab\n")]


def test_assembler_skips_garbage_and_other_zones() -> None:
    log = (
        b"garbage\n\n"
        + b"2026-11-24T13:54:36.000000001+01:00 stdout F zoned\n"
        + b"2026-11-24T12:54:36Z stdout F short\n"
        + b"2026-11-24T12:54:36.5Z stdin F nope\n"
        + b"yesterday stdout F nope\n"
        + b"2026-11-24T12:54:36.5Z stdout X nope\n"
    )
    assert rows(EntryAssembler().feed(log)) == [
        ("stdout", BASE_NS + 1, b"zoned\n"),
        ("stdout", BASE_NS, b"short\n"),
    ]


# --- files on disk ---------------------------------------------------------------------------


def write_files(path: Path, contents: list[bytes]) -> None:
    """``contents`` oldest first: the last is ``path``, the others ``path.N`` … ``path.1``."""
    n = len(contents)
    for i, content in enumerate(contents):
        index = n - 1 - i
        (path.parent / (path.name if index == 0 else f"{path.name}.{index}")).write_bytes(content)


def test_read_all_across_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    write_files(
        log,
        [
            record("stdout", "one", ns(1)),
            record("stdout", "tw", ns(2), partial=True),  # a line split by a rotation
            record("stdout", "o", ns(3)) + record("stderr", "three", ns(4)),
        ],
    )
    (tmp_path / "c.log.7").write_bytes(record("stdout", "too old", ns(0)))  # >= max_files
    expected = [
        ("stdout", ns(1), b"one\n"),
        ("stdout", ns(3), b"two\n"),
        ("stderr", ns(4), b"three\n"),
    ]
    assert read(str(log), max_files=3) == expected
    # Only the live file: the end of the split line is a line of its own.
    assert read(str(log), max_files=1) == [("stdout", ns(3), b"o\n"), expected[2]]
    assert read(str(log), stdout=False, max_files=3) == [expected[2]]
    assert read(str(log), stdout=False, stderr=False, max_files=3) == []
    assert read(str(tmp_path / "missing.log")) == []


def test_tail_across_rotated_files_counts_selected_streams(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    lines = [record(("stdout", "stderr")[i % 3 == 2], f"l{i}", ns(i)) for i in range(30)]
    write_files(log, [b"".join(lines[0:10]), b"".join(lines[10:20]), b"".join(lines[20:30])])
    got = read(str(log), tail=12, max_files=3)
    assert [r[2] for r in got] == [f"l{i}\n".encode() for i in range(18, 30)]
    got = read(str(log), tail=4, stdout=False, max_files=3)  # every third line is stderr
    assert [r[2] for r in got] == [b"l20\n", b"l23\n", b"l26\n", b"l29\n"]
    assert read(str(log), tail=0, max_files=3) == []
    assert len(read(str(log), tail=1000, max_files=3)) == 30


def test_since_until(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"".join(record("stdout", f"l{i}", ns(i)) for i in range(10)))
    got = read(str(log), since_ns=ns(4), until_ns=ns(7))
    assert [r[2] for r in got] == [b"l4\n", b"l5\n", b"l6\n", b"l7\n"]
    assert [r[2] for r in read(str(log), until_ns=ns(7), tail=2)] == [b"l6\n", b"l7\n"]
    assert [r[2] for r in read(str(log), since_ns=ns(8), tail=5)] == [b"l8\n", b"l9\n"]


def test_a_running_containers_line_being_written_is_left_out(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    whole = record("stdout", "complete", ns(1))
    log.write_bytes(whole + record("stdout", "being written", ns(2))[:50])
    running = asyncio.Event()
    assert read(str(log), done=running) == [("stdout", ns(1), b"complete\n")]
    assert read(str(log), done=running, tail=1) == [("stdout", ns(1), b"complete\n")]
    running.set()  # exited: what is there is final
    assert read(str(log), done=running)[1:] == [("stdout", ns(2), b"being\n")]


def random_log(rng: random.Random, n: int) -> list[bytes]:
    """Records of two streams with partial lines, empty lines and garbage, split into
    1-4 files anywhere between records."""
    out: list[bytes] = []
    t = 0
    for _ in range(n):
        t += 1
        roll = rng.random()
        if roll < 0.03:
            out.append(b"garbage line\n")
            continue
        stream = "stderr" if rng.random() < 0.3 else "stdout"
        data = rng.choice(["", "x", "hello world", "y" * rng.randint(1, 300)])
        out.append(record(stream, f"{t}:{data}", ns(t), partial=roll < 0.3))
    cuts = sorted(rng.sample(range(1, n), rng.randint(0, 3)))
    files = []
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        files.append(b"".join(out[a:b]))
    return files


@pytest.mark.parametrize("seed", range(30))
def test_matches_the_reference_reading(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    files = random_log(rng, rng.randint(1, 120))
    log = tmp_path / "c.log"
    write_files(log, files)
    entries = reference(files)
    # Small chunks so that lines straddle the blocks of both the forward and the tail scan.
    monkeypatch.setattr(reader, "CHUNK_SIZE", rng.choice([13, 64, 4096]))
    monkeypatch.setattr(reader, "TAIL_BLOCK", rng.choice([13, 64, 4096]))
    for _ in range(10):
        opts: dict[str, object] = {
            "stdout": rng.random() < 0.8,
            "stderr": rng.random() < 0.8,
            "tail": rng.choice([None, None, 0, 1, 2, 5, 17, 1000]),
        }
        if rng.random() < 0.3:
            opts["since_ns"] = ns(rng.randint(0, 130))
        if rng.random() < 0.3:
            opts["until_ns"] = ns(rng.randint(0, 130))
        got = read(str(log), max_files=4, **opts)
        assert got == select(entries, **opts), opts  # type: ignore[arg-type]


def test_tail_scanner_reads_only_the_end(tmp_path: Path) -> None:
    # 10 MB of lines, tail 3: the scan reads a block or two from the end.
    line = record("stdout", "z" * 90, ns(1))
    blob = line * (10_000_000 // len(line))
    scanner = TailScanner(3)
    scanner.begin_file(0, len(blob), newest=True)
    fed = 0
    pos = len(blob)
    while not scanner.done:
        scanner.feed(blob[pos - 4096 : pos], pos - 4096)
        pos -= 4096
        fed += 4096
    start = scanner.result()
    assert fed <= 8192
    assert (start.file, start.offset, start.skip) == (0, len(blob) - 3 * len(line), 0)


# --- follow ----------------------------------------------------------------------------------


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()


async def follow_until(
    path: str, done: asyncio.Event, writer: Callable[[], object], **kw: object
) -> list[Row]:
    """Follow ``path`` while ``writer`` (a coroutine function) runs, then set ``done``."""
    got: list[Row] = []

    async def consume() -> None:
        async for e in read_logs(path, stdout=True, stderr=True, follow=True, done=done, **kw):  # type: ignore[arg-type]
            got.append((e.stream, e.timestamp_ns, e.data))

    reader_task = asyncio.create_task(consume())
    await writer()  # type: ignore[misc]
    done.set()
    await asyncio.wait_for(reader_task, 10)
    return got


def test_follow_appends_waits_for_unfinished_lines_and_stops_when_done(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")
    w = Conmon(path)
    w.line("before")
    seen: list[bytes] = []

    async def main() -> None:
        done = asyncio.Event()

        async def consume() -> None:
            async for e in read_logs(path, stdout=True, stderr=True, follow=True, done=done):
                seen.append(e.data)

        task = asyncio.create_task(consume())
        await eventually(lambda: seen == [b"before\n"])
        w.write("stdout", "par", partial=True)
        w.raw(record("stderr", "torn", w.tick())[:30])  # half a record line
        await asyncio.sleep(0.3)
        assert seen == [b"before\n"]  # nothing complete yet
        w.raw(record("stderr", "torn", w.ns)[30:])
        w.write("stdout", "tial")
        await eventually(lambda: seen == [b"before\n", b"torn\n", b"partial\n"])
        w.write("stdout", "last words", partial=True)
        done.set()  # the container exited: its unfinished line comes out as it is
        await asyncio.wait_for(task, 5)
        assert seen[-1] == b"last words"

    asyncio.run(main())
    w.close()


def test_follow_with_tail_then_new_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")
    w = Conmon(path)
    for i in range(5):
        w.line(f"old{i}")

    async def write() -> None:
        await asyncio.sleep(0.1)
        w.line("new")

    got = asyncio.run(follow_until(path, asyncio.Event(), write, tail=2))
    assert [r[2] for r in got] == [b"old3\n", b"old4\n", b"new\n"]
    w.close()


def test_follow_survives_conmon_replacing_the_file(tmp_path: Path) -> None:
    # conmon's reopen without a rename (max-file 1, or its --log-size-max backstop): the old
    # file is finished, then the new one read from its start.
    path = str(tmp_path / "c.log")
    w = Conmon(path)

    async def write() -> None:
        for i in range(30):
            w.line(f"l{i}")
            if i % 7 == 6:
                w.reopen()
            await asyncio.sleep(0.005)

    got = asyncio.run(follow_until(path, asyncio.Event(), write))
    assert [r[2] for r in got] == [f"l{i}\n".encode() for i in range(30)]
    w.close()


@pytest.mark.parametrize("max_file", [2, 50])
def test_follow_with_the_rotator_returns_every_line_once(tmp_path: Path, max_file: int) -> None:
    path = str(tmp_path / "c.log")
    w = Conmon(path)
    lines = 400

    async def write() -> None:
        rot = LogRotator(path, max_size=2000, max_file=max_file, reopen=w.areopen)
        for i in range(lines):
            w.write(("stdout", "stderr")[i % 5 == 0], f"line {i:04d} " + "x" * (i % 40))
            if i % 10 == 0:
                await rot.check()
                await asyncio.sleep(0.002)
        assert rot.rotations > 10

    got = asyncio.run(follow_until(path, asyncio.Event(), write, max_files=max_file))
    numbers = [int(r[2].split(b" ")[1]) for r in got]
    if max_file == 50:
        assert numbers == list(range(lines))
    else:
        # Files can be rotated out before a slow reader gets to them (json-file does the
        # same); what is read comes once and in order, and the end is there.
        assert numbers == sorted(set(numbers)) and numbers[-1] == lines - 1
    w.close()


def test_follow_waits_for_the_file_and_for_a_rotation_to_finish(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")

    async def write() -> None:
        await asyncio.sleep(0.1)
        w = Conmon(path)  # the container starts after the reader
        w.line("a")
        await asyncio.sleep(0.1)
        os.rename(path, path + ".1")  # a rotation between rename and reopen
        w.line("b")
        await asyncio.sleep(0.15)
        w.reopen()
        w.line("c")
        await asyncio.sleep(0.1)
        w.close()

    got = asyncio.run(follow_until(path, asyncio.Event(), write, max_files=3))
    assert [r[2] for r in got] == [b"a\n", b"b\n", b"c\n"]


def test_follow_ends_at_until(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(record("stdout", "a", ns(1)))

    async def main() -> list[Row]:
        import time

        until = time.time_ns() + 200_000_000
        return await asyncio.wait_for(
            collect(read_logs(str(path), stdout=True, stderr=True, follow=True, until_ns=until)),
            5,
        )

    assert [r[2] for r in asyncio.run(main())] == [b"a\n"]


def test_closing_the_reader_closes_its_files(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(b"".join(record("stdout", f"l{i}", ns(i)) for i in range(10)))
    before = len(os.listdir("/proc/self/fd"))

    async def main() -> None:
        it = read_logs(str(path), stdout=True, stderr=True, follow=True)
        assert (await anext(it)).data == b"l0\n"
        await it.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())
    assert len(os.listdir("/proc/self/fd")) == before


def test_follow_finds_the_next_file_when_its_file_was_rotated_out(tmp_path: Path) -> None:
    # max-file 2 and two rotations while the reader waits: the file it reads is deleted
    # (it still holds it open) and the next one is already "<path>.1".
    path = str(tmp_path / "c.log")
    w = Conmon(path)
    seen: list[bytes] = []

    async def main() -> None:
        done = asyncio.Event()
        rot = LogRotator(path, max_size=1, max_file=2, reopen=w.areopen)

        async def consume() -> None:
            async for e in read_logs(
                path, stdout=True, stderr=True, follow=True, done=done, max_files=2
            ):
                seen.append(e.data)

        task = asyncio.create_task(consume())
        w.line("a")
        while not seen:
            await asyncio.sleep(0.005)
        w.line("b")
        assert await rot.check()  # a b → c.log.1
        w.line("c")
        assert await rot.check()  # a b removed, c → c.log.1
        w.line("d")
        done.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert seen == [b"a\n", b"b\n", b"c\n", b"d\n"]
    w.close()


def test_file_errors_become_system_failures(tmp_path: Path) -> None:
    (tmp_path / "c.log").mkdir()
    with pytest.raises(SystemFailure, match="reading container log"):
        read(str(tmp_path / "c.log"))


def _feed_all(asm: EntryAssembler, data: bytes, chunk: int) -> list[LogEntry]:
    out: list[LogEntry] = []
    for i in range(0, len(data), chunk):
        out += asm.feed(data[i : i + chunk])
    return out + asm.finish()


@pytest.mark.parametrize("pieces", [0.03, 0.4])  # 0.4: runs of pieces, pieces at chunk ends
def test_coalesced_entries_carry_the_same_bytes_per_stream(pieces: float) -> None:
    """A run of full records of one stream becomes one entry; whatever the mix (partial
    lines, both streams, odd chunk sizes), each stream's bytes are those of the
    line-by-line reading, in order, and a coalesced entry has its last line's time."""
    rng = random.Random(7)
    parts: list[bytes] = []
    t = BASE_NS
    for _ in range(3000):
        t += rng.randint(1, 10_000)
        kind = rng.random()
        stream = "stdout" if kind < 0.8 else "stderr"
        text = "x" * rng.randint(0, 40) + str(t)
        parts.append(record(stream, text, t, partial=rng.random() < pieces))
    data = b"".join(parts)
    for chunk in (97, 4096, 65536):
        plain = _feed_all(EntryAssembler(), data, chunk)
        merged = _feed_all(EntryAssembler(coalesce=True), data, chunk)
        for stream in ("stdout", "stderr"):
            want = b"".join(e.data for e in plain if e.stream == stream)
            assert b"".join(e.data for e in merged if e.stream == stream) == want
        assert len(merged) < len(plain) or chunk < 100  # (a chunk of one line: runs of one)
        assert max(e.timestamp_ns for e in merged) == max(e.timestamp_ns for e in plain)


def test_one_stream_of_full_lines_is_one_entry_per_chunk() -> None:
    data = b"".join(record("stdout", f"line {i}", ns(i)) for i in range(100))
    asm = EntryAssembler(coalesce=True)
    (entry,) = asm.feed(data)
    assert entry.stream == "stdout" and entry.timestamp_ns == ns(99)
    assert entry.data == b"".join(f"line {i}\n".encode() for i in range(100))
    # since/until/skip need each line: no coalescing then
    assert len(EntryAssembler(coalesce=True, since_ns=ns(50)).feed(data)) == 50
    # an unwanted stream is never coalesced into the output
    assert EntryAssembler(coalesce=True, stdout=False).feed(data) == []


def test_a_follower_never_goes_back_into_a_cut_in_progress(tmp_path: Path) -> None:
    """Mid-cut: the oldest piece of a file is in place (``.2``) while the whole file still
    holds ``.1``. A follower done with the piece must not take the whole file next (it
    would read the piece's lines twice); once the cut is over it takes the next piece."""
    from whaled.logger import reader

    path = str(tmp_path / "c.log")
    lines = [record("stdout", f"line {i}\n", BASE_NS + i) for i in range(6)]
    whole, old_piece, new_piece = b"".join(lines), b"".join(lines[:3]), b"".join(lines[3:])
    Path(path).write_bytes(b"")
    Path(path + ".1").write_bytes(whole)
    Path(path + ".2").write_bytes(old_piece)
    cur = reader._open(path + ".2")
    whole_file = reader._open(path + ".1")
    assert cur is not None and whole_file is not None
    try:
        assert reader._overlaps(cur, whole_file)  # what makes the follower wait, mid-cut
        Path(path + ".1.piece").write_bytes(new_piece)
        os.rename(path + ".1.piece", path + ".1")  # the cut is over
        nxt = reader._successor(path, cur, 5)
        assert nxt is not None and os.pread(nxt.fd, 1 << 16, 0) == new_piece
        assert not reader._overlaps(cur, nxt)
        nxt.close()
    finally:
        cur.close()
        whole_file.close()
