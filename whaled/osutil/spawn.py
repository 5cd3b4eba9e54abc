"""Child processes started the fast way under any event loop.

uvloop starts a subprocess through libuv, which forks the whole daemon: ~3.2 ms for
``/bin/true`` from a process of ~60 MB, against ~0.9 ms for :class:`subprocess.Popen`
(``vfork``). The runtime calls of ``docker run`` and ``docker stop`` paid that several
times. These children start with Popen; the event loop learns the rest from file
descriptors: the exit from a pidfd, the output from the pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import IO, Any

_READ = 1 << 16


class Child:
    """A started child: ``pid``, ``returncode`` (None while it runs), ``wait`` and
    ``kill`` as with asyncio's ``Process``."""

    __slots__ = ("_exited", "popen")

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self._exited: asyncio.Future[int] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def kill(self, *, group: bool = False) -> None:
        """SIGKILL; with ``group``, to the child's process group as well (a child started
        with ``start_new_session`` leads one: what it started dies with it)."""
        if group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        if self.popen.returncode is None:
            self.popen.kill()

    async def wait(self) -> int:
        """The exit status, once the child exited (it is reaped then)."""
        if self.popen.returncode is not None:
            return self.popen.returncode
        if self._exited is None:
            self._exited = asyncio.get_running_loop().create_future()
            self._watch(self._exited)
        return await asyncio.shield(self._exited)

    def _watch(self, exited: asyncio.Future[int]) -> None:
        loop = exited.get_loop()
        try:
            pidfd = os.pidfd_open(self.popen.pid)
        except OSError:  # no pidfds (a kernel before 5.3): a thread waits instead
            waiting = loop.run_in_executor(None, self.popen.wait)
            waiting.add_done_callback(lambda w: _settle(exited, w))
            return

        def readable() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            if not exited.done():
                exited.set_result(self.popen.wait())  # exited: reaps at once

        loop.add_reader(pidfd, readable)


def _settle(exited: asyncio.Future[int], waiting: asyncio.Future[int]) -> None:
    if exited.done():
        return
    error = waiting.exception()
    if error is not None:
        exited.set_exception(error)
    else:
        exited.set_result(waiting.result())


class _OwnedPipe:
    """One end of a child's pipe, owned: non-blocking, watched on the loop only while a
    read or write waits for it, closed once (never handed to a loop transport: uvloop's
    pipe transports close a descriptor twice, which may close another thread's file that
    took its number). ``_WRITES`` says which way the descriptor is watched."""

    __slots__ = ("_fd", "_pipe", "_waiting")
    _WRITES = False

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._fd = pipe.fileno()
        self._waiting: asyncio.Future[None] | None = None
        os.set_blocking(self._fd, False)

    @property
    def closed(self) -> bool:
        return self._pipe.closed

    async def _ready(self) -> None:
        """Until the descriptor is ready, or the pipe was closed meanwhile."""
        loop = asyncio.get_running_loop()
        self._waiting = waiting = loop.create_future()
        if self._WRITES:
            loop.add_writer(self._fd, _wake, waiting)
        else:
            loop.add_reader(self._fd, _wake, waiting)
        try:
            await waiting
        finally:
            if not self._pipe.closed:
                self._unwatch(loop)
            self._waiting = None

    def _unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._WRITES:
            loop.remove_writer(self._fd)
        else:
            loop.remove_reader(self._fd)

    def close(self) -> None:
        """Close the pipe; a read that waits returns b"", a write that waits fails."""
        if self._pipe.closed:
            return
        waiting = self._waiting
        if waiting is not None:
            self._unwatch(waiting.get_loop())
            _wake(waiting)
        with contextlib.suppress(OSError):  # a write end with unflushed bytes (none here)
            self._pipe.close()


class PipeReader(_OwnedPipe):
    """A child's output pipe read on the event loop."""

    __slots__ = ()

    async def read(self, n: int = _READ) -> bytes:
        """Up to ``n`` bytes as soon as there are some; b"" at the end (then closed)."""
        while not self._pipe.closed:
            try:
                chunk = os.read(self._fd, n)
            except BlockingIOError:
                await self._ready()
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
            return chunk
        return b""

    async def read_all(self) -> bytes:
        """Everything up to the end of the output."""
        out = bytearray()
        while chunk := await self.read():
            out += chunk
        return bytes(out)


class PipeWriter(_OwnedPipe):
    """A child's stdin written on the event loop."""

    __slots__ = ()
    _WRITES = True

    def is_closing(self) -> bool:
        return self._pipe.closed

    async def write(self, data: bytes) -> None:
        """Returns once the pipe took all of ``data``; BrokenPipeError once the child's
        end is closed, or this one."""
        view = memoryview(data)
        while view:
            if self._pipe.closed:
                raise BrokenPipeError("the child's stdin is closed")
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await self._ready()
            except OSError as e:
                raise BrokenPipeError(f"the child's stdin is closed: {e}") from e


def _wake(waiting: asyncio.Future[None]) -> None:
    if not waiting.done():
        waiting.set_result(None)


def start(argv: Sequence[str], **popen_args: Any) -> Child:
    """Start ``argv`` (``subprocess.Popen``'s arguments); OSError when it cannot be."""
    return Child(subprocess.Popen(list(argv), **popen_args))


async def run(
    argv: Sequence[str], *, input: bytes | None = None, timeout: float, **popen_args: Any
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` to its end: (exit status, stdout, stderr). Killed and TimeoutError
    after ``timeout`` seconds; killed as well when the caller is cancelled (with its
    process group when it was started with ``start_new_session``)."""
    child = start(
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen_args,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await _communicate(child.popen, input)
            return await child.wait(), out, err
    except BaseException:
        child.kill(group=bool(popen_args.get("start_new_session")))
        with contextlib.suppress(BaseException):
            await asyncio.shield(child.wait())
        raise
    finally:
        for pipe in (child.popen.stdin, child.popen.stdout, child.popen.stderr):
            if pipe is not None:
                pipe.close()


async def _communicate(popen: subprocess.Popen[bytes], input: bytes | None) -> tuple[bytes, bytes]:
    """Write ``input`` to the child's stdin and read its stdout and stderr to their ends,
    on the event loop (non-blocking descriptors, no thread)."""
    loop = asyncio.get_running_loop()
    assert popen.stdout is not None and popen.stderr is not None
    outputs = {popen.stdout.fileno(): bytearray(), popen.stderr.fileno(): bytearray()}
    ended: asyncio.Future[None] = loop.create_future()
    open_fds = set(outputs)

    def readable(fd: int) -> None:
        try:
            chunk = os.read(fd, _READ)
        except BlockingIOError:
            return
        except OSError as e:
            chunk = b""
            if not ended.done():
                ended.set_exception(e)
        if chunk:
            outputs[fd] += chunk
            return
        loop.remove_reader(fd)
        open_fds.discard(fd)
        if not open_fds and not ended.done():
            ended.set_result(None)

    for fd in outputs:
        os.set_blocking(fd, False)
        loop.add_reader(fd, readable, fd)
    writing = _feed(loop, popen, input)
    try:
        await ended
        if writing is not None:
            await writing
    finally:
        for fd in open_fds:
            loop.remove_reader(fd)
        if writing is not None and not writing.done():
            writing.cancel()
    return bytes(outputs[popen.stdout.fileno()]), bytes(outputs[popen.stderr.fileno()])


def _feed(
    loop: asyncio.AbstractEventLoop, popen: subprocess.Popen[bytes], input: bytes | None
) -> asyncio.Future[None] | None:
    """Write ``input`` to the child's stdin as it takes it, then close it."""
    if popen.stdin is None:
        return None
    stdin = popen.stdin
    if not input:
        stdin.close()
        return None
    fd = stdin.fileno()
    os.set_blocking(fd, False)
    done: asyncio.Future[None] = loop.create_future()
    view = memoryview(input)

    def writable() -> None:
        nonlocal view
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            return
        except OSError:  # the child closed its stdin (BrokenPipe): it has what it wanted
            view = view[len(view) :]
        if not view:
            loop.remove_writer(fd)
            stdin.close()
            if not done.done():
                done.set_result(None)

    loop.add_writer(fd, writable)
    done.add_done_callback(lambda _: _stop_writing(loop, fd, stdin))
    return done


def _stop_writing(loop: asyncio.AbstractEventLoop, fd: int, stdin: Any) -> None:
    if not stdin.closed:
        loop.remove_writer(fd)
        stdin.close()
