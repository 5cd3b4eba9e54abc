"""The attach pump over a fake AttachStream: output framing and stream selection, stdin
(chunks, EOF, StdinOnce), detach keys, a client that goes away, a process that is gone."""

from __future__ import annotations

import asyncio

from whaled.api.framing import detacher_for, parse_detach_keys
from whaled.daemon.pump import DOCKER_STDERR, DOCKER_STDOUT, ClientIO, PumpEnd, pump
from whaled.runtime.backend.api import STREAM_STDERR, STREAM_STDOUT


class FakeStream:
    """An AttachStream whose output comes from a queue (None ends it)."""

    def __init__(self, *, accept_stdin: bool = True) -> None:
        self.output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.stdin: list[bytes] = []
        self.stdin_closed = False
        self.closed = False
        self.accept_stdin = accept_stdin

    async def recv(self) -> tuple[int, bytes] | None:
        return await self.output.get()

    async def send(self, data: bytes) -> bool:
        if not self.accept_stdin:
            return False
        self.stdin.append(data)
        return True

    def close_stdin(self) -> None:
        self.stdin_closed = True

    def close(self) -> None:
        self.closed = True


class Client:
    def __init__(self, chunks: list[bytes] | None = None) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.input: asyncio.Queue[bytes] = asyncio.Queue()
        for c in chunks or []:
            self.input.put_nowait(c)
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def write(self, stream: int, data: bytes) -> None:
        self.frames.append((stream, data))

    def io(self, stdin: bool = True) -> ClientIO:
        return ClientIO(stdin=self.input.get if stdin else None, output=self.write, gone=self.gone)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_output_is_framed_and_filtered_until_it_ends() -> None:
    async def main() -> None:
        stream, client = FakeStream(), Client()
        for item in ((STREAM_STDOUT, b"out"), (STREAM_STDERR, b"err"), (STREAM_STDOUT, b"2")):
            stream.output.put_nowait(item)
        stream.output.put_nowait(None)
        end = await pump(stream, client.io(stdin=False), stdout=True, stderr=False)
        assert end is PumpEnd.OUTPUT_ENDED
        assert client.frames == [(DOCKER_STDOUT, b"out"), (DOCKER_STDOUT, b"2")]
        assert stream.closed

    run(main())


def test_stdin_eof_with_stdin_once_closes_stdin_and_the_output_goes_on() -> None:
    async def main() -> None:
        stream, client = FakeStream(), Client([b"abc", b""])
        task = asyncio.ensure_future(pump(stream, client.io(), eof_closes_stdin=True))
        await asyncio.sleep(0.01)
        assert stream.stdin == [b"abc"]
        assert stream.stdin_closed
        assert not task.done()  # output still flows after stdin ended
        stream.output.put_nowait((STREAM_STDERR, b"late"))
        stream.output.put_nowait(None)
        assert await task is PumpEnd.OUTPUT_ENDED
        assert client.frames == [(DOCKER_STDERR, b"late")]

    run(main())


def test_stdin_eof_without_stdin_once_ends_the_attach_and_leaves_stdin_open() -> None:
    # dockerd: without StdinOnce (or with a TTY) the client's stdin EOF closes the attach's
    # output; the process's stdin stays open for the next attach.
    async def main() -> None:
        stream, client = FakeStream(), Client([b"abc", b""])
        end = await asyncio.wait_for(pump(stream, client.io(), eof_closes_stdin=False), 1)
        assert end is PumpEnd.STDIN_ENDED
        assert stream.stdin == [b"abc"]
        assert not stream.stdin_closed
        assert stream.closed

    run(main())


def test_detach_keys_end_the_pump_and_are_not_sent() -> None:
    async def main() -> None:
        stream = FakeStream()
        client = Client([b"ab\x10\x11cd"])
        detacher = detacher_for(parse_detach_keys("ctrl-p,ctrl-q"), tty=True, stdin=True)
        end = await pump(stream, client.io(), detacher=detacher)
        assert end is PumpEnd.DETACHED
        assert b"".join(stream.stdin) == b"ab"
        assert stream.closed

    run(main())


def test_client_gone_ends_a_silent_pump() -> None:
    async def main() -> None:
        stream, client = FakeStream(), Client()
        task = asyncio.ensure_future(pump(stream, client.io(stdin=False)))
        await asyncio.sleep(0.01)
        client.gone.set_result(None)
        assert await task is PumpEnd.CLIENT_GONE
        assert stream.closed

    run(main())


def test_a_gone_process_stops_the_input_and_the_output_ends_it() -> None:
    async def main() -> None:
        stream, client = FakeStream(accept_stdin=False), Client([b"x" * 10])
        task = asyncio.ensure_future(pump(stream, client.io()))
        await asyncio.sleep(0.01)
        assert not task.done()
        stream.output.put_nowait(None)
        assert await task is PumpEnd.OUTPUT_ENDED

    run(main())
