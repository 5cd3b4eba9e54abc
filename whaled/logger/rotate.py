"""Size-based rotation of a running container's log file (json-file's ``max-size`` /
``max-file``).

conmon keeps writing to the file it has open; after the files are shifted, ``reopen`` asks it
to open ``path`` again (``Task.reopen_log``: conmon then creates a fresh file there, and
until it has done so it writes on into the renamed file, so nothing is lost). Readers
(``reader.read_logs``) follow the renamed file to its end and go on with the new one.

The plan (which files to remove and rename) is a pure function of the files there are;
``LogRotator`` carries it out. conmon's own ``--log-size-max`` is a backstop configured
elsewhere: it replaces the file when it grows past that, losing what it held.

Rotation reacts to writes, so a file ends a few lines past ``max_size``, and a burst that
outruns the reopen lands in one file far past it. Once nobody writes to a file of more than
twice ``max_size`` (``OVERRUN``; conmon has reopened, or the container has exited: then the
live file is rotated first) it is cut at line starts into pieces of at most ``max_size``
(``piece_bounds``) that take their places among the rotated files, the oldest dropped as
usual: the files end as dockerd's json-file leaves them, which rotates inside the write path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from whaled.errors import SystemFailure, WhaledError
from whaled.osutil.inotify import open_dir_watch

log = logging.getLogger("whaled.logger")

ROTATING_SUFFIX = ".rotating"  # max_file 1: where the full file waits for the reopen
OVERRUN = 2  # a file past this many times max_size is cut into pieces of max_size


@dataclass(frozen=True, slots=True, kw_only=True)
class Remove:
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rename:
    src: str
    dst: str


def rotated_name(path: str, index: int) -> str:
    return path if index == 0 else f"{path}.{index}"


def plan_rotation(path: str, max_file: int, existing: Iterable[int]) -> list[Remove | Rename]:
    """Steps that make room for a new live file: with ``existing`` the numbers N of the
    ``<path>.N`` files there are, drop those that would pass ``<path>.<max_file-1>``, shift
    the others up by one (highest first) and move ``path`` to ``<path>.1``. With
    ``max_file`` 1 nothing is kept: ``path`` moves to ``<path>.rotating``, removed after
    the reopen (``cleanup_after_reopen``)."""
    if max_file < 1:
        raise ValueError("max_file must be at least 1")
    if max_file == 1:
        return [Rename(src=path, dst=path + ROTATING_SUFFIX)]
    steps: list[Remove | Rename] = []
    for n in sorted(set(existing), reverse=True):
        if n < 1:
            continue
        if n + 1 >= max_file:
            steps.append(Remove(path=rotated_name(path, n)))
        else:
            steps.append(Rename(src=rotated_name(path, n), dst=rotated_name(path, n + 1)))
    steps.append(Rename(src=path, dst=rotated_name(path, 1)))
    return steps


class _Searchable(Protocol):
    def __len__(self) -> int: ...
    def find(self, sub: bytes, start: int = ..., end: int = ..., /) -> int: ...
    def rfind(self, sub: bytes, start: int = ..., end: int = ..., /) -> int: ...


def piece_bounds(buf: _Searchable, max_size: int, keep: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` spans of the last ``keep`` pieces of ``buf`` (bytes or an mmap of
    a log file), newest first: each starts at a line start and holds at most ``max_size``
    bytes, except that a line longer than that is a piece of its own."""
    if max_size <= 0 or keep < 1:
        raise ValueError("max_size and keep must be positive")
    pieces: list[tuple[int, int]] = []
    end = len(buf)
    while end > 0 and len(pieces) < keep:
        low = end - max_size
        if low <= 0:
            start = 0
        else:
            newline = buf.find(b"\n", low - 1, end - 1)
            if newline < 0:  # one line longer than max_size: the piece starts where it does
                newline = buf.rfind(b"\n", 0, low - 1)
            start = newline + 1
        pieces.append((start, end))
        end = start
    return pieces


def plan_spread(
    path: str, index: int, pieces: int, max_file: int, existing: Iterable[int]
) -> tuple[list[Remove | Rename], list[str]]:
    """Room for ``pieces`` files cut from the file at ``index`` (0: ``path`` itself): the
    older rotated files (numbers above ``index``) move up by ``pieces - 1``, highest first,
    those that would pass ``<path>.<max_file-1>`` removed. Also the names the pieces take,
    newest first (the first is the cut file's own)."""
    if pieces < 1:
        raise ValueError("pieces must be at least 1")
    steps: list[Remove | Rename] = []
    shift = pieces - 1
    for n in sorted(set(existing), reverse=True):
        if n <= index or shift == 0:
            continue
        if n + shift >= max_file:
            steps.append(Remove(path=rotated_name(path, n)))
        else:
            steps.append(Rename(src=rotated_name(path, n), dst=rotated_name(path, n + shift)))
    return steps, [rotated_name(path, index + i) for i in range(pieces)]


def _copy_range(src_fd: int, dst: str, start: int, end: int) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        offset = start
        while offset < end:
            n = os.copy_file_range(src_fd, fd, end - offset, offset)
            if n == 0:
                raise OSError(f"{dst}: source ended early")
            offset += n
    finally:
        os.close(fd)


def _spread(path: str, max_size: int, max_file: int) -> bool:
    """Cut ``<path>.1`` into pieces of at most ``max_size`` if it holds more than
    ``OVERRUN`` times that (nobody may write to it any more); whether it did. Each piece is
    written beside its place and renamed into it, the cut file's own place last, so a reader
    finds whole lines."""
    src = rotated_name(path, 1)
    try:
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        if size <= OVERRUN * max_size:
            return False
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as buf:
            pieces = piece_bounds(buf, max_size, max_file - 1)
        steps, names = plan_spread(path, 1, len(pieces), max_file, rotated_indices(path))
        _apply(steps)
        for (start, end), name in reversed(list(zip(pieces, names, strict=True))):
            tmp = name + ROTATING_SUFFIX + ".piece"
            _copy_range(fd, tmp, start, end)
            os.rename(tmp, name)
    finally:
        os.close(fd)
    return True


def _retire_live(path: str, max_size: int, max_file: int) -> None:
    """The live file (nobody writes to it) becomes ``<path>.1``, cut into pieces; an empty
    live file is left for the next run to append to."""
    if not _shift(path, max_file):
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
    os.close(fd)
    _spread(path, max_size, max_file)


def cleanup_after_reopen(path: str, max_file: int) -> list[Remove]:
    return [Remove(path=path + ROTATING_SUFFIX)] if max_file == 1 else []


def rotated_indices(path: str) -> list[int]:
    """The numbers N of the ``<path>.N`` files there are, ascending (I/O)."""
    directory, base = os.path.split(path)
    prefix = base + "."
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        suffix = name[len(prefix) :] if name.startswith(prefix) else ""
        if suffix.isdigit() and suffix[0] != "0":
            found.append(int(suffix))
    return sorted(found)


def _apply(steps: Iterable[Remove | Rename]) -> None:
    for step in steps:
        if isinstance(step, Remove):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(step.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.rename(step.src, step.dst)


def _shift(path: str, max_file: int) -> bool:
    """Carry out the plan; ``False`` (nothing done) if there is no live file."""
    if not os.path.exists(path):
        return False
    steps = plan_rotation(path, max_file, rotated_indices(path))
    *shifts, last = steps
    _apply(shifts)
    assert isinstance(last, Rename)
    try:
        os.rename(last.src, last.dst)
    except FileNotFoundError:
        return False
    return True


def _undo(path: str, max_file: int) -> None:
    """The reopen failed: put the live file back (the shifted older files stay shifted;
    readers do not mind a gap in the numbers)."""
    moved = path + ROTATING_SUFFIX if max_file == 1 else rotated_name(path, 1)
    if not os.path.exists(path):
        with contextlib.suppress(FileNotFoundError):
            os.rename(moved, path)


class LogRotator:
    """Rotates ``path`` once it holds ``max_size`` bytes, keeping ``max_file`` files (the
    live one included); ``reopen`` makes the writer open ``path`` anew."""

    def __init__(
        self,
        path: str,
        max_size: int,
        max_file: int,
        reopen: Callable[[], Awaitable[None]],
    ) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        if max_file < 1:
            raise ValueError("max_file must be at least 1")
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        self._reopen = reopen
        self.rotations = 0
        #: ``<path>.1`` may hold more than ``max_size``: cut it once conmon writes elsewhere.
        self._unsplit = False

    def _size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    async def check(self) -> bool:
        """Rotate if the live file is full; whether it did. A failed ``reopen`` (the
        container stopped meanwhile) puts the file back and raises; file errors raise
        ``SystemFailure``."""
        try:
            if os.path.exists(self.path):  # conmon has made its new file
                await self._split_rotated()
            if self._size() < self.max_size:
                return False
            if not await asyncio.to_thread(_shift, self.path, self.max_file):
                return False
            try:
                await self._reopen()
            except BaseException:
                _undo(self.path, self.max_file)  # two syscalls: no thread, cancel-proof
                raise
            await asyncio.to_thread(_apply, cleanup_after_reopen(self.path, self.max_file))
            self._unsplit = self.max_file > 1
        except OSError as e:
            raise SystemFailure(f"rotating log {self.path}: {e}") from e
        self.rotations += 1
        return True

    async def _split_rotated(self) -> None:
        """``<path>.1`` cut, if the last rotation left it to be (see ``_unsplit``)."""
        if self._unsplit:
            self._unsplit = False
            await asyncio.to_thread(_spread, self.path, self.max_size, self.max_file)

    async def settle(self) -> None:
        """Nobody writes any more (the container exited): cut what a burst left too large,
        so no file holds more than ``OVERRUN`` times ``max_size``. A live file that large
        is rotated whole, cut among the rotated files, and an empty one takes its place: a
        ``docker logs -f`` still reading it then finds nothing new to read (a piece in its
        place would be read twice). With ``max_file`` 1 there is no place for pieces: the
        live file stays as it is."""
        try:
            await self._split_rotated()
            if self.max_file > 1 and self._size() > OVERRUN * self.max_size:
                await asyncio.to_thread(_retire_live, self.path, self.max_size, self.max_file)
        except OSError as e:
            raise SystemFailure(f"rotating log {self.path}: {e}") from e

    async def run(self, stop: asyncio.Event, interval: float = 0.25) -> None:
        """Until ``stop`` is set: ``check`` whenever the log file is written to (inotify on
        its directory, so a fast writer is rotated within milliseconds of passing the size),
        and at least every ``interval`` seconds (the fallback where inotify is missing);
        then ``settle``. Set ``stop`` only once the writer is gone. Errors are logged and the
        next check tries again."""
        watch = open_dir_watch(os.path.dirname(self.path) or ".")
        loop = asyncio.get_running_loop()
        name = os.path.basename(self.path)
        written = asyncio.Event()
        if watch is not None:

            def on_event() -> None:
                if name in watch.names():
                    written.set()

            loop.add_reader(watch.fileno(), on_event)
        try:
            while not stop.is_set():
                written.clear()
                try:
                    await self.check()
                except WhaledError as e:
                    log.warning("log rotation of %s failed: %s", self.path, e)
                waiters = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(written.wait()),
                ]
                try:
                    await asyncio.wait(
                        waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for w in waiters:
                        w.cancel()
            try:
                await self.settle()
            except WhaledError as e:
                log.warning("log rotation of %s failed: %s", self.path, e)
        finally:
            if watch is not None:
                loop.remove_reader(watch.fileno())
                watch.close()
