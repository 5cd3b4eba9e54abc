"""Children started with Popen, their exit and output learnt on the event loop
(``whaled.osutil.spawn``), on asyncio's loop and on uvloop's (the daemon's)."""

from __future__ import annotations

import asyncio
import os
import signal
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
