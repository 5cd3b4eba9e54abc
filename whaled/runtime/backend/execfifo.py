"""Start a created runc container without another runtime process: its exec FIFO.

``runc create`` leaves the container's init process blocked on opening
``<runc root>/<id>/exec.fifo`` for writing; ``runc start`` is only "open that FIFO for
reading, read it to its end (one byte, then EOF when the init process execs the user's
program, its end being close-on-exec), remove it". Doing the same here saves a whole runc
process (Go start-up, state loading: ~7 ms of every container start).

Used only when the daemon says the runtime is runc itself (no wrapper, no extra
arguments: see ``CreateOptions.exec_fifo``); whenever the FIFO is not where runc keeps it,
or the init process died before opening it, :func:`release` answers ``False`` and the
caller runs ``<runtime> start``, which gives the runtime's own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

_POLL_SECONDS = 0.1


def _init_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[-1].split()[:1] != [b"Z"]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def release(fifo: str, pid: int, timeout: float) -> bool:
    """Let the init process ``pid`` exec: ``True`` once it has (the FIFO read to its end
    and removed); ``False`` when the caller must use the runtime's ``start`` instead."""
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    loop = asyncio.get_running_loop()
    got = b""
    try:
        deadline = loop.time() + timeout
        while True:
            # Linux reports a FIFO readable (data or EOF) only once a writer has opened it,
            # so no early EOF is seen before the init process gets there.
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _resolve, ready)
            try:
                await asyncio.wait_for(ready, _POLL_SECONDS)
            except TimeoutError:
                if not _init_alive(pid) or loop.time() > deadline:
                    return False
                continue
            finally:
                loop.remove_reader(fd)
            try:
                chunk = os.read(fd, 64)
            except BlockingIOError:
                continue
            if not chunk:
                break
            got += chunk
    finally:
        os.close(fd)
    if not got:
        return False  # a writer came and went without its byte: let the runtime say why
    with contextlib.suppress(FileNotFoundError):
        os.unlink(fifo)
    return True
