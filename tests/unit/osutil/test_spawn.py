"""Children started with Popen, their exit and output learnt on the event loop
(``whaled.osutil.spawn``), on asyncio's loop and on uvloop's (the daemon's)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from whaled.osutil import spawn

LOOPS = [asyncio.new_event_loop, uvloop.new_event_loop]


def _on(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, Any]
) -> Any:
    loop = loop_factory()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_run_gives_status_stdout_and_stderr_and_feeds_stdin(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: more than a pipe holds, both ways
    script = "cat; echo err >&2; exit 3"
    rc, out, err = _on(loop_factory, spawn.run(["sh", "-c", script], input=big, timeout=30))
    assert (rc, out, err) == (3, big, b"err\n")
    rc, out, err = _on(loop_factory, spawn.run(["sh", "-c", "echo hi"], timeout=30))
    assert (rc, out, err) == (0, b"hi\n", b"")


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_run_kills_what_outlives_its_timeout(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            await spawn.run(["sleep", "30"], timeout=0.2)

    _on(loop_factory, main())


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_start_wait_and_kill(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    async def main() -> None:
        child = spawn.start(["sleep", "30"])
        assert child.returncode is None
        waiters = [asyncio.ensure_future(child.wait()) for _ in range(2)]
        await asyncio.sleep(0.05)
        child.kill()
        assert await asyncio.gather(*waiters) == [-signal.SIGKILL, -signal.SIGKILL]
        assert child.returncode == -signal.SIGKILL and await child.wait() == -signal.SIGKILL
        child.kill()  # gone: nothing happens
        quick = spawn.start(["true"])
        await asyncio.sleep(0.1)  # exited before anyone waits
        assert await quick.wait() == 0

    _on(loop_factory, main())


def test_a_missing_binary_is_an_oserror() -> None:
    with pytest.raises(OSError):
        spawn.start(["/nonexistent/binary"])


def test_without_pidfds_a_thread_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    rc, out, _ = _on(uvloop.new_event_loop, spawn.run(["sh", "-c", "echo x; exit 5"], timeout=30))
    assert (rc, out) == (5, b"x\n")


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_pipes_stream_both_ways_with_back_pressure_and_a_broken_stdin_is_an_error(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def main() -> None:
        child = spawn.start(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.popen.stdin is not None and child.popen.stdout is not None
        writer = spawn.PipeWriter(child.popen.stdin)
        reader = spawn.PipeReader(child.popen.stdout)
        big = bytes(range(256)) * 8192  # 2 MiB: the pipe fills, write waits for room
        reading = asyncio.ensure_future(reader.read_all())
        await writer.write(big)
        writer.close()
        assert writer.is_closing()
        assert await reading == big
        assert reader.closed and child.popen.stdout.closed  # closed at the end, once
        assert await child.wait() == 0

        child = spawn.start(["true"], stdin=subprocess.PIPE)
        assert child.popen.stdin is not None
        writer = spawn.PipeWriter(child.popen.stdin)
        await child.wait()
        with pytest.raises(BrokenPipeError):
            for _ in range(64):  # the reader is gone: the pipe breaks, at the latest when full
                await writer.write(b"x" * 65536)
        writer.close()

    _on(loop_factory, main())


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_closing_a_pipe_wakes_its_waiting_read_and_write(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def main() -> None:
        child = spawn.start(["sleep", "30"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.popen.stdin is not None and child.popen.stdout is not None
        reader = spawn.PipeReader(child.popen.stdout)
        writer = spawn.PipeWriter(child.popen.stdin)
        reading = asyncio.ensure_future(reader.read())
        writing = asyncio.ensure_future(writer.write(b"x" * (1 << 20)))  # more than fits
        await asyncio.sleep(0.05)
        assert not reading.done() and not writing.done()
        reader.close()
        writer.close()
        assert await reading == b""
        with pytest.raises(BrokenPipeError):
            await writing
        assert child.popen.stdout.closed and child.popen.stdin.closed
        assert await reader.read() == b""
        r, w = os.pipe()  # the writing end stays open: a read waits
        cancelled = spawn.PipeReader(os.fdopen(r, "rb"))
        task = asyncio.ensure_future(cancelled.read())
        await asyncio.sleep(0.01)
        task.cancel()  # a cancelled read stops watching: the pipe closes cleanly after
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled.close()
        os.close(w)
        child.kill()
        await child.wait()

    _on(loop_factory, main())
