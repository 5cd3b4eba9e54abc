"""The raw-HTTP floor: a trivial asyncio server on a unix socket that answers canned bytes.

Run as its own process (``python -m bench.floorserver SOCKET RESPONSES.json``) so it competes
for the CPU the way a daemon does. ``RESPONSES.json`` maps a path (without query and without
the ``/vX.Y`` prefix) to the hex of the complete response (status line, headers, body) that an
engine gave for it; anything else gets a 404. It parses no more of the request than it must.
A ``HEAD`` request gets the response's head only; a ``101`` response (a hijacked stream, as
``exec`` and ``attach`` answer) ends its connection, as a stream whose process has exited.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys

_VERSION_PREFIX = re.compile(rb"^/v[0-9]+\.[0-9]+(?=/)")
NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n"
    b'{"message":"page not found"}\n'
)


def route_key(target: bytes) -> bytes:
    """``/v1.45/containers/json?all=1`` -> ``/containers/json``."""
    path = target.split(b"?", 1)[0]
    return _VERSION_PREFIX.sub(b"", path)


def answer(method: bytes, response: bytes) -> tuple[bytes, bool]:
    """What goes back for ``response`` to ``method``, and whether the connection ends after."""
    if method == b"HEAD":
        head, sep, _ = response.partition(b"\r\n\r\n")
        return head + sep, False
    return response, response.startswith(b"HTTP/1.1 101 ")


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return int(v.strip())
    return 0


async def serve(
    sock: str, responses: dict[bytes, bytes], stop: asyncio.Event | None = None
) -> None:
    """Serve until SIGTERM/SIGINT (or until ``stop`` is set, when given)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                n = _content_length(head)
                if n:
                    await reader.readexactly(n)
                parts = head.split(b" ", 2)
                key = route_key(parts[1]) if len(parts) > 1 else b""
                out, last = answer(parts[0], responses.get(key, NOT_FOUND))
                writer.write(out)
                if last:
                    break
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path=sock)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.floorserver SOCKET RESPONSES.json", file=sys.stderr)
        return 2
    sock, responses_path = argv
    with open(responses_path, encoding="utf-8") as f:
        table = {k.encode(): bytes.fromhex(v) for k, v in json.load(f).items()}
    asyncio.run(serve(sock, table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
