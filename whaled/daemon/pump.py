"""Bridging a client's stdio to a process's :class:`AttachStream` (no HTTP, no conmon here).

:func:`pump` moves bytes both ways until the output ends (the process exited), the client
detached with the detach keys, or the client went away. Stdin EOF from the client ends the
process's stdin (``AttachStream.close_stdin``) when asked to, so the output of e.g. ``cat``
still arrives afterwards; otherwise it ends the attach, as dockerd's does (without
StdinOnce, or with a TTY, the client's stdin EOF closes the attach's output).

Input and output run as two independent tasks, so neither waits for the other (a process
whose output fills up while stdin still comes cannot deadlock the pair); each side waits
only for its own peer, so memory stays bounded. The pump works over any backend's stream
(unit-tested with a fake one).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from whaled.runtime.backend.api import STREAM_STDERR, STREAM_STDOUT, AttachStream

#: Docker's stream numbers in multiplexed frames.
DOCKER_STDOUT = 1
DOCKER_STDERR = 2


class Detacher(Protocol):
    def feed(self, data: bytes) -> tuple[bytes, bool]: ...


StdinSource = Callable[[], Awaitable[bytes]]
OutputSink = Callable[[int, bytes], Awaitable[None]]


class PumpEnd(enum.StrEnum):
    OUTPUT_ENDED = "output-ended"
    DETACHED = "detached"
    CLIENT_GONE = "client-gone"
    STDIN_ENDED = "stdin-ended"  # the client's stdin ended an attach without StdinOnce


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientIO:
    """The client's side of an attach: where its stdin comes from (None: not attached),
    where output frames go (Docker stream number, data), and what resolves when its
    connection is gone."""

    stdin: StdinSource | None
    output: OutputSink
    gone: Awaitable[None] | None = None


async def pump(
    attached: AttachStream,
    client: ClientIO,
    *,
    stdout: bool = True,
    stderr: bool = True,
    detacher: Detacher | None = None,
    eof_closes_stdin: bool = True,
) -> PumpEnd:
    """Run until the output ends, the client detaches or goes away. Closes ``attached``.

    ``eof_closes_stdin``: the client's stdin EOF ends the process's stdin (Docker's
    StdinOnce, and exec sessions) and the output goes on; otherwise the process's stdin
    stays open for later attaches and the EOF ends this attach (dockerd closes the
    attach's output then, so a client that hangs up is not kept). ``client.gone``
    resolves when the client's connection is gone: the pump ends then, also while there
    is no output."""
    stdin, output, client_gone = client.stdin, client.output, client.gone
    wanted = {STREAM_STDOUT: stdout, STREAM_STDERR: stderr}
    docker_stream = {STREAM_STDOUT: DOCKER_STDOUT, STREAM_STDERR: DOCKER_STDERR}

    async def pump_output() -> PumpEnd:
        while True:
            chunk = await attached.recv()
            if chunk is None:
                return PumpEnd.OUTPUT_ENDED
            kind, data = chunk
            if not wanted.get(kind):
                continue
            try:
                await output(docker_stream[kind], data)
            except (ConnectionError, OSError, RuntimeError):
                return PumpEnd.CLIENT_GONE

    async def pump_input() -> PumpEnd | None:
        assert stdin is not None
        while True:
            try:
                data = await stdin()
            except (ConnectionError, OSError):
                return PumpEnd.CLIENT_GONE
            if not data:
                if not eof_closes_stdin:
                    return PumpEnd.STDIN_ENDED
                # The process's stdin ends while its output goes on arriving.
                attached.close_stdin()
                return None  # stdin done; keep the output flowing
            detached = False
            if detacher is not None:
                data, detached = detacher.feed(data)
            if data and not await attached.send(data):
                return None  # the process is gone; the output side sees the end
            if detached:
                return PumpEnd.DETACHED

    out_task = asyncio.ensure_future(pump_output())
    in_task = asyncio.ensure_future(pump_input()) if stdin is not None else None
    gone_task = asyncio.ensure_future(client_gone) if client_gone is not None else None
    try:
        pending: set[asyncio.Future[Any]] = {out_task}
        if in_task is not None:
            pending.add(in_task)
        if gone_task is not None:
            pending.add(gone_task)
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if out_task in done:
                return out_task.result()
            if in_task is not None and in_task in done:
                end = in_task.result()
                if end is not None:
                    return end
            if gone_task is not None and gone_task in done:
                return PumpEnd.CLIENT_GONE
    finally:
        for t in (out_task, in_task, gone_task):
            if t is not None and not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        attached.close()


class Attacher:
    """Hands a process's stream, once it is ready, to a pump that runs in the background
    (the start that made the stream goes on meanwhile); ``ended`` resolves with how the
    pump ended."""

    def __init__(
        self,
        spawn: Callable[[str, Coroutine[Any, Any, None]], object],
        name: str,
        client: ClientIO,
        *,
        stdout: bool = True,
        stderr: bool = True,
        detacher: Detacher | None = None,
        eof_closes_stdin: bool = True,
    ) -> None:
        self._spawn = spawn
        self._name = name
        self._client = client
        self._options = (stdout, stderr, detacher, eof_closes_stdin)
        self.ended: asyncio.Future[PumpEnd] = asyncio.get_running_loop().create_future()

    async def __call__(self, stream: AttachStream) -> None:
        self._spawn(self._name, self._run(stream))

    async def _run(self, stream: AttachStream) -> None:
        stdout, stderr, detacher, eof_closes_stdin = self._options
        end = PumpEnd.CLIENT_GONE
        try:
            end = await pump(
                stream,
                self._client,
                stdout=stdout,
                stderr=stderr,
                detacher=detacher,
                eof_closes_stdin=eof_closes_stdin,
            )
        finally:
            if not self.ended.done():
                self.ended.set_result(end)
