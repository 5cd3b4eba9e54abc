"""Size-based rotation of a running container's log file (json-file's ``max-size`` /
``max-file``).

conmon keeps writing to the file it has open; after the files are shifted, ``reopen`` asks it
to open ``path`` again (``Task.reopen_log``: conmon then creates a fresh file there, and
until it has done so it writes on into the renamed file, so nothing is lost). Readers
(``reader.read_logs``) follow the renamed file to its end and go on with the new one.

The plan (which files to remove and rename) is a pure function of the files there are;
``LogRotator`` carries it out. conmon's own ``--log-size-max`` is a backstop configured
elsewhere: it replaces the file when it grows past that, losing what it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from whaled.errors import SystemFailure, WhaledError
from whaled.osutil.inotify import open_dir_watch

log = logging.getLogger("whaled.logger")

ROTATING_SUFFIX = ".rotating"  # max_file 1: where the full file waits for the reopen


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
        except OSError as e:
            raise SystemFailure(f"rotating log {self.path}: {e}") from e
        self.rotations += 1
        return True

    async def run(self, stop: asyncio.Event, interval: float = 0.25) -> None:
        """Until ``stop`` is set: ``check`` whenever the log file is written to (inotify on
        its directory, so a fast writer is rotated within milliseconds of passing the size),
        and at least every ``interval`` seconds (the fallback where inotify is missing).
        Errors are logged and the next check tries again."""
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
        finally:
            if watch is not None:
                loop.remove_reader(watch.fileno())
                watch.close()
