"""``docker logs`` over the CRI files conmon writes: json-file semantics (stream selection,
since/until, tail, follow across rotations).

Files: ``<path>`` is the live file; rotation (``rotate.LogRotator``) renames it to
``<path>.1`` and shifts older ones up to ``<path>.<max_files-1>``, so the oldest file has
the highest number. conmon's reopen replaces ``<path>`` by a new file (new inode), and so does
its ``--log-size-max`` backstop.

Two pure parts and the I/O around them (sans-I/O):

- ``EntryAssembler``: bytes of the files, oldest first → ``LogEntry`` values. Partial records
  (``P``) are joined with the next full record of their stream, as ``crilog.join_lines``
  does; stream and time filters are applied here.
- ``TailScanner``: fed the files backwards from the end, finds where a forward read must start
  to produce the last N entries (and how many entries that read yields before them), without
  reading more of the log than those entries take.
- ``read_logs``: opens the files, reads in chunks in worker threads (a 200 MB log is never in
  memory as a whole), and when following polls for appended data and for rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import os
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from whaled.errors import SystemFailure

from .crilog import timestamp_ns
from .rotate import rotated_indices, rotated_name

CHUNK_SIZE = 1024 * 1024  # forward reads: fewer thread hops and writes for a big log
TAIL_BLOCK = 256 * 1024  # backward reads of a tail: --tail N reads little more than N lines
POLL_MIN = 0.025  # seconds between polls while following; doubles while idle …
POLL_MAX = 0.1  # … up to this
_OPEN_RETRIES = 10
#: How long a follower waits for a cut in progress before it looks at the names again.
_CUT_WAIT = 0.005
_EDGE = 16 * 1024  # enough for a record: conmon splits lines into pieces of 8 KiB

_STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}
_TS_LEN = 35  # conmon's timestamps: 2026-11-24T12:54:36.000000000+00:00
#: what follows the timestamp in a record: (stream, whether it is a piece of a line)
_RUN_HEADERS = {
    b" stdout F ": (b"stdout", False),
    b" stdout P ": (b"stdout", True),
    b" stderr F ": (b"stderr", False),
    b" stderr P ": (b"stderr", True),
}
_PIECE_HEADERS = {b"stdout": b" stdout P ", b"stderr": b" stderr P "}
_SAME_STREAM = {
    b"stdout": frozenset((b" stdout F ", b" stdout P ")),
    b"stderr": frozenset((b" stderr F ", b" stderr P ")),
}
#: a record's header (`` stdout F ``) and its content, as C-level callables for ``map``
_header_of = operator.itemgetter(slice(_TS_LEN, _TS_LEN + 10))
_content_of = operator.itemgetter(slice(_TS_LEN + 10, None))
_T = TypeVar("_T")


class LogEntry(NamedTuple):
    """One line of a container's output. ``data`` ends with ``\\n`` unless the process ended
    without finishing its last line.

    A NamedTuple rather than a frozen dataclass: a log read makes millions of these and
    a frozen dataclass costs twice as much to build."""

    stream: str  # "stdout" | "stderr"
    timestamp_ns: int  # unix time in nanoseconds: when the line was complete
    data: bytes


# LogEntry(...) goes through a Python-level __new__; this is the same without it.
_new_entry = tuple.__new__


# --- pure: bytes → entries -------------------------------------------------------------------


class EntryAssembler:
    """Turns the bytes of a log's files, fed in order, into entries.

    ``feed`` takes any chunk of a file and returns the entries its complete lines finish;
    ``end_file`` says the current file is over (an unterminated last line is taken as is:
    a torn write of a monitor that stopped); ``finish`` also ends the lines still open (a
    process that exited mid-line, in the order they ended). Entries of unselected streams
    are dropped, then the first ``skip`` entries, then those before ``since_ns``; the first
    entry after ``until_ns`` ends the read (``past_until``), as in dockerd. Timestamps are
    unix nanoseconds, 0 = unset.

    An entry's timestamp is that of its last record: when the line was complete, as dockerd
    stamps a line its copier got in pieces. (``crilog.join_lines`` keeps the first one.)
    So timestamps grow with the position in the log, which since/until/tail rely on.

    ``coalesce``: for a reader that does not show timestamps, a chunk whose lines are all
    full records of one stream in conmon's shape (and with no since/until/skip to apply)
    becomes one entry holding all its lines, stamped with the last: the ``docker logs``
    of a chatty process then costs a few operations per line instead of an entry each.
    """

    def __init__(
        self,
        *,
        stdout: bool = True,
        stderr: bool = True,
        since_ns: int = 0,
        until_ns: int = 0,
        skip: int = 0,
        drop_unfinished: Collection[str] = (),
        coalesce: bool = False,
    ) -> None:
        self._wanted = {k: v for k, v in _STREAMS.items() if (stdout, stderr)[v == "stderr"]}
        self._coalesce = coalesce
        self._drop = frozenset(drop_unfinished)
        self._since = since_ns
        self._until = until_ns
        self._skip = skip
        self._rest = b""
        self._pending: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self._zone = b""
        self._seconds: dict[bytes, int] = {}  # "YYYY-MM-DDTHH:MM:SS" in _zone → unix ns
        self.past_until = False

    def feed(self, chunk: bytes) -> list[LogEntry]:
        if self._rest:
            chunk = self._rest + chunk
        lines = chunk.split(b"\n")
        self._rest = lines.pop()
        if self._coalesce and not (self._skip or self._since or self._until or self._drop):
            return self._coalesced(lines)
        return self._records(lines)

    def _coalesced(self, lines: list[bytes]) -> list[LogEntry]:
        """Consecutive records of one stream with conmon's 35-character timestamps become
        one entry (stamped with the last): its lines, a piece (``P``) joined to what
        follows it as the line-by-line way does, only sooner. Any other line goes the
        line-by-line way, in its place."""
        wanted, pending = self._wanted, self._pending
        headers = list(map(_header_of, lines))
        kinds = set(headers)
        first = _RUN_HEADERS.get(headers[0]) if headers else None
        if (  # most often the whole chunk is one run: checked at C speed first
            first is not None
            and kinds <= _SAME_STREAM[first[0]]
            and first[0] in wanted
            and not pending.get(first[0])
            and lines[0][19:20] == b"."
        ):
            return self._run(lines, headers, 0, len(lines))
        out: list[LogEntry] = []
        run_stream = b""
        run_start = 0
        for i, header in enumerate(headers):
            kind = _RUN_HEADERS.get(header)
            if kind is not None and lines[i][19:20] == b"." and not pending.get(kind[0]):
                if kind[0] == run_stream:
                    continue
                if run_stream:
                    out += self._run(lines, headers, run_start, i)
                if kind[0] in wanted:
                    run_stream, run_start = kind[0], i
                else:
                    run_stream = b""  # a stream not asked for: dropped
                continue
            if run_stream:
                out += self._run(lines, headers, run_start, i)
                run_stream = b""
            out += self._records([lines[i]])
        if run_stream:
            out += self._run(lines, headers, run_start, len(lines))
        return out

    def _run(self, lines: list[bytes], headers: list[bytes], lo: int, hi: int) -> list[LogEntry]:
        """``lines[lo:hi]``, records of one wanted stream, as one entry: their contents
        joined by newlines, but a piece (``P``) is glued to what follows it. A line costs
        no Python step of its own (``map``, ``list.index``, ``join``): pieces are few."""
        try:
            ns = self._slow_ns(lines[hi - 1][:_TS_LEN])
        except ValueError:
            return self._records(lines[lo:hi])
        stream = _RUN_HEADERS[headers[lo]][0]
        contents = list(map(_content_of, lines if hi - lo == len(lines) else lines[lo:hi]))
        pieces: list[int] = []
        piece, at = _PIECE_HEADERS[stream], lo
        with contextlib.suppress(ValueError):  # no more pieces
            while True:
                at = headers.index(piece, at, hi)
                pieces.append(at - lo)
                at += 1
        last = len(contents) - 1
        for p in reversed(pieces):  # a piece is not followed by a newline: its line goes on
            if p < last:
                contents[p : p + 2] = [contents[p] + contents[p + 1]]
        if not pieces or pieces[-1] != last:
            contents.append(b"")  # the last line ended: a newline after it
        return [_new_entry(LogEntry, (_STREAMS[stream], ns, b"\n".join(contents)))]

    def end_file(self) -> list[LogEntry]:
        rest, self._rest = self._rest, b""
        return self._records([rest]) if rest else []

    def finish(self, *, torn: bool = True) -> list[LogEntry]:
        """The end of the log: ``end_file`` (or, without ``torn``, drop an unterminated last
        line: it is still being written) and the lines the process left unfinished."""
        if torn:
            out = self.end_file()
        else:
            out, self._rest = [], b""
        # Lines the process left unfinished, in the order of their last pieces.
        unfinished = sorted((p for p in self._pending.items() if p[1]), key=_last_piece_ns)
        for stream, parts in unfinished:
            entry = self._unfinished(stream, parts)
            if entry is not None:
                out.append(entry)
        self._pending.clear()
        return out

    def _unfinished(self, stream: bytes, parts: list[tuple[bytes, bytes]]) -> LogEntry | None:
        if self._wanted[stream] in self._drop:
            return None
        if self._skip:
            self._skip -= 1
            return None
        try:
            ns = timestamp_ns(parts[-1][0])
        except ValueError:
            return None
        if self._until and ns > self._until:
            return None
        if ns < self._since:
            return None
        return LogEntry(self._wanted[stream], ns, b"".join(p[1] for p in parts))

    def _slow_ns(self, ts: bytes) -> int:
        """``timestamp_ns``, remembering the second of conmon-shaped timestamps."""
        ns = timestamp_ns(ts)
        if len(ts) == 35 and ts[19] == 0x2E:
            zone = ts[29:]
            if zone != self._zone or len(self._seconds) >= 4096:
                self._zone = zone
                self._seconds = {}
            self._seconds[ts[:19]] = ns - int(ts[20:29])
        return ns

    def _records(self, lines: list[bytes]) -> list[LogEntry]:
        out: list[LogEntry] = []
        if self.past_until:
            return out
        wanted = self._wanted
        pending = self._pending
        append = out.append
        skip, since, until = self._skip, self._since, self._until
        seconds, zone = self._seconds, self._zone
        # This loop runs once per line of the log: keep it tight.
        for line in lines:
            parts = line.split(b" ", 3)
            if len(parts) == 4:
                ts, stream, tag, data = parts
            elif len(parts) == 3:
                ts, stream, tag = parts
                data = b""
            else:
                continue  # not a record (an empty line, garbage)
            name = wanted.get(stream)
            if name is None:
                continue
            if tag == b"F":
                held = pending.get(stream)
                if held:
                    data = b"".join([p[1] for p in held] + [data, b"\n"])
                    held.clear()
                else:
                    data += b"\n"
            elif tag == b"P":
                pending.setdefault(stream, []).append((ts, data))
                continue
            else:
                continue
            if skip:
                skip -= 1
                continue
            try:
                if (
                    len(ts) == 35
                    and ts[29:] == zone
                    and (base := seconds.get(ts[:19])) is not None
                    and ts[19] == 0x2E
                ):
                    ns = base + int(ts[20:29])
                else:
                    ns = self._slow_ns(ts)
                    seconds, zone = self._seconds, self._zone
            except ValueError:
                continue
            if until and ns > until:
                self.past_until = True
                break
            if ns < since:
                continue
            append(_new_entry(LogEntry, (name, ns, data)))
        self._skip = skip
        return out


def _last_piece_ns(item: tuple[bytes, list[tuple[bytes, bytes]]]) -> int:
    try:
        return timestamp_ns(item[1][-1][0])
    except ValueError:
        return 0


# --- pure: where a tail starts ---------------------------------------------------------------


class TailScanner:
    """Finds where a forward read must start to yield the last ``n`` entries of the selected
    streams; fed the files backwards, newest file first.

    Per file: ``begin_file(index, size, newest=...)``, then ``feed(block, offset)`` with
    blocks going backwards (the last at offset 0) until ``done``; then ``result()``. Only a
    record's stream and tag are looked at, plus the timestamp of an entry's last record
    when ``until_ns`` is set (entries completed later do not count: the forward read stops
    before them).

    "Last" is by where an entry ends in the log: its full record, or for a line the process
    left unfinished its last piece (``EntryAssembler.finish`` returns those after the
    others). The pieces before an entry's end belong to it, so once ``n`` entries are
    counted the scan goes on, for each stream with a counted entry, back to that stream's
    previous full record. With ``follow`` an unfinished line is included (its end may come)
    but not counted. ``torn``: whether an unterminated last line of the newest file is read
    (``EntryAssembler.finish``) or left out.
    """

    def __init__(
        self,
        n: int,
        *,
        stdout: bool = True,
        stderr: bool = True,
        until_ns: int = 0,
        follow: bool = False,
        torn: bool = True,
    ) -> None:
        self.n = n
        self._wanted = {k for k, v in _STREAMS.items() if (stdout, stderr)[v == "stderr"]}
        self._until = until_ns
        self._follow = follow
        self._torn = torn
        self._count = 0
        self._seen: set[bytes] = set()  # streams with a record after the current position
        self._open: set[bytes] = set()  # streams whose counted line may have earlier pieces
        self._extra: list[tuple[int, int]] = []  # ends of lines past the count
        self._drop: set[str] = set()  # streams whose unfinished line ends before the count
        self._index = 0
        self._newest = False
        self._frag = b""
        self._first_block = True
        self.start: tuple[int, int] = (0, 0)
        self.done = False

    def begin_file(self, index: int, size: int, *, newest: bool) -> None:
        if newest:
            self.start = (index, size)  # nothing included yet
        self._index = index
        self._newest = newest
        self._frag = b""
        self._first_block = True

    def feed(self, block: bytes, offset: int) -> None:
        if self.done:
            return
        buf = block + self._frag if self._frag else block
        lines = buf.split(b"\n")
        end = offset + len(buf)  # end of the line being looked at
        first = 0
        if offset > 0:  # lines[0] may begin in an earlier block
            self._frag = lines[0]
            first = 1
        else:
            self._frag = b""
        last = len(lines) - 1
        if self._first_block:
            # After the file's last newline: nothing, or a line without its newline.
            if len(lines) == 1 and offset > 0:
                self._frag = buf  # no newline yet: that line goes on in the earlier block
                return
            self._first_block = False
            unterminated = lines[last]
            end -= len(unterminated)
            if unterminated and (self._torn or not self._newest):
                self._record(unterminated, end)
            end -= 1
            last -= 1
        for i in range(last, first - 1, -1):
            if self.done:
                return
            line = lines[i]
            end -= len(line)
            self._record(line, end)
            end -= 1

    def _record(self, line: bytes, pos: int) -> None:
        if self.done:
            return
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            return
        stream, tag = parts[1], parts[2]
        if stream not in self._wanted or tag not in (b"F", b"P"):
            return
        here = (self._index, pos)
        partial = tag == b"P"
        seen = stream in self._seen
        self._seen.add(stream)
        if self._count < self.n:
            self.start = here
            if partial and seen:
                return  # an earlier piece of a counted (or unfinished) line
            # The end of an entry: a full record, or a line unfinished at the end of the log.
            counts = not (partial and self._follow)
            if counts and self._until:
                try:
                    counts = timestamp_ns(parts[0]) <= self._until
                except ValueError:
                    counts = False
            self._count += counts
            self._open.add(stream)
            return
        # Enough entries: only earlier pieces of open lines still belong.
        if stream in self._open:
            if partial:
                self.start = here
            else:
                self._open.discard(stream)
                self._extra.append(here)  # the line before: read if it ends after start
        elif partial and not seen:
            # A stream's last record, a piece: a line the process left unfinished, which
            # ends before the counted entries. Following, it may still end: include it.
            if self._follow:
                self._open.add(stream)
                self.start = here
            else:
                self._drop.add(_STREAMS[stream])
        elif not partial:
            self._extra.append(here)
        if not self._open:
            self.done = True

    def result(self) -> TailStart:
        if self._count < self.n:
            return TailStart()  # fewer entries than asked for: all of them
        start = self.start if self.done else (0, 0)
        return TailStart(
            file=start[0],
            offset=start[1],
            skip=sum(1 for e in self._extra if e >= start),
            drop_unfinished=frozenset(self._drop),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TailStart:
    """Where a forward read starts for a tail: ``offset`` in the ``file``-th file (oldest
    first); it drops its first ``skip`` entries and the unfinished lines of the streams in
    ``drop_unfinished`` (``EntryAssembler`` arguments)."""

    file: int = 0
    offset: int = 0
    skip: int = 0
    drop_unfinished: frozenset[str] = frozenset()


# --- I/O -------------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _File:
    fd: int
    ino: tuple[int, int]  # (st_dev, st_ino)
    size: int  # when opened

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _rotated_indices(path: str, max_files: int) -> list[int]:
    """Numbers N of the ``<path>.N`` files there are, 1 <= N < max_files, ascending."""
    return [i for i in rotated_indices(path) if i < max_files]


def _open(name: str) -> _File | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    st = os.fstat(fd)
    return _File(fd=fd, ino=_identity(st), size=st.st_size)


def _stat_identity(name: str) -> tuple[int, int] | None:
    try:
        return _identity(os.stat(name))
    except FileNotFoundError:
        return None


def _open_chain(path: str, max_files: int) -> list[_File]:
    """The log's files, oldest first, opened together: newest first, then checked that no
    rotation replaced ``path`` meanwhile (else again)."""
    for attempt in range(_OPEN_RETRIES):
        files: list[_File] = []
        seen: set[tuple[int, int]] = set()
        live = _open(path)
        if live is not None:
            files.append(live)
            seen.add(live.ino)
        for i in _rotated_indices(path, max_files):
            f = _open(rotated_name(path, i))
            if f is None:
                continue
            if f.ino in seen:  # a rotation moved a file we have already
                f.close()
                continue
            seen.add(f.ino)
            files.append(f)
        if _stat_identity(path) == (live.ino if live else None) or attempt == _OPEN_RETRIES - 1:
            files.reverse()
            return files
        for f in files:
            f.close()
    raise AssertionError("unreachable")


def _names(path: str, max_files: int) -> dict[int, tuple[int, int] | None]:
    """Which file each name holds now: index → identity (0: the live file)."""
    snap: dict[int, tuple[int, int] | None] = {0: _stat_identity(path)}
    for i in _rotated_indices(path, max_files):
        snap[i] = _stat_identity(rotated_name(path, i))
    return snap


def _successor(path: str, cur: _File | None, max_files: int) -> _File | None:
    """The file after ``cur`` (or the live file if there is no ``cur``), opened; ``None``
    while ``cur`` is still the live file or the next one does not exist yet (a rotation
    between rename and reopen).

    The choice is made on one view of the names (which file each ``<path>.N`` holds),
    taken again after the choice was opened: a rotation or a cut renames several files one
    by one, and a choice made on names read at different moments could skip a file (lines
    lost) or go back to one already read (lines twice). Views that keep changing give
    ``None`` for now: the follower asks again a moment later."""
    for attempt in range(_OPEN_RETRIES):
        names = _names(path, max_files)
        if cur is not None and names[0] == cur.ino:
            return None
        indices = sorted(i for i in names if i and names[i] is not None)
        where = next((i for i in indices if cur is not None and names[i] == cur.ino), None)
        f: _File | None
        if where is None and cur is not None:
            # cur was removed (rotated out while read, max-file 1) or replaced (conmon's
            # size backstop): the oldest file that begins after cur ends, else the live one.
            f = _first_after(path, indices, cur)
        else:
            f = None
        if f is None:
            newer = [i for i in indices if where is not None and i < where]
            f = _open(rotated_name(path, max(newer)) if newer else path)
        if f is None:
            if _names(path, max_files) == names:
                return None  # the live file is between rename and reopen
            continue
        if _names(path, max_files) != names:
            f.close()  # renamed meanwhile: look again
            continue
        if cur is not None and f.ino == cur.ino:
            f.close()
            return None
        if cur is not None and attempt < _OPEN_RETRIES - 1 and _overlaps(cur, f):
            # A cut in progress: its older pieces are in place while the whole file still
            # holds the newest name; that file begins before cur ends (reading it would
            # repeat cur's lines). The cut takes milliseconds: look again. (After the
            # last try, clocks that went back must not stop the follower: it goes on.)
            f.close()
            time.sleep(_CUT_WAIT)
            continue
        return f
    return None


def _overlaps(cur: _File, nxt: _File) -> bool:
    """Whether ``nxt`` begins before ``cur`` ends (by their records' timestamps)."""
    last, first = _last_record_ns(cur.fd), _first_record_ns(nxt.fd)
    return last is not None and first is not None and first < last


def _record_ns(line: bytes) -> int | None:
    try:
        return timestamp_ns(line.split(b" ", 1)[0])
    except ValueError:
        return None


def _first_record_ns(fd: int) -> int | None:
    for line in os.pread(fd, _EDGE, 0).split(b"\n")[:-1]:
        ns = _record_ns(line)
        if ns is not None:
            return ns
    return None


def _last_record_ns(fd: int) -> int | None:
    size = os.fstat(fd).st_size
    offset = max(0, size - _EDGE)
    for line in reversed(os.pread(fd, size - offset, offset).split(b"\n")):
        ns = _record_ns(line)
        if ns is not None:
            return ns
    return None


def _first_after(path: str, indices: list[int], cur: _File) -> _File | None:
    last = _last_record_ns(cur.fd)
    if last is None:
        return None
    for i in reversed(indices):
        f = _open(rotated_name(path, i))
        if f is None:
            continue
        first = _first_record_ns(f.fd) if f.ino != cur.ino else None
        if first is not None and first > last:
            return f
        f.close()
    return None


def _scan_tail(files: list[_File], scanner: TailScanner) -> None:
    block = TAIL_BLOCK
    for index in range(len(files) - 1, -1, -1):
        f = files[index]
        scanner.begin_file(index, f.size, newest=index == len(files) - 1)
        pos = f.size
        while pos > 0 and not scanner.done:
            offset = max(0, pos - block)
            scanner.feed(os.pread(f.fd, pos - offset, offset), offset)
            pos = offset
        if scanner.done:
            return


async def _in_thread(fn: Callable[..., _T], *args: object) -> _T:
    """File I/O off the event loop; ``OSError`` becomes ``SystemFailure``."""
    try:
        return await asyncio.to_thread(fn, *args)
    except OSError as e:
        raise SystemFailure(f"reading container log: {e}") from e


async def _pread(fd: int, size: int, offset: int) -> bytes:
    return await _in_thread(os.pread, fd, size, offset)


async def read_logs(
    path: str,
    *,
    stdout: bool,
    stderr: bool,
    since_ns: int = 0,
    until_ns: int = 0,
    tail: int | None = None,
    follow: bool = False,
    done: asyncio.Event | None = None,
    max_files: int = 1,
) -> AsyncIterator[LogEntry]:
    """:func:`read_log_batches` one entry at a time."""
    batches = read_log_batches(
        path,
        stdout=stdout,
        stderr=stderr,
        since_ns=since_ns,
        until_ns=until_ns,
        tail=tail,
        follow=follow,
        done=done,
        max_files=max_files,
    )
    try:
        async for batch in batches:
            for entry in batch:
                yield entry
    finally:
        await batches.aclose()  # type: ignore[attr-defined]


async def read_log_batches(
    path: str,
    *,
    stdout: bool,
    stderr: bool,
    since_ns: int = 0,
    until_ns: int = 0,
    tail: int | None = None,
    follow: bool = False,
    done: asyncio.Event | None = None,
    max_files: int = 1,
    coalesce: bool = False,
) -> AsyncIterator[list[LogEntry]]:
    """The entries of the log at ``path`` and its rotated files (``<path>.1`` …
    ``<path>.<max_files-1>``), oldest first, in batches (what one read of a file gave).
    ``coalesce``: an entry may hold several lines (``EntryAssembler``), for readers that
    do not show timestamps.

    ``since_ns`` / ``until_ns``: unix nanoseconds, 0 = unset; entries before ``since_ns``
    are dropped, the first entry after ``until_ns`` ends the read (dockerd's rules).
    ``tail``: the last N entries of the selected streams that are not after ``until_ns``
    (``None`` or negative: all); ``since_ns`` applies to those, as in dockerd. Without
    ``follow`` the read ends with what the files held when it began. With ``follow`` it
    goes on with what is appended, across rotations, until ``done`` is set and everything
    written before has been read (or the clock passes ``until_ns``).

    ``done`` is the container's exit: once it is set (or without ``done``) a line the
    process left unfinished is returned as it is; while the container runs, a record still
    being written to the file is left for later. File errors raise ``SystemFailure``.
    """
    if not (stdout or stderr):
        return
    running = done is not None and not done.is_set()
    files = await _in_thread(_open_chain, path, max_files)
    try:
        start = TailStart()
        if tail is not None and tail >= 0 and files:
            scanner = TailScanner(
                tail,
                stdout=stdout,
                stderr=stderr,
                until_ns=until_ns,
                follow=follow,
                torn=not (follow or running),
            )
            await _in_thread(_scan_tail, files, scanner)
            start = scanner.result()
        asm = EntryAssembler(
            stdout=stdout,
            stderr=stderr,
            since_ns=since_ns,
            until_ns=until_ns,
            skip=start.skip,
            drop_unfinished=start.drop_unfinished,
            coalesce=coalesce,
        )
        cur: _File | None = None
        offset = 0
        for index in range(start.file, len(files)):
            f = files[index]
            offset = start.offset if index == start.file else 0
            newest = index == len(files) - 1
            end = f.size if newest and not follow else None
            while end is None or offset < end:
                size = CHUNK_SIZE if end is None else min(CHUNK_SIZE, end - offset)
                data = await _pread(f.fd, size, offset)
                if not data:
                    break
                offset += len(data)
                if batch := list(asm.feed(data)):
                    yield batch
                if asm.past_until:
                    return
            if newest and follow:
                cur = f
            elif not newest:
                if batch := list(asm.end_file()):
                    yield batch
        if not follow:
            if batch := list(asm.finish(torn=not running)):
                yield batch
            return
        async for batch in _follow(path, cur, offset, asm, done, until_ns, max_files):
            yield batch
    finally:
        for f in files:
            f.close()


async def _follow(
    path: str,
    cur: _File | None,
    offset: int,
    asm: EntryAssembler,
    done: asyncio.Event | None,
    until_ns: int,
    max_files: int,
) -> AsyncIterator[list[LogEntry]]:
    delay = POLL_MIN
    owned: _File | None = None  # the file opened here last (earlier ones are the caller's)
    try:
        while True:
            final = done is not None and done.is_set()  # before reading: nothing is missed
            if cur is not None:
                data = await _pread(cur.fd, CHUNK_SIZE, offset)
                if data:
                    offset += len(data)
                    if batch := list(asm.feed(data)):
                        yield batch
                    if asm.past_until:
                        return
                    delay = POLL_MIN
                    continue
            nxt = await _in_thread(_successor, path, cur, max_files)
            if nxt is not None:
                if cur is not None:
                    # What reached the old file between the last read and the switch.
                    while data := await _pread(cur.fd, CHUNK_SIZE, offset):
                        offset += len(data)
                        if batch := list(asm.feed(data)):
                            yield batch
                    if batch := list(asm.end_file()):
                        yield batch
                    if asm.past_until:
                        return
                if owned is not None:
                    owned.close()
                cur = owned = nxt
                offset = 0
                delay = POLL_MIN
                continue
            if final or (until_ns and time.time_ns() > until_ns):
                if batch := list(asm.finish()):
                    yield batch
                return
            if done is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), delay)
            delay = min(delay * 2, POLL_MAX)
    finally:
        if owned is not None:
            owned.close()
